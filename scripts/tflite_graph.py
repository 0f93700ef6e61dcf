"""Graph surgery on ``.tflite`` flatbuffers, to make MediaPipe's float models quantizable.

MediaPipe's BlazeFace models store weights as fp16 constants behind ``DEQUANTIZE`` ops,
the full-range model also as sparse fp16 constants behind ``DENSIFY`` ops, and carry no
SignatureDef. ``ai-edge-quantizer`` wants plain float32 constants and a signature (its
calibration data is keyed by signature input names). This module:

* decodes each sparse constant (TFLite's TACO-style ``SparsityParameters``: a traversal
  order, optional block map, and per level either DENSE or SPARSE_CSR metadata) into a
  dense array and replaces the ``DENSIFY`` op by that constant;
* folds each ``DEQUANTIZE`` of an fp16 constant into a float32 constant;
* fills ``builtinCode`` of operator codes that only carry the pre-2.4 ``deprecatedBuiltinCode``
  (the short-range file does; tools that read ``builtinCode`` alone would see every op
  as ADD, code 0);
* drops tensors, buffers and operator codes nothing uses any more;
* adds a ``serving_default`` SignatureDef with the names given;
* after quantization, runs data-movement ops the quantizer left in float
  (``DEQUANTIZE -> DEPTH_TO_SPACE -> QUANTIZE``) on the int8 tensors directly, so the
  whole graph is integer;
* turns a quantized model's float interface into an integer one (removes the leading
  ``QUANTIZE`` and trailing ``DEQUANTIZE`` ops, so the graph's input and outputs are the
  int8 tensors themselves) when the quantizer left one.

The schema classes are the flatbuffer object API that ``ai-edge-litert`` ships
(``ai_edge_litert.schema_py_generated``, generated from TFLite's ``schema.fbs``).
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

OP = schema.BuiltinOperator
FILE_IDENTIFIER = b"TFL3"
NUMPY_TYPE = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.FLOAT16: np.float16,
    schema.TensorType.INT8: np.int8,
    schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT32: np.int32,
}


def read(data: bytes) -> schema.ModelT:
    """Unpack a ``.tflite`` file's bytes into the mutable object tree.

    Buffers stored after the flatbuffer (``offset``/``size``, as ai-edge-quantizer writes
    them) are read into ``data``, so :func:`write` can pack the tree on its own.
    """
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for buffer in model.buffers:
        if buffer.offset > 1:
            buffer.data = np.frombuffer(data[buffer.offset : buffer.offset + buffer.size], dtype=np.uint8).copy()
            buffer.offset = buffer.size = 0
    return model


def text(name: bytes | str | None) -> str:
    """A flatbuffer string field as ``str`` (the object API gives ``bytes``)."""
    return name.decode() if isinstance(name, bytes) else (name or "")


def write(model: schema.ModelT) -> bytes:
    """Pack the object tree into ``.tflite`` bytes (file identifier ``TFL3``)."""
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def opcode(model: schema.ModelT, op: schema.OperatorT) -> int:
    """The builtin operator code of ``op`` (newer files keep it in ``builtinCode``)."""
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def constant(model: schema.ModelT, tensor: schema.TensorT) -> np.ndarray | None:
    """A constant tensor's values (shape as declared), or None when it has no data."""
    buffer = model.buffers[tensor.buffer]
    if buffer.data is None or len(buffer.data) == 0:
        return None
    raw = np.asarray(buffer.data, dtype=np.uint8).tobytes()
    return np.frombuffer(raw, dtype=NUMPY_TYPE[tensor.type]).copy()


def _index_vector(vector) -> np.ndarray:
    return np.asarray(vector.values, dtype=np.int64)


