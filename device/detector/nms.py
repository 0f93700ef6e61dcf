"""IoU and hard non-maximum suppression, as OpenCV's ``cv::dnn::NMSBoxes`` does it for YuNet.

OpenCV's ``FaceDetectorYN`` (``modules/objdetect/src/face_detect.cpp``) truncates each
candidate's ``(x, y, w, h)`` to integers (``Rect2i``), then runs ``NMSBoxes``: candidates in
order of score, best first; a candidate is kept when its IoU with every box kept so far is
at most the threshold. Doing the same here (truncation included) is what makes our
detections identical to the reference implementation's.
"""

from __future__ import annotations

import numpy as np

# OpenCV FaceDetectorYN's default nms_threshold (objdetect/face.hpp, FaceDetectorYN::create).
NMS_IOU_THRESHOLD = 0.3


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with many.

    Args:
        box: (4,) ``[x_min, y_min, x_max, y_max]``.
        boxes: (K, 4) in the same unit.

    Returns:
        float32 (K,) in [0, 1]; 0 where the union has no area.
    """
    box = np.asarray(box, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU_THRESHOLD,
        top_k: int = 5000) -> np.ndarray:
    """Hard NMS on integer-truncated boxes, OpenCV ``NMSBoxes`` order and rule.

    Args:
        boxes: float32 (N, 4) ``[x_min, y_min, x_max, y_max]`` in pixels.
        scores: float32 (N,).
        iou_threshold: a candidate overlapping a kept box by more than this is dropped.
        top_k: at most this many candidates, best first, are considered (OpenCV's
            ``top_k``, default 5000).

    Returns:
        int64 (K,) indices into ``boxes`` of the kept candidates, best score first.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x = np.trunc(boxes[:, 0])
    y = np.trunc(boxes[:, 1])
    rects = np.stack([x, y, x + np.trunc(boxes[:, 2] - boxes[:, 0]), y + np.trunc(boxes[:, 3] - boxes[:, 1])], 1)
    remaining = np.argsort(-scores, kind="stable")[:top_k]
    kept: list[int] = []
    # The best remaining candidate is kept, and every candidate overlapping it by more than
    # the threshold leaves: the same result as testing each candidate against all kept boxes,
    # with one vectorised IoU per kept box instead of one per candidate.
    while remaining.size:
        best, rest = int(remaining[0]), remaining[1:]
        kept.append(best)
        remaining = rest[iou(rects[best], rects[rest]) <= iou_threshold]
    return np.asarray(kept, np.int64)
