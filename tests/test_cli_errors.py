"""Bad input: invalid env variables (exit 78), broken models, missing and non-media files."""

import shutil
from pathlib import Path

import pytest

from conftest import CLASSROOM, ROOT, clean_env, roompulse
from device.config import Settings

BAD_VALUES = {
    "ROOMPULSE_WINDOW_S": "sixty",
    "ROOMPULSE_MIN_GROUP_SIZE": "0",
    "ROOMPULSE_ALLOW_SMALL_GROUPS": "perhaps",
    "ROOMPULSE_FPS": "-2",
    "ROOMPULSE_YAW_LIMIT_DEG": "120",
    "ROOMPULSE_PITCH_LIMIT_DEG": "abc",
    "ROOMPULSE_ACCELERATOR": "gpu",
    "ROOMPULSE_MQTT_PORT": "70000",
    "ROOMPULSE_DEVICE_ID": "room 101/a",
    "ROOMPULSE_HA_DISCOVERY": "maybe",
    "ROOMPULSE_THREADS": "0",
    "ROOMPULSE_LOG_LEVEL": "LOUD",
}


@pytest.mark.parametrize("name,value", sorted(BAD_VALUES.items()))
def test_each_invalid_variable_exits_78_and_is_named(name, value):
    result = roompulse("check-config", env=clean_env(**{name: value}))
    assert result.returncode == 78, result.stderr
    assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_all_bad_variables_are_named_in_one_message(tmp_path):
    env_file = tmp_path / "roompulse.env"
    env_file.write_text("ROOMPULSE_FPS=0\nROOMPULSE_WINDOW_S=-1\n")
    result = roompulse("--env-file", str(env_file), "check-config", env=clean_env(ROOMPULSE_ACCELERATOR="tpu"))
    assert result.returncode == 78
    for name in ("ROOMPULSE_FPS", "ROOMPULSE_WINDOW_S", "ROOMPULSE_ACCELERATOR"):
        assert name in result.stderr


def test_check_config_masks_the_password_and_reads_the_env_file(tmp_path):
    env_file = tmp_path / "roompulse.env"
    env_file.write_text("ROOMPULSE_MQTT_USERNAME=unit\nROOMPULSE_MQTT_PASSWORD=hunter2-secret\nROOMPULSE_DEVICE_ID=room-101\n")
    result = roompulse("--env-file", str(env_file), "check-config")
    assert result.returncode == 0, result.stderr
    assert "ROOMPULSE_DEVICE_ID=room-101" in result.stdout
    assert "ROOMPULSE_MQTT_PASSWORD=***" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    assert "ROOMPULSE_HA_DISCOVERY=true" in result.stdout  # booleans as the env file writes them


def test_missing_env_file_is_a_config_error(tmp_path):
    result = roompulse("--env-file", str(tmp_path / "nope.env"), "check-config")
    assert result.returncode == 78 and "nope.env" in result.stderr


def test_example_env_file_documents_every_variable():
    text = (ROOT / "systemd" / "roompulse.env.example").read_text()
    for name in Settings.model_fields:
        assert f"ROOMPULSE_{name.upper()}=" in text, name