def densify(values: np.ndarray, shape: list[int], sparsity: schema.SparsityParametersT) -> np.ndarray:
    """Expand a sparse constant into a dense array.

    Args:
        values: the stored (non-zero) values, 1-D, in traversal order.
        shape: the dense tensor's shape (rank ``n``).
        sparsity: ``traversalOrder`` (length ``n + k`` for ``k`` block dimensions),
            ``blockMap`` (which original dimension each block level splits) and one
            ``DimensionMetadata`` per level: DENSE with ``denseSize``, or SPARSE_CSR with
            ``arraySegments`` (children of parent ``p`` are positions ``seg[p]:seg[p+1]``)
            and ``arrayIndices`` (each child's coordinate on that level).

    Returns:
        The dense array of ``shape`` and ``values.dtype``; unlisted elements are zero.

    Raises:
        ValueError: when the metadata does not add up to ``values`` and ``shape``.
    """
    rank = len(shape)
    order = list(sparsity.traversalOrder)
    block_map = list(sparsity.blockMap) if sparsity.blockMap is not None else []
    levels = sparsity.dimMetadata
    if len(order) != rank + len(block_map) or len(levels) != len(order):
        raise ValueError(f"sparsity metadata has {len(order)} levels for rank {rank} and {len(block_map)} blocks")
    # Walk the levels: each entry of `coords` is, for every leaf-so-far, its coordinate on
    # each level; `positions` is the leaf's position in the level's storage.
    positions = np.zeros(1, np.int64)
    coords: list[np.ndarray] = []
    for meta in levels:
        if meta.format == schema.DimensionType.DENSE:
            size = int(meta.denseSize)
            child = np.arange(size, dtype=np.int64)
            coords = [np.repeat(c, size) for c in coords]
            coords.append(np.tile(child, len(positions)))
            positions = (positions[:, None] * size + child[None, :]).ravel()
        else:
            segments = _index_vector(meta.arraySegments)
            indices = _index_vector(meta.arrayIndices)
            starts, ends = segments[positions], segments[positions + 1]
            counts = ends - starts
            new_positions = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(counts) else starts
            coords = [np.repeat(c, counts) for c in coords]
            coords.append(indices[new_positions])
            positions = new_positions.astype(np.int64)
    if len(positions) != values.size:
        raise ValueError(f"sparsity metadata describes {len(positions)} values, the buffer holds {values.size}")
    # Map level coordinates back to the original dimensions (blocks: outer * size + inner).
    dense_index = [np.zeros(len(positions), np.int64) for _ in range(rank)]
    for level in range(rank):
        dense_index[order[level]] = coords[level].copy()
    for block, dim in enumerate(block_map):
        level = rank + block
        block_size = int(levels[level].denseSize)
        dense_index[dim] = dense_index[dim] * block_size + coords[level]
    out = np.zeros(shape, dtype=values.dtype)
    out[tuple(dense_index)] = values[positions]
    return out


def _set_constant(model: schema.ModelT, tensor: schema.TensorT, array: np.ndarray, tensor_type: int) -> None:
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    tensor.buffer = len(model.buffers) - 1
    tensor.type = tensor_type
    tensor.sparsity = None
    tensor.quantization = None


# BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES: what deprecatedBuiltinCode holds for
# codes that do not fit its int8 (schema.fbs).
_DEPRECATED_CODE_LIMIT = 127


def normalize_opcodes(model: schema.ModelT) -> None:
    """Set both ``builtinCode`` and ``deprecatedBuiltinCode`` of every operator code."""
    for code in model.operatorCodes:
        real = max(code.builtinCode, code.deprecatedBuiltinCode)
        code.builtinCode = real
        code.deprecatedBuiltinCode = min(real, _DEPRECATED_CODE_LIMIT)


def fold_constants(model: schema.ModelT) -> dict[str, int]:
    """Replace ``DENSIFY`` and fp16 ``DEQUANTIZE`` of constants by float32 constants.

    Works in place on every subgraph, in graph order, so a ``DEQUANTIZE`` fed by a
    ``DENSIFY`` sees the densified constant.

    Returns:
        How many ops of each kind were folded, e.g. ``{"DENSIFY": 46, "DEQUANTIZE": 182}``.
    """
    folded = {"DENSIFY": 0, "DEQUANTIZE": 0}
    for graph in model.subgraphs:
        kept = []
        for op in graph.operators:
            code = opcode(model, op)
            source = graph.tensors[op.inputs[0]]
            target = graph.tensors[op.outputs[0]]
            values = constant(model, source) if code in (OP.DENSIFY, OP.DEQUANTIZE) else None
            if code == OP.DENSIFY and values is not None and source.sparsity is not None:
                dense = densify(values, list(target.shape), source.sparsity)
                _set_constant(model, target, dense, source.type)
                folded["DENSIFY"] += 1
            elif code == OP.DEQUANTIZE and values is not None and source.type == schema.TensorType.FLOAT16:
                _set_constant(model, target, values.astype(np.float32).reshape(target.shape), schema.TensorType.FLOAT32)
                folded["DEQUANTIZE"] += 1
            else:
                kept.append(op)
        graph.operators = kept
    prune(model)
    return folded


