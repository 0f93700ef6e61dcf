"""Anchor generation, decoding, weighted NMS and tiling on arrays with known answers."""

import numpy as np
import pytest

from device.detector.anchors import FULL_RANGE, SHORT_RANGE, generate_anchors
from device.detector.decode import decode, sigmoid
from device.detector.nms import iou, weighted_nms
from device.detector.tiling import (
    Letterbox,
    Tile,
    crossing_inner_edges,
    letterbox,
    regions_to_frame,
    tile_grid,
)


def to_frame(points: np.ndarray, box: Letterbox, tile: Tile) -> np.ndarray:
    """Oracle: one region's points, normalised to the model input, in frame pixels (float32)."""
    px = points * box.size
    x = (px[..., 0] - box.pad_x) / box.scale + tile.x0
    y = (px[..., 1] - box.pad_y) / box.scale + tile.y0
    return np.stack([x, y], axis=-1).astype(np.float32)


def crosses_inner_edge(box: np.ndarray, tile: Tile, width: int, height: int, margin: float) -> bool:
    """Oracle: one box, one tile, written the plain way."""
    return bool(
        (tile.x0 > 0 and box[0] < tile.x0 - margin)
        or (tile.y0 > 0 and box[1] < tile.y0 - margin)
        or (tile.x1 < width and box[2] > tile.x1 + margin)
        or (tile.y1 < height and box[3] > tile.y1 + margin)
    )


def test_anchor_counts_and_centres_match_mediapipe():
    short = generate_anchors(SHORT_RANGE)
    full = generate_anchors(FULL_RANGE)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # short range: first layer 16x16 cells, 2 anchors each, centre of cell (0,0) = 0.5/16
    np.testing.assert_allclose(short[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[1], short[0])
    np.testing.assert_allclose(short[2], [1.5 / 16, 0.5 / 16])
    # then 8x8 cells with 6 anchors each (three layers of stride 16 merged)
    np.testing.assert_allclose(short[512:518], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    np.testing.assert_allclose(full[-1], [47.5 / 48, 47.5 / 48])


def test_decode_places_box_and_keypoints_relative_to_anchor():
    anchors = np.array([[0.25, 0.5], [0.75, 0.75]], np.float32)
    reg = np.zeros((2, 16), np.float32)
    reg[1, :4] = [19.2, -9.6, 38.4, 19.2]  # offsets in 192-px input units
    reg[1, 4:6] = [-19.2, 0.0]
    logits = np.array([-5.0, 3.0], np.float32)
    boxes, kps, scores = decode(reg, logits, anchors, 192, 0.5)
    assert boxes.shape == (1, 4) and kps.shape == (1, 6, 2)
    np.testing.assert_allclose(boxes[0], [0.85 - 0.1, 0.70 - 0.05, 0.85 + 0.1, 0.70 + 0.05], atol=1e-6)
    np.testing.assert_allclose(kps[0, 0], [0.65, 0.75], atol=1e-6)
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-3.0))], rtol=1e-6)


def test_decode_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="do not match"):
        decode(np.zeros((10, 16)), np.zeros(10), np.zeros((11, 2), np.float32), 128, 0.5)


def test_sigmoid_clips_without_overflow():
    with np.errstate(over="raise"):
        out = sigmoid(np.array([-1e4, 0.0, 1e4]))
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0], atol=1e-30)


def test_weighted_nms_blends_overlapping_and_keeps_separate():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    kps = np.stack([np.full((6, 2), v, np.float32) for v in (0.0, 3.0, 55.0)])
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    b, k, s = weighted_nms(boxes, kps, scores)
    assert len(s) == 2
    np.testing.assert_allclose(s, [0.9, 0.8])
    # blended: weights 0.75 / 0.25
    np.testing.assert_allclose(b[0], [0.25, 0, 10.25, 10], atol=1e-5)
    np.testing.assert_allclose(k[0], np.full((6, 2), 0.75), atol=1e-5)
    np.testing.assert_allclose(b[1], boxes[2])


