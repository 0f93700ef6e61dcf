"""Camera test doubles: no camera exists on the test machine, so these misbehave on cue.

They deliver real pictures (the classroom clip, decoded once with the real decoder),
stamped with the monotonic clock at a camera-like rate, then fail in one of the ways a
field camera does: stop delivering, freeze (repeat one picture), or block inside read.
"""

from __future__ import annotations

import threading
import time

from conftest import CLASSROOM
from device.sources import FrameSource, SourceError
from device.sources.files import FileSource, read_file
from device.types import Frame

PICTURES = [f.rgb for f in read_file(CLASSROOM)]  # 45 real frames, 480x270 RGB
RELEASE = threading.Event()  # set by the tests' teardown: unblocks every BlockingCamera


class ScriptedCamera(FrameSource):
    """Delivers ``good`` distinct pictures at ``rate`` fps, then misbehaves per ``after``.

    ``after``: ``"silent"`` (each read waits ``timeout_s`` then raises SourceError, like a
    stream with a read timeout that gets nothing), ``"frozen"`` (repeats the last picture,
    fresh timestamps), ``"blocks"`` (read never returns until :data:`RELEASE` is set).
    Class attributes count opens and closes across instances.
    """

    opened = 0
    closed = 0

    def __init__(self, good: int, after: str, rate: float = 10.0, timeout_s: float = 0.3):
        self.good, self.after, self.rate, self.timeout_s = good, after, rate, timeout_s
        self.name = f"scripted-{after}"
        self.sent = 0
        self.is_open = False

    def open(self) -> None:
        type(self).opened += 1
        self.is_open = True

    def read(self) -> Frame | None:
        time.sleep(1.0 / self.rate)
        if self.sent < self.good:
            offset = (type(self).opened * 7 + self.sent) % len(PICTURES)
            self.sent += 1
            return Frame(PICTURES[offset], time.monotonic(), self.sent)
        if self.after == "frozen":
            return Frame(PICTURES[(type(self).opened * 7 + self.good - 1) % len(PICTURES)], time.monotonic(), self.sent)
        if self.after == "blocks":
            RELEASE.wait()
            return None
        time.sleep(self.timeout_s)
        raise SourceError(f"{self.name}: read timed out")

    def close(self) -> None:
        if self.is_open:
            type(self).closed += 1
        self.is_open = False


class FreezingFile(FrameSource):
    """The real file source (PyAV container, file descriptors), frozen after ``good`` frames."""

    opened = 0
    closed = 0

    def __init__(self, path, good: int = 2):
        self.inner = FileSource(path)
        self.name = f"freezing {path}"
        self.good = good
        self.last: Frame | None = None

    def open(self) -> None:
        self.inner.open()
        type(self).opened += 1

    def read(self) -> Frame | None:
        if self.last is None or self.last.index < self.good - 1:
            frame = self.inner.read()
            if frame is not None:
                self.last = Frame(frame.rgb, time.monotonic(), frame.index)
                return self.last
        return Frame(self.last.rgb, time.monotonic(), self.last.index)

    def close(self) -> None:
        if self.inner._frames is not None:
            type(self).closed += 1
        self.inner.close()
