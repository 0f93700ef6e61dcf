"""One BlazeFace inference: a square uint8 RGB input in, normalised candidates out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.detector.anchors import FULL_RANGE, SHORT_RANGE, AnchorSpec, generate_anchors
from device.detector.decode import NUM_COORDS, decode
from device.runtime import TFLiteModel, quantize


@dataclass(frozen=True)
class Variant:
    """A BlazeFace model family.

    ``min_score`` is ``TensorsToDetectionsCalculator.min_score_thresh`` of the graph
    (face_detection_short_range.pbtxt: 0.5; face_detection_full_range.pbtxt: 0.6).
    """

    name: str
    anchors: AnchorSpec
    min_score: float


VARIANTS = {
    "short": Variant("short", SHORT_RANGE, 0.5),
    "full": Variant("full", FULL_RANGE, 0.6),
}


def to_input(rgb: np.ndarray) -> np.ndarray:
    """uint8 (S, S, 3) RGB to float32 (1, S, S, 3) in [-1, 1].

    MediaPipe's face graphs convert with ``output_tensor_float_range {min: -1 max: 1}``.
    """
    return (rgb.astype(np.float32) / 127.5 - 1.0)[None]


def input_lut(model: TFLiteModel) -> np.ndarray:
    """The model's input value for each uint8 pixel value: (256,) of the input dtype.

    :func:`to_input` and, for a quantized input, :func:`device.runtime.quantize` are
    element-wise, so indexing this table with a uint8 image gives exactly their result
    in one pass (a 192x192x3 tile: one gather instead of four float array operations).
    """
    values = to_input(np.arange(256, dtype=np.uint8).reshape(16, 16, 1))[0].reshape(256)
    if model.input_dtype in (np.int8, np.uint8):
        scale, zero = model.input_quantization
        return quantize(values, scale, zero, model.input_dtype)
    return values.astype(model.input_dtype)


class BlazeFace:
    """A loaded BlazeFace model and its anchors.

    Args:
        model: the loaded interpreter wrapper; input (1, S, S, 3), outputs
            (1, N, 16) regressors and (1, N, 1) classificators in either order.
        variant: ``VARIANTS["short"]`` or ``VARIANTS["full"]``.

    Raises:
        ValueError: when the model's input size or anchor count does not fit the variant.
    """

    def __init__(self, model: TFLiteModel, variant: Variant):
        self.model = model
        self.variant = variant
        self.anchors = generate_anchors(variant.anchors)
        self._lut = input_lut(model)
        size = variant.anchors.input_size
        if model.input_shape != (1, size, size, 3):
            raise ValueError(
                f"model input {model.input_shape} is not (1, {size}, {size}, 3) "
                f"as the {variant.name}-range BlazeFace needs"
            )

    @property
    def input_size(self) -> int:
        return self.variant.anchors.input_size

    def infer(self, rgb: np.ndarray, min_score: float | None = None):
        """Run the model on one square input.

        Args:
            rgb: uint8 (S, S, 3) RGB, S = :attr:`input_size`.
            min_score: confidence threshold; the graph's own when None.

        Returns:
            ``(boxes, keypoints, scores)`` normalised to the input, see :func:`decode`.
        """
        regressors, logits = self.raw(rgb)
        threshold = self.variant.min_score if min_score is None else min_score
        return decode(regressors, logits, self.anchors, self.input_size, threshold)

    def raw(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One inference, undecoded.

        Args:
            rgb: uint8 (S, S, 3) RGB, S = :attr:`input_size`.

        Returns:
            ``(regressors, logits)``: float32 (N, 16) box and keypoint offsets in input
            pixels and float32 (N,) score logits, N = the anchor count.
        """
        outputs = self.model.invoke(self._lut[rgb][None])
        regressors = next(o for o in outputs if o.shape[-1] == NUM_COORDS)
        logits = next(o for o in outputs if o.shape[-1] == 1)
        return regressors[0], logits[0, :, 0]
