"""Read ELL model files (``.ell`` JSON or the gallery's ``.ell.zip``) into a :class:`Network`.

Both dialects of spec section 2: the 2017 one (root ``DynamicMap``, activation names like
``ActivationLayer<float,ParametricReLUActivation>``, ``InputNode`` ``size``/``shape``) and the
newer one (root ``Map``, a nested ``activation`` object, ``layout``, metadata). Layers are
kept one for one, exactly as ELL computes them; fusing is the planner's business.

Everything is checked: each field's presence and type, weight counts against the shapes
(a layer's input is the previous layer's full ``outputShape``, spec 2.6), NaN/inf weights,
padding that does not connect, and the shape chain. Any fault is a :class:`ModelError`
naming the file, the layer index and ``_type``, and the field.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from edgebnn.engine.errors import ModelError, ShapeError
from edgebnn.engine.formats.ell_fields import Fields, Where
from edgebnn.engine.formats.ell_json import DialectError, Document, parse
from edgebnn.engine.formats.ell_layers import (
    build_input_layer,
    check_link,
    layer_from,
    require_float,
)
from edgebnn.engine.layers import (
    InputLayer,
    Layer,
)
from edgebnn.engine.network import Network, Preprocessing

#: The largest ``.ell`` JSON text accepted (a zip member is never inflated beyond it).
MAX_JSON_BYTES = 1 << 30
#: The largest network output accepted (one label per output value is made).
MAX_OUTPUTS = 1 << 22
ZIP_MAGIC = b"PK\x03\x04"


def read_ell(path: str | Path) -> Network:
    """The network in an ELL file, zipped (as downloaded) or not."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    return parse_ell(data, str(path))


def parse_ell(data: bytes, path: str = "<bytes>") -> Network:
    """The network in the bytes of an ELL file (``path`` is used in messages and the name)."""
    sha256 = hashlib.sha256(data).hexdigest()
    text, member = unpack(data, path)
    try:
        doc = parse(text)
    except DialectError as exc:
        raise ModelError(str(exc), path=path) from None
    return build_network(doc, path, name=_model_name(member or path), source_sha256=sha256)


def unpack(data: bytes, path: str) -> tuple[bytes, str | None]:
    """The JSON text of an ELL file and, for a zip, the name of its ``.ell`` member."""
    if not data.startswith(ZIP_MAGIC):
        if path.lower().endswith(".zip"):
            raise ModelError("not a zip archive (a truncated or wrong download?)", path=path)
        if len(data) > MAX_JSON_BYTES:
            raise ModelError(f"larger than {MAX_JSON_BYTES} bytes", path=path)
        return data, None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if m.filename.lower().endswith(".ell")]
            if not members:
                names = ", ".join(archive.namelist()[:5]) or "none"
                raise ModelError(
                    f"the zip archive has no .ell member (members: {names})", path=path
                )
            member = members[0]
            with archive.open(member) as stream:
                text = stream.read(MAX_JSON_BYTES + 1)
    except ModelError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError, ValueError) as exc:  # fmt: skip
        raise ModelError(f"broken zip archive ({exc})", path=path) from None
    if len(text) > MAX_JSON_BYTES:
        raise ModelError(f"the .ell member is larger than {MAX_JSON_BYTES} bytes", path=path)
    return text, member.filename


def _model_name(name: str) -> str:
    base = re.split(r"[\\/]", name)[-1]
    return re.sub(r"(\.ell)?(\.zip)?$", "", base, flags=re.IGNORECASE) or "network"


