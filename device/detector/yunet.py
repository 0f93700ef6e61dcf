"""YuNet: the face detector family (libfacedetection.train, Apache-2.0; Shiqi Yu et al.).

One pass over the whole frame at its own resolution. The frame goes into the model input
of the smallest built size that holds it, top-left aligned, the rest zero (OpenCV's
``FaceDetectorYN`` pads the same way, bottom and right, to a multiple of 32); a frame that
no built size holds is scaled down, aspect kept, to fit the size that keeps it largest.

Decoding, as ``FaceDetectorYN`` does it (``modules/objdetect/src/face_detect.cpp``) and
as ``models/README.md`` records for the graph: for each stride ``s`` in 8, 16, 32 the model
gives, per cell of the (H/s) x (W/s) grid (one prior per cell, row-major), ``cls`` and
``obj`` (already sigmoid), ``bbox`` (4) and ``kps`` (10):

* score = sqrt(clip(cls, 0, 1) * clip(obj, 0, 1));
* box centre = ((col + b0) * s, (row + b1) * s), size = (exp(b2) * s, exp(b3) * s);
* landmark k = ((col + kps[2k]) * s, (row + kps[2k+1]) * s), in the order right eye,
  left eye, nose tip, right and left mouth corner (of the person).

Candidates scoring at least the threshold go through hard NMS (:func:`device.detector.nms.nms`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from device.detector.nms import NMS_IOU_THRESHOLD, nms
from device.runtime import TFLiteModel, quantize, real_values
from device.types import NUM_KEYPOINTS, Detection

log = logging.getLogger(__name__)

# The three detection heads' strides (YuNet, libfacedetection.train configs; FaceDetectorYN).
STRIDES = (8, 16, 32)
# Input sides must be multiples of the largest stride (FaceDetectorYN's ``divisor``).
DIVISOR = 32
# Output names of the source ONNX graph, kept by the build as the model's signature.
OUTPUT_NAMES = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES)
# Default confidence threshold: see models/README.md ("Choosing the score threshold") for
# the counts on the clips that chose it. FaceDetectorYN's own default is 0.9.
SCORE_THRESHOLD = 0.7
# FaceDetectorYN's default top_k.
TOP_K = 5000


def padded_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` rounded up to multiples of :data:`DIVISOR` (pixels)."""
    return (-(-width // DIVISOR) * DIVISOR, -(-height // DIVISOR) * DIVISOR)


@dataclass(frozen=True)
class Placement:
    """Where a frame goes in a model input.

    Attributes:
        model_size: ``(W, H)`` of the model input, pixels.
        scale: input pixels per frame pixel; 1.0 when the frame goes in as it is,
            below 1 when no model holds it.
        resized: ``(w, h)`` of the frame in the input, pixels (the frame's own size when
            ``scale`` is 1).
    """

    model_size: tuple[int, int]
    scale: float
    resized: tuple[int, int]


def place(width: int, height: int, sizes: list[tuple[int, int]]) -> Placement:
    """Choose the model input for a frame of ``width`` x ``height`` pixels.

    The smallest size (by area) that holds the frame, frame unscaled; when none does, the
    size that lets the frame keep the largest scale (aspect kept), ties to the smaller.

    Args:
        sizes: the built model sizes ``(W, H)``, pixels.

    Raises:
        ValueError: no sizes, or a frame with no pixels.
    """
    if not sizes:
        raise ValueError("no model sizes to choose from")
    if width < 1 or height < 1:
        raise ValueError(f"frame of {width}x{height} pixels has no area")
    holding = [s for s in sizes if s[0] >= width and s[1] >= height]
    if holding:
        size = min(holding, key=lambda s: (s[0] * s[1], s))
        return Placement(size, 1.0, (width, height))
    scale, size = max(((min(w / width, h / height), (w, h)) for w, h in sizes), key=lambda t: (t[0], -t[1][0] * t[1][1]))
    resized = (max(1, min(size[0], int(width * scale))), max(1, min(size[1], int(height * scale))))
    return Placement(size, scale, resized)


def decode_head(cls: np.ndarray, obj: np.ndarray, bbox: Callable[[np.ndarray], np.ndarray],
                kps: Callable[[np.ndarray], np.ndarray], cols: int, stride: int,
                threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one stride's head for the cells scoring at least ``threshold``.

    Args:
        cls, obj: float32 (N,) per-cell probabilities, N = rows x cols, row-major.
        bbox, kps: give the float32 (K, 4) / (K, 10) regression rows of the cells at the
            indices passed (so a quantized model dequantizes only those rows).
        cols: grid columns (input width / stride).
        stride: pixels per cell.
        threshold: least score kept.

    Returns:
        ``(boxes, scores, keypoints)``: float32 (K, 4) ``[x_min, y_min, x_max, y_max]``,
        (K,) and (K, 5, 2), in input pixels.
    """
    score = np.sqrt(np.clip(cls, 0.0, 1.0) * np.clip(obj, 0.0, 1.0))
    index = np.flatnonzero(score >= threshold)
    col = (index % cols).astype(np.float32)
    row = (index // cols).astype(np.float32)
    s = np.float32(stride)
    b = bbox(index)
    cx, cy = (col + b[:, 0]) * s, (row + b[:, 1]) * s
    w, h = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
    x0, y0 = cx - w / np.float32(2), cy - h / np.float32(2)
    boxes = np.stack([x0, y0, x0 + w, y0 + h], axis=1).astype(np.float32)
    k = kps(index).reshape(-1, NUM_KEYPOINTS, 2)
    points = np.stack([(k[..., 0] + col[:, None]) * s, (k[..., 1] + row[:, None]) * s], axis=-1)
    return boxes, score[index].astype(np.float32), points.astype(np.float32)


class YuNetModel:
    """One YuNet model of one input size: pixels in, candidates out.

    Args:
        model: the loaded model; input (1, H, W, 3) RGB, raw 0..255 (float32, or uint8
            with scale 1 and zero point 0 as ``make models`` builds the int8 ones; other
            quantizations are converted per pixel), outputs named :data:`OUTPUT_NAMES`.

    Raises:
        ValueError: the input is not (1, H, W, 3) with H and W multiples of 32, or an
            output is missing.
    """

    def __init__(self, model: TFLiteModel):
        shape = model.input_shape
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or shape[1] % DIVISOR or shape[2] % DIVISOR:
            raise ValueError(f"not a YuNet model input: {shape}, expected (1, H, W, 3), H and W multiples of {DIVISOR}")
        missing = set(OUTPUT_NAMES) - set(model.output_names)
        if missing:
            raise ValueError(f"not a YuNet model: outputs {sorted(missing)} missing (has {model.output_names})")
        self.model = model
        self.size = (shape[2], shape[1])
        scale, zero = model.input_quantization
        self._bytes_in = model.input_dtype == np.float32 or (model.input_dtype == np.uint8 and (scale, zero) == (1.0, 0))
        self._filled: tuple[int, int] | None = None

    def write(self, rgb: np.ndarray) -> None:
        """Put an image into the input, top-left, the rest zero.

        Args:
            rgb: uint8 (h, w, 3) RGB with h, w at most the input's (the models take RGB:
                ``make models`` reverses the first convolution's input channels).
        """
        h, w = rgb.shape[:2]
        buf = self.model.input_buffer()
        if self._filled != (w, h):
            buf[...] = 0 if self._bytes_in else quantize(np.zeros(1), *self.model.input_quantization, buf.dtype)[0]
            self._filled = (w, h)
        if self._bytes_in:
            buf[0, :h, :w] = rgb
        else:
            buf[0, :h, :w] = quantize(rgb, *self.model.input_quantization, buf.dtype)
        del buf

    def candidates(self, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Invoke on what :meth:`write` put in and decode every head.

        Returns:
            ``(boxes, scores, keypoints)`` before NMS, as :func:`decode_head`, input pixels.
        """
        self.model.invoke()
        parts = []
        for stride in STRIDES:
            cls, obj = self.model.output(f"cls_{stride}").reshape(-1), self.model.output(f"obj_{stride}").reshape(-1)
            parts.append(decode_head(cls, obj, self._rows(f"bbox_{stride}"), self._rows(f"kps_{stride}"),
                                     self.size[0] // stride, stride, threshold))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]

    def _rows(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        def rows(index: np.ndarray) -> np.ndarray:
            values, scale, zero = self.model.raw_output(name)
            return real_values(values.reshape(-1, values.shape[-1])[index], scale, zero)
        return rows


class YuNetDetector:
    """Finds faces in whole frames of any size with YuNet models of fixed input sizes.

    Keeps one model loaded, the one the current frame size needs; a frame of another size
    loads (and drops) through ``load``.

    Args:
        sizes: the built input sizes ``(W, H)``, pixels.
        load: gives the :class:`YuNetModel` of one size (verified, self-tested).
        score_threshold: least detection score (:data:`SCORE_THRESHOLD`).
        nms_threshold: NMS IoU threshold (:data:`device.detector.nms.NMS_IOU_THRESHOLD`).
    """

    def __init__(self, sizes: list[tuple[int, int]], load: Callable[[tuple[int, int]], YuNetModel],
                 score_threshold: float = SCORE_THRESHOLD, nms_threshold: float = NMS_IOU_THRESHOLD):
        self.sizes = sorted(sizes)
        self.load = load
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.model: YuNetModel | None = None
        self._placement: tuple[tuple[int, int], Placement] | None = None

    def placement(self, width: int, height: int) -> Placement:
        """Where a frame of this size goes (:func:`place`), remembered for the last size seen."""
        if self._placement is None or self._placement[0] != (width, height):
            chosen = place(width, height, self.sizes)
            if chosen.scale != 1.0:
                log.warning("frames of %dx%d are larger than the largest model (%dx%d): scaled by %.3f to %dx%d; "
                            "faces narrower than about %d px in the frame will be missed",
                            width, height, *chosen.model_size, chosen.scale, *chosen.resized, round(10 / chosen.scale))
            self._placement = ((width, height), chosen)
        return self._placement[1]

    def model_for(self, size: tuple[int, int]) -> YuNetModel:
        """The loaded model of ``size``, loading it (and dropping another) when needed."""
        if self.model is None or self.model.size != size:
            self.model = None  # free the old interpreter before the new one allocates
            self.model = self.load(size)
        return self.model

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces in one frame.

        Args:
            rgb: uint8 (H, W, 3) RGB frame.

        Returns:
            Detections in frame pixels, best score first.
        """
        height, width = rgb.shape[:2]
        where = self.placement(width, height)
        model = self.model_for(where.model_size)
        if where.scale != 1.0:
            rgb = np.asarray(Image.fromarray(rgb).resize(where.resized, Image.Resampling.BILINEAR))
        model.write(rgb)
        boxes, scores, kps = model.candidates(self.score_threshold)
        keep = nms(boxes, scores, self.nms_threshold, TOP_K)
        if where.scale != 1.0:
            back = np.array([width / where.resized[0], height / where.resized[1]], np.float32)
            boxes, kps = boxes * np.tile(back, 2), kps * back
        return [Detection(boxes[i], float(scores[i]), kps[i]) for i in keep]
