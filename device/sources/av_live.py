"""USB/V4L2 cameras and RTSP/HTTP streams through PyAV, with open and read timeouts."""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator

import av

from device.config import redact_url
from device.sources import FrameSource, SourceError, describe
from device.sources.pyav import RgbConverter
from device.types import Frame


def plain_words(exc: BaseException, kind: str, timeout_s: float) -> str:
    """What an FFmpeg/OS error from opening or reading a camera means, in the technician's
    words, with FFmpeg's own text kept in brackets.

    Args:
        exc: what PyAV raised.
        kind: ``stream`` (RTSP/HTTP) or ``v4l2`` (:func:`device.sources.describe`).
        timeout_s: the open/read timeout, seconds (``ROOMPULSE_SOURCE_TIMEOUT_S``).
    """
    said = f"[FFmpeg: {getattr(exc, 'strerror', None) or exc}]"
    code = getattr(exc, "errno", None)
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        what = ("connection refused: nothing listens on that port of the camera (check the port in the URL "
                "and that its stream is on)")
    elif isinstance(exc, (TimeoutError, av.error.ExitError)) or code == errno.ETIMEDOUT:
        what = f"the camera did not answer within {timeout_s:g} s (ROOMPULSE_SOURCE_TIMEOUT_S): is it on and reachable?"
    elif isinstance(exc, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)):
        what = "the camera refused the login: check the user and password in the URL"
    elif isinstance(exc, av.error.HTTPNotFoundError):
        what = "the camera has no stream at that path: check the path in the URL"
    elif kind == "stream" and isinstance(exc, av.error.InvalidDataError):
        what = ("the camera cannot be reached or sent no video stream: check that it is on and on the "
                "network, and the address, port and path in the URL")
    elif kind == "stream" and code in (errno.EIO, errno.ENETUNREACH, errno.EHOSTUNREACH):
        what = "the camera cannot be reached: its name does not resolve or there is no route to it"
    elif kind == "v4l2" and isinstance(exc, FileNotFoundError):
        what = "no such camera device: is the USB camera plugged in? (ls /dev/video*)"
    elif kind == "v4l2" and isinstance(exc, PermissionError):
        what = "permission denied on the camera device: the service user must be in group 'video'"
    elif kind == "v4l2" and code == errno.EBUSY:
        what = "the camera is busy: another program is using it"
    else:
        return str(exc)
    return f"{what} {said}"


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
            raise SourceError(redact_url(f"cannot open {self.kind} source {self.shown}: "
                                         f"{plain_words(exc, self.kind, self.timeout_s)}")) from None

    def read(self) -> Frame | None:
        if self._frames is None:
            raise SourceError(f"{self.shown}: read before open")
        try:
            frame = next(self._frames, None)
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(redact_url(f"{self.kind} source {self.shown} failed: "
                                         f"{plain_words(exc, self.kind, self.timeout_s)}")) from None
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
