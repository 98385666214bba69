"""``edgebnn.load``: one entry point for model files and built-in networks."""

from __future__ import annotations

from pathlib import Path

from edgebnn.engine.errors import ModelError
from edgebnn.engine.network import Network

RANDOM_PREFIX = "random:"


def load(spec: str | Path) -> Network:
    """A :class:`Network` from a model file or a built-in name.

    - ``*.ell`` / ``*.ell.zip``: an ELL model file (both dialects), as downloaded;
    - ``*.ebnn``: edgebnn's native format;
    - ``random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A``: a random-weight d-series network (seed 0);
    - ``efficientnet-lite0``: the pretrained EfficientNet-Lite0 converted from its PyPI package.

    Raises :class:`ModelError` with a one-line message naming the file and the fault.
    """
    text = str(spec)
    if text.startswith(RANDOM_PREFIX):
        from edgebnn.engine.zoo import d_series, parse_name

        try:
            size, architecture = parse_name(text[len(RANDOM_PREFIX) :])
            return d_series(size, architecture, seed=0, name=text[len(RANDOM_PREFIX) :])
        except ValueError as exc:
            raise ModelError(str(exc), path=text) from None
    path = Path(text)
    if not path.exists():
        from edgebnn.engine import builtin

        if text in builtin.NAMES:
            return builtin.load_builtin(text)
        raise ModelError("no such file (nor a built-in model name)", path=text)
    name = path.name.lower()
    if name.endswith((".ell", ".ell.zip", ".zip")):
        from edgebnn.engine.formats.ell import read_ell

        return read_ell(path)
    from edgebnn.engine.formats.native import read_native

    return read_native(path)
