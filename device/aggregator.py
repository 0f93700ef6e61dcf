"""Window aggregation and minimum-group-size suppression (pure; no clock, no I/O).

Frames are assigned to consecutive windows ``[t0 + k*W, t0 + (k+1)*W)`` on the source's
own timeline (monotonic clock for live sources, presentation time for files), where
``t0`` is the first frame's timestamp. A window closes when a frame at or after its end
arrives, or when :meth:`WindowAggregator.flush` is called at the end of a file. Windows
in which no frame was analysed produce nothing.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from device.types import FrameResult


@dataclass(frozen=True)
class WindowSummary:
    """The group-level figures of one closed window.

    Attributes:
        start, end: window bounds on the source timeline, seconds.
        frames_analyzed: frames analysed in the window (>= 1).
        faces_present: median faces per analysed frame, rounded half up.
        faces_present_max: most faces in any analysed frame.
        engagement_score: share of the window's face detections whose orientation could
            be called that faced the front, in [0, 1], rounded to 3 decimals; None when
            suppressed.
        suppressed: True when ``faces_present < min_group_size`` or fewer faces than that
            could be called (:func:`summarize`).
    """

    start: float
    end: float
    frames_analyzed: int
    faces_present: int
    faces_present_max: int
    engagement_score: float | None
    suppressed: bool


def summarize(results: list[FrameResult], start: float, end: float, min_group_size: int) -> WindowSummary:
    """Aggregate the frames of one window.

    The facing-front share is taken over the faces whose orientation could be called
    (``faces - undecided`` per frame; :func:`device.orientation.call`): a face too small and
    too near a limit to call is present but neither facing nor not facing. The score is
    withheld when fewer than ``min_group_size`` faces are present, and also when fewer than
    that many (median per frame) could be called, so the share never rests on fewer people
    than a published score may.

    Args:
        results: the window's analysed frames (at least one).
        start, end: window bounds in seconds.
        min_group_size: fewest faces (median per frame) for which a score is given.

    Raises:
        ValueError: when ``results`` is empty.
    """
    if not results:
        raise ValueError("a window needs at least one analysed frame")
    counts = [r.faces for r in results]
    decided = [r.faces - r.undecided for r in results]
    present = math.floor(statistics.median(counts) + 0.5)
    called = math.floor(statistics.median(decided) + 0.5)
    suppressed = present < min_group_size or called < min_group_size or sum(decided) == 0
    score = None if suppressed else round(sum(r.facing_front for r in results) / sum(decided), 3)
    return WindowSummary(start, end, len(results), present, max(counts), score, suppressed)


class WindowAggregator:
    """Collects :class:`FrameResult` values into fixed windows.

    Args:
        window_s: window length in seconds (> 0).
        min_group_size: see :func:`summarize`.
    """

    def __init__(self, window_s: float, min_group_size: int):
        if window_s <= 0:
            raise ValueError(f"window length must be positive, got {window_s}")
        self.window_s = window_s
        self.min_group_size = min_group_size
        self._origin: float | None = None
        self._index = 0
        self._results: list[FrameResult] = []

    def _bounds(self, index: int) -> tuple[float, float]:
        assert self._origin is not None
        return self._origin + index * self.window_s, self._origin + (index + 1) * self.window_s

    def add(self, result: FrameResult) -> list[WindowSummary]:
        """Add one analysed frame; returns the windows it closed (zero or one).

        A frame whose timestamp is earlier than the open window (a source that went
        back in time) is counted in the open window rather than dropped.
        """
        if self._origin is None:
            self._origin = result.timestamp
        closed = []
        index = max(self._index, math.floor((result.timestamp - self._origin) / self.window_s))
        if index > self._index:
            if self._results:
                closed.append(summarize(self._results, *self._bounds(self._index), self.min_group_size))
            self._results = []
            self._index = index
        self._results.append(result)
        return closed

    def flush(self, end: float | None = None) -> list[WindowSummary]:
        """Close the open window (end of a file or shutdown); ``end`` caps its end time."""
        if not self._results:
            return []
        start, nominal_end = self._bounds(self._index)
        stop = nominal_end if end is None else max(start, min(end, nominal_end))
        summary = summarize(self._results, start, stop, self.min_group_size)
        self._results = []
        self._index += 1
        return [summary]

    def reset(self) -> None:
        """Drop the open window without publishing it (stale frames, pause)."""
        self._results = []
        self._origin = None
        self._index = 0