def test_containment_merges_a_box_inside_a_bigger_one():
    boxes = np.array([[0, 0, 30, 30], [10, 10, 26, 26]], np.float32)  # IoU 0.28, inside
    kps = np.zeros((2, 6, 2), np.float32)
    scores = np.array([0.7, 0.65], np.float32)
    assert float(iou(boxes[0], boxes[1:])[0]) < 0.3
    assert len(weighted_nms(boxes, kps, scores)[2]) == 2
    assert len(weighted_nms(boxes, kps, scores, containment_threshold=0.5)[2]) == 1


def test_tile_grid_covers_frame_with_overlap():
    tiles = tile_grid(480, 270, 160, 48)
    assert {(t.width, t.height) for t in tiles} == {(160, 160)}
    xs = sorted({t.x0 for t in tiles})
    ys = sorted({t.y0 for t in tiles})
    assert xs[0] == 0 and xs[-1] + 160 == 480 and ys[0] == 0 and ys[-1] + 160 == 270
    assert all(b - a <= 160 - 48 for a, b in zip(xs, xs[1:]))
    assert all(b - a <= 160 - 48 for a, b in zip(ys, ys[1:]))
    assert tile_grid(100, 80, 160, 48) == [Tile(0, 0, 100, 80)]
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(480, 270, 160, 160)


def test_letterbox_round_trip_maps_input_points_back_to_frame_pixels():
    tile = Tile(100, 50, 580, 320)  # 480 x 270
    box = letterbox(tile.width, tile.height, 192)
    assert (box.new_w, box.new_h) == (192, 108) and (box.pad_x, box.pad_y) == (0, 42)
    # the frame point (340, 185) = tile centre lands at the input centre
    one = np.zeros(1, np.int64)
    centre = regions_to_frame(np.array([[0.5, 0.5]], np.float32), one, [box], [tile])
    np.testing.assert_allclose(centre, [[340.0, 185.0]], atol=1.0)
    # input top-left of the picture area is the tile's top-left
    corner = regions_to_frame(np.array([[0.0, 42 / 192]], np.float32), one, [box], [tile])
    np.testing.assert_allclose(corner, [[100.0, 50.0]], atol=1e-3)


def test_crosses_inner_edge_only_for_edges_inside_the_frame():
    tiles = [Tile(0, 0, 160, 160)]
    boxes = np.array([[150, 10, 175, 30], [-5, 10, 20, 30], [140, 10, 162, 30]], np.float32)
    crossing = crossing_inner_edges(boxes, np.zeros(3, np.int64), tiles, 480, 270, margin=5)
    assert crossing.tolist() == [True, False, False]


def test_mapping_all_regions_at_once_equals_tile_by_tile():
    rng = np.random.default_rng(5)
    tiles = tile_grid(480, 270, 160, 48) + [Tile(0, 0, 480, 270)]
    boxes = [letterbox(t.width, t.height, 192) for t in tiles]
    index = np.sort(rng.integers(0, len(tiles), 300))
    points = rng.uniform(-0.2, 1.2, (300, 6, 2)).astype(np.float32)
    mapped = regions_to_frame(points, index, boxes, tiles)
    assert mapped.dtype == np.float32
    assert np.array_equal(mapped, np.stack([to_frame(p, boxes[i], tiles[i]) for p, i in zip(points, index)]))
    corners = mapped[:, :2].reshape(-1, 4)
    crossing = crossing_inner_edges(corners, index, tiles, 480, 270, margin=12.0)
    assert 0 < crossing.sum() < len(index)
    assert crossing.tolist() == [crosses_inner_edge(b, tiles[i], 480, 270, 12.0) for b, i in zip(corners, index)]
    empty = np.zeros(0, np.int64)
    assert regions_to_frame(np.zeros((0, 6, 2), np.float32), empty, boxes, tiles).shape == (0, 6, 2)
    assert crossing_inner_edges(np.zeros((0, 4), np.float32), empty, tiles, 480, 270, 12.0).shape == (0,)
