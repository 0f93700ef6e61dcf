"""The Raspberry Pi camera through picamera2 (libcamera), imported only when selected."""

from __future__ import annotations

import time

import numpy as np

from device.sources import FrameSource, SourceError, SourceUnavailable
from device.types import Frame

INSTALL_HINT = ("on Raspberry Pi OS run 'sudo apt install python3-picamera2' and create the venv with "
                "--system-site-packages (scripts/install-pi.sh does both)")


def require_picamera2():
    """Import and return the ``Picamera2`` class.

    Raises:
        SourceUnavailable: picamera2 is not installed, or it is installed but fails to import
            (most often apt's picamera2/simplejpeg, built for Raspberry Pi OS's numpy, meeting
            another numpy in the venv: "numpy.dtype size changed"); the message says what to do.
    """
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        if getattr(exc, "name", None) not in (None, "picamera2"):
            raise SourceUnavailable(f"ROOMPULSE_SOURCE=picamera2 but picamera2 cannot be imported: {exc}: "
                                    f"{INSTALL_HINT}") from None
        raise SourceUnavailable(
            f"ROOMPULSE_SOURCE=picamera2 but the picamera2 module is not installed: {INSTALL_HINT}") from None
    except Exception as exc:  # noqa: BLE001 - any failure inside picamera2's own imports
        raise SourceUnavailable(f"ROOMPULSE_SOURCE=picamera2 but picamera2 fails to import "
                                f"({type(exc).__name__}: {exc}): {import_hint(exc)}") from None
    return Picamera2


def import_hint(exc: BaseException) -> str:
    """What to do about picamera2 failing to import with ``exc``."""
    if "numpy" in str(exc):
        return (f"the venv's numpy {np.__version__} is not the one Raspberry Pi OS's picamera2 packages were "
                "built for; run scripts/install-pi.sh again (it keeps apt's numpy in the venv), or install "
                "apt's numpy version into the venv with pip")
    return INSTALL_HINT


class Picamera2Source(FrameSource):
    """The camera's main stream as RGB, stamped with ``time.monotonic()``.

    Args:
        size: (width, height) of the main stream in pixels; libcamera picks the nearest
            sensor mode and scales in the ISP.
    """

    name = "picamera2"

    def __init__(self, size: tuple[int, int] = (1280, 720)):
        self.size = size
        self._camera = None
        self._index = 0

    def open(self) -> None:
        """Import picamera2, configure the RGB main stream and start the camera.

        Raises:
            SourceUnavailable: picamera2 is not installed (with how to install it).
            SourceError: no camera is connected, or it is in use by another process.
        """
        Picamera2 = require_picamera2()
        self.close()
        try:
            self._camera = Picamera2()
            # libcamera's "RGB888" is B,G,R in memory; "BGR888" is R,G,B, which is what we want.
            config = self._camera.create_video_configuration(main={"size": self.size, "format": "BGR888"})
            self._camera.configure(config)
            self._camera.start()
        except (RuntimeError, IndexError, OSError) as exc:
            self.close()
            raise SourceError(f"cannot open the Raspberry Pi camera (picamera2): {exc}") from None

    def read(self) -> Frame | None:
        if self._camera is None:
            raise SourceError("picamera2: read before open")
        try:
            rgb = np.ascontiguousarray(self._camera.capture_array("main")[:, :, :3])
        except (RuntimeError, OSError) as exc:
            raise SourceError(f"picamera2 failed: {exc}") from None
        frame = Frame(rgb, time.monotonic(), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        """Stop the camera and release it (and its DMA buffers) for the next open."""
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.close()
            except RuntimeError:
                pass
