#!/usr/bin/env python3
"""Benchmark: bare interpreter vs the whole pipeline, float vs int8, ours vs MediaPipe.

One run on this machine over the classroom clip (45 frames, 480x270), default settings
(160 px tiles, 48 px overlap, whole-frame pass, ROOMPULSE_THREADS=2, min score 0.65):

* bare ``Interpreter.invoke()`` per tile: its own interpreter at batch 1, input already
  set, ``invoke()`` alone timed (the limit); tiles x that per frame;
* the pipeline's own invoke: the detector runs the 9 regions of a frame 3 per invoke
  (``device.pipeline.MAX_BATCH``); one such invoke alone, divided by 3, per tile;
* pipeline per frame (letterbox, input conversion, invoke, decode, mapping to frame pixels,
  NMS, head pose), decode excluded and included; frames per second; ratio to tiles x bare invoke (the target's
  definition) and to tiles x the pipeline's own invoke per tile (what is left for Python);
* float vs int8, timed in one process, interleaved frame by frame (medians per frame);
  peak RSS (``VmHWM``) of each model in a fresh process running the pipeline over the clip;
* tiling off (one letterboxed pass per frame) vs MediaPipe's own face detector
  (``scripts/bench_mediapipe.py`` in ``.venv-mediapipe``), same frames, same full-range
  model, same minimum score: throughput ratio and detection agreement.

``--kernels`` also times bare invoke of both models with XNNPACK (the default) and with
TFLite's builtin kernels (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``: ruy /
optimized int8 kernels), 1 and 2 threads, interleaved.

Back-to-back runs of the same code scatter: the float pipeline ratio read 1.33-1.42 in four
quiet runs (models/README.md), so a change of well under a millisecond per frame is measured
interleaved in one process, not from two runs of this script.

Usage: ``make bench`` (creates .venv-mediapipe), or ``.venv/bin/python scripts/bench.py``
(skips MediaPipe when its venv is missing). ``--repeat`` passes over the clip per figure.
"""

from __future__ import annotations

import argparse
import json
import os
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
    from device.detector.blazeface import VARIANTS, BlazeFace
    from device.models import resolve
    from device.pipeline import build_analyzer
    from device.runtime import TFLiteModel
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
        path, entry = resolve(model)
        # Bare invoke: its own interpreter at batch 1, the first tile of frame 0 set once;
        # invoke() alone is timed.
        bare = BlazeFace(TFLiteModel(path, num_threads=settings.threads), VARIANTS[entry.variant])
        bare.model.invoke(bare._lut[letterboxed_input(frames[0], regions[0], bare.input_size)[0]][None])
        # The pipeline runs the regions of a frame a few per invoke; one such invoke alone.
        analyzer.faces(frames[0])
        # Tiling off runs batch 1: its own interpreter, so that neither reallocates.
        single_model = BlazeFace(TFLiteModel(path, num_threads=settings.threads), VARIANTS[entry.variant])
        single = FaceDetector(single_model, TilingOptions(tile=0), settings.min_score)
        runs[model] = {"analyzer": analyzer, "interp": bare.model._interp, "batched": detector.model.model._interp,
                       "batch_size": detector.model.model.batch,
                       "tiles": len(regions), "single": single, "bare": [], "batch": [], "pipe": [], "notile": [],
                       "threads": settings.threads}
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
                run["batched"].invoke()
                t4 = time.perf_counter()
                run["bare"].append((t1 - t0) * 1000 / run["tiles"])
                run["pipe"].append((t2 - t1) * 1000)
                run["notile"].append((t3 - t2) * 1000)
                run["batch"].append((t4 - t3) * 1000 / run["batch_size"])
    out = {}
    for model, run in runs.items():
        notile = [[{"box": d.box.tolist(), "keypoints": d.keypoints.tolist()} for d in run["single"].detect(rgb)]
                  for rgb in frames]
        low = FaceDetector(run["single"].model, TilingOptions(tile=0), LOW_SCORE)
        notile_low = [[{"box": d.box.tolist(), "keypoints": d.keypoints.tolist()} for d in low.detect(rgb)]
                      for rgb in frames]
        out[model] = {
            "frames": len(frames), "tiles_per_frame": run["tiles"], "threads": run["threads"],
            "batch_size": run["batch_size"],
            "invoke_ms": float(np.median(run["bare"])), "batch_invoke_ms": float(np.median(run["batch"])),
            "pipeline_ms": float(np.median(run["pipe"])),
            "decode_ms": decode_ms, "included_ms": float(np.median(run["pipe"])) + decode_ms,
            "notile_ms": float(np.median(run["notile"])), "notile_detections": notile,
            "notile_low_detections": notile_low,
        }
    return out


