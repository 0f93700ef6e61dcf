"""Quantized tensors, the accelerator choice and the start-up self-test, on the real models.

This machine has no Edge TPU and no libedgetpu: the delegate really fails to load here,
which is what the fallback and the error tests exercise.
"""

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.schema_py_generated import BuiltinOperator

from conftest import CLASSROOM_MP4, ROOT, clean_env, roompulse
from device.config import Settings
from device.detector.yunet import OUTPUT_NAMES
from device.models import MANIFEST, MODELS_DIR, select, sha256_file
from device.pipeline import build_analyzer
from device.runtime import AcceleratorUnavailable, TFLiteModel, dequantize, quantize
from device.selftest import SelfTestError

sys.path.insert(0, str(ROOT / "scripts"))
import tflite_graph  # noqa: E402

INT8 = "yunet_n_480x288_int8"


def settings(**kw):
    return Settings(_env_file=None, state_dir=Path("/nonexistent"), **kw)


@pytest.mark.parametrize("dtype,scale,zero", [(np.int8, 2 / 255, -1), (np.uint8, 1 / 255, 0), (np.uint8, 0.05, 128)])
def test_quantize_dequantize_round_trip(dtype, scale, zero):
    info = np.iinfo(dtype)
    low, high = (info.min - zero) * scale, (info.max - zero) * scale
    values = np.linspace(low, high, 1001, dtype=np.float32)
    q = quantize(values, scale, zero, dtype)
    assert q.dtype == dtype
    assert np.abs(dequantize(q, scale, zero) - values).max() <= scale / 2 + 1e-6
    # Outside the representable range values saturate instead of wrapping around.
    assert quantize(np.array([low - 10, high + 10]), scale, zero, dtype).tolist() == [info.min, info.max]


def test_int8_models_take_camera_bytes_and_give_int8():
    for entry in select("yunet_n_int8"):
        model = TFLiteModel(MODELS_DIR / entry.file, num_threads=1)
        # uint8 input with scale 1 and zero point 0: a BGR byte is its own real value
        # (scripts/build_models.py sets it; tflite_graph.set_input_quantization).
        assert model.input_dtype == np.uint8 and model.input_quantization == (1.0, 0)
        assert model.input_shape == (1, entry.input_size[1], entry.input_size[0], 3)
        assert all(model.raw_output(name)[0].dtype == np.int8 for name in model.output_names)
        assert sorted(model.output_names) == sorted(OUTPUT_NAMES)


def test_auto_without_edgetpu_falls_back_to_cpu_with_one_info_line(caplog):
    # No libedgetpu on this machine (most units have none): one INFO line naming both missing
    # pieces, no WARNING (it would be noise at every start of every unit without a Coral).
    caplog.set_level(logging.INFO)
    analyzer = build_analyzer(settings(model=INT8, accelerator="auto", camera_size="480x270"))
    assert analyzer.accelerator == "cpu"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    lines = [r.getMessage() for r in caplog.records if "Edge TPU not used" in r.getMessage()]
    assert len(lines) == 1
    assert "libedgetpu.so.1" in lines[0] and "yunet_n_480x288_int8_edgetpu.tflite is missing" in lines[0]


def test_cpu_is_silent(caplog):
    caplog.set_level(logging.WARNING)
    assert build_analyzer(settings(model=INT8, accelerator="cpu", camera_size="480x270")).accelerator == "cpu"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_edgetpu_fails_clearly():
    with pytest.raises(AcceleratorUnavailable) as err:
        build_analyzer(settings(model=INT8, accelerator="edgetpu"))
    message = str(err.value)
    assert "libedgetpu.so.1" in message and "_edgetpu.tflite is missing" in message and "edgetpu_compiler" in message
    # Through the command: exit 1 and one line naming both missing pieces.
    env = clean_env(ROOMPULSE_ACCELERATOR="edgetpu", ROOMPULSE_MODEL=INT8)
    result = roompulse("analyze", str(CLASSROOM_MP4), env=env, timeout=60)
    assert result.returncode == 1
    lines = [l for l in result.stderr.splitlines() if l.startswith("roompulse:")]
    assert len(lines) == 1 and "ROOMPULSE_ACCELERATOR=edgetpu" in lines[0] and "libedgetpu.so.1" in lines[0]


def copy_models(tmp_path: Path, name: str) -> tuple[Path, dict]:
    """Copy one manifest entry's file and the self-test image into tmp_path; return the manifest."""
    manifest = json.loads(MANIFEST.read_text())
    entry = manifest["models"][name]
    shutil.copy(MODELS_DIR / entry["file"], tmp_path / entry["file"])
    manifest["models"] = {name: entry}
    return tmp_path / entry["file"], manifest


def test_selftest_refuses_a_model_with_altered_weights(tmp_path):
    path, manifest = copy_models(tmp_path, INT8)
    # Negate the int8 weights of the last convolution: a real, loadable model whose
    # outputs come out different.
    model = tflite_graph.read(path.read_bytes())
    graph = model.subgraphs[0]
    conv = [i for i, c in enumerate(model.operatorCodes)
            if max(c.builtinCode, c.deprecatedBuiltinCode) == BuiltinOperator.CONV_2D]
    convs = [op for op in graph.operators if op.opcodeIndex in conv]
    for op in convs[-12:]:  # the heads' last convolutions
        weights = graph.tensors[op.inputs[1]]
        data = np.asarray(model.buffers[weights.buffer].data, np.uint8).view(np.int8)
        model.buffers[weights.buffer].data = np.clip(-data.astype(np.int16), -127, 127).astype(np.int8).view(np.uint8)
    path.write_bytes(tflite_graph.write(model))
    entry = manifest["models"][INT8]
    entry["sha256"], entry["bytes"] = sha256_file(path), path.stat().st_size
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SelfTestError, match="failed its self-test"):
        build_analyzer(settings(model=INT8, accelerator="cpu"), tmp_path, tmp_path / "manifest.json")


def test_selftest_refuses_when_the_expectation_differs(tmp_path):
    _, manifest = copy_models(tmp_path, INT8)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    # Unaltered copy: passes.
    build_analyzer(settings(model=INT8, accelerator="cpu"), tmp_path, tmp_path / "manifest.json")
    manifest["models"][INT8]["selftest"]["coords"][0] += 5.0
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SelfTestError, match=r"coordinates off by 5\.0 px"):
        build_analyzer(settings(model=INT8, accelerator="cpu"), tmp_path, tmp_path / "manifest.json")
