"""Shared fixtures: the real clips, the real model, a real mosquitto broker per test."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ROOMPULSE_SHARED", ROOT.parent / "shared"))
VIDEO = SHARED / "data" / "video"
CLASSROOM = VIDEO / "intel_classroom.gif"
CLASSROOM_MP4 = VIDEO / "intel_classroom_from_gif.mp4"
WALKING = VIDEO / "intel_face-demographics-walking.gif"
ONE_BY_ONE = VIDEO / "intel_one-by-one-person-detection.mp4"


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without any ROOMPULSE_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMPULSE_")}
    env.update(extra)
    return env


def roompulse(*args: str, env: dict[str, str] | None = None, timeout: float = 120, **kw):
    """Run the installed CLI (``python -m device``) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "device", *args],
        cwd=ROOT, env=env or clean_env(), capture_output=True, text=True, timeout=timeout, **kw,
    )


def service_env(port: int, state_dir: Path, **extra: str) -> dict[str, str]:
    """Settings for ``roompulse run`` against a test broker: device ``test-room``, classroom-clip
    friendly (min group 3), discovery off unless ``extra`` turns it on."""
    return clean_env(**{
        "ROOMPULSE_MQTT_HOST": "127.0.0.1", "ROOMPULSE_MQTT_PORT": str(port),
        "ROOMPULSE_DEVICE_ID": "test-room", "ROOMPULSE_WINDOW_S": "1", "ROOMPULSE_MIN_GROUP_SIZE": "3",
        "ROOMPULSE_FPS": "30", "ROOMPULSE_STATE_DIR": str(state_dir), "ROOMPULSE_HA_DISCOVERY": "false",
        **extra,
    })


def fast_env(port: int, state_dir: Path, **extra: str) -> dict[str, str]:
    """:func:`service_env` for fault tests: the classroom clip looped in real time, 0.2 s windows,
    5 frames/s analysed (one frame per window), reconnect backoff capped at 1 s."""
    fast = {"ROOMPULSE_WINDOW_S": "0.2", "ROOMPULSE_FPS": "5", "ROOMPULSE_SOURCE_LOOP": "true",
            "ROOMPULSE_MQTT_RECONNECT_MAX_S": "1"}
    return service_env(port, state_dir, **{**fast, **extra})


@pytest.fixture(scope="session")
def analyzer():
    """The default analyzer (real model, real runtime) with default settings, its model loaded for
    480x270 frames (the clips'), so a timed test does not pay a model load at its first frame."""
    from device.config import Settings
    from device.pipeline import build_analyzer

    return build_analyzer(Settings(_env_file=None, state_dir=Path("/nonexistent"), camera_size="480x270"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if not found:
        pytest.fail("mosquitto is not installed: run 'make test' (it installs it with apt-get)")
    return found


class Broker:
    """A mosquitto process on a free loopback port, configured by a file the test writes.

    Args:
        persistent: keep sessions and queued messages across a stop/start (mosquitto saves
            them on SIGTERM), as a production broker would.
        passwords: ``{user: password}``; anonymous clients are then refused.
        tls: ``(ca, cert, key)`` files for an extra TLS listener on ``tls_port``.
    """

    def __init__(self, workdir: Path, extra_conf: str = "", persistent: bool = False,
                 passwords: dict[str, str] | None = None, tls: tuple[Path, Path, Path] | None = None):
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        # Run as root (CI containers), mosquitto drops to user "mosquitto", which cannot write here.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1"]
        self.tls_port = None
        if tls:
            self.tls_port = free_port()
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {tls[0]}", f"certfile {tls[1]}",
                      f"keyfile {tls[2]}"]
        if persistent:
            lines += ["persistence true", f"persistence_location {workdir}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        if passwords:
            pwfile = workdir / "passwd"
            pwfile.write_text("")
            for user, password in passwords.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pwfile), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        self.conf.write_text("\n".join(lines) + "\n" + extra_conf)
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: {self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence database) and wait for the exit."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()
