#!/usr/bin/env python3
"""Build the full-integer int8 BlazeFace models from the pinned float ones (``make models``).

For each float model in ``models/manifest.json`` (fetched by ``scripts/fetch_models.py``):

1. graph surgery (``scripts/tflite_graph.py``): sparse fp16 constants densified, fp16
   ``DEQUANTIZE`` folded into float32 constants, a ``serving_default`` signature added
   (``input`` -> ``regressors``, ``classificators``); the result is checked to give the
   same outputs as the original on a random input;
2. calibration with ``ai-edge-quantizer`` on the exact inputs the detector feeds the
   model (every tile and the whole-frame pass, letterboxed, in [-1, 1]) of every
   ``CALIBRATION_STEP``-th frame of the walking and head-pose clips in
   ``../shared/data/video/`` (the classroom clip is kept out: it validates);
3. static int8 quantization (``static_wi8_ai8``: int8 weights per channel, int8
   activations per tensor), then the float interface removed so the graph's input and
   outputs are int8 (``tflite_graph.integer_interface``);
4. the manifest entry written: file, sha256, size, source model hash, recipe, calibration
   set, tool versions, and the self-test expectation (``device.selftest``).

Run with the build venv (``make models`` creates ``.venv-build`` from
``scripts/requirements-build.txt``); the runtime never needs ``ai-edge-quantizer``.
The same inputs and pinned tools give byte-identical files, which ``--check`` verifies.

Environment (for experiments; the manifest records the values used): ``CALIBRATION_STEP``
(every n-th frame, default 3), ``RANGE_QUANTILE`` (default 0.5), ``BUILD_ONLY`` (build only
the models whose name contains this, e.g. ``full``).

Exit status: 0 on success; 1 when a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # ai-edge-quantizer's progress bars

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import tflite_graph  # noqa: E402
from device.detector import FaceDetector, TilingOptions, letterboxed_input  # noqa: E402
from device.detector.blazeface import to_input  # noqa: E402
from device.sources.files import read_file  # noqa: E402

MODELS = ROOT / "models"
MANIFEST = MODELS / "manifest.json"
SHARED = Path(os.environ.get("ROOMPULSE_SHARED", ROOT.parent / "shared"))
CALIBRATION_CLIPS = (
    "intel_face-demographics-walking.gif",
    "intel_head-pose-face-detection-female.gif",
    "intel_head-pose-face-detection-male.gif",
    "intel_head-pose-face-detection-female-and-male.gif",
)
CALIBRATION_STEP = int(os.environ.get("CALIBRATION_STEP", "3"))
# Self-test image: frame 0 of this clip, 192x192 from this (x, y) corner; the face there
# is about 82 px wide (the float model's box: x 206-288, y 55-137).
SELFTEST_CLIP = "intel_head-pose-face-detection-male.gif"
SELFTEST_ORIGIN = (151, 0)
RECIPE = "static_wi8_ai8"
# Calibration range of the score logits. Anchors far from any face reach logits near -400,
# and a min/max range that wide leaves 1.6 logits per int8 step (scores 0.5, 0.83, 0.96
# and nothing between). Only logits near the threshold matter (0.65 is logit 0.62;
# sigmoid(+-10) is 0.99995 / 4.5e-5), so the range is clipped to +-10: 0.078 per step.
LOGIT_RANGE = (-10.0, 10.0)
# Activation ranges: of each tensor's per-sample maxima (minima) over the calibration
# inputs, this quantile (the median by default). Measured int8-vs-float recall on the
# classroom / walking clips (full range): global min/max (quantile 1) 0.69 / 0.51 (a few
# outliers set the range, first conv 8 % relative error); the quantizer's default
# moving average (order-dependent) 0.94 / 0.83; quantile 0.99: 0.68 / 0.59; 0.9: 0.84 /
# 0.56; 0.5: 0.98 / 0.91; 0.25: 0.89 / 0.94; 0.1: 0.78 / 0.84.
RANGE_QUANTILE = float(os.environ.get("RANGE_QUANTILE", "0.5"))
SIGNATURE_INPUTS = ["input"]
SIGNATURE_OUTPUTS = ["regressors", "classificators"]
# float name -> int8 name and output file
TARGETS = {
    "blazeface_full_range_float": ("blazeface_full_range_int8", "face_detection_full_range_int8.tflite"),
    "blazeface_short_range_float": ("blazeface_short_range_int8", "face_detection_short_range_int8.tflite"),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Sizer:
    """Stands in for a BlazeFace model so FaceDetector.regions can be reused."""

    def __init__(self, size: int):
        self.input_size = size


def calibration_inputs(size: int) -> tuple[list[np.ndarray], dict]:
    """The model inputs of the calibration frames, and a description of the set.

    Returns:
        float32 (1, size, size, 3) arrays in [-1, 1], and ``{"clips": ..., "frames": n,
        "samples": n, "every_nth_frame": CALIBRATION_STEP, "tiling": ...}``.
    """
    tiling = TilingOptions()
    detector = FaceDetector(_Sizer(size), tiling)  # type: ignore[arg-type]
    samples, frames = [], 0
    for clip in CALIBRATION_CLIPS:
        for frame in read_file(SHARED / "data" / "video" / clip):
            if frame.index % CALIBRATION_STEP:
                continue
            frames += 1
            height, width = frame.rgb.shape[:2]
            for region in detector.regions(width, height):
                inp, _ = letterboxed_input(frame.rgb, region, size)
                samples.append(to_input(inp))
    description = {
        "clips": list(CALIBRATION_CLIPS),
        "every_nth_frame": CALIBRATION_STEP,
        "frames": frames,
        "samples": len(samples),
        "inputs": f"{tiling.tile} px tiles, {tiling.overlap} px overlap, plus the whole frame; letterboxed, [-1, 1]",
    }
    return samples, description


def write_selftest_image() -> None:
    """Write ``models/selftest.png``: 192x192 around the face in frame 0 of the male head-pose clip."""
    from PIL import Image

    from device.selftest import SELFTEST_IMAGE

    frame = next(iter(read_file(SHARED / "data" / "video" / SELFTEST_CLIP)))
    x0, y0 = SELFTEST_ORIGIN
    Image.fromarray(frame.rgb[y0 : y0 + 192, x0 : x0 + 192]).save(SELFTEST_IMAGE, optimize=False)


def prepare_float(data: bytes) -> bytes:
    """Fold constants, drop the stale runtime-version metadata, add the signature."""
    model = tflite_graph.read(data)
    tflite_graph.normalize_opcodes(model)
    tflite_graph.fold_constants(model)
    tflite_graph.fuse_relu(model)
    tflite_graph.drop_metadata(model, {b"min_runtime_version"})
    tflite_graph.add_signature(model, SIGNATURE_INPUTS, SIGNATURE_OUTPUTS)
    shapes = [list(model.subgraphs[0].tensors[i].shape) for i in model.subgraphs[0].outputs]
    if [s[-1] for s in shapes] != [16, 1]:
        raise SystemExit(f"unexpected output shapes {shapes}: expected regressors (.., 16), classificators (.., 1)")
    return tflite_graph.write(model)


def same_outputs(original: bytes, prepared: bytes) -> float:
    """Largest absolute output difference between two float models on one random input."""
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    results = []
    for content in (original, prepared):
        interp = Interpreter(model_content=content)
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
        interp.set_tensor(detail["index"], rng.uniform(-1, 1, detail["shape"]).astype(np.float32))
        rng = np.random.default_rng(0)
        interp.invoke()
        results.append({d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()})
    return max(float(np.abs(results[0][k] - results[1][k]).max()) for k in results[0])


def collect_extremes(qsv: dict, new: dict) -> dict:
    """Calibrator update function: keep every sample's min and max of a tensor."""
    mins = qsv.get("mins", [qsv["min"]])
    maxs = qsv.get("maxs", [qsv["max"]])
    return {"min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"]),
            "mins": mins + [new["min"]], "maxs": maxs + [new["max"]]}


