"""USB/V4L2 cameras and RTSP/HTTP streams through PyAV, with open and read timeouts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import av

from device.config import redact_url
from device.sources import FrameSource, SourceError, describe
from device.sources.pyav import RgbConverter
from device.types import Frame


class AvLiveSource(FrameSource):
    """A V4L2 device (index or ``/dev/videoN``) or an ``rtsp://``/``http://`` stream.

    Frames are stamped with ``time.monotonic()`` as they are decoded.

    Args:
        spec: ``0``, ``/dev/video0``, ``rtsp://camera/stream``, ``http://camera/mjpeg`` ...
        timeout_s: longest wait, seconds, for the open and then for each read; FFmpeg's
            interrupt callback aborts the blocking call and PyAV raises, so a dead camera
            or network never blocks the capture thread for longer than this.
        max_size: ``(width, height)``: larger frames are scaled down at decode time.
    """

    def __init__(self, spec: str, timeout_s: float = 10.0, max_size: tuple[int, int] | None = None):
        self.kind = describe(spec)
        self.name = f"/dev/video{spec}" if spec.isdigit() else spec
        self.shown = redact_url(self.name)  # what messages say: no camera password
        self.timeout_s = timeout_s
        self._to_rgb = RgbConverter(self.shown, max_size)
        self._container = None
        self._frames: Iterator | None = None
        self._index = 0

    def open(self) -> None:
        """Open the device or connect to the stream.

        Raises:
            SourceError: not found, busy, refused or timed out (``timeout_s``).
        """
        self.close()
        # RTSP over TCP: UDP loses packets on busy Wi-Fi and gives grey smeared frames.
        options = {"rtsp_transport": "tcp"} if self.name.startswith("rtsp") else {}
        try:
            self._container = av.open(self.name, format="v4l2" if self.kind == "v4l2" else None,
                                      options=options, timeout=(self.timeout_s, self.timeout_s))
            if not self._container.streams.video:
                raise SourceError(f"{self.kind} source {self.shown}: no video stream")
            self._frames = self._container.decode(video=0)
        except (av.FFmpegError, OSError) as exc:
            self.close()
            raise SourceError(redact_url(f"cannot open {self.kind} source {self.shown}: {exc}")) from None

    def read(self) -> Frame | None:
        if self._frames is None:
            raise SourceError(f"{self.shown}: read before open")
        try:
            frame = next(self._frames, None)
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(redact_url(f"{self.kind} source {self.shown} failed: {exc}")) from None
        if frame is None:
            return None
        out = Frame(self._to_rgb(frame), time.monotonic(), self._index)
        self._index += 1
        return out

    def close(self) -> None:
        """Close the demuxer, its device handle or socket, and the decoder."""
        self._frames = None
        container, self._container = self._container, None
        if container is not None:
            container.close()
