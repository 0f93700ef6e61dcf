"""``roompulse doctor`` against real failures: damaged models, a missing source, a state
directory the user cannot write, no broker, a wrong password and a TLS CA against a plain
listener (real mosquitto), and a unit where everything passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import CLASSROOM, ROOT, Broker, clean_env, free_port
from mqtt_helpers import Recorder
from test_tls_auth import make_ca, make_server_cert

MODEL = {"ROOMPULSE_CAMERA_SIZE": "480x270", "ROOMPULSE_MODEL": "yunet_n_480x288_int8"}
SECRET = "d0ctor-Pw-4411"


def doctor(env: dict, *args: str, cwd: Path = ROOT, user: int | None = None) -> tuple[int, dict[str, list[str]], str]:
    """Run ``roompulse doctor``; returns (exit status, {check name: [status, line]}, stdout)."""
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user is not None else []
    result = subprocess.run([*prefix, sys.executable, "-m", "device", "doctor", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    checks = {}
    for line in result.stdout.splitlines():
        status, _, rest = line.partition("  ")
        if status.strip() in ("OK", "WARN", "FAIL"):
            checks[rest.strip()[:14].strip()] = [status.strip(), line]
    return result.returncode, checks, result.stdout


def unit_env(state: Path, **extra: str) -> dict:
    return clean_env(**{**MODEL, "ROOMPULSE_SOURCE": str(CLASSROOM), "ROOMPULSE_STATE_DIR": str(state),
                        "ROOMPULSE_DEVICE_ID": "doc-room", "PYTHONDONTWRITEBYTECODE": "1", **extra})


def failing(checks: dict) -> list[str]:
    return sorted(name for name, (status, _) in checks.items() if status == "FAIL")


@pytest.mark.parametrize("damage,expected", [
    (lambda p: p.unlink(), "is missing"),
    (lambda p: p.write_bytes(b"\0" * p.stat().st_size), "has sha256"),
])
def test_missing_or_altered_model_fails_with_the_fix(tmp_path, damage, expected):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "device", copy / "device")
    (copy / "models").mkdir()
    for name in ("manifest.json", "selftest.png", "yunet_n_480x288_int8.tflite"):
        shutil.copy(ROOT / "models" / name, copy / "models" / name)
    damage(copy / "models" / "yunet_n_480x288_int8.tflite")
    (tmp_path / "state").mkdir()
    code, checks, out = doctor(unit_env(tmp_path / "state"), cwd=copy)
    assert code == 1, out
    assert failing(checks) == ["model files"]
    line = checks["model files"][1]
    assert expected in line and "yunet_n_480x288_int8.tflite" in line and "fix: restore it" in line
    assert checks["source"][0] == "OK"  # the other checks still ran
    print("\nFIGURE doctor model:", line)


def test_missing_source_and_unwritable_state_dir_fail_each_with_the_fix():
    # run as nobody: root may write anywhere; a 0555 directory is what a wrong owner looks like.
    # nobody must be able to read this checkout and its venv (not so under a 0700 mktemp -d).
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                            "import device.doctor"], cwd="/", env=clean_env(PYTHONPATH=str(ROOT)),
                           capture_output=True, text=True, timeout=60)
    if probe.returncode:
        pytest.skip(f"user nobody cannot read {ROOT} or its venv: {probe.stderr.strip().splitlines()[-1:]}")
    state = Path(tempfile.mkdtemp(prefix="roompulse-doctor-"))
    try:
        state.chmod(0o555)
        code, checks, out = doctor(unit_env(state, ROOMPULSE_SOURCE="/nonexistent/camera.mp4"), user=65534)
    finally:
        state.chmod(0o755)
        shutil.rmtree(state)
    assert code == 1, out
    assert failing(checks) == ["source", "state dir"]
    assert "/nonexistent/camera.mp4: no such file" in checks["source"][1]
    assert "fix: set ROOMPULSE_SOURCE" in checks["source"][1]
    assert f"{state} is not writable (Permission denied)" in checks["state dir"][1]
    assert "sudo install -d -o roompulse" in checks["state dir"][1]
    print("\nFIGURE doctor source:", checks["source"][1], "\nFIGURE doctor state:", checks["state dir"][1])


def test_no_broker_wrong_password_and_tls_to_a_plain_port_each_fail_clearly(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    nothing = free_port()
    code, checks, out = doctor(unit_env(state, ROOMPULSE_MQTT_HOST="127.0.0.1", ROOMPULSE_MQTT_PORT=str(nothing)))
    assert code == 1 and failing(checks) == ["broker tcp"], out
    assert f"127.0.0.1:{nothing}: connection refused" in checks["broker tcp"][1]
    lines = [checks["broker tcp"][1]]

    ca_key, ca = make_ca(tmp_path, "test-ca")
    broker = Broker(tmp_path, passwords={"unit": SECRET}).start()
    try:
        code, checks, out = doctor(unit_env(state, ROOMPULSE_MQTT_HOST="127.0.0.1",
                                            ROOMPULSE_MQTT_PORT=str(broker.port), ROOMPULSE_MQTT_USERNAME="unit",
                                            ROOMPULSE_MQTT_PASSWORD="wrong-one"))
        assert code == 1 and failing(checks) == ["broker login"], out
        assert "the broker refused as 'unit': Not authorized (not authorised)" in checks["broker login"][1]
        assert "check ROOMPULSE_MQTT_USERNAME and the password" in checks["broker login"][1]
        assert "wrong-one" not in out
        lines.append(checks["broker login"][1])

        code, checks, out = doctor(unit_env(state, ROOMPULSE_MQTT_HOST="127.0.0.1",
                                            ROOMPULSE_MQTT_PORT=str(broker.port), ROOMPULSE_MQTT_TLS_CA=str(ca)))
        assert code == 1 and failing(checks) == ["broker tls"], out
        assert f"127.0.0.1:{broker.port} is a plain (unencrypted) MQTT listener, not TLS" in checks["broker tls"][1]
        assert "usually 8883" in checks["broker tls"][1]
        lines.append(checks["broker tls"][1])
    finally:
        broker.stop()
    print("\nFIGURE doctor broker:\n" + "\n".join(lines))


def test_everything_passes_over_tls_with_a_password_and_the_publish_is_acknowledged(tmp_path):
    ca_key, ca = make_ca(tmp_path, "test-ca")
    key, crt = make_server_cert(tmp_path, ca_key, ca)
    broker = Broker(tmp_path, passwords={"unit": SECRET, "watch": "watch-pw"}, tls=(ca, crt, key)).start()
    state = tmp_path / "state"
    state.mkdir()
    env_file = tmp_path / "roompulse.env"
    env_file.write_text(f"ROOMPULSE_MQTT_HOST=localhost\nROOMPULSE_MQTT_PORT={broker.tls_port}\n"
                        f"ROOMPULSE_MQTT_TLS_CA={ca}\nROOMPULSE_MQTT_USERNAME=unit\nROOMPULSE_MQTT_PASSWORD={SECRET}\n")
    watch = Recorder(broker.port, "roompulse/doc-room/#", username="watch", password="watch-pw")
    try:
        # --env-file after the command name
        code, checks, out = doctor(unit_env(state), "--env-file", str(env_file))
        got = watch.wait_for("roompulse/doc-room/doctor", lambda p: len(p) == 1, timeout=10)
        # the reverse mistake: the TLS port without ROOMPULSE_MQTT_TLS_CA
        plain_env = tmp_path / "plain.env"
        plain_env.write_text("\n".join(l for l in env_file.read_text().splitlines() if "TLS_CA" not in l) + "\n")
        no_ca, no_ca_checks, no_ca_out = doctor(unit_env(state), "--env-file", str(plain_env))
    finally:
        watch.close()
        broker.stop()
    assert code == 0, out
    assert failing(checks) == []
    assert checks["env file"] == ["OK", checks["env file"][1]] and str(env_file) in checks["env file"][1]
    assert f"broker=localhost:{broker.tls_port} TLS" in checks["settings"][1]
    for name in ("model files", "self-test", "accelerator", "source", "state dir", "outbox", "broker name",
                 "broker tcp", "broker tls", "broker login", "broker publish"):
        assert checks[name][0] == "OK", (name, out)
    assert "certificate verified for localhost" in checks["broker tls"][1]
    assert "(client id roompulse-doc-room-doctor)" in checks["broker login"][1]
    assert got == ["doctor"]
    assert SECRET not in out
    assert out.splitlines()[-1].startswith("doctor: ") and "0 FAIL" in out.splitlines()[-1]
    assert os.listdir(state) == []  # the doctor creates no database
    assert no_ca == 1 and failing(no_ca_checks) == ["broker login"], no_ca_out
    assert f"localhost:{broker.tls_port} is a TLS listener and no ROOMPULSE_MQTT_TLS_CA is set" in no_ca_out
    print("\nFIGURE doctor all pass:\n" + out)


def test_an_edge_tpu_that_cannot_run_fails_the_accelerator_line(tmp_path):
    (tmp_path / "state").mkdir()
    code, checks, out = doctor(unit_env(tmp_path / "state", ROOMPULSE_ACCELERATOR="edgetpu"))
    assert code == 1 and failing(checks) == ["accelerator"], out
    assert "ROOMPULSE_ACCELERATOR=edgetpu cannot run" in checks["accelerator"][1]
    assert "libedgetpu.so.1" in checks["accelerator"][1] and "fix: attach the Edge TPU" in checks["accelerator"][1]


def test_relative_file_source_fails_with_the_absolute_path_to_use(tmp_path):
    # Found from the current directory, but the service runs from / (newcomer's report).
    relative = Path("..") / "shared" / "data" / "video" / "intel_classroom.gif"
    env = clean_env(ROOMPULSE_SOURCE=str(relative), ROOMPULSE_STATE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "device", "doctor"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    line = next(l for l in result.stdout.splitlines() if " source " in f" {l} ")
    assert line.startswith("FAIL") and "relative path" in line and "ROOMPULSE_SOURCE=/" in line, line
    assert result.returncode == 1
