"""Windowing, medians and minimum-group-size suppression on known frame results."""

import pytest

from device.aggregator import WindowAggregator, summarize
from device.types import FrameResult


def frames(spec):
    return [FrameResult(t, n, f) for t, n, f in spec]


def test_summary_median_max_and_share_facing_front():
    s = summarize(frames([(0.0, 4, 4), (0.1, 5, 3), (0.2, 4, 2), (0.3, 3, 3)]), 0.0, 1.0, 3)
    assert (s.frames_analyzed, s.faces_present, s.faces_present_max) == (4, 4, 5)
    assert s.engagement_score == round(12 / 16, 3) and not s.suppressed


def test_small_group_is_suppressed():
    s = summarize(frames([(0.0, 2, 2), (0.5, 2, 2)]), 0.0, 1.0, 5)
    assert s.suppressed and s.engagement_score is None and s.faces_present == 2


def test_median_rounds_half_up():
    assert summarize(frames([(0, 4, 0), (1, 5, 0)]), 0, 2, 1).faces_present == 5


def test_three_second_clip_with_one_second_windows_gives_three_windows():
    agg = WindowAggregator(1.0, 1)
    stamps = [round(i / 15, 4) for i in range(45)]  # 45 frames at 15 fps = 3.0 s
    closed = []
    for t in stamps:
        closed += agg.add(FrameResult(t, 4, 4))
    closed += agg.flush(end=stamps[-1] + 1 / 15)
    assert [(w.start, w.end, w.frames_analyzed) for w in closed] == [
        (0.0, 1.0, 15), (1.0, 2.0, 15), (2.0, pytest.approx(3.0, abs=1e-3), 15)]


def test_gap_skips_empty_windows_and_backwards_time_stays_in_open_window():
    agg = WindowAggregator(10.0, 1)
    assert agg.add(FrameResult(100.0, 1, 1)) == []
    assert agg.add(FrameResult(99.0, 1, 0)) == []  # clock went back: counted, not dropped
    closed = agg.add(FrameResult(135.0, 2, 2))  # windows 110-130 had no frames
    assert [(w.start, w.end, w.frames_analyzed) for w in closed] == [(100.0, 110.0, 2)]
    assert [(w.start, w.end) for w in agg.flush()] == [(130.0, 140.0)]
    assert agg.flush() == []


def test_window_length_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        WindowAggregator(0, 5)
