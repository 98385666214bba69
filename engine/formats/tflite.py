"""Read a TensorFlow Lite FlatBuffer (``.tflite``) into plain Python: tensors and operators.

The file is parsed with the ``tflite`` package (the TFLite schema compiled for the
``flatbuffers`` runtime); custom operators' options (Larq Compute Engine's ``Lce*`` ops)
are FlexBuffers, read with ``flatbuffers.flexbuffers``. No TensorFlow is needed. Any fault in
the bytes (truncated, corrupt, wrong identifier, a constant whose buffer does not match its
shape) is a :class:`ModelError` naming the file and, where it applies, the tensor.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from edgebnn.engine.errors import ModelError
from edgebnn.engine.tflite_graph import Graph, Operator, Tensor

if TYPE_CHECKING:
    from edgebnn.engine.tflite_network import TfliteNetwork

#: The 4-byte file identifier at offset 4 of every TFLite FlatBuffer.
IDENTIFIER = b"TFL3"

#: TFLite ``TensorType`` -> NumPy dtype (the types a float model can hold).
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),  # FLOAT32
    1: np.dtype("<f2"),  # FLOAT16
    2: np.dtype("<i4"),  # INT32
    3: np.dtype("u1"),  # UINT8
    4: np.dtype("<i8"),  # INT64
    6: np.dtype("?"),  # BOOL
    7: np.dtype("<i2"),  # INT16
    9: np.dtype("i1"),  # INT8
    10: np.dtype("<f8"),  # FLOAT64
}
TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
              6: "bool", 7: "int16", 9: "int8", 10: "float64"}  # fmt: skip

#: Builtin options read per options table (TFLite schema names -> our snake_case keys).
OPTION_FIELDS: dict[str, tuple[str, ...]] = {
    "Conv2DOptions": ("Padding", "StrideW", "StrideH", "FusedActivationFunction",
                      "DilationWFactor", "DilationHFactor"),
    "DepthwiseConv2DOptions": ("Padding", "StrideW", "StrideH", "DepthMultiplier",
                               "FusedActivationFunction", "DilationWFactor", "DilationHFactor"),
    "Pool2DOptions": ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight",
                      "FusedActivationFunction"),
    "FullyConnectedOptions": ("FusedActivationFunction", "WeightsFormat", "KeepNumDims"),
    "AddOptions": ("FusedActivationFunction",),
    "SubOptions": ("FusedActivationFunction",),
    "MulOptions": ("FusedActivationFunction",),
    "SoftmaxOptions": ("Beta",),
    "ConcatenationOptions": ("Axis", "FusedActivationFunction"),
    "ReducerOptions": ("KeepDims",),
    "StridedSliceOptions": ("BeginMask", "EndMask", "EllipsisMask", "NewAxisMask",
                            "ShrinkAxisMask", "Offset"),
}  # fmt: skip


def read_tflite(path: str | Path) -> Graph:
    """The graph of the ``.tflite`` file at ``path``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    return parse_tflite(data, str(path))


def read_tflite_network(path: str | Path) -> TfliteNetwork:
    """Load a ``.tflite`` file as a runnable network."""
    from edgebnn.engine.tflite_network import TfliteNetwork

    return TfliteNetwork(read_tflite(path))


def is_tflite(head: bytes) -> bool:
    """True when the first bytes of a file carry the TFLite identifier."""
    return len(head) >= 8 and head[4:8] == IDENTIFIER


