"""Simulated units and the dashboard process, for the dashboard tests and scripts/dashboard_load.py.

Units are real MQTT clients in their own processes (so SIGKILL is a real crash and the broker
publishes their Last Will), publishing payloads built with :class:`device.payloads.Engagement`:

    python tests/dashboard_helpers.py unit PORT DEVICE_ID      # one unit; windows as JSON lines on stdin
    python tests/dashboard_helpers.py fleet PORT FIRST COUNT RATE SECONDS OUT
                                                              # COUNT units on one client, RATE windows/s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from email.message import Message
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from device.payloads import Engagement, utc_iso  # noqa: E402

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
# The run of seq values every simulated unit is in (a unit's state file names its own).
SEQUENCE_ID = "0123456789abcdef"


def window(device_id: str, seq: int, start: datetime, length_s: float, faces: int, score: float | None,
           frames: int = 120) -> Engagement:
    """A real ``roompulse.engagement/1`` payload; ``score=None`` makes it suppressed."""
    return Engagement(device_id=device_id, seq=seq, sequence_id=SEQUENCE_ID, window_start=utc_iso(start),
                      window_end=utc_iso(start + timedelta(seconds=length_s)), frames_analyzed=frames,
                      faces_present=faces, faces_present_max=faces + 1, engagement_score=score,
                      suppressed=score is None)


def fleet_window(unit: int, seq: int) -> Engagement:
    """The ``seq``-th 60 s window of simulated unit ``unit`` (time compressed: the payload's times
    are 60 s apart whatever the publishing rate); every 7th window is suppressed."""
    faces = 5 + (unit * 7 + seq * 3) % 26
    score = None if seq % 7 == 3 else round(((unit * 13 + seq * 17) % 101) / 100, 2)
    return window(f"unit-{unit:03d}", seq, T0 + timedelta(seconds=60 * seq), 60, 2 if score is None else faces,
                  score)


def mqtt_client(port: int, client_id: str, will_topic: str | None = None, inflight: int = 20) -> mqtt.Client:
    """An MQTT v5 client of the broker on 127.0.0.1:``port``, connected, its network loop running."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    if will_topic:
        client.will_set(will_topic, "offline", qos=1, retain=True)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    return client


def unit_main(port: int, device_id: str) -> None:
    """One unit: online + running, then each stdin line (an engagement JSON) published with QoS 1;
    prints ``acked <seq>`` after each PUBACK. Last Will: ``offline`` on ``<prefix>/availability``."""
    prefix = f"roompulse/{device_id}"
    client = mqtt_client(port, f"roompulse-{device_id}", f"{prefix}/availability")
    client.publish(f"{prefix}/availability", "online", qos=1, retain=True).wait_for_publish(10)
    status = {"schema": "roompulse.status/1", "state": "running", "paused": False, "accelerator": "cpu"}
    client.publish(f"{prefix}/status", json.dumps(status), qos=1, retain=True).wait_for_publish(10)
    print("ready", flush=True)
    for line in sys.stdin:
        payload = Engagement.model_validate_json(line)
        client.publish(f"{prefix}/engagement", payload.to_json(), qos=1).wait_for_publish(10)
        print(f"acked {payload.seq}", flush=True)
    client.disconnect()


def fleet_main(port: int, first: int, count: int, rate: float, seconds: float, out: Path) -> None:
    """Units ``first``..``first+count-1`` on one client: ``rate`` windows per second for ``seconds``,
    round-robin over the units. Writes ``{"sent": [[device_id, seq, publish_time_s], ...]}`` to
    ``out`` once every window is acknowledged."""
    client = mqtt_client(port, f"sim-fleet-{first}", inflight=200)
    sent: list[tuple[str, int, float]] = []
    infos = []
    total = int(rate * seconds)
    began = time.monotonic()
    for i in range(total):
        unit, seq = first + i % count, i // count
        payload = fleet_window(unit, seq)
        infos.append(client.publish(f"roompulse/{payload.device_id}/engagement", payload.to_json(), qos=1))
        sent.append((payload.device_id, seq, time.time()))
        delay = began + (i + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    out.write_text(json.dumps({"sent": sent, "elapsed_s": time.monotonic() - began}))


class Unit:
    """A simulated unit in a child process (:func:`unit_main`)."""

    def __init__(self, port: int, device_id: str):
        self.device_id = device_id
        self.proc = subprocess.Popen([sys.executable, __file__, "unit", str(port), device_id],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout.readline().strip() == "ready", f"unit {device_id} did not start"

    def publish(self, payload: Engagement) -> float:
        """Publish one window; returns the time (``time.monotonic()``) its PUBACK came back."""
        self.proc.stdin.write(payload.to_json() + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == f"acked {payload.seq}"
        return time.monotonic()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(10)


class Dashboard:
    """``python -m device dashboard`` in the background, its stderr kept."""

    def __init__(self, env: dict[str, str], http_port: int, *args: str):
        self.port = http_port
        self.url = f"http://127.0.0.1:{http_port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "device", "dashboard",
                                      "--listen", f"127.0.0.1:{http_port}", *args],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.errors: list[str] = []
        self._reader = threading.Thread(target=lambda: self.errors.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
        """``(status, headers, body)`` of a GET (an HTTP error status is returned, not raised)."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def json(self, path: str, headers: dict[str, str] | None = None):
        status, _, body = self.get(path, headers)
        assert status == 200, (status, body)
        return json.loads(body)

    def wait_ready(self, timeout: float = 20.0, headers: dict[str, str] | None = None) -> "Dashboard":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dashboard exited {self.proc.returncode}: {''.join(self.errors)}")
            try:
                if self.get("/metrics", headers)[0] in (200, 401) and "connected to" in "".join(self.errors):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"dashboard not ready: {''.join(self.errors)}")

    def wait_until(self, predicate, timeout: float = 20.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"dashboard exited {self.proc.returncode}: {''.join(self.errors)}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {''.join(self.errors)[-2000:]}")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self, kill: bool = False) -> int:
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
        rc = self.proc.wait(15)
        self._reader.join(5)
        return rc


def dashboard_env(broker_port: int, db: Path, **extra: str) -> dict[str, str]:
    """The environment of a test dashboard: no ROOMPULSE_* but these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMPULSE_")}
    env.update({"ROOMPULSE_MQTT_HOST": "127.0.0.1", "ROOMPULSE_MQTT_PORT": str(broker_port),
                "ROOMPULSE_MQTT_RECONNECT_MAX_S": "1", "ROOMPULSE_DASHBOARD_DB": str(db), **extra})
    return env


def chromium(width: int = 1280, height: int = 900):
    """Debian's headless Chromium through chromedriver (selenium), with a fresh profile."""
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="roompulse-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


if __name__ == "__main__":
    if sys.argv[1] == "unit":
        unit_main(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "fleet":
        fleet_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]),
                   Path(sys.argv[7]))
