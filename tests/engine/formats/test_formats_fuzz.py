"""Fuzz the ELL and native readers: mutated files give a Network or a ModelError, nothing else.

Byte edits and truncations of valid files (plain and zipped), field-level mutations of their
JSON, generated JSON-ish documents in ELL's dialect (alone and spliced into valid files), and
hostile number spellings (beyond Python's 4300-digit limit, overflowing floats, bare nan/inf).
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from edgebnn.engine.errors import ModelError
from edgebnn.engine.formats.ell import parse_ell
from edgebnn.engine.formats.ell_json import parse
from edgebnn.engine.formats.native import read_native, write_native
from edgebnn.engine.network import Network
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DATA = Path(__file__).resolve().parents[2] / "data"
# CI runs 200 examples per test in seconds; EDGEBNN_FUZZ_EXAMPLES=5000 fuzzes deeper locally.
EXAMPLES = int(os.environ.get("EDGEBNN_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=2000, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


def _zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


SOURCES = {
    "tiny_2017.ell": (DATA / "tiny_2017.ell").read_bytes(),
    "tiny_new.ell": (DATA / "tiny_new.ell").read_bytes(),
}
SOURCES["tiny_2017.ell.zip"] = _zipped("tiny_2017.ell", SOURCES["tiny_2017.ell"])
DOCS = {name: parse(SOURCES[name]).root for name in ("tiny_2017.ell", "tiny_new.ell")}


def only_model_errors(data: bytes, name: str) -> None:
    try:
        parse_ell(data, name)
    except ModelError as exc:
        assert str(exc).startswith(name) and "\n" not in str(exc)


byte_edit = st.tuples(
    st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate"]),
    st.floats(0, 1, exclude_max=True),
    st.binary(min_size=1, max_size=8),
)


@FUZZ
@given(st.sampled_from(sorted(SOURCES)), st.lists(byte_edit, min_size=1, max_size=4))
def test_byte_mutations_raise_only_model_errors(name, edits):
    data = bytearray(SOURCES[name])
    for kind, where, blob in edits:
        i = int(where * len(data))
        if kind == "flip":
            data[i] ^= blob[0] or 1
        elif kind == "delete":
            del data[i : i + len(blob)]
        elif kind == "insert":
            data[i:i] = blob
        elif kind == "truncate":
            del data[i:]
        else:
            data[i:i] = data[i : i + 64 * len(blob)]
        if not data:
            break
    only_model_errors(bytes(data), name)


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 2**64), max_size=5),
    st.lists(st.floats(-1e40, 1e40), max_size=5),
    st.builds(dict),
    st.builds(lambda: [[[]]]),
    st.sampled_from(
        [
            "ActivationLayer<float>",
            "PoolingLayer<float,MaxPoolingFunction",
            "Map",
            "ActivationLayer<float,Foo<>>",
            "\x00",
            "<<>>",
        ]
    ),
)


def _containers(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every dict key and list index under ``value``."""
    found = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, child in items:
        found.append((*path, key))
        found.extend(_containers(child, (*path, key)))
    return found


@FUZZ
@given(st.sampled_from(sorted(DOCS)), st.data())
def test_structure_mutations_raise_only_model_errors(name, data):
    doc = copy.deepcopy(DOCS[name])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _containers(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JUNK)
    only_model_errors(json.dumps(doc).encode(), name)


@settings(max_examples=EXAMPLES // 2, deadline=2000, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4
    )
)
def test_native_byte_mutations_raise_only_model_errors(tmp_path, edits):
    good = tmp_path / "good.ebnn"
    if not good.exists():
        write_native(parse_ell(SOURCES["tiny_new.ell"], "tiny_new.ell"), good)
    data = bytearray(good.read_bytes())
    for where, value in edits:
        data[int(where * len(data))] ^= value
    bad = tmp_path / "bad.ebnn"
    bad.write_bytes(bytes(data))
    try:
        net = read_native(bad)
    except ModelError:
        return
    assert isinstance(net, Network)  # a flip inside a weight can leave a valid file


