"""Frame -> faces with head pose: the detector and the orientation stage put together."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from device.config import Settings
from device.detector import FaceDetector
from device.detector.yunet import YuNetDetector, YuNetModel
from device.models import MANIFEST, MODELS_DIR, ModelEntry, ModelError, edgetpu_model, select, verify
from device.orientation import orient
from device.runtime import AcceleratorUnavailable, TFLiteModel, load_edgetpu_delegate
from device.selftest import run_selftest
from device.types import Face, Frame, FrameResult

log = logging.getLogger(__name__)


class Analyzer:
    """Runs detection and head orientation on frames, timing the detector.

    Args:
        detector: the face detector (a :class:`device.detector.FaceDetector`).
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
        return FrameResult.of(frame.timestamp, self.faces(frame.rgb))


def choose_accelerator(accelerator: str, entry, directory: Path = MODELS_DIR) -> tuple[str, Path | None, list | None]:
    """Decide where inference runs.

    Args:
        accelerator: ``ROOMPULSE_ACCELERATOR``: ``"auto"``, ``"cpu"`` or ``"edgetpu"``.
        entry: the manifest entry of the configured model.
        directory: where the model files are.

    Returns:
        ``("edgetpu", compiled model path, [delegate])`` when the Edge TPU delegate loads and
        the compiled model is present and verified; else ``("cpu", None, None)``. With
        ``auto`` a missing piece is logged once, naming it: INFO when there is no Edge TPU
        library at all, WARNING when the library is there but the compiled model is not.

    Raises:
        AcceleratorUnavailable: with ``edgetpu``, naming everything that is missing
            (the delegate library, the compiled model, or both).
    """
    if accelerator == "cpu":
        return "cpu", None, None
    problems, path, delegate, no_library = [], None, None, False
    try:
        path = edgetpu_model(entry, directory)
    except ModelError as exc:
        problems.append(str(exc))
    try:
        delegate = load_edgetpu_delegate()
    except AcceleratorUnavailable as exc:
        problems.append(str(exc))
        no_library = True
    if not problems:
        return "edgetpu", path, [delegate]
    if accelerator == "edgetpu":
        raise AcceleratorUnavailable("ROOMPULSE_ACCELERATOR=edgetpu cannot run: " + "; ".join(problems)
                                     + " (ROOMPULSE_ACCELERATOR=auto falls back to the CPU)")
    # A unit without Coral's library (most units) is not a fault: INFO. A library without a
    # compiled model is a half-finished Edge TPU install: WARNING.
    log.log(logging.INFO if no_library else logging.WARNING, "Edge TPU not used, running on the CPU: %s "
            "(ROOMPULSE_ACCELERATOR=cpu says so without looking)", "; ".join(problems))
    return "cpu", None, None


class ModelLoader:
    """Loads the model of one input size from a verified set: hash, accelerator, self-test.

    Args:
        entries: the manifest entries of the configured set, one per input size.
        accelerator: ``ROOMPULSE_ACCELERATOR``.
        threads: interpreter CPU threads.
        directory: where the model files are.

    Raises (from :meth:`__call__`):
        device.models.ModelError: the file is missing or altered; as
            :class:`device.selftest.SelfTestError`, its self-test output differs.
        device.runtime.AcceleratorUnavailable: ``edgetpu`` and a piece is missing.
    """

    def __init__(self, entries: list[ModelEntry], accelerator: str, threads: int, directory: Path = MODELS_DIR):
        self.entries = {e.input_size: e for e in entries}
        self.accelerator_setting = accelerator
        self.threads = threads
        self.directory = directory
        self.accelerator = "cpu"
        for entry in entries:  # every file of the set is checked before the service starts
            verify(entry, directory)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """The input sizes ``(W, H)`` of the set, pixels."""
        return sorted(self.entries)

    def __call__(self, size: tuple[int, int]) -> YuNetModel:
        entry = self.entries[size]
        path = verify(entry, self.directory)
        self.accelerator, tpu_path, delegates = choose_accelerator(self.accelerator_setting, entry, self.directory)
        interpreter = TFLiteModel(tpu_path or path, num_threads=self.threads, delegates=delegates)
        model = YuNetModel(interpreter)
        score = run_selftest(model, entry.selftest, entry.name)
        log.info("model %s on %s with %s passed its self-test (face score %.3f)", entry.name, self.accelerator,
                 interpreter.runtime, score)
        return model


def build_analyzer(settings: Settings, directory: Path = MODELS_DIR, manifest: Path = MANIFEST) -> Analyzer:
    """Verify the configured model set, load and self-test the model of the camera size,
    pick the accelerator, build the analyzer.

    Args:
        settings: ``model``, ``accelerator``, ``threads``, ``camera_size``, ``min_score`` and
            the facing-front limits are used.
        directory, manifest: where the model files and their manifest are (tests use copies).

    Raises:
        device.models.ModelError: unknown model, or a file missing, truncated or altered;
            or, as :class:`device.selftest.SelfTestError`, its self-test output differs.
        device.runtime.AcceleratorUnavailable: ``ROOMPULSE_ACCELERATOR=edgetpu`` and the
            delegate or the compiled model is missing.
        device.runtime.RuntimeUnavailable: no TFLite runtime is installed.
        ValueError: the model cannot be loaded or is not a YuNet model.
    """
    loader = ModelLoader(select(settings.model, manifest), settings.accelerator, settings.threads, directory)
    detector = YuNetDetector(loader.sizes, loader, settings.min_score)
    # Load and self-test a model now, so a broken model, runtime or accelerator stops start-up:
    # for the Pi camera the one its ROOMPULSE_CAMERA_SIZE needs; for files and streams, whose
    # size is known only at their first frame, the smallest (it is replaced, not kept beside
    # the right one, when the first frame needs another size).
    camera = settings.source == "picamera2"
    detector.model_for(detector.placement(*settings.camera_wh).model_size if camera else loader.sizes[0])
    return Analyzer(detector, settings.yaw_limit_deg, settings.pitch_limit_deg, loader.accelerator)
