"""File sources: images, GIFs and videos decoded with PyAV, optionally looped like a camera.

PyAV (FFmpeg's libraries, bundled in the wheel) is one decoder for MP4, GIF, JPEG and PNG,
with frame timestamps straight from the container and no system FFmpeg or GUI libraries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import av

from device.sources import FrameSource, SourceError
from device.sources.pyav import RgbConverter
from device.types import Frame

log = logging.getLogger(__name__)

# Demuxers that FFmpeg falls back to for files that hold no picture (text, raw data).
NOT_PICTURES = {"tty", "data", "bin"}


def read_file(path: str | Path, max_size: tuple[int, int] | None = None) -> Iterator[Frame]:
    """Decode every frame of an image, GIF or video file.

    Args:
        path: the file.
        max_size: ``(width, height)``, pixels: larger frames are scaled down, aspect kept,
            at decode time (:class:`device.sources.pyav.RgbConverter`); None keeps every size.

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
        to_rgb = RgbConverter(str(path), max_size)
        stamps = ContinuousStamps(str(path), 1.0 / float(stream.average_rate or 1))
        try:
            for index, frame in enumerate(container.decode(stream)):
                stamp = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 1)
                yield Frame(to_rgb(frame), stamps(stamp, index), index)
        except av.FFmpegError as exc:
            raise SourceError(f"{path}: cannot decode ({exc})") from None


class ContinuousStamps:
    """Keeps a file's frame timestamps going forward: where they jump back (files joined end to
    end, e.g. ``cat a.ts b.ts``, or a camera recording that restarted its clock) the rest is
    shifted to continue one frame step after the last, with one warning. Without it the frame
    rate limit and the windows, which take time as going forward, dropped the second part.

    Args:
        name: the file, for the warning.
        step: seconds between frames (1 / the stream's average rate).
    """

    def __init__(self, name: str, step: float):
        self.name, self.step = name, step
        self.offset, self.last = 0.0, None

    def __call__(self, stamp: float, index: int) -> float:
        """``stamp`` (seconds from the file's start) shifted to follow the previous one."""
        if self.last is not None and stamp + self.offset < self.last:
            log.warning("%s: timestamps go back at frame %d (%.3f s after %.3f s): the rest is taken as following "
                        "on", self.name, index, stamp, self.last - self.offset)
            self.offset = self.last + self.step - stamp
        self.last = stamp + self.offset
        return self.last


def loop_file(path: str | Path, max_size: tuple[int, int] | None = None) -> Iterator[Frame]:
    """:func:`read_file` over and over, timestamps continuing across loops."""
    offset, index = 0.0, 0
    while True:
        last, step = None, 0.0
        frames = read_file(path, max_size)
        try:
            for frame in frames:
                if last is not None:
                    step = frame.timestamp - last
                last = frame.timestamp
                yield Frame(frame.rgb, frame.timestamp + offset, index)
                index += 1
        finally:
            frames.close()  # closes the container now, not when garbage-collected
        if last is None:
            return
        offset += last + (step or 0.1)


def paced(frames: Generator[Frame, None, None]) -> Iterator[Frame]:
    """Deliver frames no faster than their timestamps, restamped with ``time.monotonic()``.

    This is how a camera delivers them: the looped file then behaves like a live source
    (monotonic stamps, real-time rate) for the stall supervisor, the windows and the clock.
    """
    start = None
    try:
        for frame in frames:
            if start is None:
                start = time.monotonic() - frame.timestamp
            due = start + frame.timestamp
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield Frame(frame.rgb, due, frame.index)
    finally:
        frames.close()


class FileSource(FrameSource):
    """A file read once as fast as it decodes, or looped forever at its own frame rate.

    Args:
        path: image, GIF or video file.
        loop: repeat forever, paced and stamped like a live camera (demos, soaks).
        max_size: larger frames are scaled down at decode time (see :func:`read_file`).
    """

    def __init__(self, path: str | Path, loop: bool = False, max_size: tuple[int, int] | None = None):
        self.path = Path(path)
        self.name = str(path)
        self.live = loop
        self.max_size = max_size
        self._frames: Generator[Frame, None, None] | None = None

    def open(self) -> None:
        """Check the file and start decoding it.

        Raises:
            SourceError: see :func:`read_file`.
        """
        frames = paced(loop_file(self.path, self.max_size)) if self.live else read_file(self.path, self.max_size)
        # Decode the first frame now so a bad file fails here, not on the first read.
        try:
            first = next(frames)
        except StopIteration:
            first = None
        self._frames = _prepend(first, frames)

    def read(self) -> Frame | None:
        if self._frames is None:
            raise SourceError(f"{self.name}: read before open")
        return next(self._frames, None)

    def close(self) -> None:
        """Close the decoder generator, which closes the container (and its file descriptor)."""
        frames, self._frames = self._frames, None
        if frames is not None:
            frames.close()


def _prepend(first: Frame | None, rest: Generator[Frame, None, None]) -> Generator[Frame, None, None]:
    try:
        if first is not None:
            yield first
            yield from rest
    finally:
        rest.close()
