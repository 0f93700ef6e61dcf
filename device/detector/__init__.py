"""Face detector: tiles + letterbox -> BlazeFace -> decode -> weighted NMS in frame pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from device.detector.blazeface import BlazeFace
from device.detector.nms import weighted_nms
from device.detector.tiling import Letterbox, Tile, crosses_inner_edge, letterbox, tile_grid, to_frame
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
    region = rgb[tile.y0 : tile.y1, tile.x0 : tile.x1]
    box = letterbox(tile.width, tile.height, size)
    resized = Image.fromarray(region).resize((box.new_w, box.new_h), Image.Resampling.BILINEAR)
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[box.pad_y : box.pad_y + box.new_h, box.pad_x : box.pad_x + box.new_w] = np.asarray(resized)
    return canvas, box


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

        Args:
            rgb: uint8 (H, W, 3) RGB frame.

        Returns:
            Detections in frame pixels, best score first.
        """
        height, width = rgb.shape[:2]
        all_boxes, all_kps, all_scores = [], [], []
        margin = self.tiling.overlap / 4
        for tile in self.regions(width, height):
            inp, box = letterboxed_input(rgb, tile, self.model.input_size)
            boxes, kps, scores = self.model.infer(inp, self.min_score)
            if not len(scores):
                continue
            boxes = to_frame(boxes.reshape(-1, 2, 2), box, tile).reshape(-1, 4)
            kps = to_frame(kps, box, tile)
            keep = [not crosses_inner_edge(b, tile, width, height, margin) for b in boxes]
            all_boxes.append(boxes[keep])
            all_kps.append(kps[keep])
            all_scores.append(scores[keep])
        if not all_scores:
            return []
        boxes, kps, scores = weighted_nms(
            np.concatenate(all_boxes),
            np.concatenate(all_kps),
            np.concatenate(all_scores),
            containment_threshold=self.tiling.containment,
        )
        return [Detection(b, float(s), k) for b, k, s in zip(boxes, kps, scores)]
