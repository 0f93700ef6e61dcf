"""The window history: SQLite (the standard library's), one row per window, de-duplicated.

Each row is one ``roompulse.engagement/1`` payload. The key is ``(device_id, seq,
window_start)``: a QoS 1 redelivery repeats all three and is ignored (``INSERT OR IGNORE``),
while a unit whose state file was lost, and so counts ``seq`` from 0 again, has new window
times and is kept. Windows are ordered by their own times, never by arrival, so a window that
arrives late (from a unit's outbox after an outage) lands in its place in the curve.

WAL journal: the ingest thread writes while the web server reads, each on its own
connection. Rows older than the retention are deleted by :meth:`Store.prune`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from device.payloads import Engagement, parse_utc

SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    start_s REAL NOT NULL,          -- window_start as Unix time, seconds
    end_s REAL NOT NULL,            -- window_end as Unix time, seconds
    frames_analyzed INTEGER NOT NULL,
    faces_present INTEGER NOT NULL,
    faces_present_max INTEGER NOT NULL,
    engagement_score REAL,          -- NULL exactly when suppressed
    suppressed INTEGER NOT NULL,
    received_s REAL NOT NULL,       -- when the dashboard stored it, Unix time, seconds
    PRIMARY KEY (device_id, seq, window_start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS windows_by_time ON windows (device_id, end_s);
CREATE INDEX IF NOT EXISTS windows_by_end ON windows (end_s);  -- retention pruning without a full scan
"""

COLUMNS = ("device_id", "seq", "window_start", "window_end", "frames_analyzed", "faces_present",
           "faces_present_max", "engagement_score", "suppressed")


class StoreError(Exception):
    """The history file cannot be opened or created (path, permissions, not a database)."""


def unix_s(iso: str) -> float:
    """``2026-11-29T10:00:00Z`` (UTC ISO-8601) as Unix time in seconds.

    Raises:
        ValueError: not a window time the payload model accepts (:func:`device.payloads.parse_utc`).
    """
    return parse_utc(iso).timestamp()


@dataclass(frozen=True)
class Window:
    """One stored window: the payload's fields plus its bounds as Unix seconds."""

    device_id: str
    seq: int
    window_start: str
    window_end: str
    frames_analyzed: int
    faces_present: int
    faces_present_max: int
    engagement_score: float | None
    suppressed: bool
    start_s: float
    end_s: float

    @classmethod
    def from_payload(cls, payload: Engagement) -> "Window":
        return cls(payload.device_id, payload.seq, payload.window_start, payload.window_end,
                   payload.frames_analyzed, payload.faces_present, payload.faces_present_max,
                   payload.engagement_score, payload.suppressed,
                   unix_s(payload.window_start), unix_s(payload.window_end))

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in (*COLUMNS, "start_s", "end_s")}


_SELECT = f"SELECT {', '.join(COLUMNS)}, start_s, end_s FROM windows"


def _window(row) -> Window:
    return Window(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8]), row[9], row[10])


class Store:
    """The history file. :meth:`add` from one writer thread; the readers from any thread
    (each thread gets its own connection).

    Args:
        path: the SQLite file; its directory is created when missing.
        retention_s: :meth:`prune` deletes windows that ended longer ago than this, seconds.

    Raises:
        StoreError: the file cannot be created or is not an SQLite database.
    """

    def __init__(self, path: Path, retention_s: float):
        self.path = Path(path)
        self.retention_s = retention_s
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._db()
            db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the history {self.path}: {exc}") from None

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a crash of this process
            self._local.db = db
        return db

    def add(self, windows: Iterable[Window], now_s: float | None = None) -> int:
        """Store ``windows`` in one transaction; returns how many were new (redeliveries are not)."""
        now_s = time.time() if now_s is None else now_s
        rows = [(w.device_id, w.seq, w.window_start, w.window_end, w.start_s, w.end_s, w.frames_analyzed,
                 w.faces_present, w.faces_present_max, w.engagement_score, int(w.suppressed), now_s)
                for w in windows]
        db = self._db()
        before = db.total_changes
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO windows (device_id, seq, window_start, window_end, start_s, "
                           "end_s, frames_analyzed, faces_present, faces_present_max, engagement_score, "
                           "suppressed, received_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db.total_changes - before

    def prune(self, now_s: float | None = None) -> int:
        """Delete windows that ended before ``now - retention``; returns how many."""
        now_s = time.time() if now_s is None else now_s
        cur = self._db().execute("DELETE FROM windows WHERE end_s < ?", (now_s - self.retention_s,))
        return cur.rowcount

    def devices(self) -> list[str]:
        """Every ``device_id`` in the history; an index skip-scan (one lookup per unit, not per row)."""
        rows = self._db().execute(
            "WITH RECURSIVE d(id) AS (SELECT MIN(device_id) FROM windows UNION ALL "
            "SELECT (SELECT MIN(device_id) FROM windows WHERE device_id > d.id) FROM d WHERE d.id IS NOT NULL) "
            "SELECT id FROM d WHERE id IS NOT NULL").fetchall()
        return [row[0] for row in rows]

    def latest(self) -> dict[str, Window]:
        """The newest window (by ``window_end``, then ``seq``) of every unit in the history."""
        db = self._db()
        out = {}
        for device_id in self.devices():
            row = db.execute(f"{_SELECT} WHERE device_id = ? ORDER BY end_s DESC, seq DESC LIMIT 1",
                             (device_id,)).fetchone()
            out[device_id] = _window(row)
        return out

    def between(self, device_id: str, from_s: float, to_s: float) -> list[Window]:
        """Windows of ``device_id`` that end in ``[from_s, to_s)``, oldest first."""
        rows = self._db().execute(f"{_SELECT} WHERE device_id = ? AND end_s >= ? AND end_s < ? "
                                  "ORDER BY end_s, seq", (device_id, from_s, to_s)).fetchall()
        return [_window(row) for row in rows]

    def iter_between(self, device_id: str, from_s: float, to_s: float) -> Iterator[Window]:
        """:meth:`between` without holding every row in memory (CSV export)."""
        cur = self._db().execute(f"{_SELECT} WHERE device_id = ? AND end_s >= ? AND end_s < ? "
                                 "ORDER BY end_s, seq", (device_id, from_s, to_s))
        for row in cur:
            yield _window(row)

    def count(self, device_id: str | None = None) -> int:
        """Stored windows, of one unit or of all."""
        if device_id is None:
            return self._db().execute("SELECT COUNT(*) FROM windows").fetchone()[0]
        return self._db().execute("SELECT COUNT(*) FROM windows WHERE device_id = ?", (device_id,)).fetchone()[0]

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
