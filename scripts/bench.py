#!/usr/bin/env python3
"""Benchmark: bare interpreter vs the whole pipeline, float vs int8, ours vs MediaPipe.

One run on this machine over the classroom clip (45 frames, 480x270), default settings
(160 px tiles, 48 px overlap, whole-frame pass, ROOMPULSE_THREADS=2, min score 0.65):

* bare ``Interpreter.invoke()`` per tile (input already set: the limit);
* pipeline per frame (letterbox, quantize, invoke, decode, NMS, head pose), decode
  excluded and included; frames per second; ratio to tiles x bare invoke;
* float vs int8, timed in one process, interleaved frame by frame (medians per frame);
  peak RSS of each model in a fresh process running the pipeline over the clip;
* tiling off (one letterboxed pass per frame) vs MediaPipe's own face detector
  (``scripts/bench_mediapipe.py`` in ``.venv-mediapipe``), same frames, same full-range
  model, same minimum score: throughput ratio and detection agreement.

Usage: ``make bench`` (creates .venv-mediapipe), or ``.venv/bin/python scripts/bench.py``
(skips MediaPipe when its venv is missing). ``--repeat`` passes over the clip per figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("ROOMPULSE_SHARED", ROOT.parent / "shared"))
CLIP = SHARED / "data" / "video" / "intel_classroom.gif"
MEDIAPIPE_PY = ROOT / ".venv-mediapipe" / "bin" / "python"
MODELS = ("blazeface_full_range_float", "blazeface_full_range_int8")
# Second agreement figure: both detectors at MediaPipe's own default confidence, so that
# faces scored just around 0.65 by one and not the other do not count as disagreements.
LOW_SCORE = 0.5


def measure(repeat: int) -> dict:
    """Time both models in this process, interleaved frame by frame so that the load of
    other processes on this shared machine hits both alike; medians per frame."""
    import numpy as np

    from device.config import Settings
    from device.detector import FaceDetector, TilingOptions, letterboxed_input
    from device.pipeline import build_analyzer
    from device.sources.files import read_file

    began = time.perf_counter()
    frames = [f.rgb for f in read_file(CLIP)]
    decode_ms = (time.perf_counter() - began) * 1000 / len(frames)
    runs = {}
    for model in MODELS:
        settings = Settings(_env_file=None, state_dir=Path("/nonexistent"), model=model, accelerator="cpu")
        analyzer = build_analyzer(settings)
        detector = analyzer.detector
        regions = detector.regions(frames[0].shape[1], frames[0].shape[0])
        tflite = detector.model.model
        # Bare invoke: the first tile of frame 0, set once; invoke() alone is timed.
        inp = detector.model._lut[letterboxed_input(frames[0], regions[0], detector.model.input_size)[0]][None]
        tflite._interp.set_tensor(tflite._input["index"], inp)
        single = FaceDetector(detector.model, TilingOptions(tile=0), settings.min_score)
        runs[model] = {"analyzer": analyzer, "interp": tflite._interp, "tiles": len(regions), "single": single,
                       "bare": [], "pipe": [], "notile": [], "threads": settings.threads}
    for _ in range(repeat):
        for rgb in frames:
            for model in MODELS:
                run = runs[model]
                t0 = time.perf_counter()
                for _ in range(run["tiles"]):
                    run["interp"].invoke()
                t1 = time.perf_counter()
                run["analyzer"].faces(rgb)
                t2 = time.perf_counter()
                run["single"].detect(rgb)
                t3 = time.perf_counter()
                run["bare"].append((t1 - t0) * 1000 / run["tiles"])
                run["pipe"].append((t2 - t1) * 1000)
                run["notile"].append((t3 - t2) * 1000)
    out = {}
    for model, run in runs.items():
        notile = [[{"box": d.box.tolist(), "keypoints": d.keypoints.tolist()} for d in run["single"].detect(rgb)]
                  for rgb in frames]
        low = FaceDetector(run["single"].model, TilingOptions(tile=0), LOW_SCORE)
        notile_low = [[{"box": d.box.tolist(), "keypoints": d.keypoints.tolist()} for d in low.detect(rgb)]
                      for rgb in frames]
        out[model] = {
            "frames": len(frames), "tiles_per_frame": run["tiles"], "threads": run["threads"],
            "invoke_ms": float(np.median(run["bare"])), "pipeline_ms": float(np.median(run["pipe"])),
            "decode_ms": decode_ms, "included_ms": float(np.median(run["pipe"])) + decode_ms,
            "notile_ms": float(np.median(run["notile"])), "notile_detections": notile,
            "notile_low_detections": notile_low,
        }
    return out


def peak_rss(model: str) -> float:
    """Peak RSS in MB of a fresh process that runs the default pipeline with ``model``
    over the clip, decoding as it goes (what the service does).

    Read from the child's ``VmHWM`` (/proc/self/status), not ``ru_maxrss``: Linux carries
    ``ru_maxrss`` over fork and exec, so it would report this benchmark's own (larger) RSS."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1])\n"
        "from device.config import Settings; from device.pipeline import build_analyzer\n"
        "from device.sources.files import read_file\n"
        "a = build_analyzer(Settings(_env_file=None, state_dir=Path('/x'), model=sys.argv[2], accelerator='cpu'))\n"
        "[a.faces(f.rgb) for f in read_file(sys.argv[3])]\n"
        "print(int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), model, str(CLIP)],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def run_mediapipe(min_score: float, repeat: int = 1) -> dict | None:
    if not MEDIAPIPE_PY.exists():
        print(f"(MediaPipe skipped: {MEDIAPIPE_PY} missing; 'make bench' creates it)")
        return None
    out = subprocess.run([str(MEDIAPIPE_PY), str(ROOT / "scripts" / "bench_mediapipe.py"), str(CLIP),
                          "--min-score", str(min_score), "--repeat", str(repeat)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])


