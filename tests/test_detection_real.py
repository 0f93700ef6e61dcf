"""Detection and head orientation on the real clips (CC-BY-4.0, Intel IoT Devkit sample-videos).

Every figure asserted here was measured with the default settings (YuNet int8, the model
size chosen per frame, min score 0.6 unless said) and is printed for the closing notes.
"""

import collections
import json

import numpy as np
import pytest
from PIL import Image

from conftest import CLASSROOM, CLASSROOM_MP4, ONE_BY_ONE, WALKING, roompulse
from device.sources.files import read_file


def analyze_lines(path):
    result = roompulse("analyze", str(path), timeout=300)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_analyze_output_is_the_design_contract():
    lines = analyze_lines(CLASSROOM_MP4)
    assert len(lines) == 45
    first = lines[0]
    assert set(first) == {"source", "frame", "width", "height", "faces"}
    assert (first["source"], first["frame"], first["width"], first["height"]) == (str(CLASSROOM_MP4), 0, 480, 270)
    for face in first["faces"]:
        assert set(face) == {"box", "score", "yaw_deg", "pitch_deg", "facing_front"}
        x0, y0, x1, y1 = face["box"]
        assert 0 <= x0 < x1 <= 480 and 0 <= y0 < y1 <= 270  # frame pixels


@pytest.mark.parametrize("size", [None, (1280, 720), (1920, 1080)])
def test_classroom_exactly_four_faces_at_every_camera_size(analyzer, size):
    counts = collections.Counter()
    for frame in read_file(CLASSROOM):
        rgb = frame.rgb if size is None else np.asarray(Image.fromarray(frame.rgb).resize(size, Image.Resampling.BILINEAR))
        counts[len(analyzer.faces(rgb))] += 1
    print(f"classroom at {size or (480, 270)}: face counts per frame {sorted(counts.items())}")
    assert sum(counts.values()) == 45
    assert counts[4] / 45 >= 0.95


def test_classroom_four_faces_and_facing_front():
    lines = analyze_lines(CLASSROOM)
    counts = collections.Counter(len(l["faces"]) for l in lines)
    print("classroom face counts per frame:", sorted(counts.items()))
    assert len(lines) == 45
    assert counts[4] / len(lines) >= 0.95
    assert max(counts) <= 4
    # Per person (ordered left to right), in frames where all 4 are found.
    four = [sorted(l["faces"], key=lambda f: f["box"][0]) for l in lines if len(l["faces"]) == 4]
    share = [sum(f[i]["facing_front"] for f in four) / len(four) for i in range(4)]
    all_front = sum(all(f["facing_front"] for f in l["faces"]) and len(l["faces"]) == 4 for l in lines)
    print("facing-front share per person:", [round(s, 2) for s in share],
          f"all 4 facing front in {all_front}/45 frames")
    # The three people on the left look at the camera throughout.
    assert min(share[:3]) >= 0.95
    # The man on the right turns his head to his right (image left) in the middle of the
    # clip, well past 30 degrees (checked by eye): he is not facing front there, and is
    # at the start and the end.
    right = {l["frame"]: max(l["faces"], key=lambda f: f["box"][0]) for l in lines if l["faces"]}
    assert all(not right[i]["facing_front"] and right[i]["yaw_deg"] > 30 for i in range(18, 29) if i in right)
    assert all(right[i]["facing_front"] for i in (0, 1, 2, 3, 36, 37, 38, 39, 40))
    # So not every frame can have all four facing front: 21/45 measured with BlazeFace.
    assert all_front >= 20


def test_walking_both_people_found_once_both_faces_are_15_px(analyzer):
    counts, widths = {}, {}
    for frame in read_file(WALKING):
        faces = analyzer.faces(frame.rgb)
        counts[frame.index] = len(faces)
        widths[frame.index] = sorted(round(f.detection.width) for f in faces)
    print("walking face counts:", sorted(collections.Counter(counts.values()).items()))
    print("walking face widths per frame:", widths)
    both_15 = [i for i, w in widths.items() if len(w) >= 2 and w[-2] >= 15]
    # Both faces are found in every frame of the clip (12-26 px wide). The man's shirt collar
    # scores 0.61-0.72 in a few early frames and passes the 0.7 threshold in one (int8).
    assert all(c >= 2 for c in counts.values())
    assert sum(c > 2 for c in counts.values()) <= 1
    assert len(both_15) >= 15


def test_one_by_one_never_more_faces_than_people(analyzer):
    counts = collections.Counter()
    for frame in read_file(ONE_BY_ONE):
        if frame.index % 3 == 0:  # every third frame of 1394 keeps the suite short
            counts[len(analyzer.faces(frame.rgb))] += 1
    print("one-by-one face counts (every 3rd frame):", sorted(counts.items()))
    # People walk to the table one at a time, mostly seen from behind: at most one face.
    assert max(counts) <= 1
