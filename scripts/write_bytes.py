#!/usr/bin/env python3
"""Bytes written to the state disk per window by ``roompulse run``, from ``/proc/<pid>/io``.

    .venv/bin/python scripts/write_bytes.py --minutes 10 --window-s 5

Runs the real service (real model) on the looped classroom clip against a real mosquitto
(started here, on a free loopback port), with the state directory on a disk-backed file
system (``--state-dir``, default a fresh directory under /var/tmp: tmpfs does not count
writes). After ``--warmup`` windows it reads the service's ``write_bytes`` (bytes of
page-cache pages of 4 KiB the process dirtied, i.e. that the kernel will write to the disk:
a page dirtied again after an fsync counts again) and ``syscw`` (write system calls); at
the end it reads them again and prints one JSON line: windows, bytes per window, and what
that makes per hour at 60 s windows.

Logs go to stderr (a pipe here), stdout lines are counted as windows; nothing else of the
process writes to disk.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

CLIP = Path(os.environ.get("ROOMPULSE_SHARED", ROOT.parent / "shared")) / "data" / "video" / "intel_classroom.gif"


def io_counters(pid: int) -> dict[str, int]:
    """``/proc/<pid>/io`` as ``{name: int}`` (bytes and call counts)."""
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, value = line.split(":")
        out[key] = int(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="measured run time after the warm-up")
    parser.add_argument("--window-s", type=float, default=5.0, help="ROOMPULSE_WINDOW_S")
    parser.add_argument("--warmup", type=int, default=3, help="windows before the first reading")
    parser.add_argument("--state-dir", type=Path, default=None, help="default: a new directory under /var/tmp")
    parser.add_argument("--cwd", type=Path, default=ROOT, help="tree whose device/ package is run (for a before/after)")
    args = parser.parse_args()

    from conftest import Broker

    work = Path(tempfile.mkdtemp(prefix="roompulse-io-", dir="/var/tmp"))
    state = args.state_dir or work / "state"
    broker = Broker(work).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMPULSE_")}
    env.update({"ROOMPULSE_MQTT_HOST": "127.0.0.1", "ROOMPULSE_MQTT_PORT": str(broker.port),
                "ROOMPULSE_DEVICE_ID": "io-room", "ROOMPULSE_WINDOW_S": str(args.window_s),
                "ROOMPULSE_MIN_GROUP_SIZE": "3", "ROOMPULSE_FPS": "2", "ROOMPULSE_SOURCE_LOOP": "true",
                "ROOMPULSE_STATE_DIR": str(state), "ROOMPULSE_HA_DISCOVERY": "false",
                "PYTHONDONTWRITEBYTECODE": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "device", "run", "--source", str(CLIP)], cwd=args.cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[float] = []
    reader = threading.Thread(target=lambda: [lines.append(time.monotonic()) for _ in proc.stdout], daemon=True)
    reader.start()
    try:
        while len(lines) < args.warmup:
            if proc.poll() is not None:
                raise SystemExit(f"service exited with {proc.returncode}")
            time.sleep(0.1)
        first, n0, t0 = io_counters(proc.pid), len(lines), time.monotonic()
        time.sleep(args.minutes * 60)
        os.sync()  # write-back of pages dirtied during the run is charged to the process now
        time.sleep(1.0)
        last, n1, t1 = io_counters(proc.pid), len(lines), time.monotonic()
    finally:
        proc.terminate()
        proc.wait(60)
        broker.stop()
    windows = n1 - n0
    written = last["write_bytes"] - first["write_bytes"]
    print(json.dumps({
        "windows": windows, "seconds": round(t1 - t0), "window_s": args.window_s,
        "write_bytes": written, "bytes_per_window": round(written / max(windows, 1)),
        "write_syscalls_per_window": round((last["syscw"] - first["syscw"]) / max(windows, 1), 1),
        "mb_per_hour_at_60s_windows": round(written / max(windows, 1) * 60 / 2**20, 3),
        "state_files": {p.name: p.stat().st_size for p in sorted(state.iterdir())},
    }))


if __name__ == "__main__":
    main()
