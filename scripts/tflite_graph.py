"""Small edits on ``.tflite`` flatbuffers after conversion (build-time only).

* :func:`set_input_quantization`: the converter gives a uint8 input the scale of its
  calibration range (0..253 on our frames: scale 0.992); setting it to scale 1, zero point
  0 declares "real value = camera byte", and the QUANTIZE op that follows maps bytes to
  the calibrated int8 range, so pixels go in without a float conversion.
* :func:`rename_outputs`: full-integer conversion names the signature's outputs
  ``output_0`` ... in the source graph's output order; this gives them the source names.

The schema classes are the flatbuffer object API that ``ai-edge-litert`` ships
(``ai_edge_litert.schema_py_generated``, generated from TFLite's ``schema.fbs``).
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

FILE_IDENTIFIER = b"TFL3"


def read(data: bytes) -> schema.ModelT:
    """Unpack a ``.tflite`` file's bytes into the mutable object tree."""
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def write(model: schema.ModelT) -> bytes:
    """Pack the object tree into ``.tflite`` bytes (file identifier ``TFL3``)."""
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def text(name: bytes | str | None) -> str:
    """A flatbuffer string field as ``str`` (the object API gives ``bytes``)."""
    return name.decode() if isinstance(name, bytes) else (name or "")


def set_input_quantization(model: schema.ModelT, scale: float, zero_point: int) -> tuple[float, int]:
    """Set the per-tensor quantization of subgraph 0's only input.

    Returns:
        The ``(scale, zero_point)`` it had.

    Raises:
        ValueError: the graph has not exactly one input, or it is not quantized.
    """
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1:
        raise ValueError(f"expected one input, found {len(graph.inputs)}")
    q = graph.tensors[graph.inputs[0]].quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        raise ValueError("the input is not quantized per tensor")
    before = (float(q.scale[0]), int(q.zeroPoint[0]))
    q.scale = np.array([scale], np.float32)
    q.zeroPoint = np.array([zero_point], np.int64)
    return before


def signature_outputs(model: schema.ModelT) -> list[tuple[str, int]]:
    """``(name, tensor index)`` of the first SignatureDef's outputs, as stored."""
    return [(text(m.name), m.tensorIndex) for m in model.signatureDefs[0].outputs]


def rename_outputs(model: schema.ModelT, names: dict[str, str]) -> None:
    """Rename the first SignatureDef's outputs (old name -> new name).

    Raises:
        ValueError: a name in ``names`` is not an output, or an output is left unnamed.
    """
    outputs = model.signatureDefs[0].outputs
    have = {text(m.name) for m in outputs}
    if set(names) != have:
        raise ValueError(f"outputs {sorted(have)} do not match the renaming of {sorted(names)}")
    for entry in outputs:
        entry.name = names[text(entry.name)]
