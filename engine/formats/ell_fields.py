"""Typed, checked access to the fields of one ELL archive object.

Every failure is a :class:`ModelError` that names the file, the layer (index and ``_type``)
and the field, so a bad file is reported in one line (spec 2.4-2.10 give the fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from edgebnn.engine.errors import ModelError
from edgebnn.engine.formats.ell_json import DialectError, Document, LongInteger

#: No tensor in a supported network has more elements than this (1 GiB of float32).
MAX_ELEMENTS = 1 << 28


@dataclass
class Where:
    """The place being read: file, layer index (None for non-layers) and ``_type``."""

    path: str
    layer: int | None = None
    layer_type: str | None = None

    def error(self, message: str, field: str | None = None) -> ModelError:
        return ModelError(
            message, path=self.path, layer=self.layer, layer_type=self.layer_type, field=field
        )


class Fields:
    """One JSON object of an ELL file, read field by field with type checks."""

    def __init__(self, obj: Any, doc: Document, where: Where, what: str = "object") -> None:
        if not isinstance(obj, dict):
            raise where.error(f"expected a JSON object for the {what}, got {_kind(obj)}")
        self.obj = obj
        self.doc = doc
        self.where = where

    def error(self, message: str, field: str | None = None) -> ModelError:
        return self.where.error(message, field)

    def has(self, name: str) -> bool:
        return name in self.obj

    def get(self, name: str) -> Any:
        if name not in self.obj:
            raise self.error("missing field", name)
        value = self.obj[name]
        if isinstance(value, LongInteger):
            raise self.error(f"an integer literal of {value.digits} digits is out of range", name)
        return value

    def type_name(self) -> str:
        return self.string("_type")

    def string(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str) or self.doc.is_array(value):
            raise self.error(f"expected a string, got {_kind(value)}", name)
        return value

    def integer(self, name: str, low: int | None = None, high: int | None = None) -> int:
        value = self.get(name)
        if type(value) is float and value.is_integer():
            value = int(value)  # ELL writes ints in decimal, but be lenient with "3.0"
        if type(value) is not int:
            raise self.error(f"expected an integer, got {_kind(value)}", name)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"[{'' if low is None else low}, {'' if high is None else high}]"
            raise self.error(f"value {value} is outside {bounds}", name)
        return value

    def number(self, name: str) -> float:
        value = self.get(name)
        if type(value) not in (int, float):
            raise self.error(f"expected a number, got {_kind(value)}", name)
        as32 = np.float32(value) if abs(value) < 1e39 else np.float32(np.inf)
        if not np.isfinite(as32):
            raise self.error(f"value {value} is not a finite float32", name)
        return float(as32)

    def shape(self, name: str) -> tuple[int, int, int]:
        value = self.get(name)
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(type(v) is int and 1 <= v <= MAX_ELEMENTS for v in value)
        ):
            raise self.error(
                f"expected [rows, columns, channels] of positive ints, got {_short(value)}", name
            )
        rows, cols, chans = value
        if rows * cols * chans > MAX_ELEMENTS:
            raise self.error(f"shape {value} has more than {MAX_ELEMENTS} elements", name)
        return rows, cols, chans

    def floats(self, name: str, count: int | None = None) -> np.ndarray:
        """A float32 vector: the exact count when given, every value finite."""
        value = self.get(name)
        self._check_count(name, value, count)
        try:
            values = self.doc.floats(value)
        except DialectError as exc:
            raise self.error(str(exc), name) from None
        with np.errstate(over="ignore"):
            as32 = values.astype(np.float32)
        bad = ~np.isfinite(as32)
        if bad.any():
            first = int(np.argmax(bad))
            raise self.error(
                f"{int(bad.sum())} value(s) are NaN/inf or beyond float32 "
                f"(first at index {first}: {values[first]!r})",
                name,
            )
        return as32

    def uint64s(self, name: str, count: int) -> np.ndarray:
        """An exact uint64 vector of ``count`` words (never parsed through a double)."""
        value = self.get(name)
        self._check_count(name, value, count)
        try:
            return self.doc.integers(value)
        except DialectError as exc:
            raise self.error(str(exc), name) from None

    def tensor(self, name: str, shape: tuple[int, int, int] | None = None) -> np.ndarray:
        """ELL's ``X_rows/_columns/_channels/_values`` tensor as (rows, cols, chans) float32."""
        dims = tuple(
            self.integer(f"{name}_{d}", 1, MAX_ELEMENTS) for d in ("rows", "columns", "channels")
        )
        if shape is not None and dims != shape:
            dim_name = ("rows", "columns", "channels")[
                next(i for i in range(3) if dims[i] != shape[i])
            ]
            raise self.error(
                f"tensor is {'x'.join(map(str, dims))}, expected {'x'.join(map(str, shape))}",
                f"{name}_{dim_name}",
            )
        if dims[0] * dims[1] * dims[2] > MAX_ELEMENTS:
            raise self.error(f"tensor {dims} is too large", f"{name}_values")
        return self.floats(f"{name}_values", dims[0] * dims[1] * dims[2]).reshape(dims)

    def check_count(self, name: str, count: int) -> None:
        """Check an array's length without parsing its values."""
        self._check_count(name, self.get(name), count)

    def _check_count(self, name: str, value: Any, count: int | None) -> None:
        try:
            length = self.doc.length(value)
        except DialectError:
            raise self.error(f"expected an array, got {_kind(value)}", name) from None
        if count is not None and length != count:
            raise self.error(f"has {length} values, expected {count}", name)


def _kind(value: Any) -> str:
    if isinstance(value, str) and value.startswith("\x00"):
        return "an array"
    if isinstance(value, LongInteger):
        return repr(value)
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."
