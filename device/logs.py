"""Logging for journald: stderr only, one line per event, repeated errors rate-limited.

No log file is written (an SD card wears out, and journald already stores stderr with
timestamps). Under systemd (``JOURNAL_STREAM`` set) lines carry no timestamp of their own;
elsewhere they start with one.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from device.config import redact_url

FORMAT = "%(levelname)s %(name)s: %(message)s"
CLIP_CHARS = 200  # longest excerpt of outside text (a topic, a payload) in one log line


def clip(text: str, limit: int = CLIP_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how many were left out
    (``abc...[59800 more characters]``): a topic or payload from outside can be 64 KiB and more."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters]"


class RateLimit(logging.Filter):
    """Lets the same message through at most ``burst`` times per ``period_s`` seconds.

    "The same" means one logger, level and format string (``record.msg`` before its
    arguments are filled in), so a camera failing every second with a changing errno
    counts as one message. Records below WARNING are never limited.

    What was suppressed is always reported: by the first record of that kind after its
    period, or else by :meth:`sweep` (every ``SWEEP_S`` from a daemon thread, and at exit)
    as one line at their level, "N more line(s) like '...' suppressed in the last P s", emitted
    through :attr:`handler`.

    Args:
        period_s: length of the counting period, seconds.
        burst: records let through per key and period.
        clock: monotonic clock, injectable for tests.
    """

    def __init__(self, period_s: float = 60.0, burst: int = 3, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.period_s = period_s
        self.burst = burst
        self.clock = clock
        self._seen: dict[tuple, list] = {}  # key -> [period start, count in period, suppressed]
        self._lock = threading.Lock()
        self.handler: logging.Handler | None = None  # where sweep() emits its summary lines

    def sweep(self, everything: bool = False) -> int:
        """Report kinds whose period is over (``everything``: all) with suppressed records;
        returns how many summary lines were emitted."""
        now = self.clock()
        with self._lock:
            due = [(k, e[2]) for k, e in self._seen.items() if e[2] and (everything or now - e[0] >= self.period_s)]
            for key, _ in due:
                del self._seen[key]
        for (name, level, msg), count in due:
            record = logging.LogRecord(name, max(level, logging.WARNING), "", 0,
                                       "%d more line(s) like %r suppressed in the last %.0f s",
                                       (count, msg[:200], self.period_s), None)
            record.rate_summary = True
            if self.handler is not None:
                self.handler.handle(record)
        return len(due)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "rate_summary", False):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            return self._admit(key, now, record)

    def _admit(self, key: tuple, now: float, record: logging.LogRecord) -> bool:
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.period_s:
            suppressed = entry[2] if entry else 0
            self._seen[key] = [now, 1, 0]
            if suppressed:
                record.msg = f"{record.msg} (and {suppressed} more like it in the last {self.period_s:.0f} s)"
            if len(self._seen) > 1000:  # a bounded table: forget the oldest keys
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[old]
            return True
        entry[1] += 1
        if entry[1] <= self.burst:
            return True
        entry[2] += 1
        return False


class OneLine(logging.Formatter):
    """Formats a record, traceback included, as one line (newlines become `` | ``)."""

    def format(self, record: logging.LogRecord) -> str:
        # Camera URLs may carry a password (rtsp://user:password@camera): never log it.
        return redact_url(super().format(record).replace("\r", "").replace("\n", " | "))


def configure(level: str = "INFO", stream=None) -> None:
    """Send every log record to stderr, one line each, with :class:`RateLimit` on the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    fmt = FORMAT if os.environ.get("JOURNAL_STREAM") else "%(asctime)s " + FORMAT
    handler.setFormatter(OneLine(fmt))
    limiter = RateLimit()
    limiter.handler = handler
    handler.addFilter(limiter)
    _start_sweeper(limiter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    install_excepthooks()


SWEEP_S = 10.0  # how often suppressed counts whose period is over are reported


def _start_sweeper(limiter: RateLimit) -> None:
    """Report suppressed counts every ``SWEEP_S`` (daemon thread) and at exit."""
    stop = threading.Event()

    def _loop():
        while not stop.wait(SWEEP_S):
            limiter.sweep()

    threading.Thread(target=_loop, name="log-sweeper", daemon=True).start()
    atexit.register(lambda: (stop.set(), limiter.sweep(everything=True)))


def install_excepthooks() -> None:
    """Route uncaught exceptions (main thread and any other thread) through logging, so their
    tracebacks reach the journal as one CRITICAL line instead of raw multi-line stderr."""
    crash = logging.getLogger("roompulse.crash")

    def _main(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        crash.critical("uncaught %s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))

    def _thread(args):
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        crash.critical("thread %s died of an uncaught %s: %s", name, args.exc_type.__name__, args.exc_value,
                       exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = _main
    threading.excepthook = _thread
