#!/usr/bin/env python3
"""Fleet load on `roompulse dashboard`: many simulated units through a real mosquitto, with a
restart of the dashboard in the middle; prints exactly-once, ingest lag, RSS and page figures.

    .venv/bin/python scripts/dashboard_load.py                      # 500 units, 500 windows/s, 60 s
    .venv/bin/python scripts/dashboard_load.py --units 20 --seconds 5 --restart-at 2

Units are simulated by `tests/dashboard_helpers.py fleet` processes, one MQTT client per
``--per-client`` units, publishing real ``roompulse.engagement/1`` payloads (QoS 1) with time
compressed (each window says 60 s, they are sent at ``--rate`` per second over all units).
The broker keeps the dashboard's session while it restarts (``max_queued_messages 0``: no
per-client queue limit; mosquitto's default of 1000 would drop what arrives during a longer
restart). At the end the page is opened in headless Chromium and timed until every tile is drawn.

Figures (one JSON object on stdout):
  sent / stored / distinct / mismatched: exactly-once storage, every field compared;
  lag_s: stored time minus publish time (p50, p95, p99, max), all windows and those published
         outside the restart; drain_s: from the last publish call to the last window stored;
  rss_mb: the dashboard's resident memory sampled every 0.5 s (first process, after restart,
          at 25 % and at the end of the load, peak);
  page: milliseconds from navigation start until all tiles are in the DOM and painted.
Only loopback addresses are used; the run is bounded by ``--seconds`` plus at most 120 s.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import Broker, free_port  # noqa: E402
from dashboard_helpers import Dashboard, chromium, dashboard_env, fleet_window  # noqa: E402

PAGE_JS = """
const want = arguments[0], done = arguments[arguments.length - 1];
(function check() {
  if (document.querySelectorAll('.tile').length >= want) {
    requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now())));
  } else { setTimeout(check, 5); }
})();
"""


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {"p50": round(q[49], 3), "p95": round(q[94], 3), "p99": round(q[98], 3), "max": round(ordered[-1], 3)}


class RssSampler(threading.Thread):
    """Samples the current dashboard process's RSS every 0.5 s into ``samples`` (time, MB, pid)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.dashboard: Dashboard | None = None
        self.samples: list[tuple[float, float, int]] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.5):
            d = self.dashboard
            if d is not None and d.proc.poll() is None:
                try:
                    self.samples.append((time.monotonic(), d.rss_mb(), d.proc.pid))
                except Exception:
                    pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--per-client", type=int, default=50, help="units per MQTT client (process)")
    ap.add_argument("--rate", type=float, default=500.0, help="windows per second, all units together")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--restart-at", type=float, default=30.0, help="restart the dashboard after this many seconds; "
                                                                   "negative: no restart")
    ap.add_argument("--kill", action="store_true", help="restart with SIGKILL instead of SIGTERM")
    ap.add_argument("--no-page", action="store_true", help="skip the Chromium page timing")
    args = ap.parse_args()
    clients = (args.units + args.per_client - 1) // args.per_client

    work = Path(tempfile.mkdtemp(prefix="roompulse-load-"))
    broker = Broker(work, extra_conf="max_queued_messages 0\n").start()
    db = work / "history.db"
    env = dashboard_env(broker.port, db)
    http = free_port()
    sampler = RssSampler()
    sampler.start()
    dash = Dashboard(env, http).wait_ready()
    sampler.dashboard = dash
    rss_idle = dash.rss_mb()
    figures: dict = {"units": args.units, "clients": clients, "rate_per_s": args.rate, "seconds": args.seconds}
    try:
        outs = [work / f"sent-{i}.json" for i in range(clients)]
        procs = []
        began = time.monotonic()
        for i in range(clients):
            first = i * args.per_client
            count = min(args.per_client, args.units - first)
            procs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "dashboard_helpers.py"), "fleet", str(broker.port), str(first),
                 str(count), str(args.rate * count / args.units), str(args.seconds), str(outs[i])], cwd=ROOT))
        restart = None
        rss_quarter = None
        while any(p.poll() is None for p in procs):
            elapsed = time.monotonic() - began
            if rss_quarter is None and elapsed >= args.seconds / 4:
                rss_quarter = dash.rss_mb()
            if restart is None and 0 <= args.restart_at <= elapsed:
                down = time.time()
                rss_before_restart = dash.rss_mb()
                rc = dash.stop(kill=args.kill)
                dash = Dashboard(env, http).wait_ready(timeout=60)
                sampler.dashboard = dash
                restart = {"at_s": round(elapsed, 1), "signal": "SIGKILL" if args.kill else "SIGTERM",
                           "exit": rc, "down_s": round(time.time() - down, 2),
                           "rss_mb_before": round(rss_before_restart, 1), "window": (down, time.time() + 1.0)}
            time.sleep(0.1)
        for p in procs:
            if p.wait() != 0:
                raise SystemExit("a simulated fleet client failed")
        sent = [s for out in outs for s in json.loads(out.read_text())["sent"]]
        elapsed_pub = max(json.loads(out.read_text())["elapsed_s"] for out in outs)

        deadline = time.monotonic() + 120
        count = 0
        while time.monotonic() < deadline:
            with sqlite3.connect(db) as con:
                count = con.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
            if count >= len(sent):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # a late duplicate would show now
        rss_end = dash.rss_mb()
        with sqlite3.connect(db) as con:
            rows = con.execute("SELECT device_id, seq, window_start, window_end, frames_analyzed, faces_present, "
                               "faces_present_max, engagement_score, suppressed, received_s FROM windows").fetchall()
        last_stored = max(r[9] for r in rows)
        published = {(d, s): t for d, s, t in sent}
        mismatched = 0
        lags, lags_outside = [], []
        for r in rows:
            p = fleet_window(int(r[0].split("-")[1]), r[1])
            if r[:9] != (p.device_id, p.seq, p.window_start, p.window_end, p.frames_analyzed, p.faces_present,
                         p.faces_present_max, p.engagement_score, int(p.suppressed)):
                mismatched += 1
            t = published.get((r[0], r[1]))
            if t is not None:
                lags.append(r[9] - t)
                if restart is None or not restart["window"][0] <= t <= restart["window"][1]:
                    lags_outside.append(r[9] - t)
        figures.update({
            "sent": len(sent), "publish_s": round(elapsed_pub, 1),
            "achieved_rate_per_s": round(len(sent) / elapsed_pub, 1),
            "stored": len(rows), "distinct": len({(r[0], r[1]) for r in rows}),
            "missing": len(set(published) - {(r[0], r[1]) for r in rows}), "mismatched": mismatched,
            "lag_s": {"all": percentiles(lags), "outside_restart": percentiles(lags_outside)},
            "drain_s": round(last_stored - max(t for _, _, t in sent), 2),
        })
        if restart:
            restart.pop("window")
            figures["restart"] = restart
        samples = sampler.samples
        figures["rss_mb"] = {"idle": round(rss_idle, 1), "at_25pct": round(rss_quarter or 0, 1),
                             "end": round(rss_end, 1), "peak": round(max(s[1] for s in samples), 1)}
        figures["metrics"] = {line.split(" ")[0]: float(line.split(" ")[1])
                              for line in dash.get("/metrics")[2].decode().splitlines()
                              if line.startswith("roompulse_dashboard_")}

        if not args.no_page:
            driver = chromium(1600, 1000)
            try:
                driver.set_script_timeout(30)
                t = time.monotonic()
                driver.get(dash.url + "/")
                painted_ms = driver.execute_async_script(PAGE_JS, args.units)
                wall = time.monotonic() - t
                tiles = driver.execute_script("return document.querySelectorAll('.tile').length")
                figures["page"] = {"tiles": tiles, "painted_ms_since_navigation": round(painted_ms, 1),
                                   "wall_s_incl_webdriver": round(wall, 2)}
            finally:
                driver.quit()
    finally:
        sampler.stop.set()
        dash.stop()
        broker.stop()
    print(json.dumps(figures, indent=1))
    ok = figures["stored"] == figures["sent"] == figures["distinct"] and figures["mismatched"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
