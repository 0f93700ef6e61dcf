"""Wall-clock times for payloads; windows themselves run on the monotonic clock.

A Raspberry Pi has no real-time clock: it boots with the time it last saved and steps
when NTP syncs, possibly by days. Windows are timed on ``time.monotonic()`` (never steps),
so a step causes no burst of windows and no negative duration; only the payload
timestamps follow the wall clock, both bounds of a window converted with the same offset.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

# systemd-timesyncd (the NTP client of Raspberry Pi OS and Debian) creates this file once
# the kernel clock has been synchronised (man systemd-timesyncd.service, "Files").
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


def clock_synchronized(flag: Path = TIMESYNC_FLAG) -> bool:
    """True once systemd-timesyncd has synchronised the clock since boot.

    Reading the kernel's own flag (``adjtimex``, STA_UNSYNC) would also cover chrony and
    ntpd, but ``adjtimex`` is in systemd's ``@clock`` group, which the unit's
    ``SystemCallFilter=@system-service`` forbids; the timesyncd flag file needs no syscall
    beyond ``stat``. With another NTP client this reports False.
    """
    return flag.exists()


class WallClock:
    """Maps frame timestamps to UTC wall-clock times.

    Args:
        live: True when timestamps are ``time.monotonic()`` readings (cameras, streams,
            looped files): wall = wall_now - (mono_now - stamp). False for a file read once,
            stamped from 0: its timeline is laid from the moment the run started.
        wall: the wall clock, seconds since the epoch (``time.time``); injectable so a test
            can step it without touching the machine's time.
        mono: the monotonic clock the live timestamps come from.
    """

    def __init__(self, live: bool, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic):
        self.live = live
        self.wall_fn = wall
        self.mono_fn = mono
        self.started = wall()
        self.origin: float | None = None

    def to_wall(self, *stamps: float) -> list[datetime]:
        """UTC datetimes of ``stamps`` (seconds on the source clock), all with one offset."""
        if self.live:
            offset = self.wall_fn() - self.mono_fn()
        else:
            if self.origin is None:
                self.origin = stamps[0]
            offset = self.started - self.origin
        return [datetime.fromtimestamp(s + offset, timezone.utc) for s in stamps]

    def now(self) -> datetime:
        """The current wall-clock time, UTC."""
        return datetime.fromtimestamp(self.wall_fn(), timezone.utc)


__all__ = ["WallClock", "clock_synchronized", "TIMESYNC_FLAG"]
