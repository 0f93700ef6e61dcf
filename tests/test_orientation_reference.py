"""Head orientation against the 3D reference on real frames (issue 11).

The reference is MediaPipe's 468-point face mesh (scripts/reference_pose.py); the figures are
those scripts/orientation_eval.py prints, measured on the Intel clips (CC-BY-4.0). Held out:
head-pose frames with index % 3 == 2. "Mild roll": |roll| <= 20 deg by the reference, where
YuNet's five points hold (above it they under-report roll by about half and yaw follows).
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


def held_out(reliable, mild=True):
    return [s for s in reliable if s.held_out and (not mild or abs(s.ref.roll_deg) <= oe.STRONG_ROLL)]


def test_reference_is_plausible(data):
    reliable, samples, _ = data
    by = {c: [s for s in reliable if s.clip == c] for c in oe.HEAD_POSE + (oe.WALK_PAUSE,)}
    # The female clip turns about 45 deg to the image's left (her right; frame 0) and about
    # 30 deg to the image's right (frames 12-15), checked by eye: -29.6 .. 48.8 measured.
    female = [s.ref.yaw_deg for s in by[oe.HEAD_POSE[0]]]
    assert max(female) > 45 and min(female) < -25
    assert by[oe.HEAD_POSE[0]][0].ref.yaw_deg > 40  # frame 0: turned to her right
    # The male clip looks straight at the camera throughout: |yaw|, |pitch| <= 3.2 measured.
    male = by[oe.HEAD_POSE[1]]
    assert all(abs(s.ref.yaw_deg) < 3 and abs(s.ref.pitch_deg) < 4 and abs(s.ref.roll_deg) < 4 for s in male)
    # Mirrored crops: opposite yaw (median |yaw + yaw(mirror)| 0.7-1.6 deg per clip).
    assert np.median([s.mirror_error for s in reliable]) < 2
    # 7 of 320 faces fail the reference's own mirror check (2 in a strongly rolled head).
    assert len(samples) - len(reliable) <= 10


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
    reliable, _, _ = data
    train = [s for s in reliable if not s.held_out and abs(s.ref.roll_deg) <= oe.STRONG_ROLL]
    fitted = oe.fit(train)
    print("fitted", fitted, "on", len(train), "faces")
    assert len(train) == 182
    for key, value in oe.current().items():
        assert fitted[key] == pytest.approx(value, abs=2e-4), key


def test_held_out_error_against_the_reference(data):
    reliable, _, _ = data
    now, before = oe.errors(held_out(reliable), oe.current()), oe.errors(held_out(reliable), oe.BEFORE)
    print("held-out, mild roll: now", now, "before", before)
    # measured: yaw MAE 2.50 (27 faces), pitch MAE 6.33, agreement 1.000; before 3.84 / 4.49 / 0.963.
    # Pitch misses issue 11's 6 deg by 0.3 (with the RGB-input models; 5.86 with the BGR-input ones).
    assert now["n"] == 27
    assert now["yaw_mae"] <= 5 and now["pitch_mae"] <= 6.5 and now["agreement"] >= 0.95
    assert now["yaw_mae"] < before["yaw_mae"]
    # All held-out faces, strongly rolled heads included (female-and-male clip): yaw MAE 11.2,
    # pitch 8.2, agreement of the estimate 0.733: YuNet's eye points follow half the tilt. The
    # device does not call those heads (tilt limit): 55 % undecided, the called ones agree 100 %.
    every = oe.errors(held_out(reliable, mild=False), oe.current())
    print("held-out, all:", every)
    assert every["n"] == 60 and every["yaw_mae"] < 12 and every["agreement"] >= 0.7
    assert every["called_agreement"] >= 0.95 and every["undecided"] == pytest.approx(0.55, abs=0.02)
    assert now["called_agreement"] >= 0.95 and now["undecided"] <= 0.05  # 1.000 and 0.037 measured


def test_mirrored_frames(an, data):
    reliable, _, cache = data
    sums = oe.mirror_yaw(an, [s for s in reliable if s.held_out], cache)
    print(f"yaw + yaw(mirrored): mean {sums.mean():+.2f}, |.| median {np.median(np.abs(sums)):.2f} "
          f"max {np.abs(sums).max():.2f}")
    # No bias: the mean of yaw + yaw(mirrored) is -0.14 deg. Per face YuNet's landmarks on the
    # mirrored frame differ from the mirrored landmarks (float and int8 alike): |.| median 3.4.
    assert abs(sums.mean()) <= 2
    assert np.median(np.abs(sums)) <= 4.5


def test_classroom_people(an):
    c = oe.classroom(an)
    print("classroom", {k: v for k, v in c.items() if k != "right"})
    assert c["frames_with_4"] >= 43
    assert min(c["called_front_share"][:3]) >= 0.95  # measured 1.0, 1.0, 1.0
    right = c["right"]
    for i in range(18, 29):
        assert right[i].pose.yaw_deg > 30 and not right[i].facing_front, i  # 31 .. 47 measured
    for i in (0, 1, 2, 3, 36, 37, 38, 39, 40):
        assert right[i].facing_front and right[i].decided, i


def test_error_grows_as_faces_shrink(an, data):
    reliable, _, cache = data
    study = [s for s in reliable if abs(s.ref.roll_deg) <= oe.STRONG_ROLL][::3]
    rows = {r["width"]: r for r in oe.size_study(an, study, cache, sizes=(12, 16, 24, 40))}
    for r in rows.values():
        print(r)
    # measured (every third face, 70): yaw RMS 9.8 / 5.2 / 4.0 / 4.2 deg at 12 / 16 / 24 / 40 px
    assert rows[12]["yaw_rms"] > 1.6 * rows[24]["yaw_rms"]
    assert 7 <= rows[12]["yaw_rms"] <= 12 and rows[24]["yaw_rms"] <= 5.5
    # At the default score threshold 0.7 the detector finds 54 of the 70 faces shrunk to 12 px
    # (77 %; at 0.6 it found more, but also a shirt collar and backs of heads: models/README.md).
    assert rows[12]["found"] >= 0.7 * rows[12]["n"] and rows[16]["found"] == rows[16]["n"]
    for r in rows.values():  # the faces the rule calls agree with the reference at least as often
        # (within one face of the ~70: at 16 px 0.9855 called vs 0.9857 all, measured)
        assert r["decided_agreement"] >= r["agreement"] - 1 / r["n"]
    # The error model in device/orientation.py (fitted to the full study's RMS: 3.04, 85.8 deg
    # yaw; 6.36, 62.3 pitch) predicts this subset's RMS within 2 deg (12 px: 9.5 vs 8.1).
    for r in rows.values():
        assert orientation.angle_error(r["width"], orientation.YAW_ERROR) == pytest.approx(r["yaw_rms"], abs=2)
        assert orientation.angle_error(r["width"], orientation.PITCH_ERROR) == pytest.approx(r["pitch_rms"], abs=2)


def test_classroom_engagement_before_and_after(an):
    before, after = oe.engagement(an, True), oe.engagement(an, False)
    print("before", before, "after", after)
    assert [w[0] for w in before] == [1.0, 0.8, 0.983]
    # Window 2: the man on the right turning (frames 18, 19, 26, 29: 19 px wide, yaw 25-36)
    # is too near the 30 deg limit to call: 48 of 56 called faces instead of 48 of 60.
    # Window 3: frame 31 of him reads 20 deg (31 with the old yaw gain): facing front.
    assert after == [(1.0, 60, 60, 0), (0.857, 60, 48, 4), (1.0, 60, 60, 0)]
