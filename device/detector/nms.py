"""IoU and MediaPipe-style weighted non-maximum suppression.

MediaPipe's ``NonMaxSuppressionCalculator`` with ``algorithm: WEIGHTED`` (both face
graphs, ``min_suppression_threshold: 0.3``, ``overlap_type: INTERSECTION_OVER_UNION``):
the best remaining candidate collects every candidate that overlaps it by more than the
threshold; the group is replaced by one detection whose box and keypoints are the
score-weighted mean of the group and whose score is the best score of the group.
"""

from __future__ import annotations

import numpy as np

# face_detection_*_range.pbtxt, NonMaxSuppressionCalculator.min_suppression_threshold
NMS_IOU_THRESHOLD = 0.3


def overlaps(box: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection over union and intersection over the smaller box, of one box with many.

    Args:
        box: (4,) ``[x_min, y_min, x_max, y_max]``.
        boxes: (K, 4) in the same units.

    Returns:
        ``(iou, ios)``: float32 (K,) each in [0, 1]; 0 where a box has no area.
    """
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 0.0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    smaller = np.minimum(area, areas)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
        ios = np.where(smaller > 0, inter / smaller, 0.0)
    return iou.astype(np.float32), ios.astype(np.float32)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with many (K, 4): float32 (K,)."""
    return overlaps(box, boxes)[0]


def weighted_nms(
    boxes: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    containment_threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend overlapping detections.

    Args:
        boxes: float (K, 4) ``[x_min, y_min, x_max, y_max]``, any consistent unit.
        keypoints: float (K, P, 2) in the same unit.
        scores: float (K,) confidences.
        iou_threshold: candidates with IoU above this with the group's best are merged.
        containment_threshold: also merge candidates whose intersection with the best covers
            more than this share of the smaller box (the "IoS" match of tiled inference, as in
            SAHI's merging): a face cut by a tile edge, or seen both in a tile and in the
            whole-frame pass at another scale, is one face. None = MediaPipe's IoU rule only.

    Returns:
        ``(boxes, keypoints, scores)`` of the M <= K merged detections, best first,
        float32 with shapes (M, 4), (M, P, 2), (M,).
    """
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.ones(len(scores), dtype=bool)
    out_b, out_k, out_s = [], [], []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        candidates = np.flatnonzero(remaining)
        by_union, by_smaller = overlaps(boxes[i], boxes[candidates])
        same = by_union > iou_threshold
        if containment_threshold is not None:
            same |= by_smaller > containment_threshold
        group = candidates[same | (candidates == i)]
        weights = scores[group] / scores[group].sum()
        out_b.append((boxes[group] * weights[:, None]).sum(axis=0))
        out_k.append((keypoints[group] * weights[:, None, None]).sum(axis=0))
        out_s.append(scores[i])
        remaining[group] = False
    n_kp = keypoints.shape[1] if keypoints.ndim == 3 else 0
    if not out_s:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros((0, n_kp, 2), np.float32),
            np.zeros((0,), np.float32),
        )
    return (
        np.asarray(out_b, np.float32),
        np.asarray(out_k, np.float32),
        np.asarray(out_s, np.float32),
    )
