"""Values that cross a stage boundary.

frame source -> :class:`Frame` -> detector -> :class:`Detection` ->
head orientation -> :class:`Face` -> window aggregator -> engagement payload
(:mod:`device.payloads`) -> publisher.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# YuNet's five landmarks, in its output order (libfacedetection.train; OpenCV FaceDetectorYN
# docs: right eye, left eye, nose tip, right and left mouth corner, of the person).
RIGHT_EYE, LEFT_EYE, NOSE_TIP, RIGHT_MOUTH, LEFT_MOUTH = range(5)
NUM_KEYPOINTS = 5


@dataclass(frozen=True, eq=False)
class Frame:
    """One RGB picture from a source.

    Attributes:
        rgb: uint8 array of shape (H, W, 3), RGB channel order (converted once at the source).
        timestamp: seconds on the source's clock: the monotonic clock for live
            sources, the presentation time for files. Only differences are meaningful.
        index: 0-based frame number as decoded from the source.
    """

    rgb: np.ndarray
    timestamp: float
    index: int = 0

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


@dataclass(frozen=True, eq=False)
class Detection:
    """One face found by the detector, in pixels of the original frame.

    Attributes:
        box: float32 (4,) ``[x_min, y_min, x_max, y_max]`` in pixels.
        score: detection confidence in [0, 1] (YuNet: ``sqrt(cls * obj)``).
        keypoints: float32 (5, 2) ``(x, y)`` in pixels, order as ``RIGHT_EYE`` ... ``LEFT_MOUTH``
            (the person's right eye appears on the image's left for a frontal face).
    """

    box: np.ndarray
    score: float
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


@dataclass(frozen=True)
class HeadPose:
    """Head orientation estimated from the five landmarks.

    Attributes:
        yaw_deg: degrees; > 0 when the face is turned toward the image's left side
            (the person's own right).
        pitch_deg: degrees; > 0 when the chin is raised.
        roll_deg: degrees; in-plane tilt of the face, > 0 clockwise in the image (for the
            reference mesh, of its eye line; for the five landmarks, of the line from the eye
            midpoint to the mouth midpoint, from the vertical).
    """

    yaw_deg: float
    pitch_deg: float
    roll_deg: float


@dataclass(frozen=True, eq=False)
class Face:
    """A detection with its head pose and the facing-front decision.

    Attributes:
        facing_front: the decision on the estimated pose (limits only).
        decided: False when the estimate is too close to a limit, for this face's size, for
            the decision to be trusted (:func:`device.orientation.call`); the window
            aggregate then leaves the face out of the facing-front share.
    """

    detection: Detection
    pose: HeadPose
    facing_front: bool
    decided: bool = True


@dataclass(frozen=True)
class FrameResult:
    """What the pipeline keeps of one analysed frame: no pixels, no per-face data.

    Attributes:
        timestamp: the frame's timestamp in seconds (see :class:`Frame`).
        faces: number of faces detected.
        facing_front: how many of the decided faces face the front.
        undecided: how many of ``faces`` are too uncertain to call (:attr:`Face.decided`);
            they count as present but are left out of the facing-front share.
    """

    timestamp: float
    faces: int
    facing_front: int
    undecided: int = 0

    @classmethod
    def of(cls, timestamp: float, faces: list[Face]) -> "FrameResult":
        """The counts of one frame's faces (no pixels, no per-face value is kept)."""
        return cls(timestamp, len(faces), sum(f.facing_front and f.decided for f in faces),
                   sum(not f.decided for f in faces))