def parse_tflite(data: bytes, path: str = "<bytes>") -> Graph:
    """Parse TFLite FlatBuffer bytes; ModelError on anything malformed."""
    if not is_tflite(data[:8]):
        raise ModelError("not a TFLite file (no 'TFL3' identifier)", path=path)
    try:
        import tflite
    except ImportError:  # pragma: no cover - a core dependency
        raise ModelError("reading .tflite needs the 'tflite' package", path=path) from None
    try:
        return _parse(tflite, data, path)
    except ModelError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, AttributeError, KeyError,
            UnicodeDecodeError, OverflowError, MemoryError, RecursionError) as exc:  # fmt: skip
        raise ModelError(
            f"corrupt or truncated TFLite file ({type(exc).__name__}: {exc})", path=path
        ) from None


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _parse(tflite: Any, data: bytes, path: str) -> Graph:
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() < 1:
        raise ModelError("the file has no subgraph", path=path)
    graph = model.Subgraphs(0)
    codes = [
        _opcode_name(tflite, model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())
    ]
    buffers = [_buffer_bytes(model.Buffers(i), data) for i in range(model.BuffersLength())]
    tensors = [_tensor(graph.Tensors(i), i, buffers, path) for i in range(graph.TensorsLength())]
    operators = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = op.OpcodeIndex()
        if not 0 <= code < len(codes):
            raise ModelError(f"operator {i} names operator code {code} of {len(codes)}", path=path)
        name, custom = codes[code]
        inputs = tuple(int(t) for t in (op.InputsAsNumpy() if op.InputsLength() else ()))
        outputs = tuple(int(t) for t in (op.OutputsAsNumpy() if op.OutputsLength() else ()))
        for t in (*inputs, *outputs):
            if not -1 <= t < len(tensors):
                raise ModelError(f"operator {i} ({name}) names tensor {t} of {len(tensors)}",
                                 path=path)  # fmt: skip
        options = _custom_options(op) if custom else _builtin_options(tflite, op)
        operators.append(Operator(i, name, inputs, outputs, options, custom))
    return Graph(
        tensors=tensors,
        operators=operators,
        inputs=tuple(int(t) for t in graph.InputsAsNumpy()),
        outputs=tuple(int(t) for t in graph.OutputsAsNumpy()),
        description=_text(model.Description()),
        sha256=hashlib.sha256(data).hexdigest(),
        path=path,
    )


def _opcode_name(tflite: Any, code: Any) -> tuple[str, bool]:
    """(name, is_custom) of an operator code (``builtin_code`` or its deprecated byte)."""
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    if builtin == tflite.BuiltinOperator.CUSTOM:
        return _text(code.CustomCode()), True
    try:
        return tflite.utils.opcode2name(builtin), False
    except ValueError:
        return f"builtin operator {builtin}", False


def _buffer_bytes(buffer: Any, data: bytes) -> bytes:
    offset = int(buffer.Offset()) if hasattr(buffer, "Offset") else 0
    if offset > 1:  # models over 2 GB keep their buffers after the FlatBuffer
        size = int(buffer.Size())
        if offset + size > len(data):
            raise ModelError(f"a buffer at byte {offset} runs past the end of the file")
        return data[offset : offset + size]
    if buffer.DataIsNone():
        return b""
    return buffer.DataAsNumpy().tobytes()


def _tensor(t: Any, index: int, buffers: list[bytes], path: str) -> Tensor:
    name = _text(t.Name())
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    type_code = int(t.Type())
    type_name = TYPE_NAMES.get(type_code, f"type {type_code}")
    q = t.Quantization()
    quantized = bool(q is not None and q.ScaleLength() > 0)
    buffer_index = int(t.Buffer())
    raw = buffers[buffer_index] if 0 <= buffer_index < len(buffers) else b""
    data = None
    if raw:
        dtype = DTYPES.get(type_code)
        if dtype is None:
            raise ModelError(f"constant of unsupported type {type_name}", path=path,
                             field=f"tensor {name!r}")  # fmt: skip
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if len(raw) != count * dtype.itemsize:
            raise ModelError(
                f"constant has {len(raw)} bytes, shape {list(shape)} of {type_name} needs "
                f"{count * dtype.itemsize}",
                path=path,
                field=f"tensor {name!r}",
            )
        data = np.frombuffer(raw, dtype).reshape(shape).copy()
    return Tensor(index, name, shape, type_name, data, quantized)


def _builtin_options(tflite: Any, op: Any) -> dict[str, Any]:
    kind = int(op.BuiltinOptionsType())
    table = op.BuiltinOptions()
    if kind == 0 or table is None:
        return {}
    names = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}
    name = names.get(kind, "")
    fields = OPTION_FIELDS.get(name)
    if not fields:
        return {}
    options = getattr(tflite, name)()
    options.Init(table.Bytes, table.Pos)
    return {_snake(f): getattr(options, f)() for f in fields}


def _custom_options(op: Any) -> dict[str, Any]:
    if op.CustomOptionsLength() == 0:
        return {}
    from flatbuffers import flexbuffers

    raw = op.CustomOptionsAsNumpy().tobytes()
    value = flexbuffers.Loads(raw)
    if not isinstance(value, dict):
        raise TypeError("custom options are not a FlexBuffer map")
    return {str(k): v for k, v in value.items()}


def _snake(name: str) -> str:
    out = [name[0].lower()]
    for ch in name[1:]:
        out.append("_" + ch.lower() if ch.isupper() else ch)
    return "".join(out)
