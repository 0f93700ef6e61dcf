"""Head orientation (yaw, pitch, roll) from YuNet's five landmarks.

Geometry. The head is treated as a rigid body seen by a distant camera (weak
perspective), after removing roll by rotating the keypoints so the eye line is level.

* **Yaw.** The two eyes sit on a level axis; the nose tip stands ``NOSE_AHEAD_OF_EYES``
  in front of it, ``HALF_EYE_SPAN`` being half the distance between the eyes. Turning the
  head by ``yaw`` shortens the projected eye span to ``2 * HALF_EYE_SPAN * cos(yaw)`` and
  moves the nose tip sideways by ``NOSE_AHEAD_OF_EYES * sin(yaw)`` from the eye midpoint, so
  ``tan(yaw) = (offset / half_eye_span) * HALF_EYE_SPAN / NOSE_AHEAD_OF_EYES``.
* **Pitch.** Eyes and mouth (the midpoint of the two mouth corners) lie near one plane; the nose tip stands ``NOSE_PROTRUSION``
  (as a fraction of the eye-to-mouth distance) in front of it. For a level head the nose
  tip projects at ``NOSE_HEIGHT`` of the way from the eye line down to the mouth; raising
  the chin by ``pitch`` moves it up by ``NOSE_PROTRUSION * tan(pitch)`` of that distance.

Constants are rounded adult averages, not fitted to this model; individual faces vary by
roughly +-20 %, which limits any single estimate to about +-10 degrees near frontal:

* interpupillary distance about 6.3 cm -> ``HALF_EYE_SPAN = 3.15`` cm (adult mean in
  Dodgson, "Variation and extrema of human interpupillary distance", SPIE 2004);
* nose tip about 2.5 cm in front of the eyes -> ``NOSE_AHEAD_OF_EYES = 2.5`` cm;
* eye line to mouth centre about 6.5 cm, nose tip about 3.8 cm below the eye line and
  about 2.9 cm in front of the eye-mouth plane -> ``NOSE_HEIGHT = 0.58`` and
  ``NOSE_PROTRUSION = 0.45`` (facial-proportion norms as tabulated by Farkas,
  Anthropometry of the Head and Face, 1994). ``NOSE_HEIGHT`` was checked against the
  frontal faces of skimage's astronaut image and the head-pose clips (pitch near 0).
"""

from __future__ import annotations

import math

import numpy as np

from device.types import (
    LEFT_EYE,
    LEFT_MOUTH,
    NOSE_TIP,
    NUM_KEYPOINTS,
    RIGHT_EYE,
    RIGHT_MOUTH,
    Detection,
    Face,
    HeadPose,
)

HALF_EYE_SPAN = 3.15  # cm
NOSE_AHEAD_OF_EYES = 2.5  # cm
NOSE_HEIGHT = 0.58  # fraction of eye-line-to-mouth distance
NOSE_PROTRUSION = 0.45  # fraction of eye-line-to-mouth distance

# Facing-front limits, degrees (DESIGN.md defaults).
YAW_LIMIT_DEG = 30.0
PITCH_LIMIT_DEG = 25.0


def head_pose(keypoints: np.ndarray) -> HeadPose:
    """Estimate yaw, pitch and roll.

    Args:
        keypoints: float (5, 2) ``(x, y)`` in pixels, YuNet order (:mod:`device.types`).

    Returns:
        The pose in degrees; sign conventions in :class:`device.types.HeadPose`.

    Raises:
        ValueError: when ``keypoints`` is not (5, 2) or the eyes coincide.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape ({NUM_KEYPOINTS}, 2), got {kp.shape}")
    eye_vec = kp[LEFT_EYE] - kp[RIGHT_EYE]  # image-left eye -> image-right eye
    if not np.hypot(*eye_vec) > 0:
        raise ValueError("eye keypoints coincide; cannot estimate orientation")
    roll = math.atan2(eye_vec[1], eye_vec[0])
    cos_r, sin_r = math.cos(-roll), math.sin(-roll)
    level = (kp - kp.mean(axis=0)) @ np.array([[cos_r, sin_r], [-sin_r, cos_r]])

    eye_mid = (level[RIGHT_EYE] + level[LEFT_EYE]) / 2.0
    half_span = max(abs(level[LEFT_EYE, 0] - level[RIGHT_EYE, 0]) / 2.0, 1e-6)
    # Nose toward the image's left (negative x) = face turned to the person's right = yaw > 0.
    ratio = -(level[NOSE_TIP, 0] - eye_mid[0]) / half_span
    yaw = math.atan(ratio * HALF_EYE_SPAN / NOSE_AHEAD_OF_EYES)

    span = (level[RIGHT_MOUTH, 1] + level[LEFT_MOUTH, 1]) / 2.0 - eye_mid[1]
    if span <= 0:
        pitch = 0.0
    else:
        height = (level[NOSE_TIP, 1] - eye_mid[1]) / span
        pitch = math.atan((NOSE_HEIGHT - height) / NOSE_PROTRUSION)
    return HeadPose(math.degrees(yaw), math.degrees(pitch), math.degrees(roll))


def is_facing_front(pose: HeadPose, yaw_limit: float = YAW_LIMIT_DEG, pitch_limit: float = PITCH_LIMIT_DEG) -> bool:
    """True when ``|yaw| <= yaw_limit`` and ``|pitch| <= pitch_limit`` (degrees)."""
    return abs(pose.yaw_deg) <= yaw_limit and abs(pose.pitch_deg) <= pitch_limit


def orient(detection: Detection, yaw_limit: float = YAW_LIMIT_DEG, pitch_limit: float = PITCH_LIMIT_DEG) -> Face:
    """A :class:`Face` from a detection, with its pose and facing-front decision."""
    pose = head_pose(detection.keypoints)
    return Face(detection, pose, is_facing_front(pose, yaw_limit, pitch_limit))
