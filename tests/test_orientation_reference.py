"""Head orientation against the 3D reference on real frames (issue 11).

The reference is MediaPipe's 468-point face mesh (scripts/reference_pose.py); the figures are
those scripts/orientation_eval.py prints, measured on the Intel clips (CC-BY-4.0). Held out:
head-pose frames with index % 3 == 2. "Reliable": the reference agrees with itself on the
mirrored crop and on one more tracking pass (its drift); "mild roll": |roll| <= 20 deg by the
reference.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import ROOT, VIDEO

sys.path.insert(0, str(ROOT / "scripts"))
import orientation_eval as oe  # noqa: E402
from reference_pose import ReferencePose, pose_from_mesh  # noqa: E402

from device import orientation  # noqa: E402

pytestmark = pytest.mark.skipif(not (VIDEO / oe.CLASSROOM).exists(), reason="clips not found")


@pytest.fixture(scope="module")
def an():
    return oe.analyzer()


@pytest.fixture(scope="module")
def data(an):
    samples, cache = oe.collect(an, ReferencePose())
    return [s for s in samples if s.reliable], samples, cache


def test_reference_is_plausible(data):
    reliable, samples, _ = data
    by = {c: [s for s in reliable if s.clip == c] for c in oe.HEAD_POSE + (oe.WALK_PAUSE,)}
    # The female clip turns about 45 deg to the image's left (her right; frame 0) and about
    # 30 deg to the image's right (frames 12-15), checked by eye: -30.2 .. 48.8 measured.
    female = [s.ref.yaw_deg for s in by[oe.HEAD_POSE[0]]]
    assert max(female) > 45 and min(female) < -25
    assert by[oe.HEAD_POSE[0]][0].ref.yaw_deg > 40  # frame 0: turned to her right
    # The male clip looks straight at the camera throughout: |yaw|, |pitch| <= 3.2 measured.
    male = by[oe.HEAD_POSE[1]]
    assert all(abs(s.ref.yaw_deg) < 3 and abs(s.ref.pitch_deg) < 4 and abs(s.ref.roll_deg) < 4 for s in male)
    # Mirrored crops: opposite yaw (median |yaw + yaw(mirror)| 0.7-1.6 deg per clip).
    assert np.median([s.mirror_error for s in reliable]) < 2
    large = [s for s in samples if s.large]
    assert len(large) == 320 and sum(s.mirror_error > oe.MAX_REF_MIRROR for s in large) == 8
    # One more tracking pass: the walking and male clips move at most 2.6 and 1.9 deg, the
    # tilted man of the female-and-male clip 3.6; the tilted, turned woman beside him drifts
    # 6.4-20.5 deg from frame 3 on (the mesh keeps rotating), and 3 faces of the female clip 5.4-6.2.
    drifting = [s for s in large if s.mirror_error <= oe.MAX_REF_MIRROR and s.drift > oe.MAX_REF_DRIFT]
    assert len(drifting) == 49 and len(reliable) == 263
    both = [s for s in large if s.clip == oe.HEAD_POSE[2]]
    man, woman = [s for s in both if s.box[0] > 200], [s for s in both if s.box[0] < 200 and s.frame >= 3]
    assert max(s.drift for s in man) < 4 and abs(np.mean([s.ref.roll_deg for s in man if s.frame >= 8])) > 35
    assert all(s.drift > oe.MAX_REF_DRIFT for s in woman)
    for clip in (oe.WALK_PAUSE, oe.HEAD_POSE[1]):
        assert max(s.drift for s in large if s.clip == clip) < 3


def test_reference_follows_tilt_the_five_points_do_not(an, data):
    reliable, _, cache = data
    level = [s for s in reliable if abs(s.ref.roll_deg) < 10][::16]
    rows = oe.rotations(an, ReferencePose(), level, cache, angles=(-30, 30))
    for r in rows:
        print(r)
        assert r["found"] >= 0.4 * r["n"]  # YuNet misses tilted faces: 26-35 of 51 found at +-30 (full run)
        # measured (full run): the reference reads -29.1 / +29.9 with yaw and pitch moving
        # 0.8-1.0 and 1.5-1.9 deg; the five points' axis -17.7 / +23.7, the eye line -12.9 / +15.6
        assert abs(r["ref_roll"] - r["angle"]) < 2.5 and r["ref_yaw"] < 2 and r["ref_pitch"] < 3
        assert 0.5 < r["axis_roll"] / r["angle"] < 0.9 and abs(r["eye_roll"]) < abs(r["axis_roll"])
        # the device's yaw on them: MAE 4.8 / 5.1 deg on these 13 faces (3.7 / 3.6 on all 51)
        assert r["yaw"] < 6


def test_pose_from_mesh_sign_conventions():
    # a flat symmetric "mesh" facing the camera, then turned to the image's left and chin up
    rng = np.random.default_rng(0)
    mesh = np.zeros((468, 3))
    mesh[:, :2] = rng.uniform(-50, 50, (468, 2))
    from reference_pose import PAIRS

    mesh[PAIRS[:, 0], 0] = -np.abs(mesh[PAIRS[:, 0], 0])  # person's right on the image's left
    mesh[PAIRS[:, 1]] = mesh[PAIRS[:, 0]] * (-1, 1, 1)
    pose = pose_from_mesh(mesh)
    assert abs(pose.yaw_deg) < 1e-6 and abs(pose.pitch_deg) < 1e-6 and abs(pose.roll_deg) < 1e-6
    yaw = np.radians(20)  # nose (-z, toward the camera) swings toward -x: face turned to image left
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    assert pose_from_mesh(mesh @ ry.T).yaw_deg == pytest.approx(20, abs=1e-6)
    pitch = np.radians(15)  # chin up: the face's forward axis (-z) tilts toward -y (up)
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), np.sin(pitch)], [0, -np.sin(pitch), np.cos(pitch)]])
    assert pose_from_mesh(mesh @ rx.T).pitch_deg == pytest.approx(15, abs=1e-6)


def test_constants_are_the_least_squares_fit(data):
    _, samples, _ = data
    train = oe.training(samples)
    fitted = oe.fit(train)
    print("fitted", fitted, "on", len(train), "faces")
    assert len(train) == 219
    for key, value in oe.current().items():
        if key != "axis":
            assert fitted[key] == pytest.approx(value, abs=2e-4), key


def test_held_out_error_against_the_reference(data):
    _, samples, _ = data
    sets = oe.held_out_sets(samples)
    now, eye = oe.errors(sets["reliable"], oe.current()), oe.errors(sets["reliable"], oe.EYE_LINE_FIT)
    print("held-out, reference reliable: now", now, "eye-line geometry", eye)
    # measured: yaw MAE 3.07 (44 faces), pitch MAE 4.67, agreement 0.977 (one face: the woman
    # of the female-and-male clip tilting, turned 32 deg, read 23); the eye-line geometry
    # fitted the same way: 5.39 / 5.98 / 0.977 (it reads the tilted man 8-13 deg off).
    assert now["n"] == 44
    assert now["yaw_mae"] <= 5 and now["pitch_mae"] <= 6 and now["agreement"] >= 0.95
    assert now["yaw_mae"] < eye["yaw_mae"] - 1.5 and now["pitch_mae"] < eye["pitch_mae"] - 0.5
    # The device leaves tilted heads undecided: 43 % of these, every called one agrees.
    assert now["called_agreement"] == 1.0 and now["undecided"] == pytest.approx(0.432, abs=0.03)
    mild = oe.errors(sets["mild"], oe.current())
    print("held-out, reliable, mild roll:", mild)
    # measured: 26 faces, yaw MAE 2.70, pitch 5.64, agreement 1.000, undecided 0.038
    assert mild["n"] == 26 and mild["yaw_mae"] <= 3.5 and mild["pitch_mae"] <= 6 and mild["agreement"] == 1.0
    # Every held-out face, the drifting woman included (the reference reads her 34-50 deg,
    # the five points 6-19): yaw MAE 8.85, pitch 8.07, agreement 0.733; undecided 0.567, the
    # called ones agree 100 %.
    every = oe.errors(sets["every"], oe.current())
    print("held-out, every face:", every)
    assert every["n"] == 60 and every["yaw_mae"] < 10 and every["agreement"] >= 0.7
    assert every["called_agreement"] == 1.0 and every["undecided"] == pytest.approx(0.567, abs=0.03)


def test_mirrored_frames(an, data):
    _, samples, cache = data
    m = oe.mirror_yaw(an, oe.held_out_sets(samples)["every"], cache)
    t = m["total"]
    print(f"yaw + yaw(mirrored): mean {t.mean():+.2f}, |.| median {np.median(np.abs(t)):.2f} max {np.abs(t).max():.2f}; "
          f"detector's points off the mirrored points by {np.median(m['points']):.3f} half eye spans (median)")
    # The formula is exactly antisymmetric: the mirrored five points give the opposite yaw.
    assert np.abs(m["estimator"]).max() < 1e-9
    # All of what remains is the detector's: its points on a mirrored frame lie a median 0.24
    # half eye spans from the mirrored points (float and int8 alike), so yaw + yaw(mirrored)
    # is 3.45 deg per face (median), 19.8 at most (a 45 deg turn, where yaw is steep in the
    # nose offset); mean -1.55: no bias beyond that noise.
    assert np.allclose(m["total"], m["detector"])
    assert abs(t.mean()) <= 2 and np.median(np.abs(t)) <= 4
    assert 0.15 <= np.median(m["points"]) <= 0.35
    # Part of that noise is the detector's jitter on the pixel grid: the same frames moved by
    # 1-3 px change yaw by a median 1.45 deg, so two readings on different grid phases, frame
    # and mirror, differ by about sqrt(2) x 1.45 = 2.05 deg from that alone (a 2 deg bar per
    # face is below it); the rest of the 3.45 is the network's own left-right asymmetry.
    jitter = oe.shift_jitter(an, oe.held_out_sets(samples)["every"], cache)
    assert 1.0 <= np.median(jitter) <= 2.0 and np.median(np.abs(t)) >= np.sqrt(2) * np.median(jitter)


def test_classroom_people(an):
    c = oe.classroom(an)
    print("classroom", {k: v for k, v in c.items() if k != "right"})
    assert c["frames_with_4"] >= 43
    assert min(c["called_front_share"][:3]) >= 0.95  # measured 1.0, 1.0, 1.0
    right = c["right"]
    for i in range(18, 29):
        assert right[i].pose.yaw_deg > 30 and not right[i].facing_front, i  # 37 .. 67 measured
    for i in (0, 1, 2, 3, 36, 37, 38, 39, 40):
        assert right[i].facing_front and right[i].decided, i


def test_error_grows_as_faces_shrink(an, data):
    reliable, _, cache = data
    study = [s for s in reliable if abs(s.ref.roll_deg) <= oe.STRONG_ROLL][::3]
    rows = {r["width"]: r for r in oe.size_study(an, study, cache, sizes=(12, 16, 24, 40))}
    for r in rows.values():
        print(r)
    # measured (every third face, 70): yaw RMS 8.5 / 3.9 / 4.3 / 3.7 deg at 12 / 16 / 24 / 40 px
    assert rows[12]["yaw_rms"] > 1.6 * rows[24]["yaw_rms"]
    assert 7 <= rows[12]["yaw_rms"] <= 12 and rows[24]["yaw_rms"] <= 5.5
    # At the default score threshold 0.7 the detector finds 61 of the 70 faces shrunk to 12 px
    # (87 %; at 0.6 it found more, but also a shirt collar and backs of heads: models/README.md).
    assert rows[12]["found"] >= 0.7 * rows[12]["n"] and rows[16]["found"] == rows[16]["n"]
    for r in rows.values():  # the faces the rule calls agree with the reference at least as often
        # (within one face of the ~70: at 16 px 0.9853 called vs 0.9857 all, measured)
        assert r["decided_agreement"] >= r["agreement"] - 1 / r["n"]
    # The error model in device/orientation.py (fitted to the full study's RMS: 3.28, 76.7 deg
    # yaw; 6.00, 69.8 pitch) predicts this subset's RMS within 2 deg (12 px: 7.2 vs 8.5).
    for r in rows.values():
        assert orientation.angle_error(r["width"], orientation.YAW_ERROR) == pytest.approx(r["yaw_rms"], abs=2)
        assert orientation.angle_error(r["width"], orientation.PITCH_ERROR) == pytest.approx(r["pitch_rms"], abs=2)


def test_classroom_engagement_before_and_after(an):
    before, after = oe.engagement(an, True), oe.engagement(an, False)
    print("before", before, "after", after)
    assert [w[0] for w in before] == [1.0, 0.8, 0.983]
    # Window 2: the man on the right turned (frames 18-28, 19 px wide) reads 37-67 deg, far
    # enough past the limit to call; frame 29 reads 30.0, too near it: 48 of 59 called faces
    # (the eye-line geometry read him 25-36 in 4 frames: 48 of 56, 0.857). Window 3: frame 31
    # of him reads 15 deg (31 with the pre-issue-11 yaw gain): facing front.
    assert after == [(1.0, 60, 60, 0), (0.814, 60, 48, 1), (1.0, 60, 60, 0)]
