#!/usr/bin/env python3
"""Build the YuNet LiteRT models, float32 and full-integer int8, one per input size (``make models``).

From ``models/yunet_n_dynamic.onnx`` (libfacedetection.train, Apache-2.0; its sha256 is
checked against the manifest's ``source``), for each size in :data:`SIZES`:

1. the first convolution's weights are reversed along the input-channel axis, so the graph
   takes RGB (camera order) instead of BGR; the ONNX input is pinned to 1x3xHxW and shapes
   are inferred (a dynamic graph converts to a dynamic, slower TFLite graph);
2. ``onnx2tf`` (pinned in ``scripts/requirements-build.txt``) converts it to a float32
   model and, calibrated on :func:`calibration_frames`, to a full-integer model: int8
   weights (per channel) and activations, uint8 input, int8 outputs. It runs in a
   scratch directory holding our own sample-data file, so it downloads nothing;
3. the int8 model's input quantization is set to scale 1, zero point 0 (camera bytes go
   in as they are; ``tflite_graph.set_input_quantization``) and its signature outputs
   get the ONNX names, the order checked against the float model's outputs;
4. the files are written to ``models/`` and the manifest entry: file, sha256, size, input
   size, source hash, tool versions, calibration set, self-test expectation.

Calibration: every ``CALIBRATION_STEP``-th frame of the walking and the three head-pose
clips (the classroom clip is kept out: it validates), stored in
``models/calibration_frames.npz`` so a clone rebuilds without ``../shared``, each placed in the model's input
as the detector places a frame of that size (upscaled, aspect kept, to the size the
model serves, top-left, zero padding), RGB 0..255.

Run with the build venv (``make models`` creates ``.venv-build``); the runtime never needs
the converter. The same inputs and pinned tools give byte-identical files; ``--check``
rebuilds in a scratch directory and compares with the committed ones.

Exit status: 0 on success; 1 when a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import tflite_graph  # noqa: E402
from PIL import Image  # noqa: E402

from device.detector.yunet import OUTPUT_NAMES, YuNetModel, padded_size, place  # noqa: E402
from device.runtime import TFLiteModel  # noqa: E402
from device.selftest import expectation  # noqa: E402
from device.sources.files import read_file  # noqa: E402

MODELS = ROOT / "models"
MANIFEST = MODELS / "manifest.json"
SOURCE = MODELS / "yunet_n_dynamic.onnx"
# Every CALIBRATION_STEP-th frame of CALIBRATION_CLIPS (Intel IoT Devkit sample-videos,
# CC-BY-4.0), decoded to RGB; models/README.md gives the attribution.
CALIBRATION_FILE = MODELS / "calibration_frames.npz"
SHARED = Path(os.environ.get("ROOMPULSE_SHARED", ROOT.parent / "shared"))
# The frame sizes served: the demo clips, VGA, the one-by-one clip's 768x432, the default
# camera size and full HD. Each model's input (W, H) is that size padded to multiples of 32,
# as the detector pads a frame; the calibration frames are scaled to the frame size.
FRAME_SIZES = ((480, 270), (640, 480), (768, 432), (1280, 720), (1920, 1080))
SIZES = {padded_size(*frame): frame for frame in FRAME_SIZES}
CALIBRATION_CLIPS = (
    "intel_face-demographics-walking.gif",
    "intel_head-pose-face-detection-female.gif",
    "intel_head-pose-face-detection-male.gif",
    "intel_head-pose-face-detection-female-and-male.gif",
)
CALIBRATION_STEP = 3
TOOLS = ("onnx2tf", "tensorflow", "onnx", "onnxsim", "ai-edge-litert", "numpy", "pillow", "av")
# onnx2tf reads this file from its working directory instead of downloading sample images
# (it uses them for a test inference while converting); we write it from our own frames.
SAMPLE_DATA = "calibration_image_sample_data_20x128x128x3_float32.npy"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def name(size: tuple[int, int], precision: str) -> str:
    """Manifest name, e.g. ``yunet_n_1280x736_int8``."""
    return f"yunet_n_{size[0]}x{size[1]}_{precision}"


def clip_frames(refresh: bool = False) -> np.ndarray:
    """The calibration frames, uint8 (N, 270, 480, 3) RGB, in clip order.

    Read from :data:`CALIBRATION_FILE` (committed, so a clone rebuilds without
    ``../shared``); with ``refresh``, or when it is missing, decoded from the clips in
    ``../shared/data/video/`` and written there.
    """
    if CALIBRATION_FILE.is_file() and not refresh:
        with np.load(CALIBRATION_FILE) as data:
            return data["frames"]
    frames = []
    for clip in CALIBRATION_CLIPS:
        frames += [f.rgb for f in read_file(SHARED / "data" / "video" / clip) if f.index % CALIBRATION_STEP == 0]
    stacked = np.stack(frames)
    np.savez_compressed(CALIBRATION_FILE, frames=stacked)
    return stacked


def calibration_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 (N, H, W, 3) RGB 0..255: each frame scaled to the frame size ``size`` serves
    (aspect kept), placed top-left in the model input, zero padding."""
    serves = SIZES[size]
    out = np.zeros((len(frames), size[1], size[0], 3), np.float32)
    for i, rgb in enumerate(frames):
        h, w = rgb.shape[:2]
        scale = min(serves[0] / w, serves[1] / h)
        sized = (round(w * scale), round(h * scale))
        img = np.asarray(Image.fromarray(rgb).resize(sized, Image.Resampling.BILINEAR)) if sized != (w, h) else rgb
        assert place(*sized, [size]).scale == 1.0
        out[i, : sized[1], : sized[0]] = img
    return out


