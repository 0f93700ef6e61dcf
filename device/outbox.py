"""The durable outbox: every window's payload is committed here before it is sent.

A table in the state database (``<state_dir>/roompulse.sqlite3``, WAL, ``synchronous=FULL``
so a committed window survives a power cut) holding one row per engagement payload that the
broker has not yet acknowledged. :meth:`Outbox.add` reserves the next ``seq`` and stores the
payload in one transaction, so a crash can neither lose a window nor leave a gap in ``seq``.

Disk writes per window (SD-card wear, ``scripts/write_bytes.py``): one commit. The broker's
PUBACK is kept in memory and the row is deleted in the transaction of the next window (or
at close, or before a bound is applied); the next ``seq`` is the larger of the stored
counter and the highest row + 1, so the counter is written only when the table empties
(at close). A power cut after a PUBACK and before that next commit only means the window is
sent once more (QoS 1 is at-least-once; consumers drop a ``seq`` they have seen).

Bounds (``ROOMPULSE_OUTBOX_MAX_AGE_S`` / ``ROOMPULSE_OUTBOX_MAX_COUNT``): :meth:`Outbox.trim`
drops the oldest rows beyond them; every dropped row is added to a persistent ``dropped``
counter that the status topic reports.

Faults (issue 12): a full disk does not stop the service: the window that cannot be
committed is kept in memory (at most ``MEMORY_MAX``) and sent from there, counted in
:attr:`Outbox.unstored` and flagged by :attr:`Outbox.disk_full` until a commit succeeds
again. A state file deleted, replaced or truncated under the running service is written
again from the open database when that still reads back whole; otherwise it is moved aside,
one ERROR line says how many queued windows were lost, and ``seq`` carries on.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device.state import (
    DB_NAME,
    SEQUENCE_KEY,
    StateError,
    _open,
    connect,
    is_corrupt,
    is_full,
    kv_get,
    kv_set,
    _lost,
    count_queued,
    move_aside,
    no_space,
    read_only,
)

log = logging.getLogger(__name__)

SEQ_KEY = "next_seq"  # shared with StateStore: a device that ran an older build keeps counting
DROPPED_KEY = "outbox_dropped"
MEMORY_MAX = 1000  # windows held in memory while the disk is full (about 0.4 KB each)


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
        self.state_dir = Path(state_dir)
        self.max_age_s = max_age_s
        self.max_count = max_count
        self.clock = clock
        self._lock = threading.RLock()
        self._on_disk = True  # False: running from an in-memory copy (the disk was full at start)
        self._next_disk_try = 0.0
        try:
            self.path, self._db = connect(state_dir)
        except StateError as exc:
            if not exc.full:
                raise
            self.path = self.state_dir / DB_NAME
            self._db = self._memory_copy()
            self._on_disk = False
        try:
            self._setup(self._db)
            stored = int(kv_get(self._db, SEQ_KEY, "0"))
            top = self._db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
            self._next_seq = max(stored, top + 1 if top is not None else 0)
            self._rows = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            self._dropped = int(kv_get(self._db, DROPPED_KEY, "0"))
            self.sequence_id: str = kv_get(self._db, SEQUENCE_KEY) or "unknown"
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot use state directory {state_dir} ({exc}); set ROOMPULSE_STATE_DIR to a writable directory"
            ) from None
        self._acked: set[int] = set()  # acknowledged (or given up), row deleted with the next commit
        self._dropped_pending = 0  # of those, given up on (expired, rejected): added to the counter then
        self._memory: dict[int, Row] = {}  # could not be committed (disk full); sent from memory
        self.unstored = 0  # windows that could not be committed since start (disk full)
        self.disk_full = not self._on_disk
        self._identity = self._stat()
        self._size = self._identity[2] if self._identity else 0
        if not self._on_disk:
            log.error("state disk full at start: %d queued window(s) read from %s; the service runs from a copy in "
                      "memory (new windows are lost on a restart) until space returns", self._rows, self.path)

    def _memory_copy(self) -> sqlite3.Connection:
        """An in-memory database holding what the state file holds (read without writing a byte)."""
        mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._copied = not self.path.exists()
        try:
            src = read_only(self.path)
            try:
                src.backup(mem)
            finally:
                src.close()
            self._copied = True
        except sqlite3.Error as exc:
            # Unreadable without writing: a new sequence (its own sequence_id) until the file is
            # moved aside when space returns, so no seq is reused.
            log.error("state file %s cannot be read on a full disk (%s): a new sequence begins in memory",
                      self.path, exc)
        mem.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        if kv_get(mem, SEQUENCE_KEY) is None:
            kv_set(mem, SEQUENCE_KEY, secrets.token_hex(8))
        return mem

    def _try_disk(self, force: bool = False) -> None:
        """Running from memory: when the disk has room again, write the queue to the state file
        and carry on from there (tried at most once a second)."""
        now = time.monotonic()
        if not force and (now < self._next_disk_try or no_space(self.state_dir)):
            self._next_disk_try = max(self._next_disk_try, now + 1.0)
            return
        self._next_disk_try = now + 1.0
        disk = None
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            if not self._copied and self.path.exists():
                aside = move_aside(self.path, "unread")
                log.error("state file %s could not be read while the disk was full: moved aside to %s; %s",
                          self.path, aside, _lost(count_queued(aside)))
                self._copied = True
            disk = _open(self.path)
            self._setup(disk)
            disk.execute("BEGIN IMMEDIATE")
            disk.execute("DELETE FROM outbox")
            disk.executemany("INSERT INTO outbox (seq, payload, created, topic) VALUES (?, ?, ?, ?)",
                             self._db.execute("SELECT seq, payload, created, topic FROM outbox").fetchall())
            for key in (SEQUENCE_KEY, DROPPED_KEY):  # the pause switch is the StateStore's own
                value = kv_get(self._db, key)
                if value is not None:
                    kv_set(disk, key, value)
            kv_set(disk, SEQ_KEY, str(self._next_seq))
            disk.execute("COMMIT")
        except (OSError, sqlite3.Error):
            if disk is not None:
                disk.close()
            return
        self._db.close()
        self._db, self._on_disk = disk, True
        stat = self._stat()
        self._identity, self._size = stat, stat[2] if stat else 0
        self.disk_full = False
        log.info("state disk writable again: %d queued window(s) written to %s (%d could not be stored while it "
                 "was full, since start)", self._rows, self.path, self.unstored)

    @staticmethod
    def _setup(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS outbox "
                   "(seq INTEGER PRIMARY KEY, payload TEXT NOT NULL, created REAL NOT NULL, topic TEXT)")
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        if "topic" not in columns:  # a state file from a build before the topic was kept
            db.execute("ALTER TABLE outbox ADD COLUMN topic TEXT")

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_size

    # ---- faults ----

    def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _full(self, what: str, exc: BaseException) -> None:
        if not self.disk_full:
            log.error("state disk full (%s) while %s in %s: the service keeps running, windows are kept in "
                      "memory (lost on a restart) until space returns", exc, what, self.path)
        self.disk_full = True

    def _check_file(self) -> None:
        """Notice a state file deleted, replaced or truncated under the service and repair it."""
        if not self._on_disk:
            self._try_disk()
            return
        now = self._stat()
        if now is None:
            self._rebuild("deleted")
        elif now[:2] != self._identity[:2]:
            self._rebuild("replaced")
        elif now[2] < self._size:
            self._rebuild("truncated")
        else:
            self._size = now[2]

    def _rebuild(self, what: str) -> None:
        """Write the state file again from the open connection, or start a new one.

        The copy is kept when it reads back whole with every queued row; otherwise the rows
        are lost (one ERROR line with their number) and ``seq`` and ``sequence_id`` carry on.
        """
        queued = self._rows - len(self._acked)
        tmp = self.path.with_name(DB_NAME + ".rebuild")
        whole = False
        try:
            tmp.unlink(missing_ok=True)
            copy = sqlite3.connect(tmp)
            try:
                self._db.backup(copy)
                whole = (copy.execute("PRAGMA quick_check").fetchone()[0] == "ok"
                         and copy.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == self._rows)
            finally:
                copy.close()
        except sqlite3.Error:
            whole = False
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        aside = move_aside(self.path, what) if self.path.exists() else None
        where = f" (what was there is kept as {aside})" if aside else ""
        if whole:
            os.replace(tmp, self.path)
            self._db = _open(self.path)
            log.error("state file %s was %s while running: written again from the open database%s, "
                      "all %d queued window(s) kept", self.path, what, where, queued)
        else:
            tmp.unlink(missing_ok=True)
            self._db = _open(self.path)
            self._setup(self._db)
            kv_set(self._db, SEQ_KEY, str(self._next_seq))
            kv_set(self._db, SEQUENCE_KEY, self.sequence_id)
            kv_set(self._db, DROPPED_KEY, str(self._dropped))
            self._rows, self._acked, self._dropped_pending = 0, set(), 0
            log.error("state file %s was %s while running%s: the %d window(s) queued in it are lost; a new "
                      "state file is started and seq carries on from %d", self.path, what, where, queued,
                      self._next_seq)
        stat = self._stat()
        self._identity, self._size = stat, stat[2] if stat else 0

    def _guarded(self, op: Callable[[], object]) -> object:
        """Run ``op`` (under the lock); a damaged file is repaired (:meth:`_rebuild`) and ``op`` run again."""
        try:
            return op()
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise
            self._rollback()
            self._rebuild(f"found damaged ({exc})")
            return op()

    def _flush_pending(self) -> int:
        """Inside a transaction: delete acknowledged/given-up rows, count the given-up ones."""
        gone = 0
        if self._acked:
            marks = ",".join("?" * len(self._acked))
            gone = self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", tuple(self._acked)).rowcount
        if self._dropped_pending:
            kv_set(self._db, DROPPED_KEY, str(self._dropped))
        return gone

    def _committed(self, gone: int) -> None:
        self._rows -= gone
        self._acked.clear()
        self._dropped_pending = 0
        if self.disk_full and self._on_disk:
            self.disk_full = False
            log.info("state disk writable again: windows are committed again (%d could not be, since start)",
                     self.unstored)

    # ---- the queue ----

    def add(self, make: Callable[[int], str], keep: bool = True, topic: str | None = None) -> tuple[int, str]:
        """Reserve the next ``seq``, build the payload with it and commit both at once.

        On a full disk the payload is still made and returned, with its own ``seq``, and
        kept in memory to be sent (``keep``); :attr:`unstored` counts it.

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
            self._check_file()
            seq = self._next_seq
            payload = make(seq)
            created = self.clock()

            def _commit():
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    gone = self._flush_pending()
                    if keep:
                        self._db.execute("INSERT INTO outbox (seq, payload, created, topic) VALUES (?, ?, ?, ?)",
                                         (seq, payload, created, topic))
                    else:
                        kv_set(self._db, SEQ_KEY, str(seq + 1))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
                self._committed(gone)
                self._rows += 1 if keep else 0
                if not self._on_disk:
                    self.unstored += 1

            try:
                self._guarded(_commit)
            except sqlite3.OperationalError as exc:
                if not is_full(exc):
                    raise
                self._full("storing a window", exc)
                self.unstored += 1
                if keep:
                    self._memory[seq] = Row(seq, payload, created, topic)
                    while len(self._memory) > MEMORY_MAX:
                        del self._memory[min(self._memory)]
                        self._dropped += 1
            self._next_seq = seq + 1
        return seq, payload

    def after(self, seq: int, limit: int) -> list[Row]:
        """Up to ``limit`` queued rows with a ``seq`` greater than ``seq``, in ``seq`` order
        (rows held in memory because the disk was full included)."""
        with self._lock:
            def _read():
                return self._db.execute(
                    "SELECT seq, payload, created, topic FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                    (seq, limit + len(self._acked))).fetchall()

            rows = [Row(*r) for r in self._guarded(_read) if r[0] not in self._acked]
            rows += [r for s, r in self._memory.items() if s > seq]
        return sorted(rows, key=lambda r: r.seq)[:limit]

    def ack(self, seq: int) -> None:
        """The broker acknowledged ``seq``: forget it (the row goes with the next commit)."""
        with self._lock:
            if self._memory.pop(seq, None) is None:
                self._acked.add(seq)

    def drop(self, seq: int) -> None:
        """Give up on one row (expired or rejected by the broker) and count it as dropped."""
        with self._lock:
            if self._memory.pop(seq, None) is None:
                if seq in self._acked:
                    return
                self._acked.add(seq)
                self._dropped_pending += 1
            self._dropped += 1

    def trim(self, keep_from: int = -1) -> int:
        """Drop rows beyond the age and count bounds, oldest first; returns how many.

        Rows with ``seq <= keep_from`` are handed to the broker connection already and are
        left alone (their PUBACK may still come). Writes nothing when no bound is exceeded.
        """
        with self._lock:
            self._check_file()
            cut = self.clock() - self.max_age_s
            excess = self.depth - self.max_count

            def _old():
                return self._db.execute("SELECT seq FROM outbox WHERE created < ? AND seq > ?",
                                        (cut, keep_from)).fetchall()

            old = [s for (s,) in self._guarded(_old) if s not in self._acked]
            if not old and excess <= 0:
                return 0

            def _trim():
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    flushed = self._flush_pending()
                    self._acked.clear()
                    gone = self._db.execute("DELETE FROM outbox WHERE created < ? AND seq > ?",
                                            (cut, keep_from)).rowcount
                    over = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.max_count
                    if over > 0:
                        gone += self._db.execute(
                            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE seq > ? ORDER BY seq "
                            "LIMIT ?)", (keep_from, over)).rowcount
                    if gone:
                        kv_set(self._db, DROPPED_KEY, str(self._dropped + gone))
                    kv_set(self._db, SEQ_KEY, str(self._next_seq))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
                return flushed, gone

            acked, pending = set(self._acked), self._dropped_pending
            try:
                flushed, gone = self._guarded(_trim)
            except sqlite3.OperationalError as exc:
                self._acked, self._dropped_pending = acked, pending
                if not is_full(exc):
                    raise
                self._full("dropping windows beyond the outbox bounds", exc)
                return 0
            self._dropped += gone
            self._committed(flushed)
            self._rows -= gone
            return gone

    @property
    def depth(self) -> int:
        """Windows waiting for the broker's acknowledgement (stored or held in memory)."""
        with self._lock:
            return self._rows - len(self._acked) + len(self._memory)

    @property
    def dropped(self) -> int:
        """Rows dropped by the bounds or expiry since the device was set up."""
        with self._lock:
            return self._dropped

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next window will get."""
        return self._next_seq

    def close(self) -> None:
        """Delete what was acknowledged, store the ``seq`` counter, close the database; rows not
        acknowledged stay for the next start (windows held in memory are lost, and logged)."""
        with self._lock:
            if not self._on_disk:
                self._try_disk(force=True)
                left = self._rows - len(self._acked)
                if not self._on_disk and left:
                    log.error("state disk still full at exit: the %d queued window(s) held in memory are lost", left)
                if not self._on_disk:
                    self._db.close()
                    return
            try:
                self._check_file()
                self._db.execute("BEGIN IMMEDIATE")
                gone = self._flush_pending()
                kv_set(self._db, SEQ_KEY, str(self._next_seq))
                self._db.execute("COMMIT")
                self._committed(gone)
            except sqlite3.Error as exc:
                self._rollback()
                log.error("cannot update the state file %s at exit (%s): acknowledged windows may be sent "
                          "again at the next start", self.path, exc)
            if self._memory:
                log.error("%d window(s) that could not be stored (disk full) were not acknowledged by the broker "
                          "and are lost", len(self._memory))
            self._db.close()
