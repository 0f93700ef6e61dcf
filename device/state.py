"""Durable device state in SQLite (WAL) under ``ROOMPULSE_STATE_DIR``.

Holds small values that must survive a restart, such as the pause switch. The outbox and
the next engagement ``seq`` live in the same file (:mod:`device.outbox`), so a window and
its ``seq`` are committed together. Only published figures and counters are ever stored
here; never frames or per-face data.

A state file that SQLite cannot read (``file is not a database``, ``malformed``) is moved
aside as ``roompulse.sqlite3.corrupt-<UTC time>`` (with its ``-wal``/``-shm``) for
inspection and a new one is started; one ERROR line says how many queued windows it held
(when that can still be read) or that it cannot be known. Every state file carries a
``sequence_id`` (16 hex digits) that the engagement payload repeats: a new state file
starts ``seq`` at 0 under a new ``sequence_id``, so subscribers see a new sequence begin
instead of ``seq`` going backwards. ``roompulse.sqlite3.sequence`` beside the database remembers
the last ``sequence_id``, so a state file deleted or emptied between two runs is reported
(ERROR) rather than silently replaced.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)

DB_NAME = "roompulse.sqlite3"
SEQUENCE_FILE = "roompulse.sqlite3.sequence"
SEQUENCE_KEY = "sequence_id"
LOCK_NAME = "run.lock"  # flock(2)ed by the one `roompulse run` that owns the directory; holds its pid


class StateError(RuntimeError):
    """The state directory or database cannot be used; the message names the path.

    ``full`` is True when the cause is a full file system (the caller may run from memory)."""

    full = False


NO_SPACE_BYTES = 64 * 1024  # below this much free space a failed open is put down to a full disk


def no_space(directory: Path) -> bool:
    """True when the file system of ``directory`` has (almost) no space left for us."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NO_SPACE_BYTES


def is_full(exc: BaseException) -> bool:
    """True for SQLite's "database or disk is full" (SQLITE_FULL) and ENOSPC."""
    name = getattr(exc, "sqlite_errorname", "")
    return name == "SQLITE_FULL" or "disk is full" in str(exc) or getattr(exc, "errno", None) == 28


def is_corrupt(exc: BaseException) -> bool:
    """True when SQLite says the file is not a database or is malformed (SQLITE_CORRUPT/NOTADB)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or type(exc) is sqlite3.DatabaseError


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    try:
        # 1 KiB pages (a new file only; SQLite's default is 4 KiB): a window's commit appends one
        # WAL frame of 1 KiB + 24 bytes instead of 4 KiB + 24, which straddles two 4 KiB pages of
        # the page cache (scripts/write_bytes.py measures what the disk is sent).
        db.execute("PRAGMA page_size=1024")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    except BaseException:
        db.close()
        raise
    return db


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def move_aside(path: Path, why: str) -> Path:
    """Rename ``path`` and its ``-wal``/``-shm`` files to ``<path>.<why>-<UTC time>``; returns the new path."""
    aside = path.with_name(f"{path.name}.{why}-{_stamp()}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(aside) + suffix))
    return aside


def count_queued(path: Path) -> int | None:
    """Rows in the outbox of the (possibly damaged) database at ``path``, or None when unreadable."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return None


def _lost(count: int | None) -> str:
    if count is None:
        return "the windows queued in it are lost (how many cannot be read from it)"
    return f"the {count} window(s) queued in it will not be sent"


def connect(state_dir: Path, check: bool = True) -> tuple[Path, sqlite3.Connection]:
    """Open (creating when needed) ``<state_dir>/roompulse.sqlite3`` with its ``kv`` table.

    WAL journal and ``synchronous=FULL``, so a committed value survives a power cut; the
    connection may be shared between threads (callers serialise their writes).

    Args:
        state_dir: ``ROOMPULSE_STATE_DIR``; created when missing.
        check: run ``PRAGMA quick_check`` and set a damaged file aside (see the module doc),
            and give the file a ``sequence_id`` when it has none.

    Raises:
        StateError: the directory cannot be created or the database opened for another
            reason than damage (permissions, a read-only or full file system at creation).
    """
    path = Path(state_dir) / DB_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.is_file() and path.stat().st_size > 0
    except OSError as exc:
        raise StateError(f"cannot use state directory {state_dir} ({exc}); "
                         "set ROOMPULSE_STATE_DIR to a writable directory") from None
    damaged = False
    try:
        try:
            db = _open(path)
            if check:
                verdict = db.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    db.close()
                    raise sqlite3.DatabaseError(f"quick_check: {verdict}")
        except sqlite3.DatabaseError as exc:
            if not check or not is_corrupt(exc):
                raise
            aside = move_aside(path, "corrupt")
            log.error("state file %s is damaged (%s): moved aside to %s for inspection; %s; a new state file "
                      "is started and seq starts again at 0 under a new sequence_id", path, exc, aside,
                      _lost(count_queued(aside)))
            damaged = True
            db = _open(path)
        if check:
            _sequence(db, path, lost=not existed and not damaged)
    except (OSError, sqlite3.Error) as exc:
        error = StateError(f"cannot use state file {path} ({exc}); set ROOMPULSE_STATE_DIR to a writable "
                           "directory with free space")
        error.full = is_full(exc) or no_space(path.parent)
        raise error from None
    return path, db


