#!/usr/bin/env python3
"""Head orientation against the 3D reference: fit, held-out error, size study, classroom checks.

Prints, one section each (all figures measured on the clips in ``../shared/data/video``):

1. the reference's own checks (mirror consistency, drift under one more tracking pass, yaw
   range per clip), and tilted heads: the reliable level faces rotated in the image by
   +-10..40 deg, the reference's and the five points' reading of that known rotation;
2. the least-squares fit of :mod:`device.orientation`'s four constants;
3. held-out error (head-pose frames with ``index % 3 == 2``): yaw MAE for |yaw| <= 45,
   pitch MAE for |pitch| <= 30, facing-front agreement with the reference's own decision,
   on the faces where the reference is reliable and on every held-out face, and without
   strongly rolled faces (|roll| > 20 deg);
4. mirrored frames: |yaw + yaw(mirrored)|, split into the estimator's part (the mirrored five
   points) and the detector's (its points on the mirrored frame are not the mirrored points),
   and the detector's jitter when the same frame is moved by 1-3 px;
5. error versus face size: the reliable faces re-detected on downscaled (or, above their own
   size, upscaled) copies of their frames, 12 to 120 px wide, and the error model fitted to it;
6. the classroom clip: per-person facing-front share, the man on the right's yaw;
7. the classroom clip's engagement score, 1-second windows, before and after issue 11.

Usage: ``.venv/bin/python scripts/orientation_eval.py [--quick]`` (``--quick``: every third
face in the size study, as the tests run it, and half the rotated faces). Dev/test only; needs
scipy (from scikit-image).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from device import orientation  # noqa: E402
from device.aggregator import WindowAggregator  # noqa: E402
from device.sources.files import read_file  # noqa: E402
from device.types import FrameResult, HeadPose  # noqa: E402
from reference_pose import ReferencePose  # noqa: E402

VIDEO = Path(os.environ.get("ROOMPULSE_SHARED", ROOT.parent / "shared")) / "data" / "video"
HEAD_POSE = ("intel_head-pose-face-detection-female.gif", "intel_head-pose-face-detection-male.gif",
             "intel_head-pose-face-detection-female-and-male.gif")
WALK_PAUSE = "intel_face-demographics-walking-and-pause.gif"
CLASSROOM = "intel_classroom.gif"
MIN_REF_WIDTH = 30.0  # px: the landmark model's 192 px crop is then at most ~4x upsampled
MIN_REF_FLAG = 0.9  # the mesh model's own face-presence probability
MAX_REF_MIRROR = 5.0  # deg: |yaw + yaw(mirrored crop)| of the reference with itself
MAX_REF_DRIFT = 5.0  # deg: how far one more tracking pass may move the reference's pose
STRONG_ROLL = 20.0  # deg (reference roll): the "mild roll" subset of section 3
ROTATIONS = (-40, -30, -20, -10, 10, 20, 30, 40)  # deg, section 1's in-image rotations
SIZES = (12, 16, 20, 24, 32, 40, 48, 64, 80, 120)  # face widths of the size study, px
MODEL_WH = (480, 288)  # the committed YuNet model's input; larger copies are cropped to this
# The geometry before issue 11 (commit 1c0b796): anthropometric constants, measured against
# the eye line (the mouth only for the nose's height).
BEFORE = dict(axis="eye", yaw_gain=3.15 / 2.5, yaw_cubic=0.0, nose_height=0.58, protrusion=0.45)
# Commit 2c06455: the same eye-line geometry with its constants fitted to the reference.
EYE_LINE_FIT = dict(axis="eye", yaw_gain=0.7809, yaw_cubic=0.0, nose_height=0.6330, protrusion=0.6334)


@dataclass
class Sample:
    """One detected face with its reference pose."""

    clip: str
    frame: int
    box: np.ndarray  # float (4,), frame pixels
    keypoints: np.ndarray  # float (5, 2), frame pixels
    ref: HeadPose
    flag: float
    mirror_error: float
    drift: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def large(self) -> bool:
        """Large enough for the landmark model, which also finds a face there."""
        return self.width >= MIN_REF_WIDTH and self.flag >= MIN_REF_FLAG

    @property
    def reliable(self) -> bool:
        """The reference agrees with itself: on the mirrored crop and on one more pass."""
        return self.large and self.mirror_error <= MAX_REF_MIRROR and self.drift <= MAX_REF_DRIFT

    @property
    def held_out(self) -> bool:
        return self.clip in HEAD_POSE and self.frame % 3 == 2


def analyzer():
    from device.config import Settings
    from device.pipeline import build_analyzer

    return build_analyzer(Settings(_env_file=None, state_dir=Path("/nonexistent"),
                                   model="yunet_n_480x288_int8", camera_size="480x270"))


def frames(clip: str) -> list[np.ndarray]:
    return [f.rgb for f in read_file(VIDEO / clip)]


def collect(an, ref: ReferencePose, clips=HEAD_POSE + (WALK_PAUSE,)) -> tuple[list[Sample], dict]:
    """Every face the detector finds in ``clips``, with its reference pose; and the frames."""
    samples, cache = [], {}
    for clip in clips:
        cache[clip] = frames(clip)
        for index, rgb in enumerate(cache[clip]):
            for d in an.detector.detect(rgb):
                r = ref.estimate(rgb, d, mirror=True, drift=True)
                samples.append(Sample(clip, index, d.box.astype(float), d.keypoints.astype(float), r.pose,
                                      r.face_flag, r.mirror_error, r.drift))
    return samples, cache


def eye_line_features(keypoints: np.ndarray) -> tuple[float, float, float]:
    """:func:`device.orientation.pose_features` as it was up to commit 2c06455: roll from the
    eye line, the points rotated to level it, the nose's offset from the eye midpoint (half eye
    spans) and its height between the eye line and the mouth midpoint."""
    kp = np.asarray(keypoints, dtype=np.float64)
    eye_vec = kp[1] - kp[0]
    roll = math.atan2(eye_vec[1], eye_vec[0])
    cos_r, sin_r = math.cos(-roll), math.sin(-roll)
    level = (kp - kp.mean(axis=0)) @ np.array([[cos_r, sin_r], [-sin_r, cos_r]])
    eye_mid, mouth_mid = (level[0] + level[1]) / 2.0, (level[3] + level[4]) / 2.0
    half_span = max(abs(level[1, 0] - level[0, 0]) / 2.0, 1e-6)
    span = mouth_mid[1] - eye_mid[1]
    height = (level[2, 1] - eye_mid[1]) / span if span > 0 else math.nan
    return roll, -(level[2, 0] - eye_mid[0]) / half_span, height


def pose_with(keypoints: np.ndarray, c: dict) -> HeadPose:
    """:func:`device.orientation.head_pose` with the constants ``c`` (keys as ``BEFORE``;
    ``axis`` "eye" for the eye-line geometry, else the device's)."""
    features = eye_line_features if c.get("axis") == "eye" else orientation.pose_features
    roll, nose, height = features(keypoints)
    yaw = math.atan(c["yaw_gain"] * nose + c["yaw_cubic"] * nose ** 3)
    pitch = 0.0 if math.isnan(height) else math.atan((c["nose_height"] - height) / c["protrusion"])
    return HeadPose(math.degrees(yaw), math.degrees(pitch), math.degrees(roll))


def current() -> dict:
    o = orientation
    return dict(axis="face", yaw_gain=o.YAW_GAIN, yaw_cubic=o.YAW_CUBIC, nose_height=o.NOSE_HEIGHT,
                protrusion=o.NOSE_PROTRUSION)


def fit(samples: list[Sample]) -> dict:
    """Least squares on the angles in degrees (``scipy.optimize.least_squares``, started from
    the anthropometric values): yaw = atan(gain * nose + cubic * nose^3);
    pitch = atan((height0 - height) / p), on :func:`device.orientation.pose_features`."""
    from scipy.optimize import least_squares

    f = np.array([orientation.pose_features(s.keypoints)[1:] for s in samples])
    yaw = np.array([s.ref.yaw_deg for s in samples])
    pitch = np.array([s.ref.pitch_deg for s in samples])
    ry = least_squares(lambda p: np.degrees(np.arctan(p[0] * f[:, 0] + p[1] * f[:, 0] ** 3)) - yaw,
                       [BEFORE["yaw_gain"], 0.0])
    ok = ~np.isnan(f[:, 1])
    rp = least_squares(lambda p: np.degrees(np.arctan((p[0] - f[ok, 1]) / p[1])) - pitch[ok],
                       [BEFORE["nose_height"], BEFORE["protrusion"]])
    return dict(yaw_gain=float(ry.x[0]), yaw_cubic=float(ry.x[1]), nose_height=float(rp.x[0]),
                protrusion=float(rp.x[1]))


def errors(samples: list[Sample], c: dict) -> dict:
    """Yaw MAE (|yaw| <= 45), pitch MAE (|pitch| <= 30), facing-front agreement of the
    estimate with the reference, and with :func:`device.orientation.call` (the device's error
    model and tilt limit, whatever ``c``): the share left undecided and the agreement of the
    called faces."""
    est = [pose_with(s.keypoints, c) for s in samples]
    ey = [abs(e.yaw_deg - s.ref.yaw_deg) for e, s in zip(est, samples) if abs(s.ref.yaw_deg) <= 45]
    ep = [abs(e.pitch_deg - s.ref.pitch_deg) for e, s in zip(est, samples) if abs(s.ref.pitch_deg) <= 30]
    agree = [orientation.is_facing_front(e) == orientation.is_facing_front(s.ref) for e, s in zip(est, samples)]
    calls = [(orientation.call(e, s.width), orientation.is_facing_front(s.ref)) for e, s in zip(est, samples)]
    called = [c == truth for c, truth in calls if c is not None]
    return dict(n=len(samples), yaw_mae=float(np.mean(ey)), n_yaw=len(ey), pitch_mae=float(np.mean(ep)),
                n_pitch=len(ep), agreement=float(np.mean(agree)),
                ref_front=float(np.mean([orientation.is_facing_front(s.ref) for s in samples])),
                undecided=1 - len(called) / len(samples),
                called_agreement=float(np.mean(called)) if called else float("nan"))


MIRROR_ORDER = [1, 0, 2, 4, 3]  # YuNet's points of a mirrored face: the eyes and mouth corners swap


def nearest_face(faces: list, centre_x: float):
    """The face of ``faces`` whose box centre lies nearest ``centre_x`` (pixels): the same
    person found again in a changed copy of the frame."""
    return min(faces, key=lambda f: abs((f.detection.box[0] + f.detection.box[2]) / 2 - centre_x))


def mirror_yaw(an, samples: list[Sample], cache: dict) -> dict:
    """yaw + yaw(mirrored frame) in degrees for each sample's face (0 for a perfect mirror),
    the face found in the mirrored frame matched by its box centre, and its two parts:
    ``estimator``, yaw + yaw of the same five points mirrored (what the formula adds), and
    ``detector``, yaw of the points found on the mirrored frame minus yaw of the mirrored
    points (what the detector adds); ``points``: how far each point found on the mirrored
    frame lies from the mirrored point, in half eye spans, (n, 5)."""
    total, est, det, points, memo = [], [], [], [], {}
    for s in samples:
        key = (s.clip, s.frame)
        if key not in memo:
            rgb = cache[s.clip][s.frame]
            memo[key] = (rgb.shape[1], an.faces(np.ascontiguousarray(rgb[:, ::-1])))
        width, faces = memo[key]
        m = nearest_face(faces, width - (s.box[0] + s.box[2]) / 2)
        mirrored = s.keypoints[MIRROR_ORDER] * (-1, 1) + (width, 0)
        yaw, yaw_mirrored = orientation.head_pose(s.keypoints).yaw_deg, orientation.head_pose(mirrored).yaw_deg
        total.append(yaw + m.pose.yaw_deg)
        est.append(yaw + yaw_mirrored)
        det.append(m.pose.yaw_deg - yaw_mirrored)
        half_span = np.linalg.norm(s.keypoints[1] - s.keypoints[0]) / 2
        points.append(np.linalg.norm(m.detection.keypoints - mirrored, axis=1) / half_span)
    return dict(total=np.array(total), estimator=np.array(est), detector=np.array(det), points=np.array(points))


def shift_jitter(an, samples: list[Sample], cache: dict, shifts=(1, 2, 3)) -> np.ndarray:
    """|yaw(frame shifted right by k px) - yaw(frame)| in degrees for each sample's face and
    each shift in ``shifts`` (the face found again matched by its box centre): how much the
    detector's five points, and so yaw, move when the same picture lands on the pixel grid a
    pixel or two apart. A mirrored frame lands the scene on another phase of the grid too."""
    out, memo = [], {}
    for s in samples:
        rgb = cache[s.clip][s.frame]
        yaw = orientation.head_pose(s.keypoints).yaw_deg
        for k in shifts:
            if (s.clip, s.frame, k) not in memo:
                moved = np.zeros_like(rgb)
                moved[:, k:] = rgb[:, :-k]
                memo[(s.clip, s.frame, k)] = an.faces(moved)
            faces = memo[(s.clip, s.frame, k)]
            if faces:
                out.append(abs(nearest_face(faces, (s.box[0] + s.box[2]) / 2 + k).pose.yaw_deg - yaw))
    return np.array(out)


def rotations(an, ref: ReferencePose, samples: list[Sample], cache: dict, angles=ROTATIONS) -> list[dict]:
    """Tilted heads with a known answer: each face's frame rotated in the image about the face
    by each angle (bicubic), the face detected again and both methods run on it. The truth is
    the unrotated face's reference pose with its roll moved by the angle.

    Returns one dict per angle: ``n`` faces, ``found`` re-detected; the reference's mean roll
    change and its yaw and pitch MAE against its unrotated reading; the five points' mean roll
    change (the device's axis and the eye line) and the device's yaw and pitch MAE against the
    truth.
    """
    out = {a: dict(angle=a, n=len(samples), found=0, ref_roll=[], ref_yaw=[], ref_pitch=[], axis_roll=[],
                   eye_roll=[], yaw=[], pitch=[]) for a in angles}
    for s in samples:
        rgb = cache[s.clip][s.frame]
        cx, cy = (s.box[0] + s.box[2]) / 2, (s.box[1] + s.box[3]) / 2
        level = orientation.head_pose(s.keypoints)
        for angle in angles:
            img = np.asarray(Image.fromarray(rgb).rotate(-angle, resample=Image.Resampling.BICUBIC, center=(cx, cy)))
            dets = [d for d in an.detector.detect(img)
                    if max(abs((d.box[0] + d.box[2]) / 2 - cx), abs((d.box[1] + d.box[3]) / 2 - cy)) < s.width / 2]
            if not dets:
                continue
            r, est, o = ref.estimate(img, dets[0]).pose, orientation.head_pose(dets[0].keypoints), out[angle]
            o["found"] += 1
            o["ref_roll"].append(r.roll_deg - s.ref.roll_deg)
            o["ref_yaw"].append(abs(r.yaw_deg - s.ref.yaw_deg))
            o["ref_pitch"].append(abs(r.pitch_deg - s.ref.pitch_deg))
            o["axis_roll"].append(est.roll_deg - level.roll_deg)
            o["eye_roll"].append(math.degrees(eye_line_features(dets[0].keypoints)[0] - eye_line_features(s.keypoints)[0]))
            o["yaw"].append(abs(est.yaw_deg - s.ref.yaw_deg))
            o["pitch"].append(abs(est.pitch_deg - s.ref.pitch_deg))
    return [{k: (float(np.mean(v)) if isinstance(v, list) else v) for k, v in o.items()} for o in out.values()]


def rescaled(rgb: np.ndarray, box: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame scaled so the face is ``width`` px wide, cropped to the model's input when
    larger (around the face); returns the image and the face's box in it."""
    s = width / (box[2] - box[0])
    h, w = rgb.shape[:2]
    size = (max(1, round(w * s)), max(1, round(h * s)))
    resample = Image.Resampling.BOX if s < 1 else Image.Resampling.BILINEAR  # area average = a sensor
    img = np.asarray(Image.fromarray(rgb).resize(size, resample))
    b = box * s
    x0 = int(min(max(0, (b[0] + b[2]) / 2 - MODEL_WH[0] / 2), max(0, size[0] - MODEL_WH[0])))
    y0 = int(min(max(0, (b[1] + b[3]) / 2 - MODEL_WH[1] / 2), max(0, size[1] - MODEL_WH[1])))
    img = np.ascontiguousarray(img[y0:y0 + MODEL_WH[1], x0:x0 + MODEL_WH[0]])
    return img, b - np.array([x0, y0, x0, y0])


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def size_study(an, samples: list[Sample], cache: dict, sizes=SIZES) -> list[dict]:
    """Per target face width: each face's frame is downscaled (area average) until the face is
    that wide and run through the detector; the estimate is compared with the reference pose
    of the full-size face. Faces narrower than the target are upscaled instead (bilinear:
    blurred, not what a camera sees); their figures are kept apart and used only where no
    face was downscaled (``kind`` "up").

    Returns one dict per width: ``n`` faces, ``found`` re-detected, yaw and pitch MAE and RMS
    (deg), ``agreement`` of the estimate's facing-front decision with the reference's,
    ``undecided`` share left uncalled by :func:`device.orientation.call`, and
    ``decided_agreement`` among the called faces.
    """
    rows = []
    for width in sizes:
        down = [s for s in samples if s.width >= width]
        kind, use = ("down", down) if down else ("up", samples)
        ey, ep, agree, decided_agree, undecided, found = [], [], [], [], 0, 0
        for s in use:
            img, box = rescaled(cache[s.clip][s.frame], s.box, width)
            dets = [d for d in an.detector.detect(img) if iou(d.box, box) > 0.3]
            if not dets:
                continue
            found += 1
            d = max(dets, key=lambda d: iou(d.box, box))
            pose = orientation.head_pose(d.keypoints)
            ey.append(pose.yaw_deg - s.ref.yaw_deg)
            ep.append(pose.pitch_deg - s.ref.pitch_deg)
            truth = orientation.is_facing_front(s.ref)
            agree.append(orientation.is_facing_front(pose) == truth)
            called = orientation.call(pose, d.width)
            if called is None:
                undecided += 1
            else:
                decided_agree.append(called == truth)
        ey, ep = np.array(ey), np.array(ep)
        rows.append(dict(width=width, kind=kind, n=len(use), found=found,
                         yaw_mae=float(np.abs(ey).mean()), yaw_rms=float(np.sqrt((ey ** 2).mean())),
                         pitch_mae=float(np.abs(ep).mean()), pitch_rms=float(np.sqrt((ep ** 2).mean())),
                         agreement=float(np.mean(agree)), undecided=undecided / max(found, 1),
                         decided_agreement=float(np.mean(decided_agree)) if decided_agree else float("nan")))
    return rows


def fit_error_model(rows: list[dict], key: str) -> tuple[float, float]:
    """``(floor, scale)`` with rms(width) ~= sqrt(floor^2 + (scale/width)^2), least squares on
    the squared RMS (linear in floor^2 and scale^2), over the downscaled rows only."""
    rows = [r for r in rows if r["kind"] == "down"]
    w = np.array([r["width"] for r in rows], float)
    y = np.array([r[key] for r in rows]) ** 2
    a = np.stack([np.ones_like(w), 1 / w ** 2], axis=1)
    (f2, s2), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(math.sqrt(max(f2, 0.0))), float(math.sqrt(max(s2, 0.0)))


def classroom(an) -> dict:
    """Per person (left to right, frames with all 4 found): facing-front share, called share;
    the right man's yaw by frame and his decisions."""
    per = {i: [] for i in range(4)}
    right = {}
    for index, rgb in enumerate(frames(CLASSROOM)):
        faces = sorted(an.faces(rgb), key=lambda f: f.detection.box[0])
        if faces:
            right[index] = faces[-1]
        if len(faces) == 4:
            for i, f in enumerate(faces):
                per[i].append(f)
    return dict(
        front_share=[float(np.mean([f.facing_front for f in per[i]])) for i in range(4)],
        called_front_share=[float(np.mean([f.facing_front and f.decided for f in per[i]])) for i in range(4)],
        widths=[float(np.median([f.detection.width for f in per[i]])) for i in range(4)],
        frames_with_4=len(per[0]), right=right)


def engagement(an, before: bool, window_s: float = 1.0, min_group: int = 3) -> list[tuple]:
    """Classroom clip windows of 1 second, min group 3 as ``make run``: ``before`` with the
    pre-issue-11 constants and every face counted, else as the service now computes them.

    Returns per window ``(score, faces, facing front, undecided)``.
    """
    agg, windows, last, counts = WindowAggregator(window_s, min_group), [], 0.0, []
    current_counts = [0, 0, 0]
    for frame in read_file(VIDEO / CLASSROOM):
        faces = an.faces(frame.rgb)
        if before:
            front = sum(orientation.is_facing_front(pose_with(f.detection.keypoints, BEFORE)) for f in faces)
            result = FrameResult(frame.timestamp, len(faces), front)
        else:
            result = FrameResult.of(frame.timestamp, faces)
        closed = agg.add(result)
        if closed:
            counts.append(current_counts)
            current_counts = [0, 0, 0]
        windows += closed
        current_counts = [current_counts[0] + result.faces, current_counts[1] + result.facing_front,
                          current_counts[2] + result.undecided]
        last = frame.timestamp
    windows += agg.flush(end=last + 1 / 15)
    counts.append(current_counts)
    return [(w.engagement_score, *c) for w, c in zip(windows, counts)]


def held_out_sets(samples: list[Sample]) -> dict:
    """The held-out head-pose faces: ``reliable`` (the reference agrees with itself on the
    mirrored crop and on one more pass), ``every`` (all >= 30 px faces whose mirrored crop the
    reference reads consistently, the set before the drift rule), and ``mild``, the reliable
    ones with |roll| <= STRONG_ROLL."""
    reliable = [s for s in samples if s.held_out and s.reliable]
    return dict(reliable=reliable, every=[s for s in samples if s.held_out and s.large and s.mirror_error <= MAX_REF_MIRROR],
                mild=[s for s in reliable if abs(s.ref.roll_deg) <= STRONG_ROLL])


def training(samples: list[Sample]) -> list[Sample]:
    """The fit's faces: reliable, not held out (head-pose ``index % 3 != 2``, walking-and-pause)."""
    return [s for s in samples if s.reliable and not s.held_out]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every third face in the size study, half the rotated ones")
    args = parser.parse_args(argv)
    an, ref = analyzer(), ReferencePose()
    samples, cache = collect(an, ref)
    reliable = [s for s in samples if s.reliable]
    large = [s for s in samples if s.large]

    print(f"1. reference checks: faces detected {len(samples)}, >= 30 px with face flag >= 0.9: {len(large)}, "
          f"reliable {len(reliable)}; dropped because the reference disagrees with itself on the mirrored crop "
          f"by more than {MAX_REF_MIRROR:.0f} deg: {sum(s.mirror_error > MAX_REF_MIRROR for s in large)}, or one "
          f"more tracking pass moves it by more than {MAX_REF_DRIFT:.0f} deg: "
          f"{sum(s.mirror_error <= MAX_REF_MIRROR and s.drift > MAX_REF_DRIFT for s in large)}")
    for clip in HEAD_POSE + (WALK_PAUSE,):
        c = [s for s in reliable if s.clip == clip]
        d = [s.drift for s in large if s.clip == clip]
        yaws = [s.ref.yaw_deg for s in c]
        print(f"   {clip:52s} faces {len(c):3d}  yaw {min(yaws):6.1f} .. {max(yaws):5.1f}  "
              f"pitch {min(s.ref.pitch_deg for s in c):6.1f} .. {max(s.ref.pitch_deg for s in c):5.1f}  "
              f"|yaw + yaw(mirrored crop)| median {np.median([s.mirror_error for s in c]):.1f} "
              f"max {max(s.mirror_error for s in c):.1f}  drift median {np.median(d):.1f} max {max(d):.1f}")
    drifting = [s for s in large if s.drift > MAX_REF_DRIFT]
    for clip in HEAD_POSE:
        d = [s for s in drifting if s.clip == clip]
        if d:
            print(f"   drifting in {clip}: {len(d)} faces, frames {sorted(s.frame for s in d)}, box x "
                  f"{min(s.box[0] for s in d):.0f}..{max(s.box[0] for s in d):.0f}, reference roll "
                  f"{min(s.ref.roll_deg for s in d):.0f}..{max(s.ref.roll_deg for s in d):.0f} deg, drift "
                  f"{min(s.drift for s in d):.1f}..{max(s.drift for s in d):.1f} deg")
    level = [s for s in reliable if abs(s.ref.roll_deg) < 10][:: 2 if args.quick else 1][::4]
    print(f"   tilted heads: {len(level)} reliable level faces rotated in the image (truth: their reference, "
          f"roll + rotation)")
    print("   rotation  found   reference: roll change  yaw/pitch change   five points: axis roll  eye-line roll  "
          "yaw MAE  pitch MAE")
    for r in rotations(an, ref, level, cache):
        print(f"   {r['angle']:+5d}    {r['found']:3d}/{r['n']:3d}   {r['ref_roll']:+20.1f}  {r['ref_yaw']:7.1f} {r['ref_pitch']:5.1f}"
              f"   {r['axis_roll']:+23.1f}  {r['eye_roll']:+13.1f}  {r['yaw']:7.1f}  {r['pitch']:9.1f}")

    train = training(samples)
    fitted = fit(train)
    print(f"2. fit on {len(train)} reliable faces (head-pose frames index % 3 != 2 and walking-and-pause):")
    print("   " + "  ".join(f"{k} = {v:.4f}" for k, v in fitted.items()))
    print("   in device/orientation.py: " + "  ".join(f"{k} = {v:.4f}" for k, v in current().items() if k != "axis"))
    e = errors(train, current())
    print(f"   on the training faces: yaw MAE {e['yaw_mae']:.2f}, pitch MAE {e['pitch_mae']:.2f}, "
          f"agreement {e['agreement']:.3f}")

    sets = held_out_sets(samples)
    print(f"3. held-out head-pose faces, against the reference")
    labels = (("reliable", f"reference reliable ({len(sets['reliable'])})"), ("mild", f"reliable, |roll| <= {STRONG_ROLL:.0f}"),
              ("every", "every face (before the drift rule)"))
    for name, c in (("before issue 11", BEFORE), ("eye-line fit", EYE_LINE_FIT), ("now", current())):
        for key, label in labels:
            e = errors(sets[key], c)
            print(f"   {name:16s} {label:36s} n={e['n']:3d} yaw MAE {e['yaw_mae']:5.2f} (n={e['n_yaw']})  "
                  f"pitch MAE {e['pitch_mae']:5.2f} (n={e['n_pitch']})  facing-front agreement "
                  f"{e['agreement']:.3f} (reference facing front {e['ref_front']:.2f})"
                  + (f"; called: undecided {e['undecided']:.3f}, agreement {e['called_agreement']:.3f}"
                     if name == "now" else ""))
    print("   yaw error by measured tilt (|roll| of the five points' axis), reliable faces:")
    for lo, hi in ((0, 5), (5, 10), (10, 20), (20, 90)):
        err = [orientation.head_pose(s.keypoints).yaw_deg - s.ref.yaw_deg for s in reliable
               if lo <= abs(orientation.head_pose(s.keypoints).roll_deg) < hi]
        print(f"     {lo:2d}-{hi:2d} deg: {len(err):3d} faces, yaw RMS {np.sqrt(np.mean(np.square(err))):5.1f} deg")

    m = mirror_yaw(an, sets["every"], cache)
    t, est, det = m["total"], m["estimator"], m["detector"]
    print(f"4. mirrored held-out frames ({len(t)} faces): yaw + yaw(mirrored) mean {t.mean():+.2f} deg; per face |.| "
          f"mean {np.abs(t).mean():.2f} median {np.median(np.abs(t)):.2f} max {np.abs(t).max():.2f}")
    print(f"   the estimator's part (the same five points mirrored): max {np.abs(est).max():.2g} deg; the detector's "
          f"part: median {np.median(np.abs(det)):.2f} max {np.abs(det).max():.2f} deg (its points on the mirrored frame "
          f"lie {np.median(m['points']):.3f} half eye spans from the mirrored points, median; nose "
          f"{np.median(m['points'][:, 2]):.3f})")
    j = shift_jitter(an, sets["every"], cache)
    print(f"   the detector's own jitter: the same frames shifted by 1-3 px move yaw by a median {np.median(j):.2f} deg "
          f"(mean {j.mean():.2f}, 90th percentile {np.percentile(j, 90):.2f}; {len(j)} faces x shifts)")

    study = [s for s in reliable if abs(s.ref.roll_deg) <= STRONG_ROLL]
    if args.quick:
        study = study[::3]
    rows = size_study(an, study, cache)
    print(f"5. error versus face width ({len(study)} reliable faces, |roll| <= {STRONG_ROLL:.0f}, "
          "rescaled; reference from the full-size frame)")
    print("   width  copies  found    yaw MAE  yaw RMS  pitch MAE  pitch RMS  front agree  undecided  agree(called)")
    for r in rows:
        print(f"   {r['width']:4d}   {r['kind']:5s} {r['found']:3d}/{r['n']:3d}  {r['yaw_mae']:7.1f}  {r['yaw_rms']:7.1f}  "
              f"{r['pitch_mae']:9.1f}  {r['pitch_rms']:9.1f}  {r['agreement']:11.3f}  {r['undecided']:9.3f}  "
              f"{r['decided_agreement']:13.3f}")
    print("   error model sqrt(floor^2 + (scale/width)^2) fitted to RMS: yaw (%.2f, %.1f), pitch (%.2f, %.1f)"
          % (*fit_error_model(rows, "yaw_rms"), *fit_error_model(rows, "pitch_rms")))
    print(f"   in device/orientation.py: YAW_ERROR {orientation.YAW_ERROR}, PITCH_ERROR {orientation.PITCH_ERROR}, "
          f"CALL_MARGIN {orientation.CALL_MARGIN}")

    c = classroom(an)
    print(f"6. classroom ({c['frames_with_4']} frames with 4 faces; median widths "
          f"{[round(w) for w in c['widths']]} px): facing-front share left to right "
          f"{[round(x, 3) for x in c['front_share']]}, called facing front {[round(x, 3) for x in c['called_front_share']]}")
    r = c["right"]
    print("   man on the right, yaw by frame: " + " ".join(f"{i}:{r[i].pose.yaw_deg:.0f}{'' if r[i].decided else '?'}"
                                                       for i in sorted(r)))
    print("7. classroom engagement, 1-second windows, min group 3 (score; faces, facing front, undecided):")
    for name, flag in (("before issue 11", True), ("now", False)):
        print(f"   {name:16s} " + "   ".join(f"{w[0]} ({w[1]}, {w[2]}, {w[3]})" for w in engagement(an, flag)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
