"""Wall-clock steps during a run (a Pi without RTC syncing NTP): windows stay on the monotonic clock.

The service takes its wall clock from outside; the test steps that function by +3 days and
then -5 s while the real looped classroom clip runs through the real model.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from datetime import datetime

import pytest

from conftest import CLASSROOM
from device.clock import WallClock, clock_synchronized
from device.config import Settings
from device.logs import OneLine, RateLimit
from device.publisher import Publisher
from device.service import Service
from device.state import StateStore

DAY = 86400.0


class SteppedWall:
    """time.time() plus a step the test changes while the service runs."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def iso(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").timestamp()


@pytest.mark.timeout(60)
def test_wall_clock_jumps_plus_3_days_and_minus_5_s(analyzer, tmp_path):
    cfg = Settings(_env_file=None, device_id="clock-room", source=str(CLASSROOM), source_loop=True, fps=4,
                   window_s=1.0, min_group_size=3, state_dir=tmp_path / "state", ha_discovery=False)
    wall, out, state = SteppedWall(), io.StringIO(), StateStore(tmp_path / "state")
    service = Service(cfg, analyzer, Publisher(cfg, out=out), state, wall=wall)
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("code", service.run()), daemon=True)
    began = time.monotonic()
    thread.start()
    time.sleep(2.5)
    wall.offset = 3 * DAY  # NTP sync after a boot with a stale clock
    time.sleep(2.0)
    wall.offset = 3 * DAY - 5.0  # and a small step back
    time.sleep(2.0)
    service.stop_event.set()
    thread.join(20)
    ran = time.monotonic() - began
    state.close()
    assert box["code"] == 0  # no exception
    windows = [json.loads(line) for line in out.getvalue().splitlines()]
    # One window per monotonic second (the last one flushed at stop): no burst, none lost.
    assert [w["seq"] for w in windows] == list(range(len(windows)))
    assert int(ran) - 1 <= len(windows) <= int(ran) + 1
    for w in windows[:-1]:
        assert iso(w["window_end"]) - iso(w["window_start"]) == 1.0  # never negative or stretched
        assert 3 <= w["frames_analyzed"] <= 5  # 4 fps over 1 s
    # The last window, flushed at the stop, ends at the stop: part of a second, part of its frames.
    assert 0.0 <= iso(windows[-1]["window_end"]) - iso(windows[-1]["window_start"]) <= 1.0
    assert 1 <= windows[-1]["frames_analyzed"] <= 5
    starts = [iso(w["window_start"]) for w in windows]
    jumps = [b - a for a, b in zip(starts, starts[1:])]
    assert max(jumps) > 3 * DAY - 10 and min(jumps) < 0  # the payloads follow the wall clock
    assert sum(1 for j in jumps if j > DAY) == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("year", [1969, 2100])
def test_a_clock_in_any_year_still_publishes_its_windows(analyzer, tmp_path, year):
    """A unit whose wall clock reads 1969 (an unset clock just before the epoch) or 2100: the
    payload model's year bounds (1970-2099) made the unit refuse its own window and exit 1,
    every window, a restart loop. Any UTC year is a valid window time."""
    cfg = Settings(_env_file=None, device_id="clock-room", source=str(CLASSROOM), source_loop=True, fps=4,
                   window_s=1.0, min_group_size=3, state_dir=tmp_path / "state", ha_discovery=False)
    wall, out, state = SteppedWall(), io.StringIO(), StateStore(tmp_path / "state")
    wall.offset = datetime(year, 12, 31, 23, 59, 58).timestamp() - time.time()
    service = Service(cfg, analyzer, Publisher(cfg, out=out), state, wall=wall)
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("code", service.run()), daemon=True)
    thread.start()
    time.sleep(3.0)
    service.stop_event.set()
    thread.join(20)
    state.close()
    windows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert box["code"] == 0 and len(windows) >= 2
    assert {w["window_start"][:4] for w in windows} <= {str(year), str(year + 1)}


def test_both_bounds_use_one_offset():
    now = {"wall": 1_000_000.0, "mono": 50.0}
    clock = WallClock(True, wall=lambda: now["wall"], mono=lambda: now["mono"])
    start, end = clock.to_wall(40.0, 45.0)
    assert (end - start).total_seconds() == 5.0 and start.timestamp() == 1_000_000.0 - 10.0
    now["wall"] += 3 * DAY
    start, end = clock.to_wall(40.0, 45.0)
    assert (end - start).total_seconds() == 5.0 and start.timestamp() == 1_000_000.0 + 3 * DAY - 10.0


def test_clock_synchronized_follows_timesyncd_flag(tmp_path):
    flag = tmp_path / "synchronized"
    assert clock_synchronized(flag) is False
    flag.touch()
    assert clock_synchronized(flag) is True


def test_repeated_errors_are_rate_limited_and_one_line():
    now = [0.0]
    limit = RateLimit(period_s=60, burst=3, clock=lambda: now[0])
    records = [logging.LogRecord("device.x", logging.ERROR, __file__, 1, "camera failed: %s", (n,), None)
               for n in range(10)]
    passed = [r for r in records if limit.filter(r)]
    assert len(passed) == 3
    now[0] = 61.0
    later = logging.LogRecord("device.x", logging.ERROR, __file__, 1, "camera failed: %s", ("x",), None)
    assert limit.filter(later) and "and 7 more like it" in later.getMessage()
    try:
        raise ValueError("two\nlines")
    except ValueError:
        import sys

        record = logging.LogRecord("device.x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    assert "\n" not in OneLine("%(message)s").format(record)
