"""Read a PyTorch state dict (``.pth``) into NumPy arrays without importing torch.

Two layouts exist. The legacy one (torch < 1.6, ``_use_new_zipfile_serialization=False``)
is five pickles in a row, then the raw storages::

    magic number | protocol version | sys info | state dict | storage keys
    for each key: int64 element count, then count * itemsize bytes

The zip one (torch >= 1.6) is a zip archive ``<dir>/data.pkl`` + ``<dir>/data/<key>``
(raw bytes) + ``<dir>/byteorder``.

The state-dict pickle is read by :class:`_StateDictUnpickler`, whose ``find_class`` admits
only what a plain state dict needs (the idea of torch's ``weights_only``), listed in
:data:`ALLOWED_GLOBALS`; any other global (``os.system``, ``builtins.eval``, a module
class ...) raises :class:`ModelError` before anything is called. Tensors are rebuilt from
their storages with NumPy (offset, shape and strides), always as copies.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgebnn.engine.errors import ModelError

#: The magic number that opens a legacy torch file (``torch.serialization.MAGIC_NUMBER``).
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
#: The legacy protocol version torch writes and reads.
PROTOCOL_VERSION = 1001

#: Storage classes (pickled as ``torch.<Name>Storage``) and the NumPy dtype they hold.
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),  # widened to float32 after reading
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    """Stands for a ``torch.*Storage`` class inside the pickle: just its dtype."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class _StorageRef:
    """A persistent storage id: which raw buffer, of what type and length."""

    key: str
    storage_type: _StorageType
    numel: int
    view: tuple[str, int, int] | None = None  # legacy views: (view key, offset, size)


@dataclass(frozen=True)
class _TensorRef:
    """A tensor waiting for its storage (legacy files store the data after the pickle)."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records where the data is."""
    if not isinstance(storage, _StorageRef):
        raise ModelError(f"a tensor's storage is a {type(storage).__name__}, not a storage id")
    if len(size) != len(stride):
        raise ModelError(f"tensor size {size} and stride {stride} differ in length")
    return _TensorRef(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


def _rebuild_parameter(
    data: _TensorRef, requires_grad: bool = False, backward_hooks: object = None
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_parameter``: a Parameter is its tensor."""
    if not isinstance(data, _TensorRef):
        raise ModelError("a Parameter that does not wrap a tensor")
    return data


#: Every global a state dict may name, and why it is safe:
#: - ``collections.OrderedDict``: the state dict itself and each tensor's (empty)
#:   ``backward_hooks``; constructing one runs no user code;
#: - ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``: replaced by the
#:   record-only stand-ins above (torch is never imported);
#: - ``torch.<Name>Storage``: replaced by a dtype marker, only ever used in storage ids.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _StateDictUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and storage ids."""

    def __init__(self, data: bytes, source: str) -> None:
        super().__init__(io.BytesIO(data))
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ModelError(
                f"refusing to load global {module}.{name}: a state dict holds only tensors "
                "(this file may run code when loaded by torch)",
                path=self.source,
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise ModelError(f"unknown persistent id {pid!r:.80}", path=self.source)
        if len(pid) == 6:  # legacy: storage_type, root_key, location, numel, view_metadata
            _, stype, key, _location, numel, view = pid
        elif len(pid) == 5:  # zip: storage_type, key, location, numel
            _, stype, key, _location, numel = pid
            view = None
        else:
            raise ModelError(f"storage id with {len(pid)} fields", path=self.source)
        if not isinstance(stype, _StorageType):
            raise ModelError(f"storage type {stype!r:.80} is not a torch storage", path=self.source)
        if view is not None:
            view = (str(view[0]), int(view[1]), int(view[2]))
        return _StorageRef(str(key), stype, int(numel), view)


def _unpickle(data: bytes, source: str) -> Any:
    try:
        return _StateDictUnpickler(data, source).load()
    except ModelError:
        raise
    except Exception as exc:  # a truncated or corrupt pickle: pickle raises many types
        raise ModelError(f"not a readable state-dict pickle ({exc})", path=source) from exc


def _materialise(obj: Any, buffers: dict[str, np.ndarray], source: str) -> Any:
    """Replace every :class:`_TensorRef` in ``obj`` (dicts, lists, tuples) by an array."""
    if isinstance(obj, _TensorRef):
        ref = obj.storage
        buf = buffers.get(ref.key)
        if buf is None:
            raise ModelError(f"storage {ref.key!r} is missing", path=source)
        if ref.view is not None:
            buf = buf[ref.view[1] : ref.view[1] + ref.view[2]]
        need = (
            obj.offset + sum((n - 1) * s for n, s in zip(obj.shape, obj.strides, strict=True)) + 1
        )
        if min(obj.shape, default=1) > 0 and (
            obj.offset < 0 or need > buf.size or min(obj.strides, default=0) < 0
        ):
            raise ModelError(f"tensor {obj.shape} overruns its storage of {buf.size}", path=source)
        item = buf.itemsize
        arr = np.lib.stride_tricks.as_strided(
            buf[obj.offset :], shape=obj.shape, strides=tuple(s * item for s in obj.strides)
        ).copy()
        if ref.storage_type.name == "BFloat16Storage":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(arr.dtype.newbyteorder("="))
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v, buffers, source)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, buffers, source) for v in obj)
    return obj