def prune(model: schema.ModelT) -> None:
    """Drop tensors, buffers and operator codes that no op or graph interface uses."""
    used_buffers = {0}
    used_codes = set()
    for graph in model.subgraphs:
        used = set(graph.inputs) | set(graph.outputs)
        for op in graph.operators:
            used |= {i for i in op.inputs if i >= 0} | set(op.outputs)
            used_codes.add(op.opcodeIndex)
        remap = {old: new for new, old in enumerate(sorted(used))}
        graph.tensors = [graph.tensors[i] for i in sorted(used)]
        graph.inputs = [remap[i] for i in graph.inputs]
        graph.outputs = [remap[i] for i in graph.outputs]
        for op in graph.operators:
            op.inputs = [remap[i] if i >= 0 else i for i in op.inputs]
            op.outputs = [remap[i] for i in op.outputs]
        for sig in model.signatureDefs or []:
            for entry in list(sig.inputs or []) + list(sig.outputs or []):
                entry.tensorIndex = remap[entry.tensorIndex]
        used_buffers |= {t.buffer for t in graph.tensors}
    used_buffers |= {m.buffer for m in model.metadata or []}
    buffer_map = {old: new for new, old in enumerate(sorted(used_buffers))}
    model.buffers = [model.buffers[i] for i in sorted(used_buffers)]
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensor.buffer = buffer_map[tensor.buffer]
    for meta in model.metadata or []:
        meta.buffer = buffer_map[meta.buffer]
    code_map = {old: new for new, old in enumerate(sorted(used_codes))}
    model.operatorCodes = [model.operatorCodes[i] for i in sorted(used_codes)]
    for graph in model.subgraphs:
        for op in graph.operators:
            op.opcodeIndex = code_map[op.opcodeIndex]


# Ops whose options carry a fused activation (TFLite applies it to the op's output).
_FUSABLE = {OP.ADD: "AddOptionsT", OP.CONV_2D: "Conv2DOptionsT", OP.DEPTHWISE_CONV_2D: "DepthwiseConv2DOptionsT"}


def fuse_relu(model: schema.ModelT) -> int:
    """Fold each standalone ``RELU`` into the ADD/CONV that feeds it (fused activation RELU).

    The float result is the same; after quantization a standalone int8 RELU is not taken
    by XNNPACK and splits the graph into many delegate partitions (the short-range model:
    18 partitions, int8 3x slower than float).

    Returns:
        The number of RELU ops folded.
    """
    graph = model.subgraphs[0]
    producer = {out: op for op in graph.operators for out in op.outputs}
    readers: dict[int, int] = {}
    for op in graph.operators:
        for i in op.inputs:
            readers[i] = readers.get(i, 0) + 1
    dropped = []
    for op in graph.operators:
        if opcode(model, op) != OP.RELU:
            continue
        source = producer.get(op.inputs[0])
        if source is None or opcode(model, source) not in _FUSABLE or readers.get(op.inputs[0]) != 1:
            continue
        if op.inputs[0] in graph.outputs or source.builtinOptions is None:
            continue
        if source.builtinOptions.fusedActivationFunction != schema.ActivationFunctionType.NONE:
            continue
        source.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.RELU
        source.outputs = list(op.outputs)
        dropped.append(op)
    graph.operators = [op for op in graph.operators if all(op is not d for d in dropped)]
    prune(model)
    return len(dropped)


def drop_metadata(model: schema.ModelT, names: set[bytes]) -> None:
    """Remove metadata entries by name (e.g. a stale ``min_runtime_version``)."""
    model.metadata = [m for m in model.metadata or [] if m.name not in names] or None
    prune(model)


def add_signature(model: schema.ModelT, inputs: list[str], outputs: list[str], key: str = "serving_default") -> None:
    """Give subgraph 0 a SignatureDef naming its inputs and outputs in order.

    Raises:
        ValueError: when the name lists do not match the graph's inputs/outputs.
    """
    graph = model.subgraphs[0]
    if len(inputs) != len(graph.inputs) or len(outputs) != len(graph.outputs):
        raise ValueError(f"graph has {len(graph.inputs)} inputs / {len(graph.outputs)} outputs")

    def maps(names, indices):
        out = []
        for name, index in zip(names, indices):
            entry = schema.TensorMapT()
            entry.name, entry.tensorIndex = name, index
            out.append(entry)
        return out

    signature = schema.SignatureDefT()
    signature.signatureKey = key
    signature.subgraphIndex = 0
    signature.inputs = maps(inputs, graph.inputs)
    signature.outputs = maps(outputs, graph.outputs)
    model.signatureDefs = [signature]


