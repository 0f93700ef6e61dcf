"""YuNet decoding, NMS and frame placement on arrays with known answers."""

import numpy as np
import pytest

from device.detector.nms import iou, nms
from device.detector.yunet import decode_head, padded_size, place

SIZES = [(480, 288), (640, 480), (768, 448), (1280, 736), (1920, 1088)]


def rows(table):
    return lambda index: table[index]


def test_decode_one_cell_by_hand():
    # A 4x3 grid at stride 8; only cell (row 1, col 2) scores: sqrt(0.81 * 0.64) = 0.72.
    cols, n = 4, 12
    cls, obj = np.zeros(n, np.float32), np.zeros(n, np.float32)
    cell = 1 * cols + 2
    cls[cell], obj[cell] = 0.81, 0.64
    bbox = np.zeros((n, 4), np.float32)
    bbox[cell] = [0.5, -0.25, np.log(3), np.log(2)]  # centre (2.5, 0.75) cells, size 3 x 2 cells
    kps = np.zeros((n, 10), np.float32)
    kps[cell] = [0, 0, 1, 0, 0.5, 0.5, 0, 1, 1, 1]
    boxes, scores, points = decode_head(cls, obj, rows(bbox), rows(kps), cols, 8, 0.5)
    assert scores == pytest.approx([0.72])
    # centre (20, 6) px, size 24 x 16 px
    assert boxes[0] == pytest.approx([8, -2, 32, 14], abs=1e-4)
    assert points[0] == pytest.approx(np.array([[16, 8], [24, 8], [20, 12], [16, 16], [24, 16]]), abs=1e-5)


def test_decode_threshold_and_clipping():
    cls = np.array([1.2, 0.5, 0.2], np.float32)  # cls above 1 is clipped, as OpenCV does
    obj = np.array([1.0, 0.5, 0.2], np.float32)
    boxes, scores, _ = decode_head(cls, obj, rows(np.zeros((3, 4), np.float32)), rows(np.zeros((3, 10), np.float32)),
                                   3, 16, 0.5)
    assert scores.tolist() == pytest.approx([1.0, 0.5])  # 0.5 is kept (score >= threshold)
    assert boxes.shape == (2, 4)


def test_iou():
    a = np.array([0, 0, 10, 10], np.float32)
    assert iou(a, np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)).tolist() == \
        pytest.approx([1.0, 50 / 150, 0.0])


def test_nms_keeps_best_and_drops_overlaps_above_threshold():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [5, 0, 15, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.7, 0.9, 0.8, 0.6], np.float32)
    # 1 (best) is kept; 0 overlaps it by 0.82 -> dropped; 2 overlaps 1 by 6/14 = 0.43 -> dropped;
    # 3 is apart.
    assert nms(boxes, scores, 0.3).tolist() == [1, 3]
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32)).tolist() == []


def test_nms_compares_integer_truncated_boxes_as_opencv_does():
    # As floats these overlap by 31 / 169 = 0.18 (kept at 0.2); truncated to (x, y, w, h)
    # integers as FaceDetectorYN does, [0, 0, 10, 10] and [6, 0, 16, 10], by 40 / 160 = 0.25.
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [6.9, 0.0, 16.9, 10.0]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert float(iou(boxes[0], boxes[1:])[0]) == pytest.approx(31 / 169)
    assert nms(boxes, scores, 0.2).tolist() == [0]
    assert nms(boxes, scores, 0.26).tolist() == [0, 1]


def test_padded_size():
    assert padded_size(480, 270) == (480, 288)
    assert padded_size(1280, 720) == (1280, 736)
    assert padded_size(1920, 1080) == (1920, 1088)
    assert padded_size(640, 480) == (640, 480)


@pytest.mark.parametrize("frame,model", [
    ((480, 270), (480, 288)), ((640, 480), (640, 480)), ((768, 432), (768, 448)), ((1280, 720), (1280, 736)),
    ((1920, 1080), (1920, 1088)), ((192, 192), (480, 288)), ((700, 300), (768, 448)), ((1000, 200), (1280, 736)),
])
def test_place_picks_the_smallest_model_holding_the_frame_unscaled(frame, model):
    where = place(*frame, SIZES)
    assert where.model_size == model and where.scale == 1.0 and where.resized == frame


def test_place_scales_down_what_no_model_holds():
    still = place(4608, 2592, SIZES)  # a Raspberry Pi Camera Module 3 still
    assert still.model_size == (1920, 1088)
    assert still.scale == pytest.approx(1920 / 4608)
    assert still.resized == (1920, 1080)
    tall = place(1080, 1920, SIZES)  # portrait: 1088 / 1920 of the largest keeps most
    assert tall.model_size == (1920, 1088) and tall.resized == (612, 1088)
    with pytest.raises(ValueError, match="no area"):
        place(0, 10, SIZES)
