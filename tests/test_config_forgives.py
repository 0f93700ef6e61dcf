"""Configuration that forgives: empty values are defaults, unit names get a suggestion, errors
repeat the bad value (secrets masked), --env-file works after the command, help is plain text."""

from __future__ import annotations

import re

from conftest import ROOT, clean_env, roompulse
from device.config import _describe, default_device_id, suggest_device_id


def test_example_env_file_with_every_line_uncommented_gives_the_defaults(tmp_path):
    example = (ROOT / "systemd" / "roompulse.env.example").read_text()
    uncommented = tmp_path / "roompulse.env"
    uncommented.write_text(re.sub(r"^#(ROOMPULSE_)", r"\1", example, flags=re.M))
    assert uncommented.read_text().count("\nROOMPULSE_") == example.count("\n#ROOMPULSE_") >= 35
    empties = re.findall(r"^(ROOMPULSE_\w+)=$", uncommented.read_text(), flags=re.M)
    assert {"ROOMPULSE_DEVICE_ID", "ROOMPULSE_MQTT_PORT", "ROOMPULSE_MQTT_CLIENT_ID"} <= set(empties)
    from_file = roompulse("check-config", "--env-file", str(uncommented))  # global option after the command
    defaults = roompulse("check-config")
    assert from_file.returncode == 0, from_file.stderr
    assert f"settings from {uncommented}" in from_file.stderr and "WARNING" not in from_file.stderr
    assert from_file.stdout == defaults.stdout  # every value is the default
    assert "ROOMPULSE_MQTT_PORT=1883\n" in from_file.stdout  # the port that applies, not empty
    device_id = re.search(r"^ROOMPULSE_DEVICE_ID=(.+)$", from_file.stdout, flags=re.M)[1]
    assert device_id == default_device_id()
    assert f"ROOMPULSE_MQTT_CLIENT_ID=roompulse-{device_id}\n" in from_file.stdout


def test_room_101_is_refused_with_a_suggestion_and_the_value_repeated():
    result = roompulse("check-config", env=clean_env(ROOMPULSE_DEVICE_ID="Room 101"))
    assert result.returncode == 78
    assert "ROOMPULSE_DEVICE_ID='Room 101'" in result.stderr and "use 'room-101'" in result.stderr
    assert suggest_device_id("r101.school") == "r101-school"
    port = roompulse("check-config", env=clean_env(ROOMPULSE_MQTT_PORT="18 83"))
    assert port.returncode == 78 and "ROOMPULSE_MQTT_PORT='18 83'" in port.stderr
    print("\nFIGURE Room 101:", result.stderr.strip().splitlines()[-1])


def test_secrets_in_errors_are_masked():
    error = {"loc": ("mqtt_password",), "msg": "bad", "input": "hunter2"}
    assert _describe(error).startswith("ROOMPULSE_MQTT_PASSWORD=*** ") and "hunter2" not in _describe(error)
    url = {"loc": ("source",), "msg": "bad", "input": "rtsp://admin:s3cret@cam/stream"}
    assert "s3cret" not in _describe(url) and "admin:***@cam" in _describe(url)


def test_default_device_id_is_the_host_name_plus_a_suffix_from_the_machine_id(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    two.write_text("0123456789abcdef0123456789abcdef\n")
    first, second = default_device_id(one), default_device_id(two)
    assert re.fullmatch(r"[a-z0-9_-]+-[0-9a-f]{6}", first) and first != second
    assert first == default_device_id(one)  # stable across restarts
    assert "3d1219" not in first  # a hash, not the machine id itself
    assert default_device_id(tmp_path / "missing") == first.rsplit("-", 1)[0]


def test_help_is_plain_text_and_lists_every_command_with_an_example():
    result = roompulse("--help")
    assert result.returncode == 0
    assert "``" not in result.stdout and ":class:" not in result.stdout
    for command in ("run", "aim", "doctor", "check-config", "analyze", "privacy-report"):
        assert re.search(rf"^  {command} +\S.+\n +e\.g\. roompulse", result.stdout, flags=re.M), command
