"""``roompulse aim`` on the real clips: the grid puts the faces where ``analyze`` finds them,
small faces get advice, and nothing is written anywhere (audit hook, as test_privacy_audit)."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
from PIL import Image

from conftest import CLASSROOM, ROOT, VIDEO, clean_env, roompulse
from device.aim import cell_of, grid_shape

WALKING_PAUSE = VIDEO / "intel_face-demographics-walking-and-pause.gif"
# Only the 480x288 model is committed on this branch; it holds the 480x270 clips unscaled.
MODEL = {"ROOMPULSE_CAMERA_SIZE": "480x270", "ROOMPULSE_MODEL": "yunet_n_480x288_int8"}


def aim_lines(source, **env) -> tuple[list[dict], dict]:
    result = roompulse("aim", "--json", "--source", str(source), env=clean_env(**MODEL, **env))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return lines[:-1], lines[-1]


def test_grid_marks_the_four_classroom_faces_where_analyze_finds_them():
    refreshes, summary = aim_lines(CLASSROOM)
    analyzed = roompulse("analyze", str(CLASSROOM), env=clean_env(**MODEL))
    assert analyzed.returncode == 0, analyzed.stderr
    frames = {f["frame"]: f for f in map(json.loads, analyzed.stdout.splitlines())}
    # 45 frames at 15 frames/s: a view after each second of the clip, and one at its end
    assert [r["frame"] for r in refreshes] == [15, 30, 44]
    for view in refreshes:
        faces = frames[view["frame"]]["faces"]
        assert view["faces"] == len(faces) == 4
        rows, cols = grid_shape(480, 270)
        assert len(view["grid"]) == rows and all(len(row) == cols for row in view["grid"])
        for face in faces:
            x0, y0, x1, y1 = face["box"]
            row, col = cell_of((x0 + x1) / 2, (y0 + y1) / 2, 480, 270)
            # the cell at the centre of analyze's box holds the width mark: 1 = 10-19 px
            assert view["grid"][row][col] == str(int((x1 - x0) // 10)), (face, view["grid"])
        marked = sum(ch.isdigit() for row in view["grid"] for ch in row)
        assert 4 <= marked <= 4 * 6  # four small faces, a few cells each, nothing else
        assert sorted(map(tuple, view["boxes"])) == sorted(tuple(f["box"]) for f in faces)
        assert view["smallest_px"] < 13 and 17 < view["largest_px"] < 21
        assert 90 < view["brightness"] < 160
        codes = [a["code"] for a in view["advice"]]
        assert "few_faces" in codes and "dark" not in codes and "edge_cut" not in codes
    assert "45 frames analysed" in summary["summary"] and "median 4" in summary["summary"]
    print("\nFIGURE aim classroom grid (frame 44):\n" + "\n".join(refreshes[-1]["grid"]))


def write_downscaled(src, dst, size) -> None:
    """The clip resized to ``size`` (w, h) with Lanczos, as an MPEG-4 file at 15 frames/s."""
    with av.open(str(src)) as inp, av.open(str(dst), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=15)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.bit_rate = 4_000_000
        for frame in inp.decode(video=0):
            rgb = np.asarray(Image.fromarray(frame.to_ndarray(format="rgb24")).resize(size, Image.Resampling.LANCZOS))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_faces_shrunk_near_the_limit_get_the_small_face_advice(tmp_path):
    full, _ = aim_lines(WALKING_PAUSE, ROOMPULSE_MIN_GROUP_SIZE="3")
    small_clip = tmp_path / "walking-pause-128x72.mp4"
    write_downscaled(WALKING_PAUSE, small_clip, (128, 72))
    small, summary = aim_lines(small_clip, ROOMPULSE_MIN_GROUP_SIZE="3")
    # full size: faces 32-58 px, no advice about size
    assert all(v["smallest_px"] > 30 for v in full)
    assert not any(a["code"] == "small_faces" for v in full for a in v["advice"])
    # a quarter of the size (128x72): faces 8-16 px, the advice names the limit
    assert all(v["width"] == 128 and v["height"] == 72 for v in small)
    sized = [v for v in small if v["faces"]]
    assert sized and all(v["smallest_px"] < 14 for v in sized)
    tips = [a["text"] for v in sized for a in v["advice"] if a["code"] == "small_faces"]
    assert len(tips) == len(sized) and "near the detector's limit" in tips[0]
    assert "faces near the size limit" in summary["summary"]
    print("\nFIGURE aim 128x72:", [(v["faces"], v["smallest_px"]) for v in small], tips[0])


def test_aim_creates_no_file_and_opens_no_socket(tmp_path):
    out = tmp_path / "audit.json"
    env = clean_env(**MODEL, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "audit_service.py"), str(out), "aim",
                             "--source", str(CLASSROOM)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    events = json.loads(out.read_text())
    assert events["write_open"] == [] and events["sqlite"] == []
    assert events["connect"] == [] and events["subprocess"] == []
    assert list(tmp_path.iterdir()) == [out]
    assert "faces now: 4" in result.stdout and "Aimed at" in result.stdout


def test_ctrl_c_on_a_looped_clip_ends_with_the_summary():
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "device", "aim", "--json", "--source", str(CLASSROOM)], cwd=ROOT,
                            env=clean_env(**MODEL, ROOMPULSE_SOURCE_LOOP="true"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        views = [json.loads(proc.stdout.readline()) for _ in range(3)]  # paced like a camera: ~1 s apart
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert all(v["faces"] == 4 for v in views)
    # the looped clip is paced at its own 15 frames/s, so about 15 frames per refresh
    assert all(10 <= v["fps"] <= 17 for v in views[1:]), [v["fps"] for v in views]
    summary = json.loads(rest.splitlines()[-1])["summary"]
    assert summary.startswith(f"Aimed at {CLASSROOM}") and "median 4" in summary
    assert "Traceback" not in err


def test_a_camera_that_delivers_nothing_is_reported_in_the_view():
    import signal

    from conftest import free_port

    url = f"rtsp://127.0.0.1:{free_port()}/stream"  # nothing listens: every open is refused
    proc = subprocess.Popen([sys.executable, "-m", "device", "aim", "--json", "--source", url], cwd=ROOT,
                            env=clean_env(**MODEL, ROOMPULSE_STALL_S="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        note = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert note["advice"][0]["code"] == "no_picture" and url in note["advice"][0]["text"]
    assert proc.returncode == 1, err  # no frame at all: the aim failed
    summary = json.loads(rest.splitlines()[-1])["summary"]
    assert "no frame was analysed" in summary and "The camera: " in summary, summary
    assert "Connection refused" in err and "re-opening in" in err  # the capture worker's own log line