def rgb_input(model) -> None:
    """Make the graph take RGB: reverse the first convolution's weights along the input-channel
    axis. The source graph takes BGR (as OpenCV delivers it); camera frames arrive as RGB, and
    reversing the weights (exact: per-output-channel quantization is unaffected) saves the
    per-frame channel swap (3.8 ms of a 1280x720 frame here).

    Raises:
        RuntimeError: the input does not feed exactly one Conv with (out, 3, kh, kw) weights.
    """
    from onnx import numpy_helper

    name = model.graph.input[0].name
    users = [n for n in model.graph.node if name in n.input]
    weights = {init.name: init for init in model.graph.initializer}
    if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[1] not in weights:
        raise RuntimeError(f"expected the input to feed one Conv, found {[n.op_type for n in users]}")
    init = weights[users[0].input[1]]
    array = numpy_helper.to_array(init)
    if array.ndim != 4 or array.shape[1] != 3:
        raise RuntimeError(f"first Conv weights have shape {array.shape}, expected (out, 3, kh, kw)")
    init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array[:, ::-1]), init.name))


def pinned_onnx(size: tuple[int, int], into: Path) -> Path:
    """The source graph taking RGB (:func:`rgb_input`), its input fixed to 1x3xHxW, shapes inferred."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(SOURCE))
    rgb_input(model)
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, size[1], size[0])):
        dim.ClearField("dim_param")
        dim.dim_value = value
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    path = into / f"yunet_n_{size[0]}x{size[1]}.onnx"
    onnx.save(shape_inference.infer_shapes(model), str(path))
    return path


def convert(size: tuple[int, int], calibration: np.ndarray, scratch: Path) -> tuple[bytes, bytes]:
    """Run onnx2tf. Returns the float32 and the full-integer ``.tflite`` bytes as converted."""
    onnx_path = pinned_onnx(size, scratch)
    np.save(scratch / "calibration.npy", calibration)
    sample = calibration[np.linspace(0, len(calibration) - 1, 20).astype(int)]  # RGB, as the graph now takes
    resized = np.stack([np.asarray(Image.fromarray(s.astype(np.uint8)).resize((128, 128), Image.Resampling.BILINEAR))
                        for s in sample]).astype(np.float32) / 255.0
    np.save(scratch / SAMPLE_DATA, resized)
    out = scratch / "out"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    command = [str(Path(sys.executable).parent / "onnx2tf"), "-i", str(onnx_path), "-o", str(out), "-osd",
               "-oiqt", "-qt", "per-channel", "-cind", "input", str(scratch / "calibration.npy"),
               "[[[[0.0,0.0,0.0]]]]", "[[[[1.0,1.0,1.0]]]]", "-iqd", "uint8", "-oqd", "int8", "-v", "error"]
    done = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"onnx2tf failed for {size}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    stem = onnx_path.stem
    return (out / f"{stem}_float32.tflite").read_bytes(), (out / f"{stem}_full_integer_quant.tflite").read_bytes()


def finish_int8(data: bytes, float_path: Path, calibration: np.ndarray, scratch: Path) -> tuple[bytes, dict]:
    """Input quantization to (1, 0) and ONNX output names, checked against the float model.

    Returns:
        The int8 bytes and what was changed (for the manifest).

    Raises:
        RuntimeError: an int8 output does not track the float output of the same name.
    """
    model = tflite_graph.read(data)
    before = tflite_graph.set_input_quantization(model, 1.0, 0)
    stored = tflite_graph.signature_outputs(model)
    # onnx2tf names full-integer outputs output_0 ... in the ONNX graph's output order.
    renaming = {old: OUTPUT_NAMES[int(old.split("_")[1])] for old, _ in stored}
    tflite_graph.rename_outputs(model, renaming)
    data = tflite_graph.write(model)
    path = scratch / "int8.tflite"
    path.write_bytes(data)
    q, f = TFLiteModel(path, num_threads=1), TFLiteModel(float_path, num_threads=1)
    mine, floats = {out: [] for out in OUTPUT_NAMES}, {out: [] for out in OUTPUT_NAMES}
    for sample in calibration[:: max(1, len(calibration) // 8)]:
        q.input_buffer()[0] = sample.astype(np.uint8)
        f.input_buffer()[0] = sample
        q.invoke()
        f.invoke()
        for out in OUTPUT_NAMES:
            mine[out].append(q.output(out).ravel())
            floats[out].append(f.output(out).ravel())
    for out in OUTPUT_NAMES:
        a = np.concatenate(mine[out])
        corr = {other: float(np.nan_to_num(np.corrcoef(a, np.concatenate(v))[0, 1]))
                for other, v in floats.items() if np.concatenate(v).shape == a.shape}
        if max(corr, key=corr.get) != out or not corr[out] > 0.8:
            raise RuntimeError(f"int8 output {out} does not track the float output of that name: correlations {corr}")
    return data, {"input_quantization_was": list(before), "input_quantization": [1.0, 0],
                  "outputs_renamed": ("output_k -> the k-th ONNX output name; each tracks the float output of its "
                                      "name best (correlation on a calibration frame)")}


def build(check: bool, only: str | None, refresh: bool = False) -> int:
    tools = {t: version(t) for t in TOOLS}
    manifest = json.loads(MANIFEST.read_text())
    source = SOURCE.read_bytes()
    if sha256(source) != manifest["source"]["sha256"]:
        print(f"{SOURCE} has sha256 {sha256(source)}, expected {manifest['source']['sha256']}", file=sys.stderr)
        return 1
    frames = clip_frames(refresh)
    frames_sha256 = hashlib.sha256(frames.tobytes()).hexdigest()
    failures = 0
    for size in SIZES:
        if only and only not in name(size, ""):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Path(tmp)
            calibration = calibration_frames(frames, size)
            float_bytes, int8_bytes = convert(size, calibration, scratch)
            float_path = scratch / "float32.tflite"
            float_path.write_bytes(float_bytes)
            int8_bytes, edits = finish_int8(int8_bytes, float_path, calibration, scratch)
            built = {"float32": float_bytes, "int8": int8_bytes}
            for precision, data in built.items():
                entry_name = name(size, precision)
                file = f"{entry_name}.tflite"
                if check:
                    committed = (MODELS / file).read_bytes() if (MODELS / file).is_file() else b""
                    same = committed == data
                    failures += not same
                    print(f"{file}: {'identical' if same else 'DIFFERS'} (built {sha256(data)[:16]}, "
                          f"committed {sha256(committed)[:16]})")
                    continue
                (MODELS / file).write_bytes(data)
                model = YuNetModel(TFLiteModel(MODELS / file, num_threads=1))
                entry = {
                    "file": file, "sha256": sha256(data), "bytes": len(data), "family": "yunet",
                    "precision": precision, "input": [1, size[1], size[0], 3],
                    "dtype": ("uint8 input (scale 1, zero point 0: RGB bytes), int8 weights (per channel), "
                              "activations and outputs" if precision == "int8" else "float32 input (RGB 0..255) and outputs"),
                    "license": "Apache-2.0", "committed": True,
                    "built_from": {"file": SOURCE.name, "sha256": sha256(source), "input_pinned": [1, 3, size[1], size[0]],
                                   "input_channels": "RGB: the first Conv's weights reversed along the input-channel "
                                                     "axis (the source graph takes BGR)"},
                    "build": {"script": "scripts/build_models.py", "tools": tools,
                              "converter": "onnx2tf -osd -oiqt -qt per-channel -iqd uint8 -oqd int8, mean 0, std 1",
                              **({"int8_edits": edits, "calibration": {
                                  "clips": list(CALIBRATION_CLIPS), "every_nth_frame": CALIBRATION_STEP,
                                  "frames": len(frames), "frames_file": CALIBRATION_FILE.name,
                                  "frames_sha256": frames_sha256, "frame_size": list(SIZES[size]),
                                  "input": "RGB 0..255, frame scaled to frame_size (aspect kept), top-left, zero padding"}}
                                 if precision == "int8" else {})},
                    "selftest": expectation(model),
                }
                if precision == "int8":
                    entry["edgetpu"] = {"file": f"{entry_name}_edgetpu.tflite", "sha256": None, "bytes": None}
                manifest["models"][entry_name] = entry
                print(f"{file}: {len(data)} bytes, sha256 {entry['sha256'][:16]}, self-test score "
                      f"{entry['selftest']['score']:.3f}", flush=True)
    if not check:
        MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="rebuild and compare with the committed files")
    parser.add_argument("--only", help="build only sizes whose name contains this, e.g. 1280x736")
    parser.add_argument("--refresh-calibration", action="store_true",
                        help=f"decode the calibration frames from ../shared's clips again into {CALIBRATION_FILE.name}")
    args = parser.parse_args()
    return build(args.check, args.only, args.refresh_calibration)


if __name__ == "__main__":
    sys.exit(main())
