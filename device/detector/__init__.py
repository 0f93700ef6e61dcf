"""Face detection: one frame in, detections in frame pixels out.

A detector family is one module behind the :class:`FaceDetector` interface
(``yunet.py``: YuNet, the default and only family today); ``nms.py`` and
``agreement.py`` are shared by families and by the tests.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from device.types import Detection


class FaceDetector(Protocol):
    """What the pipeline needs of a detector family."""

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in a uint8 (H, W, 3) RGB frame, box and landmarks in frame pixels, best score first."""
        ...
