"""The TFLite interpreter: which runtime package, threads, quantized tensors.

LiteRT (``ai-edge-litert``) comes first: it is the maintained successor of TFLite,
ships wheels for Python 3.11-3.13 on x86-64 and aarch64 and works with numpy 2.
``tflite-runtime`` stops at 2.14 (Python <= 3.11, built against numpy 1) and is only
a fallback for old Raspberry Pi OS images.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


# The Edge TPU runtime library's soname, as Coral's Debian packages install it
# (libedgetpu1-std / libedgetpu1-max: /usr/lib/<arch>-linux-gnu/libedgetpu.so.1).
EDGETPU_LIBRARY = "libedgetpu.so.1"


class RuntimeUnavailable(RuntimeError):
    """Neither ``ai-edge-litert`` nor ``tflite-runtime`` can be imported."""


class AcceleratorUnavailable(RuntimeUnavailable):
    """The requested accelerator (its delegate library or its compiled model) is missing."""


def interpreter_class() -> tuple[type, str]:
    """The Interpreter class and the name of the package it came from.

    Raises:
        RuntimeUnavailable: naming both packages and how to install them.
    """
    errors = []
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError as exc:
        errors.append(f"ai_edge_litert: {exc}")
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError as exc:
        errors.append(f"tflite_runtime: {exc}")
    raise RuntimeUnavailable(
        "no TFLite runtime: install 'ai-edge-litert' (pip install ai-edge-litert) or, on "
        "Python <= 3.11 with numpy < 2, 'tflite-runtime' (" + "; ".join(errors) + ")"
    )


def load_edgetpu_delegate(library: str = EDGETPU_LIBRARY) -> Any:
    """Load the Edge TPU delegate through the runtime package in use.

    Returns:
        The delegate object, to pass to :class:`TFLiteModel` in ``delegates``.

    Raises:
        RuntimeUnavailable: no runtime package.
        AcceleratorUnavailable: the library cannot be loaded (not installed, wrong
            architecture, or no Edge TPU attached), naming the library and the cause.
    """
    _, runtime = interpreter_class()
    try:
        # Probe with the dynamic loader first: load_delegate's failure path leaves a
        # half-built Delegate whose __del__ prints a traceback (ai-edge-litert 2.3).
        ctypes.CDLL(library)
    except OSError as exc:
        raise AcceleratorUnavailable(
            f"cannot load the Edge TPU delegate {library} ({exc}); install Coral's libedgetpu1-std "
            "and attach the Edge TPU (models/README.md)"
        ) from exc
    if runtime == "ai-edge-litert":
        from ai_edge_litert.interpreter import load_delegate
    else:
        from tflite_runtime.interpreter import load_delegate
    try:
        return load_delegate(library)
    except (ValueError, OSError, RuntimeError) as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AcceleratorUnavailable(
            f"cannot load the Edge TPU delegate {library} ({cause}); install Coral's libedgetpu1-std "
            "and attach the Edge TPU (models/README.md)"
        ) from exc


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Real values to an int8/uint8 tensor: ``round(v / scale) + zero_point``, saturated.

    Args:
        values: float array, any shape.
        scale, zero_point: the tensor's per-tensor quantization parameters.
        dtype: ``np.int8`` or ``np.uint8``.
    """
    info = np.iinfo(dtype)
    q = np.round(np.asarray(values, np.float32) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """An int8/uint8 tensor to float32 real values: ``(q - zero_point) * scale``."""
    return ((np.asarray(values).astype(np.float32) - zero_point) * scale).astype(np.float32)


def real_values(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """A tensor's values as float32 reals: dequantized (:func:`dequantize`) when int8/uint8, else as they are."""
    if values.dtype in (np.int8, np.uint8):
        return dequantize(values, scale, zero_point)
    return values.astype(np.float32, copy=False)


class TFLiteModel:
    """One loaded ``.tflite`` model with one image input and named outputs.

    Outputs are named by the model's ``serving_default`` SignatureDef (YuNet: ``cls_8`` ...
    ``kps_32``, as in the source ONNX graph); quantized (int8/uint8, per-tensor) outputs are
    dequantized to float32 when read.

    Args:
        path: the ``.tflite`` file.
        num_threads: CPU threads for the interpreter (XNNPACK).
        delegates: loaded delegates (e.g. the Edge TPU), or None for the CPU.

    Raises:
        RuntimeUnavailable: no runtime package.
        ValueError: the file is not a model the runtime can load, or has no signature
            naming its outputs.
    """

    def __init__(self, path: Path, num_threads: int = 2, delegates: list | None = None):
        cls, self.runtime = interpreter_class()
        try:
            self._interp = cls(
                model_path=str(path),
                num_threads=num_threads,
                experimental_delegates=delegates or None,
            )
            self._interp.allocate_tensors()
            signatures = self._interp._get_full_signature_list()
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"cannot load model {path}: {exc}") from exc
        if not signatures:
            raise ValueError(f"model {path} has no SignatureDef naming its outputs; rebuild it with 'make models'")
        self._input = self._interp.get_input_details()[0]
        by_index = {d["index"]: d for d in self._interp.get_output_details()}
        outputs = next(iter(signatures.values()))["outputs"]
        self._outputs = {name: by_index[index] for name, index in outputs.items()}

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Input tensor shape, e.g. (1, 736, 1280, 3)."""
        return tuple(int(v) for v in self._input["shape"])

    @property
    def input_dtype(self) -> Any:
        """numpy dtype of the input tensor (float32, int8 or uint8)."""
        return self._input["dtype"]

    @property
    def input_quantization(self) -> tuple[float, int]:
        """``(scale, zero_point)`` of the input tensor; ``(0.0, 0)`` for a float input."""
        scale, zero = self._input["quantization"]
        return float(scale), int(zero)

    @property
    def output_names(self) -> list[str]:
        """The signature's output names."""
        return list(self._outputs)

    def input_buffer(self) -> np.ndarray:
        """The input tensor's own memory: writable, shape :attr:`input_shape`, dtype
        :attr:`input_dtype`, already quantized values. Write into it, drop the array, then
        call :meth:`invoke` (the runtime refuses to run while a view is held)."""
        return self._interp.tensor(self._input["index"])()

    def invoke(self) -> None:
        """Run one inference on what :meth:`input_buffer` holds."""
        self._interp.invoke()

    def raw_output(self, name: str) -> tuple[np.ndarray, float, int]:
        """An output as stored, without conversion.

        Returns:
            ``(values, scale, zero_point)``: a copy of the tensor (float32, or int8/uint8
            for a quantized model), and its quantization (``(0.0, 0)`` when float).

        Raises:
            KeyError: no output of that name.
        """
        detail = self._outputs[name]
        scale, zero = detail["quantization"]
        return self._interp.get_tensor(detail["index"]), float(scale), int(zero)

    def output(self, name: str) -> np.ndarray:
        """An output as float32 real values (dequantized when quantized).

        Raises:
            KeyError: no output of that name.
        """
        return real_values(*self.raw_output(name))
