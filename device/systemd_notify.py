"""systemd's notify protocol (sd_notify) and watchdog, written to ``$NOTIFY_SOCKET`` directly.

The unit runs ``Type=notify`` with ``WatchdogSec=``: systemd passes the socket path in
``NOTIFY_SOCKET`` and the watchdog period in ``WATCHDOG_USEC`` (man sd_notify,
sd_watchdog_enabled). Messages are newline-separated ``KEY=value`` datagrams on an
AF_UNIX SOCK_DGRAM socket; a path starting with ``@`` is in the abstract namespace.
Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.

The service sends ``READY=1`` after its first successful inference, or as soon as the source
is seen failing (its trouble on ``STATUS=``), and ``WATCHDOG=1`` only
from its run loop and only while the capture is healthy, so a hung inference (the loop
stops) or a hung camera call (the capture turns unhealthy) stops the pings and systemd
kills and restarts the process after ``WatchdogSec``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notify messages to the service manager.

    Args:
        env: where ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` are read
            (``os.environ`` by default).
    """

    def __init__(self, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._sock: socket.socket | None = None
        self.ready_sent = False

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens."""
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields as one datagram; False when not sent (logged once a kind)."""
        if not self.address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as exc:
            log.error("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), exc)
            return False

    def ready(self, status: str = "") -> None:
        """``READY=1``: start-up finished (sent once)."""
        if not self.ready_sent:
            self.ready_sent = self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        """``STATUS=``: one line shown by ``systemctl status``."""
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        """``STOPPING=1``: shutting down cleanly."""
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Watchdog:
    """Sends ``WATCHDOG=1`` at a third of ``WatchdogSec`` when :meth:`progress` is called.

    Args:
        notifier: where to send.
        interval_s: override of the ping interval (default: watchdog period / 3).
    """

    def __init__(self, notifier: Notifier, interval_s: float | None = None):
        self.notifier = notifier
        period = notifier.watchdog_s
        self.interval_s = interval_s if interval_s is not None else (period / 3 if period else None)
        self._last: float | None = None
        self.pings = 0

    def progress(self, now: float) -> None:
        """The pipeline made progress at ``now`` (monotonic seconds): ping when one is due."""
        if self.interval_s is None:
            return
        if self._last is None or now - self._last >= self.interval_s:
            if self.notifier.send("WATCHDOG=1"):
                self.pings += 1
            self._last = now
