"""How far two detectors agree on the same frames (int8 vs float, ours vs OpenCV's FaceDetectorYN).

Used by the int8 accuracy test and by ``scripts/bench.py``; never on the device's run path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from device.detector.nms import iou
from device.types import NUM_KEYPOINTS

# A detection of one run matches one of the other at IoU >= 0.5 (the PASCAL VOC criterion,
# as the issue asks).
MATCH_IOU = 0.5


def match(boxes_a: np.ndarray, boxes_b: np.ndarray, threshold: float = MATCH_IOU) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, best IoU first.

    Args:
        boxes_a, boxes_b: float (K, 4) and (L, 4) ``[x_min, y_min, x_max, y_max]`` in one unit.
        threshold: the least IoU for a match.

    Returns:
        ``(i, j)`` index pairs, each index used at most once.
    """
    if not len(boxes_a) or not len(boxes_b):
        return []
    table = np.stack([iou(np.asarray(a, np.float32), np.asarray(boxes_b, np.float32)) for a in boxes_a])
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(-table, axis=None, kind="stable"):
        i, j = divmod(int(flat), table.shape[1])
        if table[i, j] < threshold:
            break
        if i not in used_a and j not in used_b:
            pairs.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return pairs


@dataclass
class Agreement:
    """Counts accumulated over frames; ``a`` is the reference run (e.g. float), ``b`` the other.

    Attributes:
        total_a, total_b: detections in each run.
        matched: detections paired at IoU >= 0.5.
        keypoint_shift: per matched pair, the mean keypoint displacement divided by the
            reference box width (fraction, not percent); empty when keypoints are not compared.
        same_facing: matched pairs whose ``facing_front`` decision is equal.
        facing_pairs: matched pairs whose ``facing_front`` was compared.
    """

    total_a: int = 0
    total_b: int = 0
    matched: int = 0
    keypoint_shift: list[float] = field(default_factory=list)
    same_facing: int = 0
    facing_pairs: int = 0

    def add(self, boxes_a, boxes_b, keypoints_a=None, keypoints_b=None, facing_a=None, facing_b=None) -> None:
        """Add one frame: boxes (K, 4) / (L, 4), optional keypoints (K, 5, 2) / (L, 5, 2) and
        facing-front flags (K,) / (L,), all in frame pixels."""
        self.total_a += len(boxes_a)
        self.total_b += len(boxes_b)
        for i, j in match(np.asarray(boxes_a).reshape(-1, 4), np.asarray(boxes_b).reshape(-1, 4)):
            self.matched += 1
            if keypoints_a is not None and keypoints_b is not None:
                width = float(boxes_a[i][2] - boxes_a[i][0])
                shift = np.linalg.norm(np.asarray(keypoints_a[i]) - np.asarray(keypoints_b[j]), axis=-1).mean()
                self.keypoint_shift.append(float(shift) / width)
            if facing_a is not None and facing_b is not None:
                self.facing_pairs += 1
                self.same_facing += bool(facing_a[i]) == bool(facing_b[j])

    @property
    def recall(self) -> float:
        """Share of the reference's detections matched by the other run (1.0 when none)."""
        return self.matched / self.total_a if self.total_a else 1.0

    @property
    def precision(self) -> float:
        """Share of the other run's detections matched by the reference (1.0 when none)."""
        return self.matched / self.total_b if self.total_b else 1.0

    @property
    def median_keypoint_shift(self) -> float:
        """Median keypoint displacement over matched pairs, as a fraction of box width."""
        return float(np.median(self.keypoint_shift)) if self.keypoint_shift else 0.0

    @property
    def mean_keypoint_shift(self) -> float:
        """Mean keypoint displacement over matched pairs, as a fraction of box width."""
        return float(np.mean(self.keypoint_shift)) if self.keypoint_shift else 0.0

    @property
    def facing_agreement(self) -> float:
        """Share of matched pairs with the same ``facing_front`` decision (1.0 when none)."""
        return self.same_facing / self.facing_pairs if self.facing_pairs else 1.0

    def summary(self) -> str:
        """One line of the figures, for test output and the benchmark."""
        facing = f"{self.facing_agreement:.3f}" if self.facing_pairs else "not compared"
        return (f"{self.total_a} vs {self.total_b} detections, {self.matched} matched: "
                f"recall {self.recall:.3f}, precision {self.precision:.3f}, keypoint shift mean "
                f"{100 * self.mean_keypoint_shift:.2f}% / median {100 * self.median_keypoint_shift:.2f}% of box "
                f"width, facing-front agreement {facing}")


def add_faces(agreement: Agreement, faces_a: list, faces_b: list) -> None:
    """Add one frame of :class:`device.types.Face` lists to ``agreement``."""
    def unpack(faces):
        boxes = np.array([f.detection.box for f in faces], np.float32).reshape(-1, 4)
        kps = np.array([f.detection.keypoints for f in faces], np.float32).reshape(-1, NUM_KEYPOINTS, 2)
        return boxes, kps, [f.facing_front for f in faces]

    boxes_a, kps_a, facing_a = unpack(faces_a)
    boxes_b, kps_b, facing_b = unpack(faces_b)
    agreement.add(boxes_a, boxes_b, kps_a, kps_b, facing_a, facing_b)
