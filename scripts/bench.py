#!/usr/bin/env python3
"""Benchmark: bare interpreter vs the whole pipeline, int8 vs float, ours vs OpenCV, vs the old detector.

All in one run, so the ratios are not skewed by this shared machine's load changing
between runs. On the 45 frames of the classroom clip (``../shared/data/video``), at its own
480x270 and upscaled (bilinear) to 1280x720 and 1920x1080:

* bare ``invoke()`` per model size, int8 and float32: the interpreter alone, input set once;
* the pipeline per frame (``Analyzer.faces``: copy into the input, invoke, decode, NMS, head
  orientation), and its ratio to the bare invoke of the same model;
* OpenCV's ``cv2.FaceDetectorYN`` with the same ONNX (``models/yunet_n_dynamic.onnx``), same
  frames (given as BGR, converted before timing), same thresholds, ``cv2.setNumThreads`` =
  our interpreter threads; our speed ratio to it;
* the old tiled BlazeFace pipeline (the landed commit ``OLD_COMMIT``, extracted with
  ``git archive`` into a scratch directory, its float model fetched by its own script from
  the mediapipe wheel on PyPI) at 1280x720, in a subprocess; skipped with ``--no-blazeface``;
* peak RSS (``VmHWM``) of ``roompulse run`` on the clip upscaled to 1280x720 and 1920x1080
  (written to scratch MP4 files), int8; and on its camera path at the same sizes, picamera2
  replaced by a stand-in module serving clip frames (:func:`camera_peak_rss`).

Timings are medians over ``--repeat`` passes of the 45 frames, passes of the configurations
interleaved; beside each ratio, the lowest and highest of the same ratio pass by pass, which
shows how much this shared machine's load moved it within the run. Usage: ``make bench``, or
``.venv/bin/python scripts/bench.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("ROOMPULSE_SHARED", ROOT.parent / "shared"))
CLIP = SHARED / "data" / "video" / "intel_classroom.gif"
FRAME_SIZES = ((480, 270), (1280, 720), (1920, 1080))
PRECISIONS = ("int8", "float32")
OLD_COMMIT = "c66a370"  # the last landed main with the tiled BlazeFace detector
THREADS = 2


def frames_at(size: tuple[int, int]) -> list[np.ndarray]:
    from PIL import Image

    from device.sources.files import read_file

    frames = [f.rgb for f in read_file(CLIP)]
    if frames[0].shape[1::-1] == size:
        return frames
    return [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BILINEAR)) for f in frames]


def analyzer(precision: str, size: tuple[int, int]):
    from device.config import Settings
    from device.pipeline import build_analyzer

    return build_analyzer(Settings(_env_file=None, state_dir=Path("/nonexistent"), model=f"yunet_n_{precision}",
                                   camera_size=f"{size[0]}x{size[1]}", accelerator="cpu", threads=THREADS))


def timed(fn, items, times: list) -> None:
    for item in items:
        began = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - began) * 1000)


def measure(repeat: int) -> dict:
    """Timing (ms per frame) of every configuration, interleaved pass by pass."""
    import cv2

    cv2.setNumThreads(THREADS)
    from device.detector.yunet import SCORE_THRESHOLD

    configs = {}
    for size in FRAME_SIZES:
        frames = frames_at(size)
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
        for precision in PRECISIONS:
            a = analyzer(precision, size)
            a.faces(frames[0])
            model = a.detector.model.model
            configs[(size, precision, "bare")] = (lambda _, m=model: m.invoke(), frames, [])
            configs[(size, precision, "pipeline")] = (a.faces, frames, [])
        ref = cv2.FaceDetectorYN.create(str(ROOT / "models" / "yunet_n_dynamic.onnx"), "", size,
                                        SCORE_THRESHOLD, 0.3, 5000)
        ref.detect(bgr[0])
        configs[(size, "opencv", "pipeline")] = (ref.detect, bgr, [])
    for _ in range(repeat):
        for fn, items, passes in configs.values():
            fn(items[0])  # untimed: the previous configuration's threads may still spin
            passes.append([])
            timed(fn, items, passes[-1])
    return {key: Timing(float(np.median(np.concatenate(passes))), [float(np.median(p)) for p in passes])
            for key, (_, _, passes) in configs.items()}


@dataclass
class Timing:
    """Median ms per frame of one configuration: over all passes, and of each pass."""

    median: float
    per_pass: list[float]


def ratio_range(num: Timing, den: Timing) -> str:
    """The lowest and highest per-pass ratio ``num / den`` (passes taken side by side), as
    ``lo-hi``: how far this machine's load moved the ratio within the run."""
    ratios = [a / b for a, b in zip(num.per_pass, den.per_pass)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def old_blazeface(scratch: Path, repeat: int) -> float | None:
    """Median ms per frame of the landed tiled BlazeFace pipeline at 1280x720, or None."""
    tree = scratch / "old"
    tree.mkdir()
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        subprocess.run([sys.executable, str(tree / "scripts" / "fetch_models.py")], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"(old BlazeFace pipeline skipped: {exc})")
        return None
    code = (
        "import sys, time, numpy as np; from pathlib import Path; sys.path.insert(0, sys.argv[1])\n"
        "from PIL import Image\n"
        "from device.config import Settings; from device.pipeline import build_analyzer\n"
        "from device.sources.files import read_file\n"
        "a = build_analyzer(Settings(_env_file=None, state_dir=Path('/x'), accelerator='cpu'))\n"
        "fr = [np.asarray(Image.fromarray(f.rgb).resize((1280, 720), Image.Resampling.BILINEAR)) for f in read_file(sys.argv[2])]\n"
        "a.faces(fr[0]); t = []\n"
        "for _ in range(int(sys.argv[3])):\n"
        "    for f in fr:\n"
        "        b = time.perf_counter(); a.faces(f); t.append((time.perf_counter() - b) * 1000)\n"
        "print(np.median(t))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tree), str(CLIP), str(repeat)], capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items() if not k.startswith("ROOMPULSE_")})
    if out.returncode:
        print(f"(old BlazeFace pipeline failed: {out.stderr.strip().splitlines()[-1:]})")
        return None
    return float(out.stdout.split()[-1])


def write_clip(size: tuple[int, int], path: Path, count: int | None = None) -> None:
    """The classroom clip (its first ``count`` frames, all when None) upscaled to ``size``,
    H.264 at 15 fps (PyAV)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for rgb in frames_at(size)[:count]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def service_env(state: Path, **settings: str) -> dict[str, str]:
    """This process's environment without its ``ROOMPULSE_*`` variables, plus the benchmark's
    service settings (state in ``state``, 1 s windows, min group 3) and ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMPULSE_")}
    env.update(ROOMPULSE_STATE_DIR=str(state), ROOMPULSE_WINDOW_S="1", ROOMPULSE_MIN_GROUP_SIZE="3",
               ROOMPULSE_DEVICE_ID="bench", **settings)
    return env


def service_peak_rss(clip: Path, state: Path, model: str = "yunet_n_int8") -> float:
    """Peak RSS in MB (``VmHWM``, polled from /proc until exit) of ``roompulse run`` on ``clip``."""
    proc = subprocess.Popen([sys.executable, "-m", "device", "run", "--source", str(clip)], cwd=ROOT,
                            env=service_env(state, ROOMPULSE_FPS="30", ROOMPULSE_MODEL=model),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_peak_rss(proc)


# A stand-in for the picamera2 module (no camera here): it serves two frames of the clip at
# 15 fps, as the RGB arrays picamera2's "BGR888" main stream gives, so the service runs its
# camera path, where neither PyAV nor a video decoder is loaded.
CAMERA_STANDIN = """import time
import numpy as np
_FRAMES = np.load({frames!r})
class Picamera2:
    def __init__(self):
        self._i = 0
    def create_video_configuration(self, main):
        return main
    def configure(self, config):
        pass
    def start(self):
        pass
    def capture_array(self, name="main"):
        time.sleep(1 / 15)
        self._i += 1
        return _FRAMES[self._i % 2]
    def close(self):
        pass
"""


def camera_peak_rss(size: tuple[int, int], scratch: Path, seconds: float = 10.0) -> float:
    """Peak RSS in MB of ``roompulse run`` on its camera path (``ROOMPULSE_SOURCE=picamera2``,
    ``ROOMPULSE_CAMERA_SIZE`` = ``size``) for ``seconds``, then SIGTERM; picamera2 replaced by
    :data:`CAMERA_STANDIN`, whose two frames (included in the figure) stand for the camera's
    buffers. libcamera's own memory is not in it (not measurable without a Pi)."""
    np.save(scratch / "frames.npy", np.stack(frames_at(size)[:2]))
    (scratch / "picamera2.py").write_text(CAMERA_STANDIN.format(frames=str(scratch / "frames.npy")))
    env = service_env(scratch / "state", ROOMPULSE_SOURCE="picamera2", ROOMPULSE_CAMERA_SIZE=f"{size[0]}x{size[1]}",
                      PYTHONPATH=str(scratch))
    proc = subprocess.Popen([sys.executable, "-m", "device", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stopper = threading.Timer(seconds, proc.terminate)
    stopper.start()
    try:
        return wait_peak_rss(proc)
    finally:
        stopper.cancel()


def peak_rss_mb(pid: int) -> float:
    """Peak RSS so far of process ``pid`` in MB: ``VmHWM`` from its /proc status.

    Raises:
        OSError: no such process; IndexError: it has no memory (a zombie).
    """
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def wait_peak_rss(proc: subprocess.Popen) -> float:
    """Wait for ``proc`` to exit, polling its ``VmHWM`` every 50 ms; its peak RSS in MB.

    Read from the child's /proc status, not ``ru_maxrss``: Linux carries ``ru_maxrss``
    over fork and exec, so it would report this process's own (larger) RSS."""
    peak = 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, peak_rss_mb(proc.pid))
        except (OSError, IndexError):
            pass
        time.sleep(0.05)
    return peak


def report(timings: dict, old: float | None, rss: dict, camera: dict) -> None:
    ms = {key: t.median for key, t in timings.items()}
    print(f"classroom clip, 45 frames, {THREADS} threads; median ms per frame (ranges: lowest-highest of the "
          "passes' ratios)")
    print(f"{'frame size':>11} {'model':>8} {'bare invoke':>12} {'pipeline':>9} {'ratio':>6} {'(passes)':>10} "
          f"{'OpenCV YN':>10} {'OpenCV/ours':>12} {'(passes)':>10}")
    for size in FRAME_SIZES:
        cv = ms[(size, "opencv", "pipeline")]
        for precision in PRECISIONS:
            bare, pipe = ms[(size, precision, "bare")], ms[(size, precision, "pipeline")]
            spread = ratio_range(timings[(size, precision, "pipeline")], timings[(size, precision, "bare")])
            versus = ratio_range(timings[(size, "opencv", "pipeline")], timings[(size, precision, "pipeline")])
            print(f"{size[0]:>5}x{size[1]:<5} {precision:>8} {bare:12.2f} {pipe:9.2f} {pipe / bare:6.3f} {spread:>10} "
                  f"{cv:10.2f} {cv / pipe:11.2f}x {versus:>10}")
    for size in FRAME_SIZES:
        i8, f32 = ms[(size, "int8", "pipeline")], ms[(size, "float32", "pipeline")]
        b8, b32 = ms[(size, "int8", "bare")], ms[(size, "float32", "bare")]
        print(f"int8 vs float32 at {size[0]}x{size[1]}: bare {b32 / b8:.2f}x, pipeline {f32 / i8:.2f}x "
              "(> 1: int8 faster)")
    if old is not None:
        ours = ms[((1280, 720), "int8", "pipeline")]
        print(f"old tiled BlazeFace pipeline ({OLD_COMMIT}, float, 1280x720): {old:.1f} ms/frame; "
              f"ours (int8) {ours:.2f} ms: {old / ours:.1f}x faster")
    for size, mb in rss.items():
        print(f"peak RSS of roompulse run (int8) on the clip at {size[0]}x{size[1]}: {mb:.1f} MB")
    for size, mb in camera.items():
        print(f"peak RSS of roompulse run (int8) on the camera path at {size[0]}x{size[1]} (picamera2 stand-in, "
              f"no PyAV): {mb:.1f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="passes over the 45 frames per configuration")
    parser.add_argument("--no-blazeface", action="store_true", help="skip the old tiled BlazeFace pipeline")
    args = parser.parse_args()
    ms = measure(args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        old = None if args.no_blazeface else old_blazeface(scratch, args.repeat)
        rss, camera = {}, {}
        for size in FRAME_SIZES[1:]:
            clip = scratch / f"classroom_{size[0]}x{size[1]}.mp4"
            write_clip(size, clip)
            rss[size] = service_peak_rss(clip, scratch / f"state{size[0]}")
            (scratch / f"camera{size[0]}").mkdir()
            camera[size] = camera_peak_rss(size, scratch / f"camera{size[0]}")
    report(ms, old, rss, camera)
    return 0


if __name__ == "__main__":
    sys.exit(main())
