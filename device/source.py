"""Frame sources: picamera2, V4L2 cameras, network streams and files, all yielding RGB frames.

Video and images are decoded with PyAV (FFmpeg's libraries, bundled in the wheel): one
decoder for MP4, GIF, JPEG and PNG files, V4L2 devices and RTSP/HTTP streams, with frame
timestamps straight from the container and no system FFmpeg or GUI libraries needed.
Every source converts to RGB once, here; the rest of the pipeline only sees RGB.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from device.types import Frame


# Demuxers that FFmpeg falls back to for files that hold no picture (text, raw data).
NOT_PICTURES = {"tty", "data", "bin"}


class SourceError(RuntimeError):
    """A source cannot be opened or read; the message names it and why."""


def describe(spec: str) -> str:
    """The kind of source a ``ROOMPULSE_SOURCE`` value names: picamera2, v4l2, stream or file."""
    if spec == "picamera2":
        return "picamera2"
    if spec.isdigit() or spec.startswith("/dev/video"):
        return "v4l2"
    if spec.split("://", 1)[0] in ("rtsp", "rtsps", "http", "https"):
        return "stream"
    return "file"


def read_file(path: str | Path) -> Iterator[Frame]:
    """Decode every frame of an image, GIF or video file.

    Yields:
        :class:`Frame` with RGB uint8 (H, W, 3) and ``timestamp`` = presentation time in
        seconds from the file's start (0 for a still image).

    Raises:
        SourceError: the path does not exist, is not a file, or holds no decodable picture.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if not path.is_file():
        raise SourceError(f"{path}: not a file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise SourceError(f"{path}: not an image or video file the decoder understands ({exc})") from None
    with container:
        # FFmpeg's "tty" demuxer renders any text file as a picture: not a camera image.
        if not container.streams.video or container.format.name in NOT_PICTURES:
            raise SourceError(f"{path}: not an image or video file (no picture stream; found {container.format.name})")
        stream = container.streams.video[0]
        try:
            for index, frame in enumerate(container.decode(stream)):
                stamp = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 1)
                yield Frame(frame.to_ndarray(format="rgb24"), stamp, index)
        except av.FFmpegError as exc:
            raise SourceError(f"{path}: cannot decode ({exc})") from None


def loop_file(path: str | Path) -> Iterator[Frame]:
    """:func:`read_file` over and over, timestamps continuing across loops (for demos and soaks)."""
    offset, index = 0.0, 0
    while True:
        last, step = None, 0.0
        for frame in read_file(path):
            if last is not None:
                step = frame.timestamp - last
            last = frame.timestamp
            yield Frame(frame.rgb, frame.timestamp + offset, index)
            index += 1
        if last is None:
            return
        offset += last + (step or 0.1)


def read_live(spec: str, timeout_s: float = 10.0) -> Iterator[Frame]:
    """Frames from a V4L2 device or an RTSP/HTTP stream, stamped with the monotonic clock.

    Raises:
        SourceError: the device or stream cannot be opened or stops delivering.
    """
    kind = describe(spec)
    url = f"/dev/video{spec}" if spec.isdigit() else spec
    options = {"rtsp_transport": "tcp"} if kind == "stream" and spec.startswith("rtsp") else {}
    try:
        container = av.open(url, format="v4l2" if kind == "v4l2" else None, options=options, timeout=timeout_s)
    except av.FFmpegError as exc:
        raise SourceError(f"cannot open {kind} source {url}: {exc}") from None
    with container:
        try:
            for index, frame in enumerate(container.decode(video=0)):
                yield Frame(frame.to_ndarray(format="rgb24"), time.monotonic(), index)
        except av.FFmpegError as exc:
            raise SourceError(f"{kind} source {url} failed: {exc}") from None


def read_picamera2(size: tuple[int, int] = (1280, 720)) -> Iterator[Frame]:
    """Frames from the Raspberry Pi camera's main stream, stamped with the monotonic clock.

    Raises:
        SourceError: picamera2 is not installed (with how to install it) or the camera fails.
    """
    try:
        from picamera2 import Picamera2
    except ImportError:
        raise SourceError(
            "ROOMPULSE_SOURCE=picamera2 but the picamera2 module is not installed: on Raspberry Pi OS "
            "run 'sudo apt install python3-picamera2' and create the venv with --system-site-packages"
        ) from None
    camera = Picamera2()
    try:
        # libcamera's "RGB888" is B,G,R in memory; "BGR888" is R,G,B, which is what we want.
        camera.configure(camera.create_video_configuration(main={"size": size, "format": "BGR888"}))
        camera.start()
        index = 0
        while True:
            rgb = np.ascontiguousarray(camera.capture_array("main")[:, :, :3])
            yield Frame(rgb, time.monotonic(), index)
            index += 1
    except RuntimeError as exc:
        raise SourceError(f"picamera2 failed: {exc}") from None
    finally:
        camera.close()


def paced(frames: Iterator[Frame]) -> Iterator[Frame]:
    """Yield file frames no faster than their timestamps, as a live camera would deliver them."""
    start = None
    for frame in frames:
        if start is None:
            start = time.monotonic() - frame.timestamp
        delay = start + frame.timestamp - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield frame


def open_source(spec: str, loop: bool = False) -> Iterator[Frame]:
    """Frames from whatever ``spec`` (``ROOMPULSE_SOURCE``) names. See :func:`describe`.

    ``loop`` repeats a file source forever at its own frame rate (see :func:`paced`); it has
    no effect on live sources. A file that is not looped is read as fast as it decodes.
    """
    kind = describe(spec)
    if kind == "picamera2":
        return read_picamera2()
    if kind == "file":
        return paced(loop_file(spec)) if loop else read_file(spec)
    return read_live(spec)
