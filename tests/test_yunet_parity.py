"""Our YuNet port against the reference implementation, and int8 against float, on real frames.

The reference is OpenCV's own ``cv2.FaceDetectorYN`` (``opencv-python-headless``, a test-only
dependency) running the same ONNX file the models are built from
(``models/yunet_n_dynamic.onnx``), with the same score and NMS thresholds. Frames: every
frame of the six Intel clips (CC-BY-4.0, Intel IoT Devkit sample-videos) at their own
480x270, and the classroom clip upscaled to 1280x720 and 1920x1080 (the other model sizes).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import VIDEO
from device.config import Settings
from device.detector.agreement import Agreement, add_faces
from device.detector.nms import NMS_IOU_THRESHOLD
from device.detector.yunet import SCORE_THRESHOLD, TOP_K
from device.models import MODELS_DIR
from device.pipeline import build_analyzer
from device.sources.files import read_file

cv2 = pytest.importorskip("cv2")

CLIPS = ["intel_classroom.gif", "intel_face-demographics-walking.gif",
         "intel_face-demographics-walking-and-pause.gif", "intel_head-pose-face-detection-female.gif",
         "intel_head-pose-face-detection-male.gif", "intel_head-pose-face-detection-female-and-male.gif"]
CASES = [(clip, None) for clip in CLIPS] + [("intel_classroom.gif", (1280, 720)), ("intel_classroom.gif", (1920, 1080))]


@lru_cache(maxsize=None)
def frames(clip: str, size: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
    out = [f.rgb for f in read_file(VIDEO / clip)]
    if size:
        out = [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BILINEAR)) for f in out]
    return tuple(out)


@lru_cache(maxsize=None)
def analyzer(precision: str):
    return build_analyzer(Settings(_env_file=None, state_dir=Path("/nonexistent"), model=f"yunet_n_{precision}",
                                   accelerator="cpu", min_score=SCORE_THRESHOLD))


def opencv_faces(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FaceDetectorYN on one frame: boxes (K, 4) x_min, y_min, x_max, y_max and landmarks (K, 5, 2)."""
    h, w = rgb.shape[:2]
    detector = cv2.FaceDetectorYN.create(str(MODELS_DIR / "yunet_n_dynamic.onnx"), "", (w, h),
                                         SCORE_THRESHOLD, NMS_IOU_THRESHOLD, TOP_K)
    _, faces = detector.detect(np.ascontiguousarray(rgb[..., ::-1]))
    faces = np.zeros((0, 15), np.float32) if faces is None else faces
    boxes = np.stack([faces[:, 0], faces[:, 1], faces[:, 0] + faces[:, 2], faces[:, 1] + faces[:, 3]], axis=1)
    return boxes, faces[:, 4:14].reshape(-1, 5, 2)


@pytest.mark.parametrize("clip,size", CASES)
def test_float_model_matches_opencv_facedetectoryn(clip, size):
    agreement = Agreement()
    for rgb in frames(clip, size):
        ref_boxes, ref_kps = opencv_faces(rgb)
        ours = analyzer("float32").detector.detect(rgb)
        agreement.add(ref_boxes, np.array([d.box for d in ours]).reshape(-1, 4), ref_kps,
                      np.array([d.keypoints for d in ours]).reshape(-1, 5, 2))
    print(clip, size, "OpenCV vs ours (float32):", agreement.summary())
    assert agreement.total_a > 0
    assert agreement.recall == 1.0 and agreement.precision == 1.0
    assert agreement.mean_keypoint_shift < 0.001  # the same numbers, not just the same faces


@pytest.mark.parametrize("clip,size", CASES)
def test_int8_matches_float(clip, size):
    agreement = Agreement()
    for rgb in frames(clip, size):
        add_faces(agreement, analyzer("float32").faces(rgb), analyzer("int8").faces(rgb))
    print(clip, size, "float32 vs int8:", agreement.summary())
    assert agreement.recall >= 0.97 and agreement.precision >= 0.97
    assert agreement.mean_keypoint_shift <= 0.03
    assert agreement.facing_agreement >= 0.95
