"""The systemd unit and the Pi installer, checked with the tools systemd and shellcheck ship."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_verifies_and_scores_at_most_2():
    result = subprocess.run([str(ROOT / "scripts/check-unit.sh")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    score = float(result.stdout.split("security:")[1].split()[0])
    assert "verify: ok" in result.stdout and score <= 2.0


def test_unit_has_the_required_settings():
    unit = (ROOT / "systemd/roompulse.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=78",
                 "EnvironmentFile=", "StateDirectory=roompulse", "SupplementaryGroups=video",
                 "After=network-online.target", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "NoNewPrivileges=yes", "RestrictAddressFamilies=", "CapabilityBoundingSet=\n",
                 "SystemCallFilter=@system-service", "DevicePolicy=closed", "DeviceAllow=char-video4linux",
                 "DeviceAllow=char-dma_heap", "DeviceAllow=char-apex", "MemoryMax="):
        assert line in unit, line


def test_installer_dry_run_prints_the_whole_plan_and_changes_nothing():
    result = subprocess.run([str(ROOT / "scripts/install-pi.sh"), "--dry-run"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("dry run: nothing is changed", "python3 -m venv --system-site-packages /opt/roompulse/venv",
                     "pip install --quiet --editable /opt/roompulse/src",
                     "/etc/roompulse/roompulse.env", "/etc/systemd/system/roompulse.service",
                     "systemctl enable roompulse.service",
                     "runuser -u roompulse -- /opt/roompulse/venv/bin/roompulse --env-file "
                     "/etc/roompulse/roompulse.env doctor",
                     "started only when /etc/roompulse/roompulse.env was edited and the doctor passes"):
        assert expected in out, expected
    # nothing is started before the env file is edited and the doctor passes
    assert "+ systemctl restart roompulse.service" not in out and "+ systemctl start" not in out
    if "python3-picamera2 is not in this system's apt sources" in out:
        assert "all installed" not in out and "NOT installed: python3-picamera2" in out
    assert [line for line in out.splitlines() if line.startswith("== ")][-1] == "== done"


def test_installer_refuses_a_device_id_with_a_suggestion():
    result = subprocess.run([str(ROOT / "scripts/install-pi.sh"), "--dry-run", "--device-id", "Room 101"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "use 'room-101'" in result.stderr
    named = subprocess.run([str(ROOT / "scripts/install-pi.sh"), "--dry-run", "--device-id", "room-101"],
                           capture_output=True, text=True, timeout=60)
    assert named.returncode == 0, named.stderr
    kept = "/etc/roompulse/roompulse.env exists: kept as it is" in named.stdout
    assert kept or "+ sed -i s/^#ROOMPULSE_DEVICE_ID=.*/ROOMPULSE_DEVICE_ID=room-101/" in named.stdout


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed")
def test_shell_scripts_are_shellcheck_clean():
    scripts = sorted(str(p) for p in (ROOT / "scripts").glob("*.sh"))
    result = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def still_example(src: Path, env_file: Path) -> bool:
    """install-pi.sh's own still_example function run on ``env_file`` (sourced from the script)."""
    script = f'source <(sed -n "/^still_example()/,/^}}/p" "{ROOT}/scripts/install-pi.sh"); SRC_DIR="{src}"; ' \
             f'still_example "{env_file}"'
    return subprocess.run(["bash", "-c", script], timeout=30).returncode == 0


def test_installer_counts_only_a_real_edit_as_edited(tmp_path):
    """--device-id writes one line into the new env file; that alone must not start the service
    (the README's next step, the doctor, would then find the camera held by it)."""
    example = (ROOT / "systemd/roompulse.env.example").read_text()
    (tmp_path / "systemd").mkdir()
    (tmp_path / "systemd/roompulse.env.example").write_text(example)
    env_file = tmp_path / "roompulse.env"
    env_file.write_text(example)
    assert still_example(tmp_path, env_file)
    named = re.sub(r"(?m)^#ROOMPULSE_DEVICE_ID=.*$", "ROOMPULSE_DEVICE_ID=room-101", example)
    assert named != example
    env_file.write_text(named)
    assert still_example(tmp_path, env_file)
    env_file.write_text(named + "ROOMPULSE_MQTT_HOST=broker.school.lan\n")
    assert not still_example(tmp_path, env_file)


def test_installer_copies_no_venv(tmp_path):
    """The copy to /opt/roompulse/src leaves out every venv (.venv, .venv-build: TensorFlow,
    .venv-fallback): the dry run's own tar command, run into a scratch directory."""
    out = subprocess.run([str(ROOT / "scripts/install-pi.sh"), "--dry-run"], capture_output=True, text=True,
                         timeout=60).stdout
    line = next(line for line in out.splitlines() if line.startswith("+ tar -C"))
    excludes = [arg for arg in line.split() if arg.startswith("--exclude=")]
    src = tmp_path / "src"
    for name in (".venv/bin", ".venv-build/lib", ".venv-fallback/lib", "device", "roompulse.egg-info"):
        (src / name).mkdir(parents=True)
        (src / name / "f").write_text("x")
    (tmp_path / "dst").mkdir()
    subprocess.run(f"tar -C {src} {' '.join(repr(e) for e in excludes)} -cf - . | tar -C {tmp_path / 'dst'} -xf -",
                   shell=True, check=True, timeout=30)
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["device"]
