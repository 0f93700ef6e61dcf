"""Head orientation (yaw, pitch, roll) from YuNet's five landmarks, and how sure it is.

Geometry. The head is treated as a rigid body seen by a distant camera (weak perspective).
Everything is measured against the face's own axis, the line from the eye midpoint to the
mouth midpoint, so no angle depends on first levelling the points:

* ``roll`` = the axis's angle from the image vertical. YuNet's points follow only part of a
  real tilt (level faces rotated in the image: the axis about 0.7 of the rotation, the eye
  line about 0.5; ``orientation_eval.py`` section 1), which is why nothing below levels by it;
* ``nose`` = signed distance of the nose tip from the axis, in half eye spans (half the
  eye-to-eye distance), > 0 toward the image's left. Turning the head by ``yaw`` moves the
  protruding nose tip sideways off the axis while the eye span shrinks, so
  ``tan(yaw) = YAW_GAIN * nose + YAW_CUBIC * nose**3`` (the cubic term: at large turns
  YuNet's nose point lags behind the geometry's tangent);
* ``height`` = position of the nose tip along the axis, eye midpoint 0, mouth midpoint 1.
  Raising the chin by ``pitch`` moves the protruding nose tip up by
  ``NOSE_PROTRUSION * tan(pitch)`` of the eye-to-mouth distance:
  ``tan(pitch) = (NOSE_HEIGHT - height) / NOSE_PROTRUSION``.

Mirroring the five points (x -> -x, eyes and mouth corners swapped) turns ``nose`` and
``roll`` into their negatives and leaves ``height`` as it is, so yaw and roll change sign
exactly and pitch stays: what a mirrored frame changes beyond that is the detector's (held-out
head-pose frames: |yaw + yaw(mirrored frame)| median 3.45 deg per face; the same frames moved
by 1-3 px change yaw by a median 1.45 deg, ``orientation_eval.py`` section 4).

Constants. Fitted by least squares on the angles in degrees to a 3D reference: the head
pose of MediaPipe's 468-point face mesh (``scripts/reference_pose.py``, dev/test only; how
far it is trusted is in that docstring and the README) on the 219 training faces where it
is reliable (263 reliable in all, the held-out ones kept out; at least 30 px wide; it reads
the mirrored crop consistently and one more tracking pass moves it by at most 5 deg):
head-pose clip frames with ``index % 3 != 2`` (the others are
held out) and the walking-and-pause clip. The classroom clip is never used.
``scripts/orientation_eval.py`` refits them (section 2) and ``tests/test_orientation_reference.py``
checks that they are that fit:

* ``YAW_GAIN`` = 0.5152 and ``YAW_CUBIC`` = 0.4319 (before issue 11: 3.15 / 2.5 = 1.26, from
  a 6.3 cm interpupillary distance and a nose tip 2.5 cm in front of the eyes, offset taken
  from the eye midpoint after levelling the eye line; then 0.7809 fitted on that geometry);
* ``NOSE_HEIGHT`` = 0.6144 (before: 0.58, Farkas' facial-proportion norms; then 0.6330);
* ``NOSE_PROTRUSION`` = 0.5398 (before: 0.45; then 0.6334).

Held out (``orientation_eval.py`` section 3; 44 head-pose faces where the reference is
reliable, heads tilted up to 42 deg included): yaw MAE 3.1 deg, pitch MAE 4.7 deg,
facing-front agreement with the reference 97.7 % (the eye-line geometry fitted the same way:
5.4, 6.0, 97.7 %; before issue 11: 9.1, 3.7, 97.7 %). On the 26 of them tilted at most
20 deg: 2.7, 5.6, 100 %. Training faces: 2.6, 5.0, 98.6 %. Pitch differs from the reference
by a per-person offset of up to about 10 deg (the mesh reads the female head-pose subject at
15-23 deg chin-up), which no face-independent constant removes.

Uncertainty. The keypoints of a small face are noisy: the error against the reference,
measured on area-downscaled copies of the same frames (``orientation_eval.py`` section 5:
yaw RMS 7.9 deg at 12 px, 4.0 at 16, 3.6-4.8 from 20 to 64), fits
``sqrt(floor^2 + (scale / width)^2)`` degrees with ``YAW_ERROR = (3.28, 76.7)`` and
``PITCH_ERROR = (6.00, 69.8)`` (floor deg, scale deg*px; pitch is dominated by the per-person
offset). :func:`call` calls a face facing front, or not, only when its estimate is at least
``CALL_MARGIN`` = 1 such error away from each limit (so a call on the wrong side needs an error
of more than one RMS); otherwise its decision is left undecided and the window aggregate
leaves it out of the share (README, "What is measured"). Heads tilted by more than
``TILT_LIMIT_DEG`` = 10 deg (as measured: the axis, about 0.7 of a real tilt) are undecided
too. A tilted head looking at the camera is read well (the female-and-male clip's man,
tilted 29-42 deg, mostly 35-42, measured 20-36: yaw RMS 3.0 deg over 48 faces; level faces
rotated in the image by up to 40 deg: yaw MAE 2.2-6.2), but a tilted head that is also turned, or moving,
is not: the reliable faces measured at 10-20 deg read yaw RMS 7.9 (the man tilting his head,
the woman beside him turned 31-32 deg and read 22-23), and the woman once fully tilted and
turned further (the reference's passes read her 34-50 deg) reads 6-19 deg. Measured tilt stays
within 6 deg on the classroom clip and 9.5 deg on the walking-and-pause clip.
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

YAW_GAIN = 0.5152  # tan(yaw) per unit nose offset from the face axis (half eye spans) ...
YAW_CUBIC = 0.4319  # ... plus this times the offset cubed
NOSE_HEIGHT = 0.6144  # nose tip along the face axis, eye midpoint 0 to mouth midpoint 1, level head
NOSE_PROTRUSION = 0.5398  # nose tip protrusion, fraction of the eye-to-mouth distance

# Error model (degrees, face width in pixels): sqrt(floor^2 + (scale / width)^2), fitted to the
# RMS error against the reference on downscaled faces (orientation_eval.py section 5).
YAW_ERROR = (3.28, 76.7)
PITCH_ERROR = (6.00, 69.8)
CALL_MARGIN = 1.0  # RMS errors between an estimate and a limit needed to call it (a judgement)
# Heads whose face axis is tilted more than this (degrees, as measured) are not called: a tilted
# head that is also turned is read about 9-40 deg off (module docstring; orientation_eval.py
# section 3 gives the RMS by measured tilt).
TILT_LIMIT_DEG = 10.0

# Facing-front limits, degrees (DESIGN.md defaults).
YAW_LIMIT_DEG = 30.0
PITCH_LIMIT_DEG = 25.0


def pose_features(keypoints: np.ndarray) -> tuple[float, float, float]:
    """The measurements the pose is computed from, all taken against the face's own axis.

    Args:
        keypoints: float (5, 2) ``(x, y)`` in pixels, YuNet order (:mod:`device.types`).

    Returns:
        ``(roll_rad, nose, height)``: roll of the eye-midpoint-to-mouth-midpoint axis in
        radians (0 when the mouth is straight below the eyes, > 0 clockwise in the image);
        nose-tip offset from that axis in half eye spans (> 0 toward the image's left); nose
        height along it between the eye midpoint (0) and the mouth midpoint (1), ``nan`` when
        the two midpoints coincide (the axis is then taken perpendicular to the eye line).

    Raises:
        ValueError: when ``keypoints`` is not (5, 2) or the eyes coincide.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape ({NUM_KEYPOINTS}, 2), got {kp.shape}")
    # Plain floats from here: five points do not need numpy, and a frame of a full classroom
    # runs this 20-30 times.
    points = kp.tolist()
    (rx, ry), (lx, ly) = points[RIGHT_EYE], points[LEFT_EYE]
    ex, ey = lx - rx, ly - ry  # image-left eye -> image-right eye
    half_span = math.hypot(ex, ey) / 2.0
    if not half_span > 0:
        raise ValueError("eye keypoints coincide; cannot estimate orientation")
    mid_x, mid_y = (rx + lx) / 2.0, (ry + ly) / 2.0
    (rmx, rmy), (lmx, lmy) = points[RIGHT_MOUTH], points[LEFT_MOUTH]
    ax, ay = (rmx + lmx) / 2.0 - mid_x, (rmy + lmy) / 2.0 - mid_y  # the axis, down the face
    length = math.hypot(ax, ay)
    # Unit vector down the face; perpendicular to the eye line when the midpoints coincide.
    dx, dy = (ax / length, ay / length) if length > 0 else (-ey / (2.0 * half_span), ex / (2.0 * half_span))
    # (dy, -dx) points toward the image's right on an upright face.
    nx, ny = points[NOSE_TIP][0] - mid_x, points[NOSE_TIP][1] - mid_y
    roll = math.atan2(-dx, dy)
    # Nose toward the image's left (negative x) = face turned to the person's right = yaw > 0.
    nose = -(nx * dy - ny * dx) / half_span
    height = (nx * dx + ny * dy) / length if length > 0 else math.nan
    return roll, nose, height


def head_pose(keypoints: np.ndarray) -> HeadPose:
    """Estimate yaw, pitch and roll.

    Args:
        keypoints: float (5, 2) ``(x, y)`` in pixels, YuNet order (:mod:`device.types`).

    Returns:
        The pose in degrees; sign conventions in :class:`device.types.HeadPose`; roll is the
        tilt of the five points' own axis (YuNet's points follow about two thirds of a real
        tilt). Pitch is 0 when the eye and mouth midpoints coincide (a degenerate detection).

    Raises:
        ValueError: when ``keypoints`` is not (5, 2) or the eyes coincide.
    """
    roll, nose, height = pose_features(keypoints)
    yaw = math.atan(YAW_GAIN * nose + YAW_CUBIC * nose ** 3)
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
