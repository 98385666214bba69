"""The torch-free .pth reader: real torch files (both layouts) and refused malicious pickles."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from edgebnn.engine.errors import ModelError
from edgebnn.engine.formats.torch_pth import MAGIC_NUMBER, PROTOCOL_VERSION, load_state_dict

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.mark.parametrize("name", ["torch_tiny_legacy.pth", "torch_tiny_zip.pth"])
def test_reads_files_written_by_torch(name: str) -> None:
    # Written by torch 2.13 (torch.save, with and without _use_new_zipfile_serialization)
    # from: a = arange(6.).reshape(2, 3).t() (a transposed view), b = tensor([1, 2, 3])[1:]
    # (an offset view), c = ones(2, float16), d = tensor(3) (a scalar).
    sd = load_state_dict(DATA / name)
    assert list(sd) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(sd["a"], np.arange(6, dtype=np.float32).reshape(2, 3).T)
    assert sd["a"].dtype == np.float32
    np.testing.assert_array_equal(sd["b"], np.array([2, 3], np.int64))
    assert sd["c"].dtype == np.float16 and sd["c"].tolist() == [1.0, 1.0]
    assert sd["d"].shape == () and int(sd["d"]) == 3


def _legacy_file(payload: bytes) -> bytes:
    """A legacy torch file whose state-dict pickle is ``payload``."""
    head = b"".join(pickle.dumps(v, protocol=2) for v in (MAGIC_NUMBER, PROTOCOL_VERSION, {}))
    return head + payload + pickle.dumps([], protocol=2)


# GLOBAL os system + a string argument + REDUCE: what a booby-trapped checkpoint does.
OS_SYSTEM = b"\x80\x02cos\nsystem\nq\x00X\x0c\x00\x00\x00touch /tmp/xq\x01\x85q\x02Rq\x03."
EVAL = b"\x80\x02cbuiltins\neval\nX\x06\x00\x00\x001 + 1 \x85R."
# A torch global that is not on the list (torch.load would import and call it).
TORCH_OTHER = b"\x80\x02ctorch.serialization\nload\nX\x01\x00\x00\x00x\x85R."
# The allowed OrderedDict global, but the state dict holds a forbidden object inside.
NESTED = b"\x80\x02ccollections\nOrderedDict\n)R}X\x01\x00\x00\x00kcsubprocess\nPopen\nsb."


@pytest.mark.parametrize(
    ("payload", "culprit"),
    [
        (OS_SYSTEM, "os.system"),
        (EVAL, "builtins.eval"),
        (TORCH_OTHER, "torch.serialization.load"),
        (NESTED, "subprocess.Popen"),
    ],
)
def test_refuses_code_running_globals(tmp_path: Path, payload: bytes, culprit: str) -> None:
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_file(payload))
    with pytest.raises(ModelError, match=f"refusing to load global {culprit}"):
        load_state_dict(path)


def test_refuses_malicious_zip(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", OS_SYSTEM)
    with pytest.raises(ModelError, match="refusing to load global os.system"):
        load_state_dict(path)


def test_refuses_header_globals(tmp_path: Path) -> None:
    # Even the magic-number pickle goes through the restricted unpickler.
    path = tmp_path / "evil.pth"
    path.write_bytes(OS_SYSTEM)
    with pytest.raises(ModelError, match="refusing"):
        load_state_dict(path)


@pytest.mark.parametrize("cut", [10, 200, 600, 740])
def test_truncated_file_is_a_model_error(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut.pth"
    path.write_bytes((DATA / "torch_tiny_legacy.pth").read_bytes()[:cut])
    with pytest.raises(ModelError):
        load_state_dict(path)


def test_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    buf = io.BytesIO()
    pickle.dump(12345, buf, protocol=2)
    path.write_bytes(buf.getvalue() * 5)
    with pytest.raises(ModelError, match="magic number"):
        load_state_dict(path)
    with pytest.raises(ModelError, match="cannot read"):
        load_state_dict(tmp_path / "missing.pth")