# -- generated documents and token-level edits ----------------------------------------------
def _vocabulary(value: Any, keys: set[str], strings: set[str]) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            keys.add(key)
            _vocabulary(child, keys, strings)
    elif isinstance(value, list):
        for child in value:
            _vocabulary(child, keys, strings)
    elif isinstance(value, str) and not value.startswith("\x00"):
        strings.add(value)


KEYS: set[str] = set()
STRINGS: set[str] = set()
for _doc in DOCS.values():
    _vocabulary(_doc, KEYS, STRINGS)

#: Number spellings a reader must survive: Python's 4300-digit limit, float overflow,
#: ELL's non-finite tokens, signs, exponents, and the edges of the integer types.
LITERALS = st.sampled_from(
    ["7" * 5000, "-" + "9" * 4301, "1" + "0" * 65, "18446744073709551616", "-1", "-0", "0.0",
     "1e999", "-1e999", "1e-999", "nan", "-inf", "inf", "Infinity", "2.5", "3.0", "1E2",
     "4294967296", "9223372036854775808", "true", "null", '"7"', "[]", "{}"]
)  # fmt: skip
NUMBER_TOKEN = re.compile(rb"(?<![\w.\"])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.\"])")


def _json_text(value: Any, trailing_comma: bool) -> str:
    """ELL's almost-JSON: optional trailing commas, ``\\'`` escapes, bare nan/inf."""
    if isinstance(value, dict):
        items = [f"{json.dumps(k)}: {_json_text(v, trailing_comma)}" for k, v in value.items()]
        return "{" + ", ".join(items) + ("," if trailing_comma and items else "") + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json_text(v, trailing_comma) for v in value) + "]"
    if isinstance(value, float) and not np.isfinite(value):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}[str(value)]
    if isinstance(value, Literal):
        return value.text
    return json.dumps(value).replace("'", "\\'")


class Literal:
    """A number spelled as raw text (for literals ``json.dumps`` cannot write)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Literal({self.text[:20]!r})"


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(sorted(STRINGS)),
    st.text(max_size=8),
    LITERALS.map(Literal),
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(st.integers(0, 2**64 - 1), min_size=30, max_size=60),  # lazily parsed
        st.lists(st.floats(-1e6, 1e6), min_size=30, max_size=60),
        st.dictionaries(
            st.one_of(st.sampled_from(sorted(KEYS)), st.text(max_size=6)), inner, max_size=8
        ),
    ),
    max_leaves=40,
)


@FUZZ
@given(JSONISH, st.booleans())
def test_generated_documents_raise_only_model_errors(value, trailing_comma):
    only_model_errors(_json_text(value, trailing_comma).encode(), "generated.ell")


@FUZZ
@given(st.sampled_from(sorted(DOCS)), st.data())
def test_generated_subtrees_in_valid_files_raise_only_model_errors(name, data):
    """A valid file with one object or array replaced by a generated structure."""
    doc = copy.deepcopy(DOCS[name])
    paths = [p for p in _containers(doc) if _at(doc, p) is not None]
    path = data.draw(st.sampled_from(paths))
    _at(doc, path[:-1])[path[-1]] = data.draw(JSONISH)
    only_model_errors(_json_text(doc, name == "tiny_2017.ell").encode(), name)


def _at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@FUZZ
@given(st.sampled_from(["tiny_2017.ell", "tiny_new.ell"]), st.data())
def test_number_tokens_replaced_raise_only_model_errors(name, data):
    """Numbers in the text (lazily parsed weight arrays included) swapped for hostile ones."""
    text = SOURCES[name]
    spans = [m.span() for m in NUMBER_TOKEN.finditer(text)]
    picks = data.draw(st.lists(st.sampled_from(spans), min_size=1, max_size=3, unique=True))
    for start, end in sorted(picks, reverse=True):
        text = text[:start] + data.draw(LITERALS).encode() + text[end:]
    only_model_errors(text, name)


@FUZZ
@given(st.sampled_from(sorted(SOURCES)), st.floats(0, 1, exclude_max=True))
def test_truncated_files_raise_only_model_errors(name, where):
    data = SOURCES[name]
    only_model_errors(data[: int(where * len(data))], name)
