"""The fallback runtime, for real: ``tflite-runtime`` 2.14 with numpy < 2 on Python 3.11, in a venv
built for it (``.venv-fallback``, made once and kept; about 40 s the first time).

RoomPulse prefers ``ai-edge-litert``; old Raspberry Pi OS images may only have
``tflite-runtime``, so ``device.runtime`` falls back to it. Here the same int8 model runs under
both and must give the same faces, and a venv with neither runtime must stop with one line
and exit 78 (systemd does not restart it: ``RestartPreventExitStatus=78``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CLASSROOM, ROOT, clean_env

VENV = ROOT / ".venv-fallback"
PACKAGES = ["tflite-runtime==2.14.0", "numpy>=1.26,<2", "pillow>=10,<14", "av>=12,<20", "paho-mqtt>=2.1,<3",
            "pydantic>=2.6,<3", "pydantic-settings>=2.2,<3"]
STAMP = VENV / ("installed-" + "-".join(p.replace(">", "").replace("<", "").replace("=", "").replace(",", "")
                                        for p in PACKAGES))

pytestmark = pytest.mark.skipif(sys.version_info[:2] != (3, 11),
                                reason="tflite-runtime 2.14 has wheels for Python <= 3.11 only")


@pytest.fixture(scope="module")
def fallback_python() -> Path:
    python = VENV / "bin" / "python"
    if not STAMP.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True, timeout=600)
        STAMP.touch()
    return python


def analyze(python: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = clean_env(PYTHONPATH=str(ROOT), ROOMPULSE_CAMERA_SIZE="480x270", **(env_extra or {}))
    return subprocess.run([str(python), "-m", "device", "analyze", str(CLASSROOM)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_tflite_runtime_gives_the_same_faces_as_litert(fallback_python):
    probe = subprocess.run([str(fallback_python), "-c", "import numpy, tflite_runtime; "
                            "print(numpy.__version__, tflite_runtime.__version__)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.split()[0].startswith("1.") and probe.stdout.split()[1] == "2.14.0"
    old = analyze(fallback_python)
    assert old.returncode == 0, old.stderr
    assert "on cpu with tflite-runtime passed its self-test" in old.stderr, old.stderr
    new = analyze(Path(sys.executable))
    assert new.returncode == 0, new.stderr
    old_lines = [json.loads(line) for line in old.stdout.splitlines()]
    new_lines = [json.loads(line) for line in new.stdout.splitlines()]
    assert len(old_lines) == len(new_lines) == 45
    assert sum(len(line["faces"]) == 4 for line in old_lines) == 45
    # Same model, different builds of the int8 kernels (2.14 vs LiteRT 2.3): measured box
    # differences median 0.1 px, 99th percentile 1.3 px, largest 1.7 px on ~20 px faces.
    diffs = []
    for a, b in zip(old_lines, new_lines):
        boxes_a = sorted(f["box"] for f in a["faces"])
        boxes_b = sorted(f["box"] for f in b["faces"])
        assert len(boxes_a) == len(boxes_b)
        diffs += [abs(x - y) for ba, bb in zip(boxes_a, boxes_b) for x, y in zip(ba, bb)]
    diffs.sort()
    print(f"box differences, px: median {diffs[len(diffs) // 2]:.2f}, max {diffs[-1]:.2f}")
    assert diffs[len(diffs) // 2] <= 0.3 and diffs[-1] <= 3.0


def test_no_runtime_at_all_is_one_line_and_exit_78(fallback_python, tmp_path):
    # Hide tflite_runtime from the fallback venv: a module of that name that fails to import.
    shadow = tmp_path / "tflite_runtime"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = clean_env(PYTHONPATH=f"{tmp_path}:{ROOT}", ROOMPULSE_CAMERA_SIZE="480x270")
    result = subprocess.run([str(fallback_python), "-m", "device", "analyze", str(CLASSROOM)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 78
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no TFLite runtime" in lines[0] and "ai-edge-litert" in lines[0], result.stderr
