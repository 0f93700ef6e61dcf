"""SSD anchor generation for the MediaPipe BlazeFace detectors.

This mirrors MediaPipe's ``SsdAnchorsCalculator`` for the options that the two
face detectors use. Source of every constant: ``mediapipe/modules/face_detection/
face_detection_short_range.pbtxt`` and ``face_detection_full_range.pbtxt``
(mediapipe 0.10.14):

* short range, 128x128 input: 4 layers, strides 8, 16, 16, 16, one aspect ratio
  1.0 and an interpolated scale per layer (2 anchors per cell), fixed anchor size,
  anchor offset 0.5 -> 16*16*2 + 8*8*6 = 896 anchors;
* full range, 192x192 input: 1 layer, stride 4, no interpolated scale
  (``interpolated_scale_aspect_ratio: 0``), fixed anchor size, offset 0.5
  -> 48*48*1 = 2304 anchors.

With ``fixed_anchor_size`` every anchor has width = height = 1, so only the
centres matter for decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorSpec:
    """SsdAnchorsCalculator options for one BlazeFace variant.

    ``strides`` are in input pixels; ``anchors_per_cell`` is 2 when the layer has
    an interpolated scale next to aspect ratio 1.0 (short range) and 1 otherwise.
    Consecutive layers with the same stride share one feature map, as in MediaPipe.
    """

    input_size: int
    strides: tuple[int, ...]
    anchors_per_cell: int
    offset: float = 0.5


# face_detection_short_range.pbtxt
SHORT_RANGE = AnchorSpec(input_size=128, strides=(8, 16, 16, 16), anchors_per_cell=2)
# face_detection_full_range.pbtxt
FULL_RANGE = AnchorSpec(input_size=192, strides=(4,), anchors_per_cell=1)


def feature_maps(spec: AnchorSpec) -> list[tuple[int, int]]:
    """The feature maps the anchors sit on, in output order: ``(side, anchors per cell)``.

    Consecutive layers with the same stride are merged into one feature map, as in
    MediaPipe: short range -> [(16, 2), (8, 6)], full range -> [(48, 1)]. Each is one
    output head of the model (its own RESHAPE before the heads are concatenated).
    """
    maps = []
    layer = 0
    while layer < len(spec.strides):
        stride = spec.strides[layer]
        same = 0
        while layer + same < len(spec.strides) and spec.strides[layer + same] == stride:
            same += 1
        maps.append((int(np.ceil(spec.input_size / stride)), spec.anchors_per_cell * same))
        layer += same
    return maps


def generate_anchors(spec: AnchorSpec) -> np.ndarray:
    """Anchor centres for ``spec``.

    Returns:
        float32 array of shape (N, 2): (x_center, y_center) normalised to [0, 1]
        of the model input, in the order the model's regressors use
        (layer by layer, row-major over the feature map, anchors of a cell adjacent).
    """
    centres: list[np.ndarray] = []
    for size, per_cell in feature_maps(spec):
        ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        cx = (xs.ravel() + spec.offset) / size
        cy = (ys.ravel() + spec.offset) / size
        grid = np.stack([cx, cy], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)
