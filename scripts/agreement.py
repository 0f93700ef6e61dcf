#!/usr/bin/env python3
"""Detection agreement of full-range model files with the float model, on the classroom and walking clips.

The comparison of ``tests/test_int8_accuracy.py`` (every frame, default tiling and
threshold, ``device.detector.agreement``) for any ``.tflite`` file, e.g. an int8 variant
being tried before it replaces the committed one, and the float model's own noise floor:

    .venv/bin/python scripts/agreement.py models/face_detection_full_range_int8.tflite
    .venv/bin/python scripts/agreement.py --noise 1

``--noise N`` runs the float model on frames with uniform integer noise in [-N, N] grey
levels added (seeds 0 and 1) and compares with the float model on the clean frames: how
far the float model agrees with itself when the input changes imperceptibly.

Prints one line per clip: recall, precision, median keypoint shift (% of box width),
facing-front agreement.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("ROOMPULSE_SHARED", ROOT.parent / "shared"))
CLIPS = {"classroom": "intel_classroom.gif", "walking": "intel_face-demographics-walking.gif"}


def analyzer_for(path: Path | None):
    """The default-settings analyzer, with the model file ``path`` instead of the float model."""
    from device.config import Settings
    from device.detector import FaceDetector, TilingOptions
    from device.detector.blazeface import VARIANTS, BlazeFace
    from device.pipeline import Analyzer, build_analyzer
    from device.runtime import TFLiteModel

    settings = Settings(_env_file=None, state_dir=Path("/nonexistent"), model="blazeface_full_range_float",
                        accelerator="cpu")
    if path is None:
        return build_analyzer(settings)
    model = BlazeFace(TFLiteModel(path, num_threads=settings.threads), VARIANTS["full"])
    detector = FaceDetector(model, TilingOptions(tile=settings.tile_size, overlap=settings.tile_overlap),
                            settings.min_score)
    return Analyzer(detector, settings.yaw_limit_deg, settings.pitch_limit_deg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="full-range .tflite files to compare with float")
    parser.add_argument("--noise", type=int, default=0, help="also the float model on frames with +-N grey levels")
    args = parser.parse_args()
    from device.detector.agreement import Agreement, add_faces
    from device.sources.files import read_file

    frames = {name: [f.rgb for f in read_file(SHARED / "data" / "video" / clip)] for name, clip in CLIPS.items()}
    reference = analyzer_for(None)
    expected = {name: [reference.faces(rgb) for rgb in clip] for name, clip in frames.items()}
    runs = [(str(path), analyzer_for(path), None) for path in args.models]
    if args.noise:
        runs += [(f"float, +-{args.noise} grey levels, seed {seed}", reference, seed) for seed in (0, 1)]
    for label, analyzer, seed in runs:
        rng = np.random.default_rng(seed)
        for name, clip in frames.items():
            agreement = Agreement()
            for rgb, faces in zip(clip, expected[name]):
                if seed is not None:
                    noise = rng.integers(-args.noise, args.noise + 1, rgb.shape)
                    rgb = np.clip(rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8)
                add_faces(agreement, faces, analyzer.faces(rgb))
            print(f"{label}, {name}: {agreement.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
