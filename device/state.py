"""Durable device state in SQLite (WAL) under ``ROOMPULSE_STATE_DIR``.

Holds small values that must survive a restart, such as the pause switch. The outbox and
the next engagement ``seq`` live in the same file (:mod:`device.outbox`), so a window and
its ``seq`` are committed together. Only published figures and counters are ever stored
here; never frames or per-face data.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

DB_NAME = "roompulse.sqlite3"


class StateError(RuntimeError):
    """The state directory or database cannot be used; the message names the path."""


def connect(state_dir: Path) -> tuple[Path, sqlite3.Connection]:
    """Open (creating when needed) ``<state_dir>/roompulse.sqlite3`` with its ``kv`` table.

    WAL journal and ``synchronous=FULL``, so a committed value survives a power cut; the
    connection may be shared between threads (callers serialise their writes).

    Raises:
        StateError: the directory cannot be created or the database opened.
    """
    path = Path(state_dir) / DB_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    except (OSError, sqlite3.Error) as exc:
        raise StateError(
            f"cannot use state directory {state_dir} ({exc}); set ROOMPULSE_STATE_DIR to a writable directory"
        ) from None
    return path, db


def kv_get(db: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    """The value stored under ``key`` in the ``kv`` table, or ``default``."""
    row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    return row[0] if row else default


def kv_set(db: sqlite3.Connection, key: str, value: str) -> None:
    """Store ``value`` under ``key`` in the ``kv`` table."""
    db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))


class StateStore:
    """A key-value table in ``<state_dir>/roompulse.sqlite3``.

    Raises:
        StateError: the directory cannot be created or the database opened.
    """

    def __init__(self, state_dir: Path):
        self.path, self._db = connect(state_dir)

    def get(self, key: str, default: str | None = None) -> str | None:
        return kv_get(self._db, key, default)

    def set(self, key: str, value: str) -> None:
        kv_set(self._db, key, value)

    def close(self) -> None:
        self._db.close()
