"""Issue 12, items 10, 11, 12 and 14 (the NUL name): configuration that used to pass and then
misbehave. The real CLI in a subprocess; a real mosquitto where the issue's reproduction used one."""

from __future__ import annotations

import time

import pytest

from conftest import CLASSROOM, Broker, clean_env, roompulse, service_env
from device.config import load_settings, redact_url


@pytest.mark.parametrize("name,value,why", [
    ("ROOMPULSE_HA_PREFIX", "ha/#", "wildcards"),
    ("ROOMPULSE_HA_PREFIX", "ha/+/x", "wildcards"),
    ("ROOMPULSE_TOPIC_PREFIX", "school/+/room", "wildcards"),
    ("ROOMPULSE_TOPIC_PREFIX", "$SYS/room", "reserved"),
    ("ROOMPULSE_TOPIC_PREFIX", "r" * 70000, "too long"),
    ("ROOMPULSE_HA_PREFIX", "h" * 65530, "too long"),
    ("ROOMPULSE_TOPIC_PREFIX", "/", "names no topic level"),
])
def test_unusable_topic_prefix_exits_78_naming_the_variable(name, value, why):
    result = roompulse("check-config", env=clean_env(**{name: value}))
    assert result.returncode == 78, result.stdout[-300:]
    assert name in result.stderr and why in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("settings,why", [
    ({"ROOMPULSE_MQTT_HOST": "mqtt://127.0.0.1"}, "is a URL; give the broker's host name or address only (e.g. '127.0.0.1')"),
    ({"ROOMPULSE_MQTT_HOST": "broker.lan:18831"}, "set ROOMPULSE_MQTT_HOST=broker.lan and ROOMPULSE_MQTT_PORT=18831"),
    ({"ROOMPULSE_MQTT_HOST": "broker lan"}, "has spaces in it"),
    ({"ROOMPULSE_MQTT_HOST": "broker.lan", "ROOMPULSE_MQTT_PASSWORD": "pw-123456"}, "ROOMPULSE_MQTT_USERNAME is empty"),
    ({"ROOMPULSE_MQTT_HOST": "[::1]:1883"}, "without brackets: ROOMPULSE_MQTT_HOST=::1 and ROOMPULSE_MQTT_PORT=1883"),
    ({"ROOMPULSE_MQTT_HOST": "mqtts://unit:Secr3t-pw@broker.lan:8883/"}, "mqtts://unit:***@broker.lan:8883/' is a URL"),
    ({"ROOMPULSE_TOPIC_PREFIX": " /"}, "names no topic level"),
])
def test_broker_settings_that_cannot_work_exit_78(settings, why):
    """These passed check-config and then failed at every connection (a URL or host:port taken
    as a host name, blamed on DNS) or silently (a password with no user name is never sent)."""
    result = roompulse("check-config", env=clean_env(**settings))
    assert result.returncode == 78 and why in result.stderr, result.stderr
    assert "Secr3t" not in result.stderr + result.stdout
    for fine in ("::1", "fe80::1", "broker.school.lan", "10.0.0.5"):
        assert roompulse("check-config", env=clean_env(ROOMPULSE_MQTT_HOST=fine)).returncode == 0, fine


def test_run_with_a_wildcard_ha_prefix_refuses_to_start(tmp_path):
    """The issue's reproduction: it used to print every window and deliver none."""
    broker = Broker(tmp_path).start()
    try:
        env = service_env(broker.port, tmp_path / "state", ROOMPULSE_HA_DISCOVERY="true", ROOMPULSE_HA_PREFIX="ha/#")
        result = roompulse("run", "--source", str(CLASSROOM), env=env, timeout=60)
    finally:
        broker.stop()
    assert result.returncode == 78 and result.stdout == ""
    assert "ROOMPULSE_HA_PREFIX" in result.stderr and "wildcards" in result.stderr


def test_env_file_is_read_as_systemd_reads_it(tmp_path, monkeypatch):
    """No ${VAR} expansion; systemd's quoting, escapes, comments and line joins (env-file.c)."""
    env_file = tmp_path / "roompulse.env"
    env_file.write_text(
        "# a comment\n"
        "ROOMPULSE_MQTT_PASSWORD=pa${HOME}word\n"
        "ROOMPULSE_SOURCE = rtsp://cam/$HOME/live # not a comment  \n"
        "ROOMPULSE_MQTT_USERNAME=\"us\\$er \\x\"\n"
        "ROOMPULSE_DEVICE_ID='room-${X}'\n"
        "ROOMPULSE_TOPIC_PREFIX=school/\\\n"
        "room-9\n"
        "; another comment\n"
    )
    monkeypatch.setenv("HOME", "/root")
    for name in list(__import__("os").environ):
        if name.startswith("ROOMPULSE_"):
            monkeypatch.delenv(name)
    with pytest.raises(Exception) as bad:  # device id 'room-${X}' is literal, and not a valid id
        load_settings(env_file)
    assert "ROOMPULSE_DEVICE_ID" in str(bad.value)
    env_file.write_text(env_file.read_text().replace("'room-${X}'", "'room-9'"))
    settings = load_settings(env_file)
    assert settings.password() == "pa${HOME}word"
    assert settings.source == "rtsp://cam/$HOME/live # not a comment"
    assert settings.mqtt_username == "us$er \\x"
    assert settings.prefix == "school/room-9"
    shown = roompulse("--env-file", str(env_file), "check-config", env=clean_env(HOME="/root"))
    assert shown.returncode == 0, shown.stderr
    assert "ROOMPULSE_SOURCE=rtsp://cam/$HOME/live # not a comment\n" in shown.stdout
    assert "ROOMPULSE_MQTT_PASSWORD=***" in shown.stdout


