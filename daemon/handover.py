"""The wire between a capture process and the daemon: a ring of frame slots in shared
memory and small JSON messages on a Unix socket pair.

Frames never travel through the socket. The capture process writes a frame into a free
slot of its ring (an anonymous ``memfd`` mapping, shared by passing its descriptor over
the socket with SCM_RIGHTS) and sends ``{"t": "frame", "slot": k, ...}``; the slot then
belongs to the daemon until the daemon sends ``{"t": "free", "slot": k}`` back. This
ownership hand-off is the only synchronisation, so a slot is never written while anyone
reads it, and nothing is ever named in /dev/shm: the memory goes away with the last
process that maps it, whatever way that process ends.

Both sides import this module: it needs only the standard library and NumPy (the capture
process must stay small and never load the engine).
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import tempfile
from typing import Any

import numpy as np

SLOTS = 4  # newest frame held by the daemon, up to two readers, one being written
MAX_MESSAGE = 65536

Message = dict[str, Any]


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of message sockets (each send is one message, kept whole)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, message: Message, fd: int | None = None, block: bool = True) -> bool:
    """Send one message (and a descriptor); False if it could not be sent right now
    (peer gone, or `block` is False and the peer's buffer is full)."""
    data = json.dumps(message, separators=(",", ":")).encode()
    flags = 0 if block else socket.MSG_DONTWAIT
    try:
        if fd is None:
            sock.send(data, flags)
        else:
            socket.send_fds(sock, [data], [fd], flags)
    except (BlockingIOError, BrokenPipeError, ConnectionError, OSError):
        return False
    return True


def receive(sock: socket.socket) -> tuple[Message | None, int | None]:
    """One message and the descriptor sent with it; (None, None) when the peer is gone.

    A message that is not a JSON object is an error of the peer: ValueError."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 1)
    except (ConnectionError, OSError):
        return None, None
    if not data:
        for fd in fds:
            os.close(fd)
        return None, None
    message = json.loads(data)
    if not isinstance(message, dict):
        for fd in fds:
            os.close(fd)
        raise ValueError(f"not a message: {data[:80]!r}")  # noqa: TRY004 (a protocol error)
    return message, (fds[0] if fds else None)


def frame_bytes(shape: tuple[int, ...]) -> int:
    size = 1
    for n in shape:
        size *= int(n)
    return size


class Ring:
    """`slots` frame slots of `slot_bytes` each in one shared mapping; a frame of any shape
    that fits uses the start of its slot (so frames of changing size need no new ring)."""

    def __init__(self, buffer: mmap.mmap, slot_bytes: int, slots: int) -> None:
        self.slot_bytes = int(slot_bytes)
        self.slots = slots
        self._buffer = buffer
        self._slots = np.frombuffer(buffer, np.uint8, slots * self.slot_bytes).reshape(
            slots, self.slot_bytes
        )

    @classmethod
    def create(cls, slot_bytes: int, slots: int = SLOTS) -> tuple[Ring, int]:
        """A new ring and the descriptor to hand to the reader (the caller closes it)."""
        size = slots * slot_bytes
        fd = _anonymous_file()
        try:
            os.ftruncate(fd, size)
            buffer = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return cls(buffer, slot_bytes, slots), fd

    @classmethod
    def attach(cls, fd: int, slot_bytes: int, slots: int) -> Ring:
        """Map a ring received from the writer, read-only (the descriptor can be closed)."""
        size = slots * slot_bytes
        if size <= 0 or os.fstat(fd).st_size < size:
            raise ValueError("the shared frame buffer is smaller than announced")
        return cls(mmap.mmap(fd, size, prot=mmap.PROT_READ), slot_bytes, slots)

    def slot(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        """A uint8 view of slot `index` as an array of `shape` (read-only for the reader)."""
        size = frame_bytes(shape)
        if size > self.slot_bytes:
            raise ValueError(f"a {shape} frame does not fit a {self.slot_bytes}-byte slot")
        return self._slots[index, :size].reshape(shape)


def _anonymous_file() -> int:
    """A descriptor of memory with no name anywhere (memfd), or an unlinked temporary
    file where memfd_create does not exist."""
    create = getattr(os, "memfd_create", None)
    if create is not None:
        try:
            return create("edgebnn-frames", getattr(os, "MFD_CLOEXEC", 1))
        except OSError:
            pass
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryFile(dir=folder) as handle:
        return os.dup(handle.fileno())
