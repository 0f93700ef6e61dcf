#!/usr/bin/env python3
"""Soak: `roompulse run` on the looped classroom clip against a real mosquitto restarted every 2 minutes.

Prints figures: windows printed by the service vs. received by a subscriber (every seq once),
RSS and thread count of the service over time, systemd watchdog pings (the script listens on
its own NOTIFY_SOCKET), exit code. Not part of `make test` (it takes the whole duration).

    .venv/bin/python scripts/soak.py [--minutes 10] [--restart-every 120] [--window 10]

Exit status 0 when every window was delivered, no thread died, the service exited 0 and RSS
after warm-up grew by less than 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil

ROOT = Path(__file__).resolve().parent.parent
CLIP = Path(os.environ.get("ROOMPULSE_SHARED", ROOT.parent / "shared")) / "data/video/intel_classroom.gif"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """A mosquitto with persistence (queued QoS 1 messages survive its restarts)."""

    def __init__(self, workdir: Path, port: int):
        self.port, self.workdir = port, workdir / "broker"
        workdir = self.workdir
        workdir.mkdir()
        workdir.chmod(0o777)  # mosquitto started as root drops to user "mosquitto" before saving
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {workdir}/\nautosave_interval 5\n")
        self.proc = None
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

    def start(self):
        log = open(self.workdir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Subscriber:
    """Persistent-session QoS 1 subscriber: receives what was queued while it was away."""

    def __init__(self, port: int, prefix: str):
        self.seqs: list[int] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-subscriber",
                                  clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/engagement", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.seqs.append(json.loads(msg.payload)["seq"])


class NotifyListener:
    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.events: list[tuple[float, str]] = []
        self.stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            self.events.extend((time.monotonic(), line) for line in data.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--restart-every", type=float, default=120.0, help="seconds between broker restarts")
    parser.add_argument("--down", type=float, default=5.0, help="seconds the broker stays down per restart")
    parser.add_argument("--window", type=float, default=10.0, help="ROOMPULSE_WINDOW_S")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="roompulse-soak-"))
    work.chmod(0o711)  # let the broker (user "mosquitto") reach its own subdirectory
    port = free_port()
    broker = Mosquitto(work, port)
    broker.start()
    prefix = "roompulse/soak-room"
    sub = Subscriber(port, prefix)
    notify = NotifyListener(work / "notify.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMPULSE_")}
    env.update(ROOMPULSE_MQTT_HOST="127.0.0.1", ROOMPULSE_MQTT_PORT=str(port), ROOMPULSE_DEVICE_ID="soak-room",
               ROOMPULSE_SOURCE_LOOP="true", ROOMPULSE_WINDOW_S=str(args.window), ROOMPULSE_MIN_GROUP_SIZE="3",
               ROOMPULSE_STATE_DIR=str(work / "state"), ROOMPULSE_HA_DISCOVERY="false",
               NOTIFY_SOCKET=str(work / "notify.sock"), WATCHDOG_USEC="30000000")
    out, err = open(work / "stdout", "w+"), open(work / "stderr", "w+")
    service = subprocess.Popen([sys.executable, "-m", "device", "run", "--source", str(CLIP)], cwd=ROOT, env=env,
                               stdout=out, stderr=err)
    proc = psutil.Process(service.pid)
    began = time.monotonic()
    duration = args.minutes * 60
    samples, restarts, next_restart = [], 0, began + args.restart_every
    print(f"soak: {args.minutes:g} min, broker on 127.0.0.1:{port} restarted every {args.restart_every:g} s "
          f"(down {args.down:g} s), windows of {args.window:g} s; work dir {work}", flush=True)
    while time.monotonic() - began < duration and service.poll() is None:
        now = time.monotonic()
        if now >= next_restart:
            broker.stop()
            time.sleep(args.down)
            broker.start()
            restarts += 1
            next_restart += args.restart_every
            print(f"  t={now - began:5.0f} s  broker restarted ({restarts})", flush=True)
        try:
            samples.append((now - began, proc.memory_info().rss / 2**20, proc.num_threads()))
        except psutil.Error:
            break
        time.sleep(5)
    alive = service.poll() is None
    service.send_signal(signal.SIGTERM)
    code = service.wait(60)
    time.sleep(2)
    sub.client.loop_stop()
    broker.stop()
    notify.stop = True

    out.seek(0)
    printed = [json.loads(line)["seq"] for line in out if line.strip()]
    received = sorted(set(sub.seqs))
    missing = sorted(set(printed) - set(received))
    err.seek(0)
    log = err.read()
    pings = [t for t, m in notify.events if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    warm = [s for s in samples if s[0] >= 60] or samples
    rss0, rss1, rss_max = warm[0][1], warm[-1][1], max(s[1] for s in warm)
    threads = [s[2] for s in warm]
    print(f"service: alive for the whole run: {alive}, exit code after SIGTERM: {code}")
    print(f"windows: printed {len(printed)} (seq {printed[0] if printed else '-'}..{printed[-1] if printed else '-'}), "
          f"received {len(received)} distinct ({len(sub.seqs) - len(received)} duplicate deliveries), "
          f"missing {missing}")
    print(f"broker restarts: {restarts}; 'connection lost' log lines: {log.count('MQTT connection lost')}")
    print(f"RSS MiB after 60 s warm-up: start {rss0:.1f}, end {rss1:.1f}, max {rss_max:.1f} "
          f"(growth {100 * (rss1 - rss0) / rss0:+.1f} %)")
    print(f"threads after warm-up: min {min(threads)}, max {max(threads)}; thread deaths logged: {log.count('capture thread died')}")
    print(f"watchdog: READY={'READY=1' in [m for _, m in notify.events]}, {len(pings)} pings, "
          f"longest gap {max(gaps) if gaps else float('nan'):.1f} s (WatchdogSec 30 s); "
          f"camera stalls logged: {log.count('camera:')}")
    print(f"RSS samples (t s, MiB, threads): {[(round(t), round(r, 1), n) for t, r, n in samples[::12]]}")
    ok = alive and code == 0 and not missing and printed and "capture thread died" not in log \
        and (rss1 - rss0) / rss0 < 0.10
    print("soak:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
