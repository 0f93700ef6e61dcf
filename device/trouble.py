"""Trouble that shows: a fault that lasts, said in one line in ``STATUS=`` and the journal.

The stages that know a fault say what it is (:attr:`device.publisher.Publisher.trouble` for
the broker, :meth:`device.supervisor.Capture.trouble` for the camera); this module only
words it and paces the journal:

- while a trouble lasts, its line is part of systemd's ``STATUS=`` (``systemctl status``);
- a WARNING line says the same when it appears and again every ``REPEAT_S`` (60 s) while it
  lasts, so the journal shows it at most once a minute per kind;
- when it ends, one INFO line says so and how long it lasted.

A line says since when (UTC), for the broker how many windows wait in the outbox, and what
fails (in the words of :mod:`device.publisher` / :mod:`device.supervisor`), e.g.
``MQTT broker failing since 2026-12-02 00:14:03 UTC (5 window(s) wait in the outbox): broker
refused the login: not authorised (MQTT reason 135 Not authorized): check
ROOMPULSE_MQTT_USERNAME and the password``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

log = logging.getLogger(__name__)

REPEAT_S = 60.0  # a lasting trouble is logged again at most this often, seconds


@dataclass(frozen=True)
class Trouble:
    """A fault that lasts.

    Attributes:
        what: what fails, in the technician's words (one line, no secret).
        since: when it began, monotonic seconds (``time.monotonic``).
    """

    what: str
    since: float


def utc_text(mono_s: float, wall: Callable[[], float] = time.time,
             mono: Callable[[], float] = time.monotonic) -> str:
    """The UTC time of the monotonic instant ``mono_s`` (seconds), as ``2026-12-02 00:14:03 UTC``."""
    stamp = wall() - (mono() - mono_s)
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def broker_line(trouble: Trouble, waiting: int, wall: Callable[[], float] = time.time,
                mono: Callable[[], float] = time.monotonic) -> str:
    """One line for a broker that acknowledges nothing; ``waiting``: windows in the outbox."""
    return (f"MQTT broker failing since {utc_text(trouble.since, wall, mono)} ({waiting} window(s) wait in the "
            f"outbox): {trouble.what}")


def camera_line(trouble: Trouble, wall: Callable[[], float] = time.time,
                mono: Callable[[], float] = time.monotonic) -> str:
    """One line for a camera that delivers no new picture."""
    return f"camera failing since {utc_text(trouble.since, wall, mono)}: {trouble.what}"


class TroubleLog:
    """Paces the journal lines of one kind of trouble (``"MQTT broker"``, ``"camera"``).

    Args:
        kind: what is named in the recovery line.
        repeat_s: a lasting trouble is logged again after this many seconds.
        mono: monotonic clock, seconds (injectable for tests).
    """

    def __init__(self, kind: str, repeat_s: float = REPEAT_S, mono: Callable[[], float] = time.monotonic):
        self.kind = kind
        self.repeat_s = repeat_s
        self.mono = mono
        self._since: float | None = None  # the trouble being shown (monotonic s), None when fine
        self._logged = float("-inf")

    @property
    def active(self) -> bool:
        """True while a trouble of this kind is being shown."""
        return self._since is not None

    def forget(self) -> None:
        """Stop showing a trouble without a recovery line (the camera was released on purpose)."""
        self._since = None

    def update(self, trouble: Trouble | None, line: str | None) -> None:
        """Log ``line`` (the trouble's one line) when it is new or ``repeat_s`` has passed;
        with no trouble after one, log the recovery once."""
        now = self.mono()
        if trouble is None:
            if self._since is not None:
                log.info("%s OK again after %.0f s of trouble", self.kind, now - self._since)
            self._since = None
            return
        if self._since is None or now - self._logged >= self.repeat_s:
            log.warning("TROUBLE %s", line)
            self._logged = now
        self._since = trouble.since
