"""Head orientation (yaw, pitch, roll) from YuNet's five landmarks, and how sure it is.

Geometry. The head is treated as a rigid body seen by a distant camera (weak perspective).
Roll is the in-image angle of the eye line; the keypoints are rotated by -roll so the eye
line is level, and in that frame, with ``half_span`` half the eye-to-eye distance:

* ``nose`` = horizontal offset of the nose tip from the eye midpoint / ``half_span``, > 0
  toward the image's left. Turning the head by ``yaw`` moves the nose tip, which stands
  ``N`` in front of the eyes, sideways by ``N sin(yaw)`` while the eye span ``2E`` shrinks to
  ``2E cos(yaw)``, so ``tan(yaw) = YAW_GAIN * nose`` with ``YAW_GAIN = E / N``.
* ``height`` = vertical position of the nose tip between the eye line (0) and the mouth
  midpoint (1). Raising the chin by ``pitch`` moves the protruding nose tip up by
  ``NOSE_PROTRUSION * tan(pitch)`` of the eye-to-mouth distance:
  ``tan(pitch) = (NOSE_HEIGHT - height) / NOSE_PROTRUSION``.

Constants. Fitted by least squares on the angles in degrees to a 3D reference: the head
pose of MediaPipe's 468-point face mesh (``scripts/reference_pose.py``, dev/test only; how
far it is trusted is in that docstring and the README) on 182 faces at least 30 px wide with
|roll| <= 20 deg: head-pose clip frames with ``index % 3 != 2`` (the others are held out)
and the walking-and-pause clip. The classroom clip is never used.
``scripts/orientation_eval.py`` refits them (section 2) and ``tests/test_orientation_reference.py``
checks that they are that fit:

* ``YAW_GAIN`` = 0.7809 (before issue 11: 3.15 / 2.5 = 1.26 from a 6.3 cm interpupillary
  distance and a nose tip 2.5 cm in front of the eyes; the fit says YuNet's "nose tip" stands
  about 4.0 cm, 1.28 half eye spans, in front of its "eyes");
* ``NOSE_HEIGHT`` = 0.6330 (before: 0.58, Farkas' facial-proportion norms);
* ``NOSE_PROTRUSION`` = 0.6334 (before: 0.45; poorly determined: 0.5465 fitted the landmarks of the
  BGR-input build almost as well).

Held out (27 head-pose faces, |roll| <= 20): yaw MAE 2.5 deg, pitch MAE 6.3 deg, facing-front
agreement with the reference 100 % (before: 3.8, 4.5, 96 %). Strong roll is outside the
model: on heads tilted 30-40 deg YuNet's eye points report about half the roll, the levelled
nose offset is then wrong, and yaw is off by 10-35 deg (held-out yaw MAE 11.2 deg with them).
Pitch differs from the reference by a per-person offset of up to about 10 deg (the mesh reads
the female head-pose subject at 11-23 deg chin-up, we read 4-15), which no
face-independent constant removes.

Uncertainty. The keypoints of a small face are noisy: the error against the reference,
measured on area-downscaled copies of the same frames (``orientation_eval.py`` section 5:
yaw RMS 9.0 deg at 12 px, 4.8 at 16, 3.6-4.5 from 24 to 48), fits
``sqrt(floor^2 + (scale / width)^2)`` degrees with ``YAW_ERROR = (3.04, 85.8)`` and
``PITCH_ERROR = (6.36, 62.3)`` (floor deg, scale deg*px; pitch is dominated by the per-person
offset). :func:`call` calls a face facing front, or not, only when its estimate is at least
``CALL_MARGIN`` = 1 such error away from each limit (so a call on the wrong side needs an error
of more than one RMS); otherwise its decision is left undecided and the window aggregate
leaves it out of the share (README, "What is measured"). Heads tilted by more than
``TILT_LIMIT_DEG`` = 10 deg (as measured from the eye points) are undecided too: on the
reliable faces yaw's RMS error is 3.4 deg below 5 deg of measured tilt, 13 deg at 5-10 and
12-35 deg above 10 (all of those in the female-and-male clip, two people, really tilted
30-40 deg); the classroom and walking clips never exceed 4.8 deg.
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

YAW_GAIN = 0.7809  # tan(yaw) per unit nose offset (half eye spans): E / N
NOSE_HEIGHT = 0.6330  # nose tip height, fraction of eye-line-to-mouth distance, level head
NOSE_PROTRUSION = 0.6334  # nose tip protrusion, same unit

# Error model (degrees, face width in pixels): sqrt(floor^2 + (scale / width)^2), fitted to the
# RMS error against the reference on downscaled faces (orientation_eval.py section 5).
YAW_ERROR = (3.04, 85.8)
PITCH_ERROR = (6.36, 62.3)
CALL_MARGIN = 1.0  # RMS errors between an estimate and a limit needed to call it (a judgement)
# Heads whose eye line is tilted more than this (degrees, as measured) are not called: there
# YuNet's eye points follow about half of the real tilt and yaw is off by 12-35 deg RMS
# (orientation_eval.py section 3; 3.4 deg below 5 deg of measured tilt).
TILT_LIMIT_DEG = 10.0

# Facing-front limits, degrees (DESIGN.md defaults).
YAW_LIMIT_DEG = 30.0
PITCH_LIMIT_DEG = 25.0


def pose_features(keypoints: np.ndarray) -> tuple[float, float, float]:
    """The level-frame measurements the pose is computed from.

    Args:
        keypoints: float (5, 2) ``(x, y)`` in pixels, YuNet order (:mod:`device.types`).

    Returns:
        ``(roll_rad, nose, height)``: roll of the eye line in radians (> 0 clockwise in the
        image); nose-tip offset from the eye midpoint in half eye spans (> 0 toward the
        image's left); nose height between eye line (0) and mouth midpoint (1), ``nan`` when
        the mouth is not below the eyes.

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
    mouth_mid = (level[RIGHT_MOUTH] + level[LEFT_MOUTH]) / 2.0
    half_span = max(abs(level[LEFT_EYE, 0] - level[RIGHT_EYE, 0]) / 2.0, 1e-6)
    # Nose toward the image's left (negative x) = face turned to the person's right = yaw > 0.
    nose = -(level[NOSE_TIP, 0] - eye_mid[0]) / half_span
    span = mouth_mid[1] - eye_mid[1]
    height = (level[NOSE_TIP, 1] - eye_mid[1]) / span if span > 0 else math.nan
    return roll, nose, height


def head_pose(keypoints: np.ndarray) -> HeadPose:
    """Estimate yaw, pitch and roll.

    Args:
        keypoints: float (5, 2) ``(x, y)`` in pixels, YuNet order (:mod:`device.types`).

    Returns:
        The pose in degrees; sign conventions in :class:`device.types.HeadPose`. Pitch is 0
        when the mouth is not below the eye line (a degenerate detection).

    Raises:
        ValueError: when ``keypoints`` is not (5, 2) or the eyes coincide.
    """
    roll, nose, height = pose_features(keypoints)
    yaw = math.atan(YAW_GAIN * nose)
    pitch = 0.0 if math.isnan(height) else math.atan((NOSE_HEIGHT - height) / NOSE_PROTRUSION)
    return HeadPose(math.degrees(yaw), math.degrees(pitch), math.degrees(roll))


def angle_error(width: float, model: tuple[float, float]) -> float:
    """Typical error (degrees) of an angle estimated on a face ``width`` pixels wide.

    Args:
        width: the detection box width, pixels (> 0).
        model: ``(floor, scale)``: ``YAW_ERROR`` or ``PITCH_ERROR``.
    """
    floor, scale = model
    return math.hypot(floor, scale / max(width, 1e-6))


def is_facing_front(pose: HeadPose, yaw_limit: float = YAW_LIMIT_DEG, pitch_limit: float = PITCH_LIMIT_DEG) -> bool:
    """True when ``|yaw| <= yaw_limit`` and ``|pitch| <= pitch_limit`` (degrees)."""
    return abs(pose.yaw_deg) <= yaw_limit and abs(pose.pitch_deg) <= pitch_limit


def call(pose: HeadPose, width: float, yaw_limit: float = YAW_LIMIT_DEG,
         pitch_limit: float = PITCH_LIMIT_DEG, margin: float = CALL_MARGIN) -> bool | None:
    """The facing-front decision, or None when the face is too uncertain to call.

    Facing front is called when both angles are inside their limits by at least ``margin``
    times their expected error at this face width; not facing front when either angle is
    outside its limit by that much; anything in between is ``None``, and so is any head
    whose measured roll exceeds ``TILT_LIMIT_DEG``.

    Args:
        pose: the estimate; width: the face's box width in pixels; limits in degrees.
    """
    if abs(pose.roll_deg) > TILT_LIMIT_DEG:
        return None
    yaw_m = margin * angle_error(width, YAW_ERROR)
    pitch_m = margin * angle_error(width, PITCH_ERROR)
    yaw, pitch = abs(pose.yaw_deg), abs(pose.pitch_deg)
    if yaw >= yaw_limit + yaw_m or pitch >= pitch_limit + pitch_m:
        return False
    if yaw <= yaw_limit - yaw_m and pitch <= pitch_limit - pitch_m:
        return True
    return None


def orient(detection: Detection, yaw_limit: float = YAW_LIMIT_DEG, pitch_limit: float = PITCH_LIMIT_DEG) -> Face:
    """A :class:`Face` from a detection: its pose, the facing-front decision on the estimate,
    and whether that decision can be called at this face size (:func:`call`)."""
    pose = head_pose(detection.keypoints)
    called = call(pose, detection.width, yaw_limit, pitch_limit)
    return Face(detection, pose, is_facing_front(pose, yaw_limit, pitch_limit), called is not None)