def test_nul_in_a_variable_name_is_shown_escaped(tmp_path):
    env_file = tmp_path / "roompulse.env"
    env_file.write_bytes(b"ROOMPULSE_WINDOW_S\x00=5\nROOMPULSE_WINDOW_SS=5\n")
    result = roompulse("--env-file", str(env_file), "check-config")
    assert result.returncode == 0, result.stderr
    assert "'ROOMPULSE_WINDOW_S\\x00' contains a non-printable character" in result.stderr
    assert "did you mean ROOMPULSE_WINDOW_S?" in result.stderr  # the misspelt one, shown as it is
    assert "ROOMPULSE_WINDOW_S (did you mean ROOMPULSE_WINDOW_S?)" not in result.stderr


def test_masking_secrets_takes_linear_time(tmp_path):
    for text in ("a" * 1_000_000, "rtsp://" + "u" * 1_000_000, "x://y:" * 200_000):
        began = time.monotonic()
        redact_url(text)
        assert time.monotonic() - began < 1.0, text[:20]
    assert redact_url("see rtsp://admin:s3cret@cam/live and http://u:p@h") == "see rtsp://admin:***@cam/live and http://u:***@h"
    env_file = tmp_path / "roompulse.env"  # 1 MB does not fit in one environment variable
    env_file.write_text("ROOMPULSE_SOURCE=rtsp://cam/" + "a" * 1_000_000 + "\n")
    began = time.monotonic()
    result = roompulse("--env-file", str(env_file), "check-config")
    assert result.returncode == 0 and time.monotonic() - began < 10


def test_log_rate_limiter_reports_what_it_suppressed_without_a_later_line(tmp_path):
    """Item 14: the count was only ever added to a later line of the same kind, which may never come."""
    import io
    import logging
    import subprocess
    import sys

    from conftest import ROOT
    from device.logs import OneLine, RateLimit

    now = [0.0]
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(OneLine("%(levelname)s %(message)s"))
    limiter = RateLimit(period_s=60, burst=3, clock=lambda: now[0])
    limiter.handler = handler
    handler.addFilter(limiter)
    logger = logging.getLogger("test.ratelimit")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for errno in range(10):
            logger.error("camera read failed (errno %d)", errno)
        assert out.getvalue().count("camera read failed") == 3
        assert limiter.sweep() == 0  # the period is not over
        now[0] = 61.0
        assert limiter.sweep() == 1
    finally:
        logger.removeHandler(handler)
    assert "ERROR 7 more line(s) like 'camera read failed (errno %d)' suppressed in the last 60 s" in out.getvalue()

    # and at exit, through the real configuration
    code = ("from device.logs import configure; import logging; configure('INFO'); "
            "[logging.getLogger('x').warning('broker down %d', i) for i in range(10)]")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert "7 more line(s) like 'broker down %d' suppressed" in done.stderr, done.stderr


def test_a_value_that_is_not_utf8_is_reported_as_systemd_treats_it(tmp_path):
    """systemd refuses a whole env file for one value that is not UTF-8 (the warning said the
    assignment was ignored "as systemd ignores it"); the line is named and the valid ones used."""
    env_file = tmp_path / "roompulse.env"
    env_file.write_bytes(b"ROOMPULSE_DEVICE_ID=room-1\nROOMPULSE_MQTT_USERNAME=caf\xe9\n")
    result = roompulse("--env-file", str(env_file), "check-config", env=clean_env())
    assert result.returncode == 0 and "ROOMPULSE_DEVICE_ID=room-1" in result.stdout
    assert (f"{env_file} line 2: the value of ROOMPULSE_MQTT_USERNAME is not valid UTF-8: ignored here, and "
            "systemd's EnvironmentFile= refuses the whole file") in result.stderr


def test_a_credential_password_without_a_user_name_exits_78(tmp_path):
    """The systemd credential (LoadCredential=mqtt_password:...) with no user name: never sent."""
    (tmp_path / "mqtt_password").write_text("pw-123456\n")
    result = roompulse("check-config", env=clean_env(CREDENTIALS_DIRECTORY=str(tmp_path)))
    assert result.returncode == 78 and "the systemd credential mqtt_password) is set but ROOMPULSE_MQTT_USERNAME" \
        in result.stderr
