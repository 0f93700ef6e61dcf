#!/usr/bin/env python3
"""Soak the outbox: N windows through the real Publisher at an accelerated rate while a real
mosquitto is restarted R times; prints lost / out-of-order / redelivered counts and the
publisher process's RSS at the start and the end.

    .venv/bin/python scripts/soak_outbox.py --windows 2000 --restarts 5

The publisher runs in a child process (so its RSS is its own); this process runs the broker
(persistent, restarted on the same port), a persistent-session subscriber, and the restarts,
spread evenly over the run. Output: one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

TOPIC = "roompulse/soak/engagement"


def child(port: int, state: Path, windows: int, rate: float) -> None:
    """Publish ``windows`` engagement payloads at ``rate`` per second, then flush and report."""
    import psutil

    from device.aggregator import WindowSummary
    from device.config import Settings
    from device.payloads import engagement
    from device.publisher import Publisher

    settings = Settings(_env_file=None, mqtt_host="127.0.0.1", mqtt_port=port, device_id="soak", state_dir=state,
                        ha_discovery=False, mqtt_reconnect_max_s=1)
    publisher = Publisher(settings, out=open(os.devnull, "w"))
    publisher.start()
    proc = psutil.Process()
    now = datetime.now(timezone.utc)
    summary = WindowSummary(start=0.0, end=1.0, frames_analyzed=2, faces_present=6, faces_present_max=7,
                            engagement_score=0.5, suppressed=False)
    rss_start = 0
    began = time.monotonic()
    for i in range(windows):
        publisher.submit(lambda seq: engagement("soak", seq, summary, now, now, publisher.sequence_id))
        if i == 100:
            rss_start = proc.memory_info().rss
        delay = began + (i + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    rss_end = proc.memory_info().rss
    dropped = publisher.dropped
    left = publisher.close(timeout=120)
    print(json.dumps({"rss_start_mb": round(rss_start / 2**20, 1), "rss_end_mb": round(rss_end / 2**20, 1),
                      "left_in_outbox": left, "dropped": dropped, "submit_s": round(time.monotonic() - began, 1)}))


def figures(raw: list[int], windows: int) -> dict:
    seen: set[int] = set()
    highest, out_of_order = -1, 0
    for seq in raw:
        if seq in seen:
            continue
        if seq != highest + 1:
            out_of_order += 1
        seen.add(seq)
        highest = max(highest, seq)
    return {"windows": windows, "received_unique": len(seen), "lost": windows - len(seen & set(range(windows))),
            "out_of_order": out_of_order, "redelivered": len(raw) - len(seen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--rate", type=float, default=300.0, help="windows per second")
    parser.add_argument("--down-s", type=float, default=1.5, help="seconds the broker stays down per restart")
    parser.add_argument("--child", nargs=2, metavar=("PORT", "STATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), Path(args.child[1]), args.windows, args.rate)
        return

    from conftest import Broker
    from mqtt_helpers import Recorder

    work = Path(tempfile.mkdtemp(prefix="roompulse-soak-"))
    broker = Broker(work, persistent=True).start()
    sub = Recorder(broker.port, TOPIC, client_id="soak-dashboard", persistent=True)
    proc = subprocess.Popen([sys.executable, __file__, "--windows", str(args.windows), "--rate", str(args.rate),
                             "--child", str(broker.port), str(work / "state")],
                            stdout=subprocess.PIPE, text=True)
    restarts = 0
    try:
        for k in range(1, args.restarts + 1):
            target = k * args.windows // (args.restarts + 1)
            deadline = time.monotonic() + 120
            while len(sub.on(TOPIC)) < target and time.monotonic() < deadline:
                time.sleep(0.02)
            broker.restart(args.down_s)
            restarts += 1
        out, _ = proc.communicate(timeout=300)
        report = json.loads(out.strip().splitlines()[-1])
        deadline = time.monotonic() + 60
        while len(set(sub.seqs(TOPIC))) < args.windows and time.monotonic() < deadline:
            time.sleep(0.1)
        report.update(figures(sub.seqs(TOPIC), args.windows), broker_restarts=restarts)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
        broker.stop()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
