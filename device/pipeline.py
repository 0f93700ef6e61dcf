"""Frame -> faces with head pose: the detector and the orientation stage put together."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from device.config import Settings
from device.detector import FaceDetector, TilingOptions
from device.detector.blazeface import VARIANTS, BlazeFace
from device.models import MANIFEST, MODELS_DIR, ModelError, edgetpu_model, resolve
from device.orientation import orient
from device.runtime import AcceleratorUnavailable, TFLiteModel, load_edgetpu_delegate
from device.selftest import run_selftest
from device.types import Face, Frame, FrameResult

log = logging.getLogger(__name__)

# Most tile inputs per interpreter invoke on the CPU. Measured here on the classroom clip
# (9 regions per frame, full range, one interleaved run): 3 per invoke gives nearly all of
# the gain of 9 (pipeline per frame float 56.4 / 55.0 ms, int8 67.9 / 65.7 ms; one per
# invoke 67.9 / 79.4 ms) for a third of the memory (float interpreter +8 MB instead of
# +25 MB; with 9 the service's float peak RSS reached 150 MB, the limit).
MAX_BATCH = 3


class Analyzer:
    """Runs detection and head orientation on frames, timing the detector.

    Args:
        detector: the tiled face detector.
        yaw_limit, pitch_limit: facing-front limits in degrees.
        accelerator: ``"cpu"`` or ``"edgetpu"``, where inference runs (reported on status).
    """

    def __init__(self, detector: FaceDetector, yaw_limit: float, pitch_limit: float, accelerator: str = "cpu"):
        self.detector = detector
        self.yaw_limit = yaw_limit
        self.pitch_limit = pitch_limit
        self.accelerator = accelerator
        self.last_inference_ms = 0.0

    def faces(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) frame, with pose and facing-front decision."""
        began = time.perf_counter()
        detections = self.detector.detect(rgb)
        self.last_inference_ms = (time.perf_counter() - began) * 1000.0
        return [orient(d, self.yaw_limit, self.pitch_limit) for d in detections]

    def result(self, frame: Frame) -> FrameResult:
        """The counts kept of one frame; the pixels are not kept."""
        faces = self.faces(frame.rgb)
        return FrameResult(frame.timestamp, len(faces), sum(f.facing_front for f in faces))


def choose_accelerator(accelerator: str, entry, directory: Path = MODELS_DIR) -> tuple[str, Path | None, list | None]:
    """Decide where inference runs.

    Args:
        accelerator: ``ROOMPULSE_ACCELERATOR``: ``"auto"``, ``"cpu"`` or ``"edgetpu"``.
        entry: the manifest entry of the configured model.
        directory: where the model files are.

    Returns:
        ``("edgetpu", compiled model path, [delegate])`` when the Edge TPU delegate loads and
        the compiled model is present and verified; else ``("cpu", None, None)``. With
        ``auto`` a missing piece logs one warning naming it.

    Raises:
        AcceleratorUnavailable: with ``edgetpu``, naming everything that is missing
            (the delegate library, the compiled model, or both).
    """
    if accelerator == "cpu":
        return "cpu", None, None
    problems, path, delegate = [], None, None
    try:
        path = edgetpu_model(entry, directory)
    except ModelError as exc:
        problems.append(str(exc))
    try:
        delegate = load_edgetpu_delegate()
    except AcceleratorUnavailable as exc:
        problems.append(str(exc))
    if not problems:
        return "edgetpu", path, [delegate]
    if accelerator == "edgetpu":
        raise AcceleratorUnavailable("ROOMPULSE_ACCELERATOR=edgetpu cannot run: " + "; ".join(problems)
                                     + " (ROOMPULSE_ACCELERATOR=auto falls back to the CPU)")
    log.warning("Edge TPU not used, running on the CPU: %s", "; ".join(problems))
    return "cpu", None, None


def build_analyzer(settings: Settings, directory: Path = MODELS_DIR, manifest: Path = MANIFEST) -> Analyzer:
    """Load and verify the configured model, pick the accelerator, self-test, build the analyzer.

    Args:
        settings: ``model``, ``accelerator``, ``threads``, tiling, ``min_score`` and the
            facing-front limits are used.
        directory, manifest: where the model files and their manifest are (tests use copies).

    Raises:
        device.models.ModelError: the model file is missing, truncated or altered;
            or, as :class:`device.selftest.SelfTestError`, its self-test output differs.
        device.runtime.AcceleratorUnavailable: ``ROOMPULSE_ACCELERATOR=edgetpu`` and the
            delegate or the compiled model is missing.
        device.runtime.RuntimeUnavailable: no TFLite runtime is installed.
        ValueError: the model cannot be loaded or does not fit its BlazeFace variant.
    """
    path, entry = resolve(settings.model, directory, manifest)
    accelerator, tpu_path, delegates = choose_accelerator(settings.accelerator, entry, directory)
    # Regions of a frame MAX_BATCH at a time on the CPU; the Edge TPU's compiled model has fixed shapes.
    model = BlazeFace(TFLiteModel(tpu_path or path, num_threads=settings.threads, delegates=delegates),
                      VARIANTS[entry.variant], max_batch=MAX_BATCH if accelerator == "cpu" else 1)
    best = run_selftest(model, entry.selftest, entry.name)
    log.info("model %s on %s passed its self-test (best score %.3f)", entry.name, accelerator, best)
    tiling = TilingOptions(tile=settings.tile_size, overlap=settings.tile_overlap)
    detector = FaceDetector(model, tiling, settings.min_score)
    return Analyzer(detector, settings.yaw_limit_deg, settings.pitch_limit_deg, accelerator)
