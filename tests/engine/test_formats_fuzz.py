"""Fuzz the ELL and native readers: mutated files give a Network or a ModelError, nothing else."""

from __future__ import annotations

import copy
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from edgebnn.engine.errors import ModelError
from edgebnn.engine.formats.ell import parse_ell
from edgebnn.engine.formats.ell_json import parse
from edgebnn.engine.formats.native import read_native, write_native
from edgebnn.engine.network import Network
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DATA = Path(__file__).resolve().parents[1] / "data"
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
