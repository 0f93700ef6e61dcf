"""The model manifest and model-file verification.

``models/manifest.json`` records, for each model, its file name, sha256, size, family,
precision, input size, licence and how it was built. Start-up refuses a model file that
is missing, truncated or whose hash differs, with a message that says how to get it back.

A model *set* is the family and precision without the size (``yunet_n_int8``): the
detector then picks, per frame size, the entry of that set whose input fits
(``device.detector.yunet.place``). A full entry name (``yunet_n_1280x736_int8``) pins one size.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
MANIFEST = MODELS_DIR / "manifest.json"
FETCH_HINT = ("restore it from the repository ('git checkout -- models/'), or rebuild it with 'make models' "
              "(models/README.md)")
EDGETPU_HINT = "compile it with edgetpu_compiler and record it in the manifest (models/README.md)"


class ModelError(RuntimeError):
    """A model file is missing, truncated, altered or not in the manifest."""


@dataclass(frozen=True)
class ModelEntry:
    """One manifest entry: ``name`` is its key, ``family`` e.g. ``"yunet"``, ``precision``
    ``"int8"`` or ``"float32"``, ``input_size`` the model input ``(W, H)`` in pixels.

    ``selftest`` is the stored self-test expectation (``device.selftest``), ``edgetpu`` the
    compiled Edge TPU model of an int8 entry (``{"file", "sha256", "bytes"}``; hash and size
    are null until someone has compiled it, see models/README.md); both may be None.
    """

    name: str
    file: str
    sha256: str
    size: int
    family: str
    precision: str
    input_size: tuple[int, int]
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
            name: ModelEntry(name, m["file"], m["sha256"], int(m["bytes"]), m["family"], m["precision"],
                             (int(m["input"][2]), int(m["input"][1])), m.get("selftest"), m.get("edgetpu"))
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


def set_name(entry_name: str) -> str:
    """The set an entry belongs to: its name without the size (``yunet_n_1280x736_int8`` -> ``yunet_n_int8``)."""
    return re.sub(r"_[0-9]+x[0-9]+_", "_", entry_name)


def known_names(entries: dict[str, ModelEntry]) -> list[str]:
    """Every name ``ROOMPULSE_MODEL`` accepts: the sets, then the single entries."""
    return sorted({set_name(n) for n in entries}) + sorted(entries)


def select(name: str, manifest: Path = MANIFEST) -> list[ModelEntry]:
    """The entries a ``ROOMPULSE_MODEL`` value names: one entry, or every size of a set.

    Raises:
        ModelError: unknown name (listing the known ones) or an unreadable manifest.
    """
    entries = load_manifest(manifest)
    chosen = [entries[name]] if name in entries else [e for n, e in entries.items() if set_name(n) == name]
    if not chosen:
        raise ModelError(f"unknown model '{name}'; the manifest lists: {', '.join(known_names(entries))}")
    return chosen


def edgetpu_model(entry: ModelEntry, directory: Path = MODELS_DIR) -> Path:
    """The verified Edge TPU compilation of an int8 model.

    Raises:
        ModelError: the entry has no Edge TPU counterpart (a float model), the compiled
            file is missing, its hash is not recorded, or it fails :func:`verify`.
    """
    if not entry.edgetpu:
        raise ModelError(f"model '{entry.name}' has no Edge TPU version; use an int8 model "
                         "(ROOMPULSE_MODEL=yunet_n_int8)")
    path = directory / entry.edgetpu["file"]
    if not path.is_file():
        raise ModelError(f"Edge TPU model {path} is missing; {EDGETPU_HINT}")
    if not entry.edgetpu.get("sha256"):
        raise ModelError(f"Edge TPU model {path} has no sha256 in the manifest; {EDGETPU_HINT}")
    tpu = ModelEntry(entry.name + "_edgetpu", entry.edgetpu["file"], entry.edgetpu["sha256"],
                     int(entry.edgetpu["bytes"]), entry.family, entry.precision, entry.input_size)
    try:
        return verify(tpu, directory)
    except ModelError as exc:
        raise ModelError(str(exc).replace(FETCH_HINT, EDGETPU_HINT)) from exc
