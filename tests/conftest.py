"""Shared fixtures: the real clips, the real model, a real mosquitto broker per test."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def analyzer():
    """The default analyzer (real model, real runtime) with default settings."""
    from device.config import Settings
    from device.pipeline import build_analyzer

    return build_analyzer(Settings(_env_file=None, state_dir=Path("/nonexistent")))


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
    """A mosquitto process on a free loopback port, configured by a file the test writes."""

    def __init__(self, workdir: Path, extra_conf: str = ""):
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_conf}"
        )
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
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()
