"""Frame sources behind one small interface: :class:`FrameSource` (open / read / close).

One file per backend, chosen by ``ROOMPULSE_SOURCE`` (see :func:`describe`):

- ``picamera.py``: the Raspberry Pi camera through picamera2 (imported only when selected);
- ``av_live.py``: USB/V4L2 cameras and RTSP/HTTP streams through PyAV, with open and read
  timeouts;
- ``files.py``: image, GIF and video files, optionally looped and paced like a camera.

Every source converts to RGB once; the rest of the pipeline only sees :class:`Frame`.
A source is used by one thread at a time (the capture worker of :mod:`device.supervisor`),
which opens it, reads until ``None`` or :class:`SourceError`, and closes it. ``close`` must
release every resource (device handle, sockets, decoder) and may be called more than once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from device.types import Frame


class SourceError(RuntimeError):
    """A source cannot be opened or read; the message names it and why."""


class SourceUnavailable(SourceError):
    """The configured kind of source cannot work on this system (a missing module): retrying
    will not help, so ``roompulse run`` exits 78 (EX_CONFIG) and systemd does not restart it."""


def preflight(spec: str) -> None:
    """Fail at start-up, not in the capture loop, when ``spec`` cannot work here.

    Raises:
        SourceUnavailable: ``picamera2`` selected but not installed.
    """
    if describe(spec) == "picamera2":
        from device.sources.picamera import require_picamera2

        require_picamera2()


class FrameSource(ABC):
    """One camera, stream or file, yielding RGB frames.

    Attributes:
        name: what to call it in logs and errors (e.g. ``/dev/video0``).
        live: True when frames are stamped with ``time.monotonic()`` as they arrive (cameras,
            streams, paced files); False for a file read as fast as it decodes, stamped
            with its presentation times from 0.
    """

    name: str = "source"
    live: bool = True

    @abstractmethod
    def open(self) -> None:
        """Acquire the device or stream.

        Raises:
            SourceError: it cannot be opened (missing, busy, unreachable, timed out).
        """

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame: RGB uint8 (H, W, 3); ``None`` when the source has ended.

        Raises:
            SourceError: the device or stream failed or timed out.
        """

    @abstractmethod
    def close(self) -> None:
        """Release everything :meth:`open` acquired; safe to call twice or before open."""

    def __enter__(self) -> "FrameSource":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def describe(spec: str) -> str:
    """The kind of source a ``ROOMPULSE_SOURCE`` value names: picamera2, v4l2, stream or file."""
    if spec == "picamera2":
        return "picamera2"
    if spec.isdigit() or spec.startswith("/dev/video"):
        return "v4l2"
    if spec.split("://", 1)[0] in ("rtsp", "rtsps", "http", "https"):
        return "stream"
    return "file"


def make_source(spec: str, *, loop: bool = False, size: tuple[int, int] = (1280, 720),
                timeout_s: float = 10.0, max_size: tuple[int, int] | None = None) -> FrameSource:
    """A new, unopened source for ``spec`` (``ROOMPULSE_SOURCE``).

    Args:
        spec: see :func:`describe`.
        loop: repeat a file forever, paced at its own frame rate like a camera.
        size: picamera2 main-stream (width, height) in pixels.
        timeout_s: open and read timeout of V4L2 devices and streams, seconds.
        max_size: files and streams with larger frames are scaled down to fit at decode time.
    """
    kind = describe(spec)
    if kind == "picamera2":
        from device.sources.picamera import Picamera2Source

        return Picamera2Source(size)
    if kind == "file":
        from device.sources.files import FileSource

        return FileSource(spec, loop=loop, max_size=max_size)
    from device.sources.av_live import AvLiveSource

    return AvLiveSource(spec, timeout_s=timeout_s, max_size=max_size)


__all__ = ["FrameSource", "SourceError", "SourceUnavailable", "describe", "make_source", "preflight"]
