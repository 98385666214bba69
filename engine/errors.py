"""Errors raised by the engine and the model readers."""

from __future__ import annotations


class ModelError(ValueError):
    """A model file or a network definition that cannot be run.

    The message names the file (when there is one), the layer index and type, and the
    field at fault, so that the CLI can print it as one line.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        layer: int | None = None,
        layer_type: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.layer = layer
        self.layer_type = layer_type
        self.field = field
        self.reason = message
        where = []
        if path is not None:
            where.append(str(path))
        if layer is not None:
            where.append(f"layer {layer}" + (f" ({layer_type})" if layer_type else ""))
        elif layer_type is not None:
            where.append(layer_type)
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class ShapeError(ModelError):
    """Layer shapes that do not connect (raised when a network is built)."""