def read_only(path: Path) -> sqlite3.Connection:
    """``path`` opened for reading only, without creating ``-wal``/``-shm`` files (a full disk).

    Raises:
        sqlite3.Error: the file cannot be read.
    """
    wal = Path(str(path) + "-wal")
    mode = "ro" if wal.exists() and wal.stat().st_size > 0 else "ro&immutable=1"  # committed rows in a WAL count
    db = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, check_same_thread=False, isolation_level=None)
    db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    return db


def _sequence(db: sqlite3.Connection, path: Path, lost: bool) -> None:
    """Give a state file without one a new ``sequence_id`` and note it in ``roompulse.sequence``;
    report a state file lost since the run that wrote that note."""
    if kv_get(db, SEQUENCE_KEY) is not None:
        return
    marker = path.with_name(SEQUENCE_FILE)
    try:
        previous = marker.read_text().strip() if marker.is_file() else ""
    except OSError:
        previous = ""
    new = secrets.token_hex(8)
    if previous and lost:
        log.error("state file %s is missing or empty although sequence %s was begun in it: %s; seq starts "
                  "again at 0 under sequence_id %s", path, previous, _lost(None), new)
    kv_set(db, SEQUENCE_KEY, new)
    tmp = marker.with_name(SEQUENCE_FILE + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(new + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, marker)
    except OSError as exc:
        log.warning("cannot write %s (%s): a later loss of the state file may go unreported", marker, exc)


def kv_get(db: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    """The value stored under ``key`` in the ``kv`` table, or ``default``."""
    row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    return row[0] if row else default


def kv_set(db: sqlite3.Connection, key: str, value: str) -> None:
    """Store ``value`` under ``key`` in the ``kv`` table."""
    db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))


class StateStore:
    """A key-value table in ``<state_dir>/roompulse.sqlite3`` (the pause switch).

    The file is checked (and set aside when damaged) when the store is made; each
    :meth:`get`/:meth:`set` then opens it briefly, so the outbox's connection is the only
    long-lived one and a state file replaced under the service is never written through a
    stale handle.

    Raises:
        StateError: the directory cannot be created or the database opened.
    """

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        try:
            _, db = connect(state_dir)
            db.close()
        except StateError as exc:
            if not exc.full:
                raise
            log.error("state disk full at start (%s): the service runs, keeping what it cannot store in memory "
                      "until space returns", self.state_dir)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value under ``key``, or ``default`` (also when the disk is full and the file
        cannot be read either).

        Raises:
            StateError: the state file cannot be opened at all, for another reason than a full disk.
        """
        try:
            _, db = connect(self.state_dir, check=False)
        except StateError as exc:
            if not exc.full:
                raise
            try:
                db = read_only(self.path)
            except sqlite3.Error:
                return default
        try:
            return kv_get(db, key, default)
        except sqlite3.Error:
            return default
        finally:
            db.close()

    def set(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` (committed, fsynced).

        Raises:
            sqlite3.OperationalError: the disk is full (see :func:`is_full`).
            StateError: the state file cannot be opened (``full`` says whether the disk is full).
        """
        _, db = connect(self.state_dir, check=False)
        try:
            kv_set(db, key, value)
        finally:
            db.close()

    def close(self) -> None:
        """Nothing stays open between calls; kept for callers that close what they open."""


class RunLock:
    """The lock :func:`lock_state_dir` holds: an open file descriptor of the state directory."""

    def __init__(self, fd: int):
        self._fd = fd

    def close(self) -> None:
        """Release the lock (also released by the kernel when the process ends, SIGKILL included)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def lock_state_dir(state_dir: Path) -> RunLock:
    """Make this process the one ``roompulse run`` using ``state_dir``: an exclusive, non-blocking
    ``flock`` on the directory itself (deleting a file in it cannot undo it), released when the
    returned lock is closed or the process ends. Two runs on one directory would number their
    windows from the same ``seq`` and one unit's windows would never arrive. The pid goes into
    ``<state_dir>/run.lock`` for the message a second run gives (best effort: not on a full disk).

    Raises:
        StateError: another process holds the lock (its pid named), or the directory cannot be opened.
    """
    try:
        fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise StateError(f"cannot open the state directory {state_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        try:
            holder = (Path(state_dir) / LOCK_NAME).read_text(encoding="ascii").strip() or "unknown"
        except (OSError, UnicodeDecodeError):
            holder = "unknown"
        raise StateError(f"state directory {state_dir} is in use by another roompulse run (pid {holder}); two runs "
                         "on one directory would reuse seq numbers: stop the other (sudo systemctl stop roompulse) "
                         "or give this run its own ROOMPULSE_STATE_DIR") from None
    try:
        (Path(state_dir) / LOCK_NAME).write_text(f"{os.getpid()}\n", encoding="ascii")
    except OSError as exc:
        log.warning("cannot write the pid to %s (%s); the lock holds without it", Path(state_dir) / LOCK_NAME,
                    exc.strerror)
    return RunLock(fd)
