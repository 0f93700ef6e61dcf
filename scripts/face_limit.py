"""Measure the smallest face width the detector still finds, by downscaling real clips.

For every 3rd frame of each clip, the faces found at full size are the reference. The
frame is then shrunk (Pillow, Lanczos, aspect kept) by factors from 1.0 down to 0.15 and
the detector run again; a reference face counts as found at a scale when a detection
overlaps its scaled box (IoU > 0.3). Faces are binned by their scaled width (1 px bins),
and the script prints the share found per bin and the smallest width from which at
least 50 % and 90 % are found (every bin from there up).

    ROOMPULSE_MODEL=yunet_n_480x288_int8 ROOMPULSE_CAMERA_SIZE=480x270 \\
        .venv/bin/python scripts/face_limit.py [CLIP...]

Default clips: the classroom and walking-and-pause clips in ../shared/data/video.
Nothing is written; the figures go to stdout (README, "Placing the camera").
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.config import Settings  # noqa: E402
from device.pipeline import build_analyzer  # noqa: E402
from device.sources.files import read_file  # noqa: E402

VIDEO = Path(os.environ.get("ROOMPULSE_SHARED", ROOT.parent / "shared")) / "data" / "video"
CLIPS = [VIDEO / "intel_classroom.gif", VIDEO / "intel_face-demographics-walking-and-pause.gif"]
SCALES = [round(s, 2) for s in np.arange(1.0, 0.14, -0.05)]


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main(clips: list[Path]) -> int:
    analyzer = build_analyzer(Settings(_env_file=None, state_dir=Path("/nonexistent")))
    found = defaultdict(lambda: [0, 0])  # width bin (px) -> [found, total]
    smallest_found = None
    for clip in clips:
        for frame in read_file(clip):
            if frame.index % 3:
                continue
            refs = [f.detection.box.astype(float) for f in analyzer.faces(frame.rgb)]
            image = Image.fromarray(frame.rgb)
            for scale in SCALES[1:]:
                size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
                small = np.asarray(image.resize(size, Image.Resampling.LANCZOS))
                sx, sy = size[0] / frame.width, size[1] / frame.height
                boxes = [f.detection.box.astype(float) for f in analyzer.faces(small)]
                for ref in refs:
                    scaled = ref * np.array([sx, sy, sx, sy])
                    width = scaled[2] - scaled[0]
                    hit = any(iou(scaled, b) > 0.3 for b in boxes)
                    cell = found[int(width)]
                    cell[0] += hit
                    cell[1] += 1
                    if hit and (smallest_found is None or width < smallest_found):
                        smallest_found = width
    print("face width (px)  found / faces  share")
    for width in sorted(found):
        hit, total = found[width]
        print(f"{width:>9d}-{width + 1:<5d} {hit:>6d} / {total:<6d} {hit / total:6.2f}")
    for bar in (0.5, 0.9):
        # the smallest bin from which every wider bin (with >= 5 faces) reaches the bar
        bins = [w for w in sorted(found) if found[w][1] >= 5]
        limit = next((w for i, w in enumerate(bins) if all(found[v][0] / found[v][1] >= bar for v in bins[i:])), None)
        print(f"found in >= {bar:.0%} from {limit} px wide")
    print(f"smallest face found: {smallest_found:.1f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main([Path(p) for p in sys.argv[1:]] or CLIPS))
