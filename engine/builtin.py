"""Built-in pretrained models that ship with (or convert from) installed packages."""

from __future__ import annotations

from edgebnn.engine.errors import ModelError
from edgebnn.engine.network import Network

NAMES: tuple[str, ...] = ()


def load_builtin(name: str) -> Network:
    """The built-in model ``name``."""
    raise ModelError(f"unknown built-in model {name!r}; known: {', '.join(NAMES) or 'none'}")
