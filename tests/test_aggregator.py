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


def test_undecided_faces_are_present_but_out_of_the_share():
    # 4 faces per frame, one of them undecided: share over the 3 called ones
    s = summarize([FrameResult(0.0, 4, 2, 1), FrameResult(0.5, 4, 3, 1)], 0.0, 1.0, 3)
    assert s.faces_present == 4 and s.engagement_score == round(5 / 6, 3) and not s.suppressed


def test_too_few_decided_faces_suppress_the_score():
    # 5 present but only 2 called (median): the share would rest on 2 people
    s = summarize([FrameResult(0.0, 5, 2, 3), FrameResult(0.5, 5, 1, 3)], 0.0, 1.0, 3)
    assert s.faces_present == 5 and s.suppressed and s.engagement_score is None
    s = summarize([FrameResult(0.0, 3, 0, 3)], 0.0, 1.0, 1)
    assert s.suppressed and s.engagement_score is None


def test_frame_result_of_faces_counts_decided_and_undecided():
    import numpy as np

    from device.types import Detection, Face, HeadPose

    det = Detection(np.zeros(4, np.float32), 0.9, np.zeros((5, 2), np.float32))
    pose = HeadPose(0.0, 0.0, 0.0)
    faces = [Face(det, pose, True), Face(det, pose, False), Face(det, pose, True, decided=False),
             Face(det, pose, False, decided=False)]
    assert FrameResult.of(1.5, faces) == FrameResult(1.5, 4, 1, 2)
