"""Decode BlazeFace raw outputs into boxes, keypoints and scores.

Follows MediaPipe's ``TensorsToDetectionsCalculator`` with the options of
``face_detection_short_range.pbtxt`` / ``face_detection_full_range.pbtxt``:
16 values per anchor (box centre x, y, width, height, then 6 keypoints x, y),
offsets in input pixels relative to the anchor centre (``x_scale = y_scale =
w_scale = h_scale = input size``), ``sigmoid_score: true`` and
``score_clipping_thresh: 100``.
"""

from __future__ import annotations

import numpy as np

from device.types import NUM_KEYPOINTS

# TensorsToDetectionsCalculator option ``score_clipping_thresh`` in both face graphs.
SCORE_CLIP = 100.0
NUM_COORDS = 4 + 2 * NUM_KEYPOINTS


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function on clipped logits (float32 in, float32 out, same shape)."""
    clipped = np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
    return (1.0 / (1.0 + np.exp(-clipped))).astype(np.float32)


def decode(
    regressors: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    min_score: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn one model invocation into candidate detections.

    Args:
        regressors: float32 (N, 16) raw box/keypoint offsets in input pixels.
        logits: float32 (N,) or (N, 1) raw class logits.
        anchors: float32 (N, 2) anchor centres normalised to [0, 1].
        input_size: model input side in pixels (128 or 192).
        min_score: keep candidates whose sigmoid score is at least this.

    Returns:
        ``(boxes, keypoints, scores)``: float32 (K, 4) ``[x_min, y_min, x_max, y_max]``,
        float32 (K, 6, 2) and float32 (K,), all normalised to [0, 1] of the model input
        (values may fall slightly outside for faces cut by the input's edge).

    Raises:
        ValueError: when the shapes do not match the anchors.
    """
    regressors = np.asarray(regressors).reshape(1, -1, regressors.shape[-1])
    _, boxes, keypoints, scores = decode_batch(regressors, np.asarray(logits).reshape(1, -1), anchors, input_size,
                                               min_score)
    return boxes, keypoints, scores


def decode_batch(
    regressors: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    min_score: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`decode` for B inputs run in one invocation, in one pass.

    Args:
        regressors: float32 (B, N, 16) raw box/keypoint offsets in input pixels.
        logits: float32 (B, N) raw class logits.
        anchors, input_size, min_score: as for :func:`decode`.

    Returns:
        ``(index, boxes, keypoints, scores)``: int (K,) which of the B inputs each
        candidate comes from (ascending; anchor order within an input), then as
        :func:`decode`. Element for element the same arithmetic as :func:`decode` on each
        input alone, so the values are identical.

    Raises:
        ValueError: when the shapes do not match the anchors.
    """
    if (regressors.ndim != 3 or regressors.shape[1:] != (anchors.shape[0], NUM_COORDS)
            or logits.shape != regressors.shape[:2]):
        raise ValueError(
            f"model output shapes {regressors.shape} / {logits.shape} do not match "
            f"{anchors.shape[0]} anchors x {NUM_COORDS} coordinates"
        )
    scores = sigmoid(logits.astype(np.float32, copy=False))
    index, anchor = np.nonzero(scores >= min_score)
    raw = regressors[index, anchor].astype(np.float32, copy=False) / float(input_size)
    centres = anchors[anchor]
    cx = raw[:, 0] + centres[:, 0]
    cy = raw[:, 1] + centres[:, 1]
    half_w = raw[:, 2] / 2.0
    half_h = raw[:, 3] / 2.0
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    keypoints = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + centres[:, None, :]
    return index, boxes.astype(np.float32), keypoints.astype(np.float32), scores[index, anchor]