def quantile_range(qsv: dict) -> dict:
    """The tensor's range: the ``RANGE_QUANTILE`` quantile of the per-sample maxima and the
    matching lower quantile of the per-sample minima (see ``RANGE_QUANTILE``)."""
    if "maxs" not in qsv:
        return {"min": qsv["min"], "max": qsv["max"]}
    low = np.quantile(np.stack(qsv["mins"]), 1.0 - RANGE_QUANTILE, axis=0).astype(np.float32)
    high = np.quantile(np.stack(qsv["maxs"]), RANGE_QUANTILE, axis=0).astype(np.float32)
    return {"min": low, "max": high}


def input_tensor(prepared: bytes) -> str:
    """Name of the graph's input tensor."""
    model = tflite_graph.read(prepared)
    return tflite_graph.text(model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]].name)


def score_tensors(prepared: bytes) -> list[str]:
    """Names of the tensors that carry the score logits: the ``classificators`` output and,
    back through data-movement and concatenation ops, the head convolutions' outputs."""
    model = tflite_graph.read(prepared)
    graph = model.subgraphs[0]
    producer = {out: op for op in graph.operators for out in op.outputs}
    passthrough = tflite_graph.DATA_MOVEMENT | {tflite_graph.OP.CONCATENATION}
    index = {tflite_graph.text(m.name): m.tensorIndex for m in model.signatureDefs[0].outputs}["classificators"]
    names, todo = [], [index]
    while todo:
        tensor = todo.pop()
        names.append(tflite_graph.text(graph.tensors[tensor].name))
        op = producer.get(tensor)
        if op is not None and tflite_graph.opcode(model, op) in passthrough:
            todo += [i for i in op.inputs if graph.tensors[i].type == tflite_graph.schema.TensorType.FLOAT32
                     and model.buffers[graph.tensors[i].buffer].data is None]
    return names


