"""Tiles and letterboxing: where each model input comes from in the frame.

A classroom camera sees faces of 15-30 px in a 480x270 to 1920x1080 frame; a
detector with a 128 or 192 px input that sees the whole frame shrinks them below
what it can find. The frame is therefore cut into overlapping square tiles, each
resized to the model input, and detections are mapped back into frame pixels.
Non-square regions are letterboxed (aspect ratio kept, centred, zero padding, as
MediaPipe's ``ImageToTensorCalculator`` with ``keep_aspect_ratio: true``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """A rectangle of the frame, in integer pixels, ``x1``/``y1`` exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class Letterbox:
    """How a region of ``width`` x ``height`` pixels maps into a square model input.

    ``scale`` is input pixels per region pixel; ``pad_x``/``pad_y`` the padding in
    input pixels on the left/top; ``size`` the input side; ``new_w``/``new_h`` the
    resized region inside the input.
    """

    size: int
    scale: float
    new_w: int
    new_h: int
    pad_x: int
    pad_y: int


def letterbox(width: int, height: int, size: int) -> Letterbox:
    """Fit ``width`` x ``height`` pixels into a ``size`` x ``size`` input, keeping aspect.

    Raises:
        ValueError: for a region with no pixels.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"cannot letterbox an empty region {width}x{height}")
    scale = size / max(width, height)
    new_w = max(1, min(size, round(width * scale)))
    new_h = max(1, min(size, round(height * scale)))
    return Letterbox(size, scale, new_w, new_h, (size - new_w) // 2, (size - new_h) // 2)


def tile_grid(width: int, height: int, tile: int, overlap: int) -> list[Tile]:
    """Overlapping square tiles covering a ``width`` x ``height`` frame.

    Tiles are ``tile`` pixels square (smaller only where the frame is), spread evenly so
    that neighbours overlap by at least ``overlap`` pixels: a face narrower than the
    overlap lies wholly inside at least one tile.

    Raises:
        ValueError: when ``overlap`` is not smaller than ``tile`` or a size is not positive.
    """
    if tile <= 0 or width <= 0 or height <= 0:
        raise ValueError(f"tile {tile} and frame {width}x{height} must be positive")
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be in [0, {tile})")
    xs = _starts(width, tile, overlap)
    ys = _starts(height, tile, overlap)
    tw, th = min(tile, width), min(tile, height)
    return [Tile(x, y, x + tw, y + th) for y in ys for x in xs]


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def regions_to_frame(points: np.ndarray, index: np.ndarray, boxes: list[Letterbox], tiles: list[Tile]) -> np.ndarray:
    """Map points normalised to [0, 1] of their region's model input into frame pixels.

    Args:
        points: float32 (K, ..., 2) ``(x, y)`` normalised to the model input.
        index: int (K,) which region each of the K point sets comes from.
        boxes: per region, where it was letterboxed into the model input (:func:`letterbox`).
        tiles: per region, where it was cut from the frame.

    Returns:
        float32 array of the same shape, in frame pixels:
        ``(p * size - pad) / scale + tile origin`` per axis.
    """
    size = np.float32(boxes[0].size)
    per_region = np.array([(b.pad_x, b.pad_y, b.scale, t.x0, t.y0) for b, t in zip(boxes, tiles)], np.float32)
    pad_x, pad_y, scale, x0, y0 = (c.reshape((-1,) + (1,) * (points.ndim - 2)) for c in per_region[index].T)
    px = points.astype(np.float32, copy=False) * size
    x = (px[..., 0] - pad_x) / scale + x0
    y = (px[..., 1] - pad_y) / scale + y0
    return np.stack([x, y], axis=-1)


def crossing_inner_edges(
    boxes: np.ndarray, index: np.ndarray, tiles: list[Tile], width: int, height: int, margin: float
) -> np.ndarray:
    """Which boxes leave their tile through an edge inside the frame: bool (K,).

    Such a detection is a face cut by the tile, which a neighbouring tile sees whole.
    ``margin`` pixels of spill are tolerated (boxes are loose around the face).

    Args:
        boxes: float32 (K, 4) ``(x0, y0, x1, y1)`` in frame pixels.
        index: int (K,) which of ``tiles`` each box comes from.
        tiles: the regions; width, height: the frame size in pixels; margin: pixels.
    """
    edges = np.array([(t.x0, t.y0, t.x1, t.y1) for t in tiles], np.int64)[index]
    inner = (edges[:, 0] > 0, edges[:, 1] > 0, edges[:, 2] < width, edges[:, 3] < height)
    return (
        (inner[0] & (boxes[:, 0] < edges[:, 0] - margin))
        | (inner[1] & (boxes[:, 1] < edges[:, 1] - margin))
        | (inner[2] & (boxes[:, 2] > edges[:, 2] + margin))
        | (inner[3] & (boxes[:, 3] > edges[:, 3] + margin))
    )
