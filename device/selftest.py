"""Start-up self-test: one inference on a stored face image, compared with the manifest.

A model file can pass its hash check and still compute something else: the wrong
delegate, a miscompiled Edge TPU model, a runtime that mis-handles quantized tensors.
Before a model is used, it runs once on ``models/selftest.png`` (a 192x192 RGB crop of
frame 0 of ``intel_head-pose-face-detection-male.gif``, Intel IoT Devkit sample-videos,
CC-BY-4.0; one face about 82 px wide), placed top-left in the model's input as any frame
is, and its best detection must match the one stored when the model was built.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from device.detector.nms import nms
from device.detector.yunet import YuNetModel
from device.models import ModelError

SELFTEST_IMAGE = Path(__file__).resolve().parent.parent / "models" / "selftest.png"
# Candidates below this score are not considered (the stored face scores about 0.9).
SELFTEST_THRESHOLD = 0.5
# Tolerances stored with each expectation: int8 regressions step by about 0.2-0.4 px on an
# 82 px face (bbox scale ~0.015 x stride 8-32), so 2 px allows a few steps of difference
# between CPU kernels and the Edge TPU, while altered weights or a broken quantized
# interface miss the face or move it by far more.
SCORE_ATOL = 0.05
COORD_ATOL_PX = 2.0


class SelfTestError(ModelError):
    """The model's output on the self-test image differs from the stored expectation."""


def selftest_image(image: Path = SELFTEST_IMAGE) -> np.ndarray:
    """The self-test image as uint8 (192, 192, 3) RGB."""
    with Image.open(image) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def best_face(model: YuNetModel, image: Path = SELFTEST_IMAGE) -> tuple[float, np.ndarray] | None:
    """The best detection on the self-test image.

    Returns:
        ``(score, coords)``: coords float32 (14,) = box ``[x_min, y_min, x_max, y_max]`` then
        the five landmarks' ``(x, y)``, input pixels; None when nothing scores 0.5.
    """
    model.write(selftest_image(image))
    boxes, scores, kps = model.candidates(SELFTEST_THRESHOLD)
    keep = nms(boxes, scores)
    if not len(keep):
        return None
    best = int(keep[0])
    return float(scores[best]), np.concatenate([boxes[best], kps[best].reshape(-1)]).astype(np.float32)


def expectation(model: YuNetModel) -> dict:
    """What the self-test of this model must find (run on the CPU at build time).

    Returns:
        A manifest ``selftest`` object: ``image``, ``score``, ``coords`` (rounded to 1e-3),
        ``score_atol``, ``coord_atol_px``.

    Raises:
        SelfTestError: the model finds no face on the self-test image.
    """
    found = best_face(model)
    if found is None:
        raise SelfTestError("the model finds no face on the self-test image")
    score, coords = found
    return {"image": SELFTEST_IMAGE.name, "score": round(score, 4), "coords": [round(float(v), 3) for v in coords],
            "score_atol": SCORE_ATOL, "coord_atol_px": COORD_ATOL_PX}


def run_selftest(model: YuNetModel, expected: dict | None, name: str, image: Path = SELFTEST_IMAGE) -> float:
    """Compare one inference with the stored expectation.

    Args:
        model: the loaded model (on the accelerator it will run on).
        expected: the manifest's ``selftest`` object for this model.
        name: the model's manifest name, for messages.

    Returns:
        The self-test face's score, for the log.

    Raises:
        SelfTestError: no expectation stored, no face found, or a score or coordinate
            outside its tolerance (naming the value and the expected value).
    """
    if not expected:
        raise SelfTestError(f"model '{name}' has no self-test expectation in the manifest; run 'make models'")
    found = best_face(model, image)
    fault = ("the model file, its compilation or the runtime/delegate does not compute what was built")
    if found is None:
        raise SelfTestError(f"model '{name}' failed its self-test: no face found on {image.name}; {fault}")
    score, coords = found
    coord_err = float(np.abs(coords - np.asarray(expected["coords"], np.float32)).max())
    if abs(score - expected["score"]) > expected["score_atol"] or coord_err > expected["coord_atol_px"]:
        raise SelfTestError(
            f"model '{name}' failed its self-test: face score {score:.3f} (expected {expected['score']:.3f} "
            f"+- {expected['score_atol']}), coordinates off by {coord_err:.1f} px (at most "
            f"{expected['coord_atol_px']}); {fault}")
    return score
