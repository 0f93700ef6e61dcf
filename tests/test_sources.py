"""The frame-source interface and its backends that can run here (files, PyAV live, picamera2 message)."""

from __future__ import annotations

import time

import pytest

from conftest import CLASSROOM, clean_env, roompulse
from device.sources import SourceError, describe, make_source
from device.sources.av_live import AvLiveSource
from device.sources.files import FileSource
from device.sources.picamera import Picamera2Source


def test_describe_and_make_source_pick_the_backend():
    assert [describe(s) for s in ("picamera2", "0", "/dev/video2", "rtsp://cam/1", "http://cam/mjpg", "a.mp4")] == [
        "picamera2", "v4l2", "v4l2", "stream", "stream", "file"]
    assert isinstance(make_source("picamera2"), Picamera2Source)
    assert isinstance(make_source("/dev/video0"), AvLiveSource)
    assert isinstance(make_source(str(CLASSROOM)), FileSource)


def test_file_source_reads_every_frame_then_ends_and_closes():
    with FileSource(CLASSROOM) as source:
        frames = list(iter(source.read, None))
    assert len(frames) == 45 and frames[0].rgb.shape == (270, 480, 3) and frames[0].timestamp == 0.0
    assert source._frames is None  # closed


def test_looped_file_is_paced_and_stamped_like_a_camera():
    with FileSource(CLASSROOM, loop=True) as source:
        began = time.monotonic()
        frames = [source.read() for _ in range(60)]  # more than the clip's 45
        took = time.monotonic() - began
    assert frames[-1].timestamp - frames[0].timestamp == pytest.approx(took, abs=0.15)
    assert 3.5 < took < 5.0  # 60 frames of a 15 fps clip
    assert abs(frames[0].timestamp - began) < 0.2  # monotonic stamps


def test_bad_file_fails_on_open_with_its_name(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    with pytest.raises(SourceError, match="notes.txt: not an image or video file"):
        FileSource(text).open()


@pytest.mark.timeout(20)
def test_unreachable_stream_and_missing_device_fail_within_the_timeout():
    began = time.monotonic()
    with pytest.raises(SourceError, match="cannot open stream source rtsp://127.0.0.1"):
        AvLiveSource("rtsp://127.0.0.1:9/none", timeout_s=2).open()
    with pytest.raises(SourceError, match="cannot open v4l2 source /dev/video99"):
        AvLiveSource("99", timeout_s=2).open()
    assert time.monotonic() - began < 6


def test_picamera2_missing_says_how_to_install():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(SourceError, match="sudo apt install python3-picamera2.*--system-site-packages"):
            Picamera2Source().open()
    else:
        pytest.skip("picamera2 is installed here")


def test_run_with_picamera2_missing_exits_78_with_the_install_hint(tmp_path):
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed here")
    result = roompulse("run", env=clean_env(ROOMPULSE_SOURCE="picamera2", ROOMPULSE_STATE_DIR=str(tmp_path)))
    assert result.returncode == 78
    assert "picamera2 module is not installed" in result.stderr and "python3-picamera2" in result.stderr


def test_picamera2_that_fails_to_import_exits_78_and_doctor_still_reports(tmp_path):
    """apt's picamera2 imports simplejpeg, built for Raspberry Pi OS's numpy; a different numpy
    in the venv makes the import raise ValueError (raspberrypi/picamera2 issues 1088, 1211).
    A stand-in package raising that error: run exits 78 (no restart loop) saying what to do,
    and doctor reports it on its source line and goes on to its summary."""
    package = tmp_path / "site" / "picamera2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        'raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. '
        'Expected 96 from C header, got 88 from PyObject")\n')
    env = clean_env(ROOMPULSE_SOURCE="picamera2", ROOMPULSE_STATE_DIR=str(tmp_path / "state"),
                    PYTHONPATH=str(tmp_path / "site"))
    result = roompulse("run", env=env)
    print(result.stderr)
    assert result.returncode == 78
    assert "picamera2 fails to import (ValueError: numpy.dtype size changed" in result.stderr
    assert "install-pi.sh" in result.stderr and "Traceback" not in result.stderr
    doctor = roompulse("doctor", env=env)
    print(doctor.stdout, doctor.stderr)
    assert doctor.returncode == 1 and "uncaught" not in doctor.stderr
    source = [line for line in doctor.stdout.splitlines() if " source " in f" {line} "]
    assert source and "FAIL" in source[0] and "numpy.dtype size changed" in source[0]
    assert "state" in doctor.stdout and "broker" in doctor.stdout  # the checks after the source ran too
