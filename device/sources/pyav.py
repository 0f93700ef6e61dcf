"""PyAV frames to RGB arrays, scaled down at decode time when larger than the detector takes.

Used by ``files.py`` and ``av_live.py``. A 3840x2160 or 8000x8000 picture is converted and
scaled by FFmpeg's swscale in one pass, so the full-size RGB array (25 MB at 4K, 192 MB at
8000x8000) is never made; the detector's largest model input is 1920x1088, so nothing it
could use is lost (``ROOMPULSE_MAX_FRAME_SIZE``).
"""

from __future__ import annotations

import logging

import av
import numpy as np

log = logging.getLogger(__name__)


def fitted(width: int, height: int, max_size: tuple[int, int] | None) -> tuple[int, int]:
    """``(width, height)`` scaled down, aspect kept, to fit ``max_size`` (unchanged when it fits
    or when ``max_size`` is None); pixels, each at least 1."""
    if max_size is None or (width <= max_size[0] and height <= max_size[1]):
        return width, height
    scale = min(max_size[0] / width, max_size[1] / height)
    return max(1, int(width * scale)), max(1, int(height * scale))


class RgbConverter:
    """Turns decoded frames into uint8 (H, W, 3) RGB arrays no larger than ``max_size``.

    Args:
        name: the source, for the one log line.
        max_size: ``(width, height)`` in pixels, or None for no limit.
    """

    def __init__(self, name: str, max_size: tuple[int, int] | None):
        self.name = name
        self.max_size = max_size
        self._warned: tuple[int, int] | None = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        size = fitted(frame.width, frame.height, self.max_size)
        if size == (frame.width, frame.height):
            return frame.to_ndarray(format="rgb24")
        if self._warned != (frame.width, frame.height):
            self._warned = (frame.width, frame.height)
            log.warning("%s: frames of %dx%d are larger than ROOMPULSE_MAX_FRAME_SIZE %dx%d: decoded at %dx%d "
                        "(aspect kept); set the camera or stream to that size to save the work", self.name,
                        frame.width, frame.height, *self.max_size, *size)
        return frame.to_ndarray(format="rgb24", width=size[0], height=size[1],
                                interpolation=av.video.reformatter.Interpolation.AREA)
