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


class StateStore:
    """A key-value table in ``<state_dir>/roompulse.sqlite3``.

    Raises:
        StateError: the directory cannot be created or the database opened.
    """

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / DB_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise StateError(
                f"cannot use state directory {state_dir} ({exc}); set ROOMPULSE_STATE_DIR to a writable directory"
            ) from None

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._db.close()