def quantize(prepared: bytes, samples: list[np.ndarray]) -> tuple[bytes, dict]:
    """Calibrate and quantize with ai-edge-quantizer, then give the graph an int8 interface."""
    from ai_edge_quantizer import calibrator, quantizer, recipe
    from ai_edge_quantizer.utils import qsv_utils

    q = quantizer.Quantizer(bytearray(prepared), getattr(recipe, RECIPE)())
    calib = calibrator.Calibrator(bytearray(prepared), num_threads=1, qsv_update_func=collect_extremes)
    calib.calibrate({"serving_default": [{"input": s} for s in samples]}, q._recipe_manager)
    qsvs = {name: quantile_range(qsv) for name, qsv in calib.get_model_qsvs().items()}
    for name in score_tensors(prepared):
        qsvs[name] = {"min": np.full_like(qsvs[name]["min"], LOGIT_RANGE[0]),
                      "max": np.full_like(qsvs[name]["max"], LOGIT_RANGE[1])}
    qsvs[input_tensor(prepared)] = {"min": np.float32(-1.0), "max": np.float32(1.0)}
    result = q.quantize(qsvs, enable_progress_report=False)
    model = tflite_graph.read(bytes(result.quantized_model))
    tflite_graph.integer_data_movement(model)
    tflite_graph.integer_interface(model)
    return tflite_graph.write(model), result.recipe


def build(check: bool) -> int:
    manifest = json.loads(MANIFEST.read_text())
    tools = {name: version(name) for name in ("ai-edge-quantizer", "ai-edge-litert", "numpy", "av", "pillow")}
    samples_by_size: dict[int, tuple[list[np.ndarray], dict]] = {}
    status = 0
    from device.selftest import expectation  # needs the runtime; imported late

    if not check:
        write_selftest_image()

    only = os.environ.get("BUILD_ONLY")
    for float_name, (name, filename) in TARGETS.items():
        if only and only not in name:
            continue
        source = manifest["models"][float_name]
        original = (MODELS / source["file"]).read_bytes()
        if sha256(original) != source["sha256"]:
            print(f"error: {source['file']} does not match the manifest; run 'make models-fetch'", file=sys.stderr)
            return 1
        prepared = prepare_float(original)
        diff = same_outputs(original, prepared)
        if diff > 1e-4:
            print(f"error: surgery changed {source['file']}'s outputs by {diff}", file=sys.stderr)
            return 1
        size = int(source["input"][1])
        if size not in samples_by_size:
            samples_by_size[size] = calibration_inputs(size)
        samples, calibration = samples_by_size[size]
        data, used_recipe = quantize(prepared, samples)
        path = MODELS / filename
        if check:
            same = path.is_file() and path.read_bytes() == data
            print(f"models: {filename} {'reproduced byte for byte' if same else 'DIFFERS from the committed file'}")
            status |= 0 if same else 1
            continue
        path.write_bytes(data)
        entry = {
            "file": filename,
            "sha256": sha256(data),
            "bytes": len(data),
            "variant": source["variant"],
            "input": source["input"],
            "dtype": "int8 input and outputs (per-tensor scale/zero point), int8 weights (per channel) and activations",
            "license": source["license"],
            "committed": True,
            "built_from": {"model": float_name, "sha256": source["sha256"]},
            "build": {
                "script": "scripts/build_models.py",
                "surgery": "operator codes normalized; DENSIFY and fp16 DEQUANTIZE folded into float32 constants; "
                "standalone RELU fused into the op before it; "
                "signature serving_default (input -> regressors, classificators); float I/O removed",
                "recipe": RECIPE,
                "calibration_statistic": f"per tensor, the {RANGE_QUANTILE} quantile of per-sample max (1 - that of min); input fixed to [-1, 1]; score logits fixed to [-10, 10]",
                "recipe_json": used_recipe,
                "calibration": calibration,
                "tools": tools,
            },
        }
        # The Edge TPU compilation (models/README.md); hash and size stay as recorded by
        # whoever compiled it, or null.
        previous = manifest["models"].get(name, {})
        tpu_file = filename.removesuffix(".tflite") + "_edgetpu.tflite"
        entry["edgetpu"] = previous.get("edgetpu") or {"file": tpu_file, "sha256": None, "bytes": None}
        entry["selftest"] = expectation(path, entry)
        manifest["models"][name] = entry
        print(f"models: {filename} built ({len(data)} bytes, sha256 {entry['sha256'][:12]}..., "
              f"{calibration['samples']} calibration inputs from {calibration['frames']} frames)")
    if not check:
        for float_name in TARGETS:
            entry = manifest["models"][float_name]
            entry["selftest"] = expectation(MODELS / entry["file"], entry)
        MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="rebuild in memory and compare with the committed files instead of writing")
    return build(parser.parse_args().check)


if __name__ == "__main__":
    sys.exit(main())
