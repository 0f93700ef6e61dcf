"""One BlazeFace inference: a square uint8 RGB input in, normalised candidates out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.detector.anchors import FULL_RANGE, SHORT_RANGE, AnchorSpec, feature_maps, generate_anchors
from device.detector.decode import NUM_COORDS, decode_batch
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
    """uint8 (S, S, 3) RGB to float32 (1, S, S, 3) in [-1, 1] (see :func:`scale_into`)."""
    out = np.empty((1, *rgb.shape), np.float32)
    scale_into(rgb[None], out)
    return out


def scale_into(rgbs: np.ndarray, out: np.ndarray) -> None:
    """uint8 RGB pixels to float32 in [-1, 1], written into ``out`` (float32, same shape).

    MediaPipe's face graphs convert with ``output_tensor_float_range {min: -1 max: 1}``:
    ``x / 127.5 - 1``, done in place in float32.
    """
    np.divide(rgbs, np.float32(127.5), out=out, dtype=np.float32)
    np.subtract(out, np.float32(1.0), out=out)


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


def fill_input(rgbs: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    """Write the model input values of uint8 pixels ``rgbs`` into ``out`` (same shape).

    A float32 input is computed in place (:func:`scale_into`: two vectorised passes,
    about 4x faster than a float32 gather here); a quantized input goes through ``lut``
    (:func:`input_lut`), one gather. The values equal ``lut[rgbs]`` either way.
    """
    if out.dtype == np.float32:
        scale_into(rgbs, out)
    else:
        np.take(lut, rgbs, out=out, mode="wrap")


def unstack(output: np.ndarray, count: int, heads: list[int]) -> np.ndarray:
    """Split a batched BlazeFace output into one row per input.

    Each head of the model reshapes its feature map with a fixed ``[1, -1, C]`` and the
    heads are then concatenated along axis 1. With B inputs in one invoke every head
    therefore gives (1, B x anchors, C) with the inputs one after another, and the
    concatenation puts head after head: ``[head 0: input 0..B-1][head 1: input 0..B-1]``.

    Args:
        output: (1, B x N, C) as the interpreter returns it.
        count: B, the number of inputs.
        heads: anchors per head in output order (:func:`feature_maps`), summing to N.

    Returns:
        (B, N, C), each input's anchors in the model's own order (a view for one head).
    """
    parts, start = [], 0
    for anchors in heads:
        parts.append(output[0, start : start + count * anchors].reshape(count, anchors, -1))
        start += count * anchors
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


class BlazeFace:
    """A loaded BlazeFace model and its anchors.

    Args:
        model: the loaded interpreter wrapper; input (1, S, S, 3), outputs
            (1, N, 16) regressors and (1, N, 1) classificators in either order.
        variant: ``VARIANTS["short"]`` or ``VARIANTS["full"]``.
        max_batch: most inputs run in one invoke (:meth:`raw_batch`), by resizing the
            input's batch dimension (bit-identical outputs on the CPU). 1 runs one input per
            invoke (the Edge TPU's compiled model has fixed shapes). Each input more per
            invoke costs memory: about 3 MB for the float full-range model, under 1 MB int8.

    Raises:
        ValueError: when the model's input size or anchor count does not fit the variant.
    """

    def __init__(self, model: TFLiteModel, variant: Variant, max_batch: int = 1):
        self.model = model
        self.variant = variant
        self.max_batch = max(1, max_batch)
        self.anchors = generate_anchors(variant.anchors)
        self._heads = [side * side * per_cell for side, per_cell in feature_maps(variant.anchors)]
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

    def infer_batch(self, rgbs: np.ndarray, min_score: float | None = None):
        """Run the model on B square inputs.

        Args:
            rgbs: uint8 (B, S, S, 3) RGB, S = :attr:`input_size`.
            min_score: confidence threshold; the graph's own when None.

        Returns:
            ``(index, boxes, keypoints, scores)``: which input each candidate comes from,
            then candidates normalised to their input, see
            :func:`device.detector.decode.decode_batch`.
        """
        regressors, logits = self.raw_batch(rgbs)
        threshold = self.variant.min_score if min_score is None else min_score
        return decode_batch(regressors, logits, self.anchors, self.input_size, threshold)

    def raw(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One inference, undecoded.

        Args:
            rgb: uint8 (S, S, 3) RGB, S = :attr:`input_size`.

        Returns:
            ``(regressors, logits)``: float32 (N, 16) box and keypoint offsets in input
            pixels and float32 (N,) score logits, N = the anchor count.
        """
        regressors, logits = self.raw_batch(rgb[None])
        return regressors[0], logits[0]

    def raw_batch(self, rgbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """B inferences, undecoded, in as few invokes of one size as :attr:`max_batch` allows.

        B inputs go in ``ceil(B / max_batch)`` invokes of equal size (the last one padded
        with zero inputs, whose outputs are dropped): a change of invoke size re-allocates
        the interpreter (:meth:`device.runtime.TFLiteModel.set_batch`), costing milliseconds.
        The pixels are converted (:func:`fill_input`) straight into the interpreter's
        input tensor.

        Args:
            rgbs: uint8 (B, S, S, 3) RGB, S = :attr:`input_size`.

        Returns:
            ``(regressors, logits)``: float32 (B, N, 16) box and keypoint offsets in input
            pixels and float32 (B, N) score logits, N = the anchor count.
        """
        count = len(rgbs)
        invokes = -(-count // self.max_batch)
        size = -(-count // invokes)
        if invokes * size != count:
            rgbs = np.concatenate([rgbs, np.zeros((invokes * size - count, *rgbs.shape[1:]), rgbs.dtype)])
        self.model.set_batch(size)
        parts = [self._invoke(rgbs[start : start + size]) for start in range(0, invokes * size, size)]
        if len(parts) == 1:
            return parts[0]
        return (np.concatenate([p[0] for p in parts])[:count], np.concatenate([p[1] for p in parts])[:count])

    def _invoke(self, rgbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One invoke of exactly :attr:`model.batch <device.runtime.TFLiteModel.batch>` inputs:
        uint8 (b, S, S, 3) in, float32 (b, N, 16) and (b, N) out."""
        fill_input(rgbs, self._lut, self.model.input_buffer())
        outputs = self.model.invoke()
        regressors = next(o for o in outputs if o.shape[-1] == NUM_COORDS)
        logits = next(o for o in outputs if o.shape[-1] == 1)
        count = len(rgbs)
        return unstack(regressors, count, self._heads), unstack(logits, count, self._heads)[..., 0]