def _broken_models(tmp_path: Path, damage) -> Path:
    """A copy of the package whose models/ directory has one damaged model."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "device", copy / "device")
    shutil.copytree(ROOT / "models", copy / "models")
    damage(copy / "models" / "yunet_n_480x288_int8.tflite")
    return copy


@pytest.mark.parametrize("damage,expected", [
    (lambda p: p.unlink(), "is missing"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "truncated"),
    (lambda p: p.write_bytes(b"\0" * p.stat().st_size), "sha256"),
])
def test_missing_truncated_or_altered_model_stops_with_one_line(tmp_path, damage, expected):
    copy = _broken_models(tmp_path, damage)
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "device", "analyze", str(CLASSROOM)], cwd=copy,
                            env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert expected in result.stderr and "yunet_n_480x288_int8.tflite" in result.stderr
    assert "git checkout -- models/" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_path_and_non_media_file_each_give_one_line(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not a picture\n" * 20)
    result = roompulse("analyze", str(tmp_path / "missing.jpg"), str(text_file), str(tmp_path))
    assert result.returncode == 1
    lines = [l for l in result.stderr.splitlines() if l.startswith("roompulse analyze:")]
    assert len(lines) == 3, result.stderr
    assert "missing.jpg: no such file" in lines[0]
    assert "notes.txt: not an image or video file" in lines[1]
    assert "not a file" in lines[2]
    assert "Traceback" not in result.stderr


def test_run_with_missing_source_file_is_one_line(tmp_path):
    result = roompulse("run", "--source", str(tmp_path / "gone.mp4"),
                       env=clean_env(ROOMPULSE_STATE_DIR=str(tmp_path / "state")))
    assert result.returncode == 1
    assert "gone.mp4: no such file" in result.stderr and "Traceback" not in result.stderr


def test_min_group_size_below_three_needs_the_logged_override(tmp_path):
    refused = roompulse("check-config", env=clean_env(ROOMPULSE_MIN_GROUP_SIZE="2"))
    assert refused.returncode == 78
    assert "ROOMPULSE_MIN_GROUP_SIZE=2 is below 3" in refused.stderr
    assert "ROOMPULSE_ALLOW_SMALL_GROUPS" in refused.stderr
    allowed = roompulse("check-config", env=clean_env(ROOMPULSE_MIN_GROUP_SIZE="2", ROOMPULSE_ALLOW_SMALL_GROUPS="true"))
    assert allowed.returncode == 0
    assert "WARNING" in allowed.stderr and "groups of 2 face(s)" in allowed.stderr
    assert "ROOMPULSE_MIN_GROUP_SIZE=2" in allowed.stdout


def test_field_and_small_group_errors_are_named_together():
    result = roompulse("check-config", env=clean_env(ROOMPULSE_FPS="abc", ROOMPULSE_MIN_GROUP_SIZE="2"))
    assert result.returncode == 78
    assert "ROOMPULSE_FPS" in result.stderr and "ROOMPULSE_MIN_GROUP_SIZE=2 is below 3" in result.stderr


def test_unknown_model_is_a_config_error_and_a_misspelling_is_warned():
    unknown = roompulse("check-config", env=clean_env(ROOMPULSE_MODEL="yunet_huge"))
    assert unknown.returncode == 78 and "unknown model 'yunet_huge'" in unknown.stderr
    assert "yunet_n_int8" in unknown.stderr
    typo = roompulse("check-config", env=clean_env(ROOMPULSE_MIN_GROUPSIZE="7"))
    assert typo.returncode == 0
    assert "ROOMPULSE_MIN_GROUPSIZE (did you mean ROOMPULSE_MIN_GROUP_SIZE?) is not a RoomPulse setting" in typo.stderr


def test_camera_url_password_is_masked_in_check_config_and_logs(tmp_path):
    url = "rtsp://admin:s3cret-cam@127.0.0.1:9/stream"
    shown = roompulse("check-config", env=clean_env(ROOMPULSE_SOURCE=url))
    assert "ROOMPULSE_SOURCE=rtsp://admin:***@127.0.0.1:9/stream" in shown.stdout
    from device.config import redact_url
    from device.logs import OneLine
    import logging

    record = logging.LogRecord("camera", logging.WARNING, __file__, 1, "cannot open %s: refused '%s'", (url, url), None)
    line = OneLine("%(message)s").format(record)
    assert "s3cret" not in line and line.count("admin:***@") == 2
    assert redact_url("http://cam/mjpeg user:pw@x") == "http://cam/mjpeg user:pw@x"  # only URLs' userinfo
    assert "s3cret" not in shown.stdout + shown.stderr
