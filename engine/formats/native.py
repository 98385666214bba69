"""edgebnn's native model file: one uncompressed ``.npz`` with a JSON header, no pickle.

Members: ``header`` (UTF-8 JSON as uint8) and one ``aN`` array per layer parameter.
The header holds the format name and version, every node (layer class, shapes, padding,
scalar settings, array names), the labels and their sha256, the preprocessing and the
provenance (source file sha256, writer version). Binary weights stay ELL's packed uint64
words, so a 256x256 d-series file is ~11 MB and loads in well under 0.5 s. Reading uses
``np.load(..., allow_pickle=False)``: a file can hold numbers, never code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from edgebnn.engine.errors import ModelError, ShapeError
from edgebnn.engine.layers import LAYER_TYPES, InputLayer, Layer, Padding
from edgebnn.engine.network import Network, Preprocessing, labels_sha256

from edgebnn._version import __version__

FORMAT = "edgebnn-native"
VERSION = 1
HEADER = "header"
_BASE_FIELDS = ("output_shape", "input_padding", "output_padding", "inputs")
_CLASSES = {cls.__name__: cls for cls in LAYER_TYPES}
_ARRAY_DTYPES = {"weights_bits": np.uint64}  # every other array is float32


def write_native(net: Network, path: str | Path) -> Path:
    """Write ``net`` to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    nodes = [_node(layer, arrays) for layer in [net.input_layer, *net.layers]]
    labels = list(net.labels or [])
    header = {
        "format": FORMAT,
        "version": VERSION,
        "name": net.name,
        "nodes": nodes,
        "labels": labels,
        "labels_sha256": labels_sha256(labels),
        "preprocessing": net.preprocessing.to_dict(),
        "maxpool_ring_value": net.maxpool_ring_value,
        "metadata": net.metadata,
        "provenance": {
            "source_sha256": net.source_sha256,
            "writer": f"edgebnn {__version__}",
        },
    }
    text = json.dumps(header, default=str, allow_nan=False).encode("utf-8")
    arrays[HEADER] = np.frombuffer(text, np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as stream:
            np.savez(stream, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds like allow_pickle (bool)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _node(layer: Layer, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    node: dict[str, Any] = {
        "type": type(layer).__name__,
        "output_shape": list(layer.output_shape),
        "input_padding": [int(layer.input_padding.scheme), layer.input_padding.size],
        "output_padding": [int(layer.output_padding.scheme), layer.output_padding.size],
        "inputs": None if layer.inputs is None else list(layer.inputs),
        "params": {},
        "arrays": {},
    }
    for f in dataclasses.fields(layer):
        if f.name in _BASE_FIELDS:
            continue
        value = getattr(layer, f.name)
        if isinstance(value, np.ndarray):
            key = f"a{len(arrays)}"
            arrays[key] = np.ascontiguousarray(value)
            node["arrays"][f.name] = key
        elif value is None or isinstance(value, bool | int | float | str):
            node["params"][f.name] = value
        else:
            raise ModelError(f"cannot store field {f.name!r} of type {type(value).__name__}",
                             layer_type=type(layer).__name__)  # fmt: skip
    return node


def is_native(path: str | Path) -> bool:
    """True when ``path`` is a zip holding a native header (cheap: reads the directory)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return f"{HEADER}.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False


def read_native(path: str | Path) -> Network:
    """The network in a native file; any fault is a :class:`ModelError` naming the node."""
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if HEADER not in npz.files:
                raise ModelError("not an edgebnn native file (no header)", path=where)
            header = _header(npz[HEADER], where)
            arrays = {name: npz[name] for name in npz.files if name != HEADER}
    except ModelError:
        raise
    except (OSError, ValueError, EOFError, KeyError, OverflowError, RuntimeError, NotImplementedError,
            struct.error, zipfile.BadZipFile, zlib.error) as exc:  # fmt: skip
        raise ModelError(f"not a readable native model file ({exc})", path=where) from None
    return _network(header, arrays, where)


def _header(raw: np.ndarray, where: str) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelError("the header is not a byte array", path=where, field="header")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"the header is not JSON ({exc})", path=where, field="header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelError(f"the header does not say format {FORMAT!r}", path=where, field="format")
    if header.get("version") != VERSION:
        raise ModelError(f"format version {header.get('version')!r} is not {VERSION} "
                         "(written by a newer edgebnn?)", path=where, field="version")  # fmt: skip
    return header


def _network(header: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> Network:
    nodes = header.get("nodes")
    if not isinstance(nodes, list) or len(nodes) < 2:
        raise ModelError("expected an input node and at least one layer", path=where, field="nodes")
    built = [_layer(node, i - 1, arrays, where) for i, node in enumerate(nodes)]
    if not isinstance(built[0], InputLayer) or any(isinstance(n, InputLayer) for n in built[1:]):
        raise ModelError(
            "node 0, and only node 0, must be the InputLayer", path=where, field="nodes"
        )
    labels = header.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ModelError("expected a list of strings", path=where, field="labels")
    if labels_sha256(labels) != header.get("labels_sha256"):
        raise ModelError("the labels do not match their sha256", path=where, field="labels_sha256")
    provenance = header.get("provenance")
    if not isinstance(provenance, dict):
        provenance = {}
    ring = header.get("maxpool_ring_value")
    metadata = header.get("metadata")
    try:
        preprocessing = Preprocessing.from_dict(header.get("preprocessing") or {})
        net = Network(
            built[0],
            built[1:],
            labels=labels,
            name=str(header.get("name", "network")),
            preprocessing=preprocessing,
            source_sha256=provenance.get("source_sha256"),
            metadata=metadata if isinstance(metadata, dict) else {},
            maxpool_ring_value=None if ring is None else float(ring),
        )
    except ShapeError as exc:
        layer_type = type(built[exc.layer + 1]).__name__ if exc.layer is not None else None
        raise ModelError(exc.reason, path=where, layer=exc.layer, layer_type=layer_type,
                         field="output_shape") from None  # fmt: skip
    except (TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"bad network settings ({exc})", path=where) from None
    if len(net.labels or []) != int(np.prod(net.output_shape)):
        raise ModelError(f"{len(labels)} labels for {int(np.prod(net.output_shape))} outputs",
                         path=where, field="labels")  # fmt: skip
    return net


def _layer(node: Any, index: int, arrays: dict[str, np.ndarray], where: str) -> Layer:
    layer_type = node.get("type") if isinstance(node, dict) else None
    at: dict[str, Any] = {
        "path": where,
        "layer": index if index >= 0 else None,
        "layer_type": str(layer_type),
    }
    cls = _CLASSES.get(layer_type) if isinstance(layer_type, str) else None
    if cls is None:
        raise ModelError(f"unknown layer type {layer_type!r}", field="type", **at)
    kwargs: dict[str, Any] = {}
    try:
        kwargs["output_shape"] = tuple(node["output_shape"])
        kwargs["input_padding"] = Padding(*node["input_padding"])
        kwargs["output_padding"] = Padding(*node["output_padding"])
        kwargs["inputs"] = None if node["inputs"] is None else tuple(node["inputs"])
        params, names = dict(node["params"]), dict(node["arrays"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"bad or missing shape/padding/params ({exc})", **at) from None
    known = {f.name for f in dataclasses.fields(cls)} - set(_BASE_FIELDS)
    for name in [*params, *names]:
        if name not in known:
            raise ModelError(f"{cls.__name__} has no such field", field=name, **at)
    kwargs |= params
    for name, key in names.items():
        array = arrays.get(key) if isinstance(key, str) else None
        dtype = _ARRAY_DTYPES.get(name, np.float32)
        if array is None or array.dtype != dtype:
            raise ModelError(f"expected a {np.dtype(dtype).name} array", field=name, **at)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ModelError("NaN/inf values", field=name, **at)
        kwargs[name] = array
    try:
        return cls(**kwargs)
    except ShapeError as exc:
        raise ModelError(exc.reason, **at) from None
    except (TypeError, ValueError) as exc:
        raise ModelError(f"bad settings ({exc})", **at) from None
