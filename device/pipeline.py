"""Frame -> faces with head pose: the detector and the orientation stage put together."""

from __future__ import annotations

import time

import numpy as np

from device.config import Settings
from device.detector import FaceDetector, TilingOptions
from device.detector.blazeface import VARIANTS, BlazeFace
from device.models import resolve
from device.orientation import orient
from device.runtime import TFLiteModel
from device.types import Face, Frame, FrameResult


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


def build_analyzer(settings: Settings) -> Analyzer:
    """Load and verify the configured model and build the analyzer.

    Raises:
        device.models.ModelError: the model file is missing, truncated or altered.
        device.runtime.RuntimeUnavailable: no TFLite runtime is installed.
        ValueError: the model cannot be loaded or does not fit its BlazeFace variant;
            or ``ROOMPULSE_ACCELERATOR=edgetpu`` (not supported by this build yet).
    """
    if settings.accelerator == "edgetpu":
        raise ValueError("ROOMPULSE_ACCELERATOR=edgetpu: this build runs on the CPU only; use auto or cpu")
    path, entry = resolve(settings.model)
    model = BlazeFace(TFLiteModel(path, num_threads=settings.threads), VARIANTS[entry.variant])
    tiling = TilingOptions(tile=settings.tile_size, overlap=settings.tile_overlap)
    detector = FaceDetector(model, tiling, settings.min_score)
    return Analyzer(detector, settings.yaw_limit_deg, settings.pitch_limit_deg, "cpu")
