"""ELL's JSON dialect: a tolerant parser that keeps big numeric arrays out of Python objects.

ELL's archiver writes almost-JSON (spec 2.2): ``\\'`` escapes, trailing commas before ``}``
(2017), and ``nan``/``inf`` tokens. One regex pass over the bytes fixes these, outside
strings only, and swaps every long array of numbers for a placeholder that records where
its text is. ``json`` then parses a skeleton of a few kilobytes; each array is parsed later,
straight into NumPy, when the reader knows its dtype. So the ~2.8 M numbers of the headline
file never become Python floats (bounded memory), and uint64 weight words go through
Python ints, never through a double.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Arrays of numbers at least this long (in characters) are parsed lazily by NumPy.
LAZY_ARRAY_CHARS = 256
#: Integer literals with more digits are not converted (no ELL field holds one; a uint64 has
#: 20 digits, and Python refuses more than 4300): they become :class:`LongInteger` values,
#: which every field check rejects by name.
MAX_INT_DIGITS = 64

_PLACEHOLDER = "\x00"
_TOKEN = re.compile(
    rb'"(?:[^"\\]|\\.)*"'  # a string: kept, with ELL's \' escape fixed
    rb"|\[[^\[\]{}\"]{%d,}\]"
    % LAZY_ARRAY_CHARS  # a long array of numbers: lazy
    + rb"|,(?=\s*[}\]])"  # a trailing comma (ELL 2017 writes one after a lone _version)
    rb"|(?<![\w.])-?(?:nan|inf(?:inity)?)(?![\w.])",  # C++ ostream's non-finite numbers
    re.DOTALL | re.IGNORECASE,
)
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)


class DialectError(ValueError):
    """Text that is not ELL's JSON dialect (the reader adds the file name)."""


@dataclass(frozen=True)
class LongInteger:
    """An integer literal longer than :data:`MAX_INT_DIGITS`, kept unconverted."""

    digits: int

    def __repr__(self) -> str:
        return f"<integer literal of {self.digits} digits>"


def _parse_int(token: str) -> int | LongInteger:
    digits = len(token) - token.startswith("-")
    return LongInteger(digits) if digits > MAX_INT_DIGITS else int(token)


@dataclass
class Document:
    """A parsed ELL file: the JSON skeleton plus the text of its long arrays."""

    root: Any
    text: bytes
    spans: list[tuple[int, int]] = field(default_factory=list)

    def is_array(self, value: Any) -> bool:
        """True for a JSON list or a lazy-array placeholder."""
        return isinstance(value, list) or self._span(value) is not None

    def _span(self, value: Any) -> tuple[int, int] | None:
        if isinstance(value, str) and value.startswith(_PLACEHOLDER):
            return self.spans[int(value[1:])]
        return None

    def _raw_tokens(self, value: Any) -> bytes | None:
        span = self._span(value)
        if span is None:
            return None
        raw = self.text[span[0] : span[1]].strip()
        return raw[:-1] if raw.endswith(b",") else raw

    def length(self, value: Any) -> int:
        """The element count of an array value without parsing its numbers."""
        raw = self._raw_tokens(value)
        if raw is None:
            if not isinstance(value, list):
                raise DialectError("expected an array")
            return len(value)
        return raw.count(b",") + 1 if raw else 0

    def floats(self, value: Any) -> np.ndarray:
        """A float64 array (``np.float32(float(token))`` is what ELL reads, spec 2.2)."""
        raw = self._raw_tokens(value)
        if raw is None:
            if not isinstance(value, list):
                raise DialectError("expected an array of numbers")
            if not all(type(v) in (int, float) for v in value):
                raise DialectError("expected an array of numbers")
            try:
                return np.array(value, dtype=np.float64)
            except OverflowError:
                raise DialectError("a number is out of range") from None
        expected = raw.count(b",") + 1 if raw else 0
        try:
            values = np.fromstring(raw, dtype=np.float64, sep=",")
        except ValueError:
            raise DialectError("expected an array of numbers") from None
        if values.size != expected:
            raise DialectError("expected an array of numbers")
        return values

    def integers(self, value: Any, bits: int = 64) -> np.ndarray:
        """An exact uint64 array: every token must be an integer in [0, 2**bits)."""
        raw = self._raw_tokens(value)
        if raw is None:
            if not isinstance(value, list):
                raise DialectError("expected an array of integers")
            ints = value
            if not all(type(v) is int for v in ints):
                raise DialectError("expected an array of integers")
        else:
            tokens = raw.split(b",") if raw else []
            if any(len(token.strip()) > MAX_INT_DIGITS for token in tokens):
                raise DialectError(f"an integer is outside [0, 2**{bits})")
            try:
                ints = [int(token) for token in tokens]
            except ValueError:
                raise DialectError("expected an array of integers") from None
        if any(v < 0 or v >> bits for v in ints):
            raise DialectError(f"an integer is outside [0, 2**{bits})")
        return np.array(ints, dtype=np.uint64)


def parse(text: bytes) -> Document:
    """Parse ELL JSON text (bytes); raises :class:`DialectError` on anything else."""
    spans: list[tuple[int, int]] = []

    def fix(match: re.Match[bytes]) -> bytes:
        token = match.group(0)
        first = token[:1]
        if first == b'"':
            if b"\\u0000" in token or b"\x00" in token:
                raise DialectError("a string holds a NUL character")
            return _ESCAPE.sub(_unescape_quote, token) if b"\\'" in token else token
        if first == b"[":
            spans.append((match.start() + 1, match.end() - 1))
            return b'"\\u0000%d"' % (len(spans) - 1)
        if first == b",":
            return b""
        word = token.lower()
        return (
            b"-Infinity" if word.startswith(b"-i") else b"Infinity" if word[:1] == b"i" else b"NaN"
        )

    try:
        skeleton = _TOKEN.sub(fix, text)
        root = json.loads(skeleton, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise DialectError(f"invalid JSON ({exc.msg}) near {_excerpt(skeleton, exc.pos)}") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise DialectError(f"invalid JSON ({type(exc).__name__})") from None
    return Document(root, text, spans)


def _unescape_quote(match: re.Match[bytes]) -> bytes:
    return b"'" if match.group(1) == b"'" else match.group(0)


def _excerpt(text: bytes, pos: int) -> str:
    snippet = text[max(0, pos - 30) : pos + 30].decode("utf-8", "replace")
    snippet = re.sub(r'"\\u0000\d+"', "[...]", snippet)
    return repr(" ".join(snippet.split()))
