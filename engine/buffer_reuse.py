"""Layers' output tensors share memory once the plan is built, where their lifetimes allow.

The planner gives every layer its own output tensor (ring filled once). For
EfficientNet-Lite0 that is 40 tensors, 12 MB, on top of 19 MB of weights: a frame touches
more memory than the last-level cache a small machine has, so every step writes to memory
that has left the cache and the next step reads it back from DRAM. Here tensors of the
same shape and ring fill share one block of memory when no step needs both: a tensor
lives from the first step that touches it to the last, and two tensors may share only if
one's last step comes strictly before the other's first (a step never reads and writes
the same memory through two tensors). Rings stay valid: tensors that share have the same
shape and ring and every kernel writes only interiors, so the ring cells are never
written by anyone.

Steps hold views of the tensors (reshaped, sliced rows, ...): every array argument that
lies inside a moved tensor is rebuilt as the same view of its new memory (same offset,
shape and strides). The network's input and output tensors keep their own memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
from edgebnn.engine.steps import Step


def _span(a: np.ndarray) -> tuple[int, int]:
    """[first byte, last byte + 1) of an array's memory."""
    start = a.__array_interface__["data"][0]
    return start, start + a.nbytes


def _owner(a: np.ndarray, spans: list[tuple[int, int, int]]) -> int | None:
    """The index of the tensor whose memory holds ``a`` (None: not a tensor's view)."""
    lo, hi = _span(a)
    for i, (start, end, _) in enumerate(spans):
        if start <= lo and hi <= end:
            return i
    return None


def share_buffers(
    steps: list[Step], buffers: dict[int, np.ndarray], keep: set[int], ringless: set[int]
) -> tuple[list[Step], dict[int, np.ndarray], int]:
    """(steps, buffers, bytes saved) with the tensors of ``buffers`` (node -> tensor) that
    may share memory doing so; nodes in ``keep`` keep theirs. Tensors of ``ringless`` nodes
    (every element written by each frame) may take any free block large enough; the
    others only a block of their own shape and initial contents (ring)."""
    nodes = [n for n in buffers if n not in keep and buffers[n].nbytes > 0]
    spans = [(*_span(buffers[n]), n) for n in nodes]
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for s, step in enumerate(steps):
        for a in step.args:
            if isinstance(a, np.ndarray) and a.nbytes:
                i = _owner(a, spans)
                if i is not None:
                    first.setdefault(i, s)
                    last[i] = s
    # Greedy: walk tensors by first use; reuse the smallest free block that fits.
    blocks: list[list] = []  # [kind, memory (the first tensor placed there), last step]
    home: dict[int, np.ndarray] = {}
    saved = 0
    for i in sorted(first, key=lambda i: first[i]):
        node = spans[i][2]
        t = buffers[node]
        if node in ringless and t.flags.c_contiguous:
            kind: tuple = ("any",)
        else:  # same shape, same contents (ring and untouched interior) before any step ran
            kind = (t.shape, t.dtype.str, hashlib.sha256(t.tobytes()).digest())
        free = [b for b in blocks if b[0] == kind and b[2] < first[i] and b[1].nbytes >= t.nbytes]
        if free:
            block = min(free, key=lambda b: b[1].nbytes)
            block[2] = last[i]
            home[i] = block[1]
            saved += t.nbytes
        else:
            blocks.append([kind, t, last[i]])
            home[i] = t
    moved = {i: mem for i, mem in home.items() if mem is not buffers[spans[i][2]]}
    if not moved:
        return steps, buffers, 0

    def rebased(a):
        if not isinstance(a, np.ndarray) or not a.nbytes:
            return a
        i = _owner(a, spans)
        if i is None or i not in moved:
            return a
        offset = _span(a)[0] - spans[i][0]
        return np.ndarray(a.shape, a.dtype, buffer=moved[i], offset=offset, strides=a.strides)

    new_steps = [replace(step, args=tuple(rebased(a) for a in step.args)) for step in steps]
    index = {n: i for i, n in enumerate(nodes)}
    new_buffers = {n: rebased(t) if n in index else t for n, t in buffers.items()}
    return new_steps, new_buffers, saved
