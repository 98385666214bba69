"""Layer outputs share memory only where no step needs both (engine/buffer_reuse.py)."""

from __future__ import annotations

import numpy as np
from edgebnn.engine.buffer_reuse import share_buffers
from edgebnn.engine.steps import Step


def _copy(src: np.ndarray, dst: np.ndarray) -> None:
    dst[...] = src


def _ringed(rows: int, fill: float = 0.0) -> np.ndarray:
    return np.full((rows + 2, rows + 2, 3), fill, np.float32)


def _memory(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_tensors_share_only_when_lifetimes_do_not_overlap() -> None:
    x, out = np.ones((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float32)
    a, b, c, d = _ringed(4), _ringed(4), _ringed(4), _ringed(4)
    steps = [
        Step((1,), "a", _copy, (x, a[1:-1, 1:-1])),
        Step((2,), "b", _copy, (a[1:-1, 1:-1], b[1:-1, 1:-1])),  # reads a, writes b
        Step((3,), "c", _copy, (b[1:-1, 1:-1], c[1:-1, 1:-1])),  # a is dead: c may take it
        Step((4,), "d", _copy, (c[1:-1, 1:-1], d[1:-1, 1:-1])),  # b is dead: d may take it
        Step((5,), "out", _copy, (d[1:-1, 1:-1], out)),
    ]
    buffers = {0: x, 1: a, 2: b, 3: c, 4: d, 5: out}
    new_steps, new_buffers, saved = share_buffers(steps, buffers, {0, 5}, set())
    assert saved == 2 * a.nbytes
    mem = {n: _memory(t) for n, t in new_buffers.items()}
    assert mem[3] == mem[1] and mem[4] == mem[2] and mem[1] != mem[2]
    assert new_buffers[0] is x and new_buffers[5] is out
    for step in new_steps:
        step()
    np.testing.assert_array_equal(out, x)
    # The rings were never written and are still zero in every shared block.
    for t in new_buffers.values():
        if t.shape == a.shape:
            assert (t[0] == 0).all() and (t[:, -1] == 0).all()


def test_a_step_never_reads_and_writes_the_same_memory() -> None:
    x = np.ones((3, 3), np.float32)
    a, b = np.zeros((3, 3), np.float32), np.zeros((3, 3), np.float32)
    steps = [Step((1,), "a", _copy, (x, a)), Step((2,), "b", _copy, (a, b))]
    _, new_buffers, saved = share_buffers(steps, {0: x, 1: a, 2: b}, {0}, {1, 2})
    assert saved == 0 and _memory(new_buffers[1]) != _memory(new_buffers[2])


def test_different_rings_do_not_share_but_ringless_tensors_share_any_block() -> None:
    x = np.ones((4, 4, 3), np.float32)
    zero_ring, min_ring = _ringed(4), _ringed(4, -np.inf)
    min_ring[1:-1, 1:-1] = 0
    flat_big, flat_small = np.zeros(400, np.float32), np.zeros((5, 20), np.float32)
    steps = [
        Step((1,), "1", _copy, (x, zero_ring[1:-1, 1:-1])),
        Step((2,), "2", _copy, (zero_ring[1:-1, 1:-1], flat_big[:48].reshape(4, 4, 3))),
        Step((3,), "3", _copy, (flat_big[:48].reshape(4, 4, 3), min_ring[1:-1, 1:-1])),
        Step((4,), "4", _copy, (min_ring[1:-1, 1:-1, 0], flat_small[:4, :4])),
    ]
    buffers = {0: x, 1: zero_ring, 2: flat_big, 3: min_ring, 4: flat_small}
    new_steps, new_buffers, saved = share_buffers(steps, buffers, {0}, {2, 4})
    mem = {n: _memory(t) for n, t in new_buffers.items()}
    assert mem[3] != mem[1]  # a -inf ring never lands on a zero ring
    assert mem[4] == mem[2] and saved == flat_small.nbytes  # a smaller flat tensor fits
    assert new_buffers[4].shape == (5, 20)
    for step in new_steps:
        step()
    assert (new_buffers[4][:4, :4] == 1).all()
    assert np.isneginf(new_buffers[3][0]).all()
