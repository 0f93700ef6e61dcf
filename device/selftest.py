"""Start-up self-test: one inference on a stored face image, compared with the manifest.

A model file can pass its hash check and still compute something else: the wrong
delegate, a miscompiled Edge TPU model, a runtime that mis-handles quantized tensors.
Before the service starts, the loaded model runs once on ``models/selftest.png`` (a
192x192 RGB crop of frame 0 of ``intel_head-pose-face-detection-male.gif``, Intel IoT
Devkit sample-videos, CC-BY-4.0; resized to the model's input) and the candidates at
the anchors stored in the manifest (the best ones when the model was built) must match
the stored scores and box/keypoint coordinates within the stored tolerances.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from device.detector.blazeface import VARIANTS, BlazeFace
from device.detector.decode import sigmoid
from device.models import ModelError
from device.runtime import TFLiteModel

SELFTEST_IMAGE = Path(__file__).resolve().parent.parent / "models" / "selftest.png"
# How many of the best anchors are stored and compared.
TOP_ANCHORS = 8
# Score tolerance (sigmoid units) and coordinate tolerance (input pixels) stored with each
# expectation: int8 outputs step by ~1 px (regressors span about +-140 px in 256 steps),
# so 3 px allows a few steps of difference between CPU kernels and the Edge TPU while a
# model with altered weights or a broken quantized interface misses by far more.
SCORE_ATOL = 0.05
COORD_ATOL_PX = 3.0


class SelfTestError(ModelError):
    """The model's output on the self-test image differs from the stored expectation."""


def selftest_input(size: int, image: Path = SELFTEST_IMAGE) -> np.ndarray:
    """The self-test image as uint8 (size, size, 3) RGB, bilinear-resized from 192x192."""
    with Image.open(image) as img:
        rgb = img.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def raw_outputs(model: BlazeFace, image: Path = SELFTEST_IMAGE) -> tuple[np.ndarray, np.ndarray]:
    """One inference on the self-test image.

    Returns:
        ``(scores, coords)``: float32 (N,) sigmoid scores and float32 (N, 16) raw box and
        keypoint offsets in input pixels, N = the model's anchor count.
    """
    coords, logits = model.raw(selftest_input(model.input_size, image))
    return sigmoid(logits), coords.astype(np.float32)


def expectation(path: Path, entry: dict) -> dict:
    """Run a model file on the CPU and record what its self-test must find.

    Args:
        path: the ``.tflite`` file.
        entry: its manifest entry (``variant`` is used).

    Returns:
        A manifest ``selftest`` object: ``image``, ``anchors`` (indices, best first),
        ``scores`` and ``coords`` at those anchors (rounded to 1e-4), ``score_atol``,
        ``coord_atol_px``.
    """
    model = BlazeFace(TFLiteModel(path, num_threads=1), VARIANTS[entry["variant"]])
    scores, coords = raw_outputs(model)
    best = np.argsort(-scores, kind="stable")[:TOP_ANCHORS]
    return {
        "image": SELFTEST_IMAGE.name,
        "anchors": [int(i) for i in best],
        "scores": [round(float(scores[i]), 4) for i in best],
        "coords": [[round(float(v), 4) for v in coords[i]] for i in best],
        "score_atol": SCORE_ATOL,
        "coord_atol_px": COORD_ATOL_PX,
    }


def run_selftest(model: BlazeFace, expected: dict | None, name: str, image: Path = SELFTEST_IMAGE) -> float:
    """Compare one inference with the stored expectation.

    Args:
        model: the loaded model (on the accelerator it will run on).
        expected: the manifest's ``selftest`` object for this model.
        name: the model's manifest name, for messages.

    Returns:
        The best self-test score (sigmoid), for the log.

    Raises:
        SelfTestError: no expectation stored, or a score or coordinate outside its
            tolerance (naming the anchor, the value and the expected value).
    """
    if not expected:
        raise SelfTestError(f"model '{name}' has no self-test expectation in the manifest; run 'make models'")
    if len(model.anchors) <= max(expected["anchors"]):
        raise SelfTestError(f"model '{name}': self-test anchors do not fit the {model.variant.name}-range model")
    scores, coords = raw_outputs(model, image)
    for rank, anchor in enumerate(expected["anchors"]):
        want_score, want_coords = expected["scores"][rank], np.asarray(expected["coords"][rank], np.float32)
        score_err = abs(float(scores[anchor]) - want_score)
        coord_err = float(np.abs(coords[anchor] - want_coords).max())
        if score_err > expected["score_atol"] or coord_err > expected["coord_atol_px"]:
            raise SelfTestError(
                f"model '{name}' failed its self-test: at anchor {anchor} score {scores[anchor]:.3f} "
                f"(expected {want_score:.3f} +- {expected['score_atol']}), coordinates off by "
                f"{coord_err:.1f} px (at most {expected['coord_atol_px']}); the model file, its "
                "compilation or the runtime/delegate does not compute what was built"
            )
    return float(scores[expected["anchors"][0]])