def agreement_of(ours: list, theirs: list):
    import numpy as np

    from device.detector.agreement import Agreement

    agreement = Agreement()
    for a, b in zip(theirs, ours):
        agreement.add(np.array([d["box"] for d in a]).reshape(-1, 4), np.array([d["box"] for d in b]).reshape(-1, 4),
                      np.array([d["keypoints"] for d in a]).reshape(-1, 6, 2),
                      np.array([d["keypoints"] for d in b]).reshape(-1, 6, 2))
    return agreement


def report(results: dict, mediapipe: dict | None, low: dict | None) -> None:
    print(f"clip {CLIP.name}: {results[MODELS[0]]['frames']} frames 480x270, "
          f"{results[MODELS[0]]['tiles_per_frame']} model passes per frame (tiles + whole frame), "
          f"{results[MODELS[0]]['threads']} interpreter threads; {os.cpu_count()} CPUs (shared)")
    header = f"{'':44s}" + "".join(f"{m.split('_')[-1]:>12s}" for m in MODELS)
    print(header)

    def row(label, fn, fmt="{:12.2f}"):
        print(f"{label:44s}" + "".join(fmt.format(fn(results[m])) for m in MODELS))

    row("bare invoke() per tile, ms", lambda r: r["invoke_ms"])
    row("tiles x bare invoke per frame, ms (limit)", lambda r: r["tiles_per_frame"] * r["invoke_ms"])
    row("pipeline per frame, decode excluded, ms", lambda r: r["pipeline_ms"])
    row("  ratio to the limit (target <= 1.15)", lambda r: r["pipeline_ms"] / (r["tiles_per_frame"] * r["invoke_ms"]))
    row("decode per frame, ms", lambda r: r["decode_ms"])
    row("pipeline per frame, decode included, ms", lambda r: r["included_ms"])
    row("frames per second, decode included", lambda r: 1000 / r["included_ms"])
    row("frames per second, decode excluded", lambda r: 1000 / r["pipeline_ms"])
    row("peak RSS, MB (target <= 150)", lambda r: r["peak_rss_mb"], "{:12.1f}")
    row("tiling off: per frame, ms", lambda r: r["notile_ms"])
    fl, q = results[MODELS[0]], results[MODELS[1]]
    print(f"int8 speed-up over float: bare invoke {fl['invoke_ms'] / q['invoke_ms']:.2f}x, "
          f"pipeline {fl['pipeline_ms'] / q['pipeline_ms']:.2f}x (target >= 1.3x)")
    if mediapipe:
        mp_ms = mediapipe["process_s"] * 1000 / mediapipe["frames"]
        print(f"MediaPipe {mediapipe['mediapipe']} FaceDetection(model_selection=1), whole frame: "
              f"{mp_ms:.2f} ms/frame ({1000 / mp_ms:.1f} fps), peak RSS {mediapipe['peak_rss_mb']:.1f} MB")
        for m in MODELS:
            r = results[m]
            agreement = agreement_of(r["notile_detections"], mediapipe["detections"])
            print(f"  ours ({m.split('_')[-1]}, tiling off) throughput / MediaPipe's: {mp_ms / r['notile_ms']:.2f}x "
                  f"(target >= 1); agreement at min score {mediapipe['min_score']}, MediaPipe as reference: "
                  f"{agreement.summary()}")
            if low:
                agreement = agreement_of(r["notile_low_detections"], low["detections"])
                print(f"    same at min score {LOW_SCORE}: {agreement.summary()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = measure(args.repeat)
    for model in MODELS:
        results[model]["peak_rss_mb"] = peak_rss(model)
    from device.config import Settings

    min_score = Settings(_env_file=None).min_score
    mediapipe = run_mediapipe(min_score, args.repeat)
    if mediapipe:
        mediapipe["min_score"] = min_score
    report(results, mediapipe, run_mediapipe(LOW_SCORE) if mediapipe else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