def _collect_storages(obj: Any, found: dict[str, _StorageRef]) -> None:
    if isinstance(obj, _TensorRef):
        found.setdefault(obj.storage.key, obj.storage)
    elif isinstance(obj, dict):
        for v in obj.values():
            _collect_storages(v, found)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _collect_storages(v, found)


def _read_legacy(raw: bytes, source: str) -> Any:
    stream = io.BytesIO(raw)  # pickle reads exactly one pickle per load(): no look-ahead
    header: list[Any] = []
    for _ in range(3):
        header.append(_load_from(stream, source))
    magic, protocol, _sys_info = header
    if magic != MAGIC_NUMBER:
        raise ModelError("not a torch file (wrong magic number)", path=source)
    if protocol != PROTOCOL_VERSION:
        raise ModelError(
            f"torch legacy protocol {protocol}, expected {PROTOCOL_VERSION}", path=source
        )
    state = _load_from(stream, source)
    keys = _load_from(stream, source)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ModelError("storage key list is not a list of strings", path=source)
    refs: dict[str, _StorageRef] = {}
    _collect_storages(state, refs)
    buffers: dict[str, np.ndarray] = {}
    view = memoryview(raw)
    pos = stream.tell()
    for key in keys:
        if key not in refs:
            raise ModelError(f"storage {key!r} is listed but no tensor uses it", path=source)
        dtype = refs[key].storage_type.dtype
        if pos + 8 > len(raw):
            raise ModelError(f"file ends before storage {key!r}", path=source)
        numel = int.from_bytes(view[pos : pos + 8], "little", signed=True)
        pos += 8
        if numel != refs[key].numel:
            raise ModelError(
                f"storage {key!r} holds {numel} values, expected {refs[key].numel}", path=source
            )
        end = pos + numel * dtype.itemsize
        if end > len(raw):
            raise ModelError(f"file ends inside storage {key!r}", path=source)
        buffers[key] = np.frombuffer(raw, dtype=dtype, count=numel, offset=pos)
        pos = end
    return _materialise(state, buffers, source)


class _StreamUnpickler(_StateDictUnpickler):
    """The restricted unpickler on a shared stream (several pickles in a row)."""

    def __init__(self, stream: io.BytesIO, source: str) -> None:
        pickle.Unpickler.__init__(self, stream)
        self.source = source


def _load_from(stream: io.BytesIO, source: str) -> Any:
    """One pickle from ``stream`` (left just after it), through the restricted unpickler."""
    try:
        return _StreamUnpickler(stream, source).load()
    except ModelError:
        raise
    except Exception as exc:  # truncated or corrupt data: pickle raises many types
        raise ModelError(f"not a readable torch file ({exc})", path=source) from exc


def _read_zip(path: Path, source: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ModelError("zip file without exactly one data.pkl: not a torch file", path=source)
        prefix = pkl[0][: -len("data.pkl")]
        order = prefix + "byteorder"
        if order in names and archive.read(order).strip() not in (b"little", b""):
            raise ModelError("big-endian torch files are not supported", path=source)
        state = _unpickle(archive.read(pkl[0]), source)
        refs: dict[str, _StorageRef] = {}
        _collect_storages(state, refs)
        buffers: dict[str, np.ndarray] = {}
        for key, ref in refs.items():
            name = f"{prefix}data/{key}"
            if name not in names:
                raise ModelError(f"storage {key!r} is missing from the archive", path=source)
            data = archive.read(name)
            dtype = ref.storage_type.dtype
            if len(data) < ref.numel * dtype.itemsize:
                raise ModelError(f"storage {key!r} is shorter than {ref.numel} values", path=source)
            buffers[key] = np.frombuffer(data, dtype=dtype, count=ref.numel)
    return _materialise(state, buffers, source)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a torch ``.pth`` state dict as NumPy arrays, by name (file order).

    Accepts the legacy and the zip layout; raises :class:`ModelError` for anything that is
    not a plain state dict (a pickled module, a code-running global, a corrupt file).
    """
    path = Path(path)
    source = str(path)
    try:
        if zipfile.is_zipfile(path):
            state = _read_zip(path, source)
        else:
            state = _read_legacy(path.read_bytes(), source)
    except OSError as exc:
        raise ModelError(f"cannot read ({exc.strerror or exc})", path=source) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint wrapping its state dict
    if not isinstance(state, dict):
        raise ModelError(f"holds a {type(state).__name__}, not a state dict", path=source)
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(value, np.ndarray):
            raise ModelError(
                f"entry {name!r} is a {type(value).__name__}, not a tensor", path=source
            )
        out[str(name)] = value
    return out