def build_network(doc: Document, path: str, name: str = "network",
                  source_sha256: str | None = None) -> Network:  # fmt: skip
    """A :class:`Network` from a parsed ELL document."""
    root = Fields(doc.root, doc, Where(path, layer_type="map"), "map")
    root_type = root.type_name()
    if root_type not in ("Map", "DynamicMap"):
        raise root.error(f"root _type is {root_type!r}, expected 'Map' or 'DynamicMap'", "_type")
    dialect = "2017" if root_type == "DynamicMap" else "new"
    model = Fields(root.get("model"), doc, Where(path, layer_type="model"), "model")
    nodes = model.get("nodes")
    if not isinstance(nodes, list):
        raise model.error("expected an array of nodes", "nodes")
    node_fields = [
        Fields(n, doc, Where(path, layer_type=f"node {i}"), "node") for i, n in enumerate(nodes)
    ]
    found: dict[str, list[Fields]] = {"NeuralNetworkPredictorNode": [], "InputNode": []}
    for node in node_fields:
        base = node.type_name().split("<", 1)[0]
        if base in found:
            found[base].append(node)
    predictors = found["NeuralNetworkPredictorNode"]
    if len(predictors) != 1:
        raise ModelError(
            f"expected one NeuralNetworkPredictorNode, found {len(predictors)}",
            path=path,
            field="nodes",
        )
    node = predictors[0]
    require_float(node, node.type_name())
    predictor = Fields(node.get("predictor"), doc, Where(path, layer_type="predictor"), "predictor")
    require_float(predictor, predictor.type_name())

    where = Where(path, layer_type="inputLayer")
    input_fields = Fields(predictor.get("inputLayer"), doc, where, "inputLayer")
    where.layer_type = input_fields.type_name()
    input_layer = build_input_layer(input_fields)
    layer_list = predictor.get("layers")
    if not isinstance(layer_list, list) or not layer_list:
        raise predictor.error("expected a non-empty array of layers", "layers")
    layers: list[Layer] = []
    types: list[str] = []
    previous: Layer = input_layer
    for index, obj in enumerate(layer_list):
        where = Where(path, layer=index)
        fields = Fields(obj, doc, where, "layer")
        where.layer_type = fields.type_name()
        layer = layer_from(fields, previous)
        check_link(fields, previous, layer)
        layers.append(layer)
        types.append(where.layer_type)
        previous = layer
    out_count = int(np.prod(previous.output_shape))
    if out_count > MAX_OUTPUTS:
        raise ModelError(f"the network has {out_count} outputs (at most {MAX_OUTPUTS})", path=path,
                         layer=len(layers) - 1, layer_type=types[-1], field="outputShape")  # fmt: skip
    inputs = found["InputNode"]
    metadata: dict[str, Any] = {"source_format": "ell", "ell_dialect": dialect}
    ell_metadata = _metadata(root) | (_metadata(inputs[0]) if inputs else {})
    if inputs:
        _check_input_node(inputs[0], input_layer)
    if ell_metadata:
        metadata["ell_metadata"] = ell_metadata
    try:
        net = Network(
            input_layer,
            layers,
            name=name,
            preprocessing=_preprocessing(ell_metadata, Where(path, layer_type="InputNode")),
            source_sha256=source_sha256,
            metadata=metadata,
        )
    except ShapeError as exc:
        index = exc.layer if exc.layer is not None else 0
        raise ModelError(exc.reason, path=path, layer=exc.layer,
                         layer_type=types[index], field="outputShape") from None  # fmt: skip
    if predictor.has("output") and doc.is_array(predictor.get("output")):
        n = doc.length(predictor.get("output"))
        if n != out_count:
            raise predictor.error(
                f"has {n} values, but the last layer outputs {out_count}", "output"
            )
    return net


# -- nodes and metadata ----------------------------------------------------------------------
def _check_input_node(node: Fields, input_layer: InputLayer) -> None:
    """The InputNode's ``shape`` (2017) or ``layout.size`` (newer) must match the input."""
    expected = list(input_layer.input_shape)
    if node.has("shape"):
        if node.get("shape") != expected:
            raise node.error(f"is {node.get('shape')!r}, the input layer takes {expected}", "shape")
    elif node.has("layout") and isinstance(node.get("layout"), dict):
        size = node.get("layout").get("size")
        if size is not None and size != expected:
            raise node.error(f"layout size is {size!r}, the input layer takes {expected}", "layout")


def _metadata(fields: Fields) -> dict[str, str]:
    """A PropertyBag (spec 2.11) as a dict of strings; empty when absent."""
    if not fields.has("metadata"):
        return {}
    bag = fields.get("metadata")
    entries = bag.get("data", []) if isinstance(bag, dict) else None
    if not isinstance(entries, list):
        raise fields.error("expected a PropertyBag object with a data array", "metadata")
    out: dict[str, str] = {}
    for entry in entries:
        value = entry.get("v") if isinstance(entry, dict) else None
        if isinstance(value, dict):
            value = value.get("value")
        key = entry.get("k") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not isinstance(value, str | int | float):
            raise fields.error("expected entries {k: key, v: {value: ...}}", "metadata")
        out[key] = str(value)
    return out


def _preprocessing(meta: dict[str, str], where: Where) -> Preprocessing:
    """Preprocessing from ELL's image metadata keys (spec 2.11); gallery defaults without.

    ELL reorders channels, scales 0..255 to [low, high], subtracts the mean and divides by
    the std; with ``s = (high - low) / 255`` that is ``(x - (mean - low)/s) / (std/s)``.
    """
    prefix = "model.input."
    if not any(k.startswith(prefix) for k in meta):
        return Preprocessing()
    try:
        order = meta.get(prefix + "expectedColorChannelOrder", "bgr").strip().lower()
        low = float(meta.get(prefix + "expectedPixelRangeLow", 0))
        high = float(meta.get(prefix + "expectedPixelRangeHigh", 255))
        s = (high - low) / 255.0
        colors = ("blue", "green", "red") if order == "bgr" else ("red", "green", "blue")
        means = tuple((float(meta.get(f"{prefix}{c}ChannelMean", low)) - low) / s for c in colors)
        stds = tuple(float(meta.get(f"{prefix}{c}ChannelStdDev", s)) / s for c in colors)
        if not all(np.isfinite(means + stds)) or not all(v > 0 for v in stds):
            raise ValueError("non-finite or non-positive values")
        return Preprocessing(channel_order=order, mean=means, std=stds)
    except (ValueError, ZeroDivisionError) as exc:
        raise where.error(f"bad image preprocessing metadata ({exc})", "metadata") from None
