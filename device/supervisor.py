"""Capture supervision: a worker thread reads the source; stalls are detected and re-opened.

The camera is read in a worker thread so that a blocking read never blocks the run loop.
Frames pass through:

    source.read() -> :class:`Throttle` (at most ROOMPULSE_FPS on the source's clock)
                  -> repeat check (a frozen camera repeats the same picture)
                  -> :class:`Handoff` (one slot; a newer frame replaces an unread one)

and the run loop calls :meth:`Capture.supervise` every poll:

- *stalled*: no new picture for ``stall_s`` seconds (nothing delivered, the source ended or
  failed, or the same picture repeated). The loop reports ``camera_stalled``; the source is
  retired and a new one opened after a backoff of 1, 2, 4 ... up to ``backoff_max_s``
  seconds (reset by the first new picture).
- *retired*: the worker is told to stop; it closes its source (device handle, sockets,
  decoder) as soon as its current call returns. A worker stuck inside a call is left
  behind and closes its source when (if) the call returns.
- *hung*: a worker (current or left behind) has been inside one ``open``/``read`` call for
  longer than ``hang_s``. :meth:`Capture.healthy` turns False, the service stops its
  systemd watchdog pings and systemd restarts the process.
- *crashed*: a worker died of an unexpected exception (a bug, not a camera fault):
  :attr:`Capture.crashed` holds it and the service exits non-zero.

Repeated pictures are never handed to the analyser: a frozen camera adds nothing to a
window. Files read once (not looped) are not supervised: the handoff blocks instead of
dropping, so every frame within ``fps`` is analysed, and the end of the file ends the run.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from device.sources import FrameSource, SourceError
from device.trouble import Trouble
from device.types import Frame

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 1.0


class Throttle:
    """Keeps at most ``fps`` frames per second of the source's timeline, dropping the rest.

    Args:
        fps: frames per second (> 0).
    """

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self.due: float | None = None

    def keep(self, stamp: float) -> bool:
        """True when the frame stamped ``stamp`` (seconds) is due for analysis."""
        if self.due is not None and stamp < self.due - 1e-6:
            return False
        # Keep the average rate; after a gap, restart the schedule from this frame.
        late = self.due is None or stamp >= self.due + self.period
        self.due = stamp + self.period if late else self.due + self.period
        return True


def fingerprint(rgb: np.ndarray) -> bytes:
    """A 16-byte BLAKE2b digest of the pixels: equal for a repeated (frozen) picture.

    Only the throttled frames (a few per second) are hashed; a live sensor's noise makes
    consecutive real pictures differ, while a frozen driver or stream repeats the buffer.
    """
    return hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).digest()


class Handoff:
    """A one-slot handoff between the capture worker and the run loop.

    Args:
        drop: True (live sources): a new frame replaces an unread one, which is counted in
            :attr:`dropped`; False (files): :meth:`put` waits until the slot is free.
    """

    def __init__(self, drop: bool):
        self.drop = drop
        self.dropped = 0
        self._frame: Frame | None = None
        self._cond = threading.Condition()

    def put(self, frame: Frame, stop: threading.Event) -> None:
        """Offer a frame; without ``drop``, waits for the slot unless ``stop`` is set."""
        with self._cond:
            while not self.drop and self._frame is not None and not stop.is_set():
                self._cond.wait(0.1)
            if stop.is_set():
                return
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def get(self, timeout: float) -> Frame | None:
        """The waiting frame, or None after ``timeout`` seconds without one."""
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    @property
    def empty(self) -> bool:
        """No frame is waiting."""
        return self._frame is None

    def clear(self) -> None:
        """Forget an unread frame (it came from a source being retired)."""
        with self._cond:
            self._frame = None
            self._cond.notify_all()


@dataclass(eq=False)
class _Worker:
    """One source and the thread that reads it."""

    source: FrameSource
    started: float
    number: int
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    busy_since: float | None = None
    repeats: int = 0
    read: int = 0  # frames read from the source
    ended: bool = False
    error: SourceError | None = None
    crashed: BaseException | None = None

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


class Capture:
    """Runs a source in a worker thread, detects stalls, re-opens with backoff.

    Args:
        factory: makes a new, unopened source (called again for every re-open).
        fps: most frames per second handed over (``ROOMPULSE_FPS``).
        stall_s: seconds without a new picture before :meth:`supervise` reports a stall
            and re-opens (``ROOMPULSE_STALL_S``).
        hang_s: seconds inside one source call after which :meth:`healthy` is False
            (``ROOMPULSE_HANG_S``).
        supervised: False for a file read once: no stall handling, the end of the file
            ends the capture; an error before the first frame is raised by :meth:`supervise`,
            one after it (a file that breaks mid-way) ends the capture like the end of the
            file once the frames read before it are taken, and is kept in :attr:`broke`.
        backoff_base_s, backoff_max_s: first and longest delay before a re-open, seconds.
        mono: the monotonic clock (seconds), injectable for tests.
    """

    def __init__(self, factory: Callable[[], FrameSource], fps: float, stall_s: float = 8.0,
                 hang_s: float = 20.0, supervised: bool = True, backoff_base_s: float = BACKOFF_BASE_S,
                 backoff_max_s: float = 60.0, mono: Callable[[], float] = time.monotonic):
        self.factory = factory
        self.fps = fps
        self.stall_s = stall_s
        self.hang_s = hang_s
        self.supervised = supervised
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.mono = mono
        self.handoff = Handoff(drop=supervised)
        self.opens = 0
        self.stalls = 0
        self.pictures = 0  # new (not repeated) pictures offered, all sources together
        self.repeats = 0  # repeated pictures dropped, all sources together
        self.crashed: BaseException | None = None
        self.broke: SourceError | None = None  # an unsupervised file that failed after its first frame
        self.last_fresh = mono()
        self._attempt = 0
        self._reopen_at: float | None = None
        self._worker: _Worker | None = None
        self._left_behind: list[_Worker] = []
        self._last_print: bytes | None = None
        self.stall_reason: str | None = None  # why the camera last counted as stalled (technician's words)

    # -- the worker thread ---------------------------------------------------------------

    def _call(self, worker: _Worker, method: Callable):
        worker.busy_since = self.mono()
        try:
            return method()
        finally:
            worker.busy_since = None

    def _work(self, worker: _Worker) -> None:
        throttle = Throttle(self.fps)
        try:
            self._call(worker, worker.source.open)
            while not worker.stop.is_set():
                frame = self._call(worker, worker.source.read)
                if frame is None:
                    worker.ended = True
                    break
                worker.read += 1
                if not worker.stop.is_set() and throttle.keep(frame.timestamp):
                    self._offer(worker, frame)
        except SourceError as exc:
            worker.error = exc
        except BaseException as exc:  # a bug: the service must exit, not idle
            worker.crashed = exc
        finally:
            try:
                worker.source.close()
            except Exception as exc:  # noqa: BLE001 - a failing close must not kill the worker
                log.warning("closing %s failed: %s", worker.source.name, exc)

    def _offer(self, worker: _Worker, frame: Frame) -> None:
        if self.supervised:
            digest = fingerprint(frame.rgb)
            if digest == self._last_print:
                self.repeats += 1
                worker.repeats += 1
                return
            self._last_print = digest
            self.last_fresh = self.mono()
            self._attempt = 0
        self.pictures += 1
        self.handoff.put(frame, worker.stop)

    # -- the run loop's side -------------------------------------------------------------

    def start(self) -> None:
        """Open the first source (in the worker thread; returns at once)."""
        self.last_fresh = self.mono()
        self._spawn()

    def _spawn(self) -> None:
        self.opens += 1
        worker = _Worker(self.factory(), self.mono(), self.opens)
        worker.thread = threading.Thread(target=self._work, args=(worker,), name=f"capture-{worker.number}",
                                         daemon=True)
        self._worker = worker
        self._last_print = None
        worker.thread.start()

    def _retire(self, worker: _Worker, grace_s: float = 0.2) -> None:
        worker.stop.set()
        self.handoff.clear()
        if worker.thread is not None:
            worker.thread.join(grace_s)
        if worker.alive:
            log.warning("capture thread %d is stuck in a call to %s; leaving it behind", worker.number, worker.source.name)
            self._left_behind.append(worker)

    def next_frame(self, timeout: float) -> Frame | None:
        """The newest unread frame, or None after ``timeout`` seconds."""
        return self.handoff.get(timeout)

    @property
    def finished(self) -> bool:
        """An unsupervised file has been read to its end and its last frame taken."""
        w = self._worker
        return (not self.supervised and w is not None and (w.ended or self.broke is not None) and not w.alive
                and self.handoff.empty)

    def supervise(self, now: float) -> bool:
        """Check the worker, re-open when due; True while the camera counts as stalled.

        Raises:
            SourceError: unsupervised (a file read once) and the file cannot be read.
        """
        w = self._worker
        if w is None:
            return False
        if w.crashed is not None:
            self.crashed = w.crashed
        self._left_behind = [old for old in self._left_behind if old.alive]
        if not self.supervised:
            if w.error is not None and not w.alive:
                if not w.read:
                    raise w.error
                if self.broke is None:
                    self.broke = w.error
                    log.error("%s broke after %d frame(s): %s; the windows of the frames read are published",
                              w.source.name, w.read, w.error)
            return False
        if self._reopen_at is None:
            quiet = now - max(self.last_fresh, w.started)
            if not w.alive:
                reason = str(w.error) if w.error else "the source ended"
                self._schedule(now, reason)
            elif quiet > self.stall_s:
                what = "repeated the same picture" if w.repeats else "delivered no new picture"
                self._schedule(now, f"{w.source.name} {what} for {quiet:.1f} s")
                self._retire(w)
        if self._reopen_at is not None and now >= self._reopen_at:
            self._reopen_at = None
            self._spawn()
        return now - self.last_fresh > self.stall_s

    def trouble(self, now: float) -> Trouble | None:
        """Why the camera is failing at ``now`` (monotonic s): the latest reason (e.g. the
        re-open's error) and since its last new picture, while it counts as stalled, or from
        its first failure on when it has given no picture yet (a source failing at start-up is
        said at once: the service is then up, READY=1 with it on STATUS=); else None."""
        if not self.supervised:
            return None
        if now - self.last_fresh <= self.stall_s and not (self.stalls and not self.pictures):
            return None
        return Trouble(self.stall_reason or "no new picture", self.last_fresh)

    def _schedule(self, now: float, reason: str) -> None:
        delay = min(self.backoff_base_s * 2 ** self._attempt, self.backoff_max_s)
        self._attempt += 1
        self.stalls += 1
        self.stall_reason = reason
        log.warning("camera: %s; re-opening in %.0f s", reason, delay)
        self._reopen_at = now + delay

    def healthy(self, now: float) -> bool:
        """False when any capture thread has been inside one source call for over ``hang_s``."""
        workers = [*self._left_behind, *([self._worker] if self._worker else [])]
        return all(w.busy_since is None or now - w.busy_since <= self.hang_s for w in workers)

    def stop(self, timeout: float = 2.0) -> None:
        """Retire the current worker and wait up to ``timeout`` s for every worker to close."""
        if self._worker is not None:
            self._retire(self._worker, timeout)
        deadline = self.mono() + timeout
        for old in self._left_behind:
            if old.thread is not None:
                old.thread.join(max(0.0, deadline - self.mono()))

    @property
    def threads_left_behind(self) -> int:
        """Workers stuck in a source call after being retired (still alive)."""
        return sum(w.alive for w in self._left_behind)
