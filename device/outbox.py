"""The durable outbox: every window's payload is committed here before it is sent.

A table in the state database (``<state_dir>/roompulse.sqlite3``, WAL, ``synchronous=FULL``
so a committed window survives a power cut) holding one row per engagement payload that the
broker has not yet acknowledged. :meth:`Outbox.add` reserves the next ``seq`` and stores the
payload in one transaction, so a crash can neither lose a window nor leave a gap in ``seq``.
A row is deleted only when the broker's PUBACK for it arrives (:meth:`Outbox.ack`).

Bounds (``ROOMPULSE_OUTBOX_MAX_AGE_S`` / ``ROOMPULSE_OUTBOX_MAX_COUNT``): :meth:`Outbox.trim`
drops the oldest rows beyond them; every dropped row is added to a persistent ``dropped``
counter that the status topic reports.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device.state import StateError, connect, kv_get, kv_set

SEQ_KEY = "next_seq"  # shared with StateStore: a device that ran an older build keeps counting
DROPPED_KEY = "outbox_dropped"


@dataclass(frozen=True)
class Row:
    """One queued payload: its ``seq``, the JSON text, when it was stored (Unix seconds), and
    the topic it was made for (None for rows stored by a build that did not record it)."""

    seq: int
    payload: str
    created: float
    topic: str | None = None


class Outbox:
    """The queue of unacknowledged engagement payloads, ordered by ``seq``.

    Thread-safe: the capture loop adds, the publisher's session thread reads, acks and trims.

    Args:
        state_dir: ``ROOMPULSE_STATE_DIR``; created when missing.
        max_age_s: rows older than this many seconds are dropped by :meth:`trim`.
        max_count: at most this many rows are kept; :meth:`trim` drops the oldest beyond it.
        clock: wall clock in Unix seconds (``time.time``; tests may pass their own).

    Raises:
        StateError: the directory or database cannot be used (the message names the path).
    """

    def __init__(self, state_dir: Path, max_age_s: float, max_count: int, clock: Callable[[], float] = time.time):
        self.max_age_s = max_age_s
        self.max_count = max_count
        self.clock = clock
        self._lock = threading.Lock()
        self.path, self._db = connect(state_dir)
        try:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox "
                "(seq INTEGER PRIMARY KEY, payload TEXT NOT NULL, created REAL NOT NULL, topic TEXT)"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
            if "topic" not in columns:  # a state file from a build before the topic was kept
                self._db.execute("ALTER TABLE outbox ADD COLUMN topic TEXT")
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot use state directory {state_dir} ({exc}); set ROOMPULSE_STATE_DIR to a writable directory"
            ) from None

    def _get(self, key: str, default: int) -> int:
        return int(kv_get(self._db, key, str(default)))

    def _put(self, key: str, value: int) -> None:
        kv_set(self._db, key, str(value))

    def add(self, make: Callable[[int], str], keep: bool = True, topic: str | None = None) -> tuple[int, str]:
        """Reserve the next ``seq``, build the payload with it and commit both at once.

        Args:
            make: ``seq -> payload JSON``.
            keep: False when no broker is configured: the ``seq`` is used, nothing is queued.
            topic: where the payload is to be published, stored with it, so that a window
                made before ``ROOMPULSE_DEVICE_ID`` or the topic prefix changed still goes
                to the topic of the ``device_id`` it carries.

        Returns:
            ``(seq, payload)``.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._get(SEQ_KEY, 0)
                payload = make(seq)
                if keep:
                    self._db.execute("INSERT INTO outbox (seq, payload, created, topic) VALUES (?, ?, ?, ?)",
                                     (seq, payload, self.clock(), topic))
                self._put(SEQ_KEY, seq + 1)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return seq, payload

    def after(self, seq: int, limit: int) -> list[Row]:
        """Up to ``limit`` queued rows with a ``seq`` greater than ``seq``, in ``seq`` order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload, created, topic FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [Row(*r) for r in rows]

    def ack(self, seq: int) -> None:
        """The broker acknowledged ``seq``: forget it."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def drop(self, seq: int) -> None:
        """Give up on one row (expired or rejected by the broker) and count it as dropped."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            gone = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount
            self._put(DROPPED_KEY, self._get(DROPPED_KEY, 0) + gone)
            self._db.execute("COMMIT")

    def trim(self, keep_from: int = -1) -> int:
        """Drop rows beyond the age and count bounds, oldest first; returns how many.

        Rows with ``seq <= keep_from`` are handed to the broker connection already and are
        left alone (their PUBACK may still come).
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cut = self.clock() - self.max_age_s
            gone = self._db.execute("DELETE FROM outbox WHERE created < ? AND seq > ?", (cut, keep_from)).rowcount
            excess = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.max_count
            if excess > 0:
                gone += self._db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?)",
                    (keep_from, excess),
                ).rowcount
            if gone:
                self._put(DROPPED_KEY, self._get(DROPPED_KEY, 0) + gone)
            self._db.execute("COMMIT")
        return gone

    @property
    def depth(self) -> int:
        """Rows waiting for the broker's acknowledgement."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    @property
    def dropped(self) -> int:
        """Rows dropped by the bounds, expiry or broker rejection since the device was set up."""
        with self._lock:
            return self._get(DROPPED_KEY, 0)

    def close(self) -> None:
        """Close the database; rows not acknowledged stay for the next start."""
        with self._lock:
            self._db.close()