# Ops that only move int8 values around: valid on quantized tensors whose input and output
# share one scale and zero point (TFLite's reference and XNNPACK kernels require that).
DATA_MOVEMENT = {OP.DEPTH_TO_SPACE, OP.SPACE_TO_DEPTH, OP.RESHAPE, OP.TRANSPOSE}


def _quant_params(tensor: schema.TensorT) -> tuple | None:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return tuple(np.asarray(q.scale, np.float32).tolist()), tuple(np.asarray(q.zeroPoint, np.int64).tolist())


def integer_data_movement(model: schema.ModelT) -> int:
    """Rewrite ``DEQUANTIZE -> op -> QUANTIZE`` as ``op`` on the int8 tensors.

    For data-movement ops (:data:`DATA_MOVEMENT`) the quantizer does not support, it keeps
    the op in float between a DEQUANTIZE and a QUANTIZE. Min/max calibration gives both
    ends the same range, so the op can run on the integer tensors unchanged.

    Returns:
        The number of ops rewritten.

    Raises:
        ValueError: when the two ends have different scale or zero point.
    """
    graph = model.subgraphs[0]
    producer = {out: op for op in graph.operators for out in op.outputs}
    consumers: dict[int, list] = {}
    for op in graph.operators:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    dropped = []
    for op in graph.operators:
        if opcode(model, op) not in DATA_MOVEMENT:
            continue
        before = producer.get(op.inputs[0])
        after = consumers.get(op.outputs[0], [])
        if before is None or opcode(model, before) != OP.DEQUANTIZE or len(after) != 1:
            continue
        if opcode(model, after[0]) != OP.QUANTIZE or len(consumers.get(op.inputs[0], [])) != 1:
            continue
        src, dst = before.inputs[0], after[0].outputs[0]
        if _quant_params(graph.tensors[src]) != _quant_params(graph.tensors[dst]):
            raise ValueError(f"{graph.tensors[op.outputs[0]].name!r}: int8 ends have different quantization")
        op.inputs = [src] + list(op.inputs[1:])
        op.outputs = [dst]
        dropped += [before, after[0]]
    graph.operators = [op for op in graph.operators if all(op is not d for d in dropped)]
    prune(model)
    return len(dropped) // 2


def integer_interface(model: schema.ModelT) -> None:
    """Make a quantized graph take and give its int8 tensors directly.

    The float-to-int8 ``QUANTIZE`` that consumes the graph input and the int8-to-float
    ``DEQUANTIZE`` ops that produce graph outputs are removed; the graph (and signature)
    then points at the integer tensors, whose scale and zero point the caller applies.
    A graph whose interface is already integer is left as it is.

    Raises:
        ValueError: when an input or output is not behind such an op.
    """
    graph = model.subgraphs[0]
    integer = (schema.TensorType.INT8, schema.TensorType.UINT8)
    if all(graph.tensors[i].type in integer for i in list(graph.inputs) + list(graph.outputs)):
        return
    producer = {out: op for op in graph.operators for out in op.outputs}
    consumers: dict[int, list] = {}
    for op in graph.operators:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    remap: dict[int, int] = {}
    dropped = []
    for index in graph.inputs:
        ops = consumers.get(index, [])
        if len(ops) != 1 or opcode(model, ops[0]) != OP.QUANTIZE:
            raise ValueError(f"input tensor {graph.tensors[index].name!r} is not read by exactly one QUANTIZE")
        remap[index] = ops[0].outputs[0]
        dropped.append(ops[0])
    for index in graph.outputs:
        op = producer.get(index)
        if op is None or opcode(model, op) != OP.DEQUANTIZE:
            raise ValueError(f"output tensor {graph.tensors[index].name!r} is not made by a DEQUANTIZE")
        remap[index] = op.inputs[0]
        dropped.append(op)
    for old, new in remap.items():
        graph.tensors[new].name = graph.tensors[old].name
    graph.operators = [op for op in graph.operators if all(op is not d for d in dropped)]
    graph.inputs = [remap[i] for i in graph.inputs]
    graph.outputs = [remap[i] for i in graph.outputs]
    for sig in model.signatureDefs or []:
        for entry in list(sig.inputs or []) + list(sig.outputs or []):
            entry.tensorIndex = remap.get(entry.tensorIndex, entry.tensorIndex)
    prune(model)
