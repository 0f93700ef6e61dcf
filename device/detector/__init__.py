"""Face detector: tiles + letterbox -> BlazeFace -> decode -> weighted NMS in frame pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from device.detector.blazeface import BlazeFace
from device.detector.nms import weighted_nms
from device.detector.tiling import Letterbox, Tile, crossing_inner_edges, letterbox, regions_to_frame, tile_grid
from device.types import Detection


@dataclass(frozen=True)
class TilingOptions:
    """How the frame is cut.

    Attributes:
        tile: tile side in frame pixels; 0 disables tiling (one letterboxed pass).
        overlap: overlap between neighbouring tiles in frame pixels; faces narrower than
            this are always whole in at least one tile.
        full_frame: also run one letterboxed pass over the whole frame, for faces
            larger than a tile.
        containment: detections from different tiles whose intersection covers more than
            this share of the smaller box are merged (see :func:`weighted_nms`).
    """

    tile: int = 160
    overlap: int = 48
    full_frame: bool = True
    containment: float = 0.5


def letterboxed_input(rgb: np.ndarray, tile: Tile, size: int) -> tuple[np.ndarray, Letterbox]:
    """Cut ``tile`` out of an (H, W, 3) uint8 frame and letterbox it to (size, size, 3) uint8."""
    canvas = np.zeros((size, size, 3), np.uint8)
    return canvas, letterbox_into(rgb, tile, canvas)


def letterbox_into(rgb: np.ndarray, tile: Tile, canvas: np.ndarray) -> Letterbox:
    """Cut ``tile`` out of an (H, W, 3) uint8 frame and resize it into ``canvas``.

    Args:
        rgb: uint8 (H, W, 3) frame.
        tile: the region to cut.
        canvas: uint8 (S, S, 3), written in place; only the resized region is written,
            so its padding must already be zero (a fresh or reused canvas of one tile).

    Returns:
        Where the region landed in the canvas.
    """
    box = letterbox(tile.width, tile.height, canvas.shape[0])
    region = rgb[tile.y0 : tile.y1, tile.x0 : tile.x1]
    resized = Image.fromarray(region).resize((box.new_w, box.new_h), Image.Resampling.BILINEAR)
    canvas[box.pad_y : box.pad_y + box.new_h, box.pad_x : box.pad_x + box.new_w] = np.asarray(resized)
    return box


class FaceDetector:
    """Finds faces in whole frames.

    Args:
        model: the BlazeFace model.
        tiling: how to cut frames.
        min_score: confidence threshold; the model graph's own when None.
    """

    def __init__(self, model: BlazeFace, tiling: TilingOptions = TilingOptions(), min_score: float | None = None):
        self.model = model
        self.tiling = tiling
        self.min_score = min_score
        self._inputs = np.zeros((0, model.input_size, model.input_size, 3), np.uint8)
        self._inputs_for: tuple[int, int] | None = None

    def regions(self, width: int, height: int) -> list[Tile]:
        """The tiles (and the whole frame, when enabled) that one frame is run through."""
        whole = Tile(0, 0, width, height)
        if self.tiling.tile <= 0:
            return [whole]
        tiles = tile_grid(width, height, self.tiling.tile, self.tiling.overlap)
        if self.tiling.full_frame and tiles != [whole]:
            tiles.append(whole)
        return tiles

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces in one frame.

        All regions of the frame are letterboxed into one (B, S, S, 3) uint8 array (kept
        between frames), run through the model a few per invoke
        (:attr:`BlazeFace.max_batch <device.detector.blazeface.BlazeFace.max_batch>`),
        decoded, mapped back to frame pixels and filtered in one pass over all regions, and
        merged.

        Args:
            rgb: uint8 (H, W, 3) RGB frame.

        Returns:
            Detections in frame pixels, best score first.
        """
        height, width = rgb.shape[:2]
        regions = self.regions(width, height)
        canvas = self._canvas((width, height), len(regions))
        boxes_in = [letterbox_into(rgb, tile, canvas[i]) for i, tile in enumerate(regions)]
        index, boxes, kps, scores = self.model.infer_batch(canvas, self.min_score)
        boxes = regions_to_frame(boxes.reshape(-1, 2, 2), index, boxes_in, regions).reshape(-1, 4)
        kps = regions_to_frame(kps, index, boxes_in, regions)
        keep = ~crossing_inner_edges(boxes, index, regions, width, height, self.tiling.overlap / 4)
        if not keep.any():
            return []
        boxes, kps, scores = weighted_nms(
            boxes[keep], kps[keep], scores[keep], containment_threshold=self.tiling.containment
        )
        return [Detection(b, float(s), k) for b, k, s in zip(boxes, kps, scores)]

    def _canvas(self, frame_size: tuple[int, int], count: int) -> np.ndarray:
        """The uint8 (count, S, S, 3) model inputs of frames of ``frame_size`` (W, H), kept
        between frames: each region lands in the same place every frame, so the padding
        written as zeros at the first frame stays zero. A new frame size gets a new array."""
        if self._inputs_for != frame_size:
            size = self.model.input_size
            self._inputs = np.zeros((count, size, size, 3), np.uint8)
            self._inputs_for = frame_size
        return self._inputs
