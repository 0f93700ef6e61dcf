"""Head orientation: sign conventions on constructed keypoints, then real faces."""

import numpy as np
import pytest
import skimage.data

from device.orientation import NOSE_HEIGHT, angle_error, call, head_pose, is_facing_front, YAW_ERROR
from device.types import HeadPose

# A level frontal face, pixels, YuNet order: right eye (image left), left eye, nose tip
# (NOSE_HEIGHT of the way from the eye line to the mouth), right mouth corner (image left),
# left mouth corner.
FRONTAL = np.array([[40, 50], [60, 50], [50, 50 + 20 * NOSE_HEIGHT], [44, 70], [56, 70]], float)


def test_frontal_face_is_near_zero():
    pose = head_pose(FRONTAL)
    assert abs(pose.yaw_deg) < 1 and abs(pose.pitch_deg) < 1 and abs(pose.roll_deg) < 1


def test_nose_toward_image_left_is_positive_yaw():
    kp = FRONTAL.copy()
    kp[2, 0] -= 5  # nose moves to the image's left: face turned to the person's right
    assert head_pose(kp).yaw_deg > 15  # half a half eye span off the axis: 17.3 deg
    kp[2, 0] += 10
    assert head_pose(kp).yaw_deg < -15


def test_nose_raised_is_positive_pitch():
    kp = FRONTAL.copy()
    kp[2, 1] -= 4  # nose tip higher between eyes and mouth: chin raised
    assert head_pose(kp).pitch_deg > 15


def test_roll_is_removed_before_yaw_and_pitch():
    angle = np.radians(25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pose = head_pose((FRONTAL - 50) @ rot.T + 50)
    assert pose.roll_deg == pytest.approx(25, abs=0.5)
    assert abs(pose.yaw_deg) < 1 and abs(pose.pitch_deg) < 1


def test_limits_and_bad_input():
    assert is_facing_front(HeadPose(29.9, -24.9, 0))
    assert not is_facing_front(HeadPose(30.1, 0, 0))
    assert not is_facing_front(HeadPose(0, 25.1, 0))
    assert is_facing_front(HeadPose(35, 0, 0), yaw_limit=40)
    with pytest.raises(ValueError, match="shape"):
        head_pose(np.zeros((6, 2)))
    with pytest.raises(ValueError, match="coincide"):
        head_pose(np.zeros((5, 2)))


def test_astronaut_one_frontal_face_reads_frontal_both_ways(analyzer):
    image = skimage.data.astronaut()
    faces = analyzer.faces(image)
    mirrored = analyzer.faces(np.ascontiguousarray(image[:, ::-1]))
    assert len(faces) == 1 and len(mirrored) == 1
    face, mirror = faces[0], mirrored[0]
    print("astronaut yaw", face.pose.yaw_deg, "mirrored", mirror.pose.yaw_deg)
    assert face.facing_front and mirror.facing_front
    # Near frontal: the 3D reference (scripts/reference_pose.py) reads yaw 1.7 and -0.4 deg;
    # we read 0.0 and -0.4 (4.4 and 1.8 with the eye-line geometry). YuNet's landmarks on a
    # mirrored picture are not the mirrored landmarks (a few degrees per face,
    # orientation_eval.py section 4), so the sign of a near-frontal yaw is not stable under
    # mirroring; the size is.
    assert abs(face.pose.yaw_deg) < 6 and abs(mirror.pose.yaw_deg) < 6
    width = image.shape[1]
    np.testing.assert_allclose(mirror.detection.box[[2, 0]], width - face.detection.box[[0, 2]], atol=3)
    assert mirror.detection.width == pytest.approx(face.detection.width, rel=0.05)


def test_mirrored_keypoints_give_exactly_opposite_yaw_and_roll():
    kp = FRONTAL.copy()
    kp[2] += (-4, 1.5)  # turned and tilted
    kp[1, 1] += 2
    mirrored = kp.copy()
    mirrored[:, 0] = 100 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # the person's right eye is now on the image's right
    a, b = head_pose(kp), head_pose(mirrored)
    assert a.yaw_deg == pytest.approx(-b.yaw_deg, abs=1e-9) and a.yaw_deg > 10
    assert a.pitch_deg == pytest.approx(b.pitch_deg, abs=1e-9)
    assert a.roll_deg == pytest.approx(-b.roll_deg, abs=1e-9)


def test_call_leaves_small_faces_near_a_limit_undecided():
    # error model: 12 px -> about 7.2 deg of yaw, 120 px -> about 3.3
    assert angle_error(12, YAW_ERROR) == pytest.approx(7.18, abs=0.05)
    assert angle_error(120, YAW_ERROR) == pytest.approx(3.34, abs=0.05)
    near = HeadPose(26.0, 0.0, 0.0)
    assert call(near, 120) is True  # 4 deg inside, error 3.3
    assert call(near, 12) is None  # 4 deg inside, error 7.2
    assert call(HeadPose(45.0, 0.0, 0.0), 12) is False
    assert call(HeadPose(0.0, 0.0, 0.0), 12) is True
    assert call(HeadPose(0.0, 30.0, 0.0), 120) is None  # pitch error floor about 6.0 deg
    assert call(HeadPose(0.0, 40.0, 0.0), 12) is False


def test_tilted_heads_are_not_called():
    assert call(HeadPose(0.0, 0.0, 9.0), 60) is True
    assert call(HeadPose(0.0, 0.0, 11.0), 60) is None
    assert call(HeadPose(60.0, 0.0, -25.0), 60) is None
