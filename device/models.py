"""The model manifest and model-file verification.

``models/manifest.json`` records, for each model, its file name, sha256, size, BlazeFace
variant, licence and where it comes from. Start-up refuses a model file that is
missing, truncated or whose hash differs, with a message that says how to get it back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
MANIFEST = MODELS_DIR / "manifest.json"
FETCH_HINT = "run 'make models-fetch' (scripts/fetch_models.py) to fetch and check it"
EDGETPU_HINT = "compile it with edgetpu_compiler and record it in the manifest (models/README.md)"


class ModelError(RuntimeError):
    """A model file is missing, truncated, altered or not in the manifest."""


@dataclass(frozen=True)
class ModelEntry:
    """One manifest entry: ``name`` is its key, ``variant`` ``"full"`` or ``"short"``.

    ``selftest`` is the stored self-test expectation (``device.selftest``), ``edgetpu`` the
    compiled Edge TPU model of an int8 entry (``{"file", "sha256", "bytes"}``; hash and size
    are null until someone has compiled it, see models/README.md); both may be None.
    """

    name: str
    file: str
    sha256: str
    size: int
    variant: str
    selftest: dict | None = field(default=None, compare=False)
    edgetpu: dict | None = field(default=None, compare=False)


def load_manifest(path: Path = MANIFEST) -> dict[str, ModelEntry]:
    """Manifest entries by name.

    Raises:
        ModelError: the manifest is missing or malformed.
    """
    try:
        data = json.loads(path.read_text())
        return {
            name: ModelEntry(name, m["file"], m["sha256"], int(m["bytes"]), m["variant"],
                             m.get("selftest"), m.get("edgetpu"))
            for name, m in data["models"].items()
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"model manifest {path} is unreadable: {exc}") from exc


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(entry: ModelEntry, directory: Path = MODELS_DIR) -> Path:
    """Check a model file against its manifest entry.

    Returns:
        The path of the verified file.

    Raises:
        ModelError: missing, wrong size (truncated) or wrong sha256, naming the file,
            what was expected and how to fetch it again.
    """
    path = directory / entry.file
    if not path.is_file():
        raise ModelError(f"model file {path} is missing; {FETCH_HINT}")
    size = path.stat().st_size
    if size != entry.size:
        raise ModelError(
            f"model file {path} has {size} bytes, expected {entry.size} (truncated or replaced); {FETCH_HINT}"
        )
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ModelError(f"model file {path} has sha256 {actual}, expected {entry.sha256}; {FETCH_HINT}")
    return path


def resolve(name: str, directory: Path = MODELS_DIR, manifest: Path = MANIFEST) -> tuple[Path, ModelEntry]:
    """Find and verify the model called ``name`` in the manifest.

    Raises:
        ModelError: unknown name (listing the known ones) or a file that fails :func:`verify`.
    """
    entries = load_manifest(manifest)
    if name not in entries:
        raise ModelError(f"unknown model '{name}'; the manifest lists: {', '.join(sorted(entries))}")
    entry = entries[name]
    return verify(entry, directory), entry


def edgetpu_model(entry: ModelEntry, directory: Path = MODELS_DIR) -> Path:
    """The verified Edge TPU compilation of an int8 model.

    Raises:
        ModelError: the entry has no Edge TPU counterpart (a float model), the compiled
            file is missing, its hash is not recorded, or it fails :func:`verify`.
    """
    if not entry.edgetpu:
        raise ModelError(f"model '{entry.name}' has no Edge TPU version; use an int8 model "
                         "(ROOMPULSE_MODEL=blazeface_full_range_int8)")
    path = directory / entry.edgetpu["file"]
    if not path.is_file():
        raise ModelError(f"Edge TPU model {path} is missing; {EDGETPU_HINT}")
    if not entry.edgetpu.get("sha256"):
        raise ModelError(f"Edge TPU model {path} has no sha256 in the manifest; {EDGETPU_HINT}")
    tpu = ModelEntry(entry.name + "_edgetpu", entry.edgetpu["file"], entry.edgetpu["sha256"],
                     int(entry.edgetpu["bytes"]), entry.variant)
    try:
        return verify(tpu, directory)
    except ModelError as exc:
        raise ModelError(str(exc).replace(FETCH_HINT, EDGETPU_HINT)) from exc