def kernels(repeat: int) -> None:
    """Print bare invoke per tile of both models with XNNPACK and with the builtin kernels,
    1 and 2 threads, each configuration's own interpreter, interleaved round by round
    (medians of 3 invokes per configuration and round)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from device.detector import letterboxed_input
    from device.detector.blazeface import VARIANTS, BlazeFace
    from device.detector.tiling import tile_grid
    from device.models import resolve
    from device.runtime import TFLiteModel
    from device.sources.files import read_file

    frame = next(iter(read_file(CLIP))).rgb
    configs = {}
    for model in MODELS:
        path, entry = resolve(model)
        blaze = BlazeFace(TFLiteModel(path), VARIANTS[entry.variant])
        tensor = blaze._lut[letterboxed_input(frame, tile_grid(480, 270, 160, 48)[0], blaze.input_size)[0]][None]
        for resolver in ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
            for threads in (1, 2):
                interp = Interpreter(model_path=str(path), num_threads=threads,
                                     experimental_op_resolver_type=getattr(OpResolverType, resolver))
                interp.allocate_tensors()
                interp.set_tensor(interp.get_input_details()[0]["index"], tensor)
                interp.invoke()
                kind = "XNNPACK" if resolver == "AUTO" else "builtin"
                configs[(model.split("_")[-1], kind, threads)] = (interp, [])
    for _ in range(5 * repeat):
        for interp, times in configs.values():
            # One untimed invoke first: the previous configuration's worker threads spin
            # for a while after its invoke and would slow this one's first invoke.
            interp.invoke()
            for _ in range(3):
                began = time.perf_counter()
                interp.invoke()
                times.append((time.perf_counter() - began) * 1000)
    print("bare invoke per tile, ms (median), by kernels and threads:")
    for (model, kind, threads), (_, times) in configs.items():
        print(f"  {model:6s} {kind:8s} {threads} thread(s) {np.median(times):8.2f}")


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
    row(f"invoke of {results[MODELS[0]]['batch_size']} tiles as the pipeline does, per tile",
        lambda r: r["batch_invoke_ms"])
    row("pipeline per frame, decode excluded, ms", lambda r: r["pipeline_ms"])
    row("  ratio to the limit (target <= 1.15)", lambda r: r["pipeline_ms"] / (r["tiles_per_frame"] * r["invoke_ms"]))
    row("  ratio to tiles x that per tile", lambda r: r["pipeline_ms"] / (r["tiles_per_frame"] * r["batch_invoke_ms"]))
    row("decode per frame, ms", lambda r: r["decode_ms"])
    row("pipeline per frame, decode included, ms", lambda r: r["included_ms"])
    row("frames per second, decode included", lambda r: 1000 / r["included_ms"])
    row("frames per second, decode excluded", lambda r: 1000 / r["pipeline_ms"])
    row("peak RSS, MB (target <= 150)", lambda r: r["peak_rss_mb"], "{:12.1f}")
    row("tiling off: per frame, ms", lambda r: r["notile_ms"])
    fl, q = results[MODELS[0]], results[MODELS[1]]
    print(f"int8 speed-up over float: bare invoke {fl['invoke_ms'] / q['invoke_ms']:.2f}x, "
          f"batched invoke {fl['batch_invoke_ms'] / q['batch_invoke_ms']:.2f}x, "
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
    parser.add_argument("--kernels", action="store_true", help="also compare XNNPACK with the builtin kernels")
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
    if args.kernels:
        kernels(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
