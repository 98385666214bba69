"""Element-wise layer chains (bias, scaling, batch-norm, activations), fusable into producers.

A chain is encoded as plain arrays so that one compiled kernel serves every combination:
``codes[i]`` is the op, ``params[i, 0, k]`` / ``params[i, 1, k]`` its per-channel values
(bias; scale; BN mult and add; leaky factor), ``alpha`` the PReLU tensor (interior
coordinates). Each op rounds to float32 on its own, exactly as ELL's separate layers do,
so fusing a chain into the kernel that produces its input changes no bit (spec 6.1).
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, JIT, PJIT, prange
from numba import njit

OP_BIAS = 0
OP_SCALE = 1
OP_BATCH_NORM = 2
OP_RELU = 3
OP_LEAKY_RELU = 4
OP_PRELU = 5
OP_RELU6 = 6
OP_SIGMOID = 7
OP_TANH = 8
OP_HARD_SIGMOID = 9
OP_HARD_TANH = 10

ACTIVATION_CODES = {
    "relu": OP_RELU,
    "leaky_relu": OP_LEAKY_RELU,
    "prelu": OP_PRELU,
    "relu6": OP_RELU6,
    "sigmoid": OP_SIGMOID,
    "tanh": OP_TANH,
    "hard_sigmoid": OP_HARD_SIGMOID,
    "hard_tanh": OP_HARD_TANH,
}

EMPTY_CODES = np.zeros(0, np.int64)
EMPTY_ALPHA = np.zeros((1, 1), np.float32)


def empty_params(channels: int) -> np.ndarray:
    """Parameters of an empty chain."""
    return np.zeros((0, 2, channels), np.float32)


@njit(**HOT_JIT)
def apply_chain(v, r, codes, params, alpha):
    """Apply the chain in place to ``v``, output row ``r`` flattened as (column, channel).

    ``params`` is (ops, 2, columns * channels): per-channel values tiled along the row at
    plan time, so that every op is one long vectorisable loop; ``alpha`` is (rows,
    columns * channels).
    """
    n = v.shape[0]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for i in range(codes.shape[0]):
        op = codes[i]
        p0 = params[i, 0]
        p1 = params[i, 1]
        if op == OP_BIAS:
            for e in range(n):
                v[e] = v[e] + p0[e]
        elif op == OP_SCALE:
            for e in range(n):
                v[e] = v[e] * p0[e]
        elif op == OP_BATCH_NORM:
            for e in range(n):
                t = p0[e] * v[e]
                v[e] = t + p1[e]
        elif op == OP_RELU:
            for e in range(n):
                v[e] = max(zero, v[e])
        elif op == OP_LEAKY_RELU:
            for e in range(n):
                v[e] = v[e] if v[e] > zero else p0[e] * v[e]
        elif op == OP_PRELU:
            a = alpha[r]
            for e in range(n):
                v[e] = v[e] if v[e] > zero else a[e] * v[e]
        elif op == OP_RELU6:
            six = np.float32(6.0)
            for e in range(n):
                x = max(zero, v[e])
                v[e] = min(six, x)
        elif op == OP_SIGMOID:
            for e in range(n):
                x = v[e]
                if x > zero:
                    v[e] = one / (np.exp(-x) + one)
                else:
                    ex = np.exp(x)
                    v[e] = ex / (ex + one)
        elif op == OP_TANH:
            for e in range(n):
                v[e] = np.tanh(v[e])
        elif op == OP_HARD_SIGMOID:
            for e in range(n):
                x = v[e]
                if x < np.float32(-2.5):
                    v[e] = zero
                elif x > np.float32(2.5):
                    v[e] = one
                else:
                    v[e] = np.float32(0.2) * x + np.float32(0.5)
        elif op == OP_HARD_TANH:
            for e in range(n):
                x = v[e]
                v[e] = -one if x < -one else (min(x, one))


@njit(**JIT)
def apply_chain_call(v, r, codes, params, alpha):
    """:func:`apply_chain` as an ordinary call, for kernels that run it once per row and
    whose compile time an inlined copy would dominate."""
    apply_chain(v, r, codes, params, alpha)


@njit(**HOT_JIT)
def store_row(row, out, r, pad):
    """Copy a finished row (columns * channels) into ``out``'s interior row ``r``."""
    dst = out[r + pad].reshape(-1)
    start = pad * out.shape[2]
    for e in range(row.shape[0]):
        dst[start + e] = row[e]


def tile_params(params: np.ndarray, cols: int) -> np.ndarray:
    """Per-channel chain parameters tiled along an output row (see :func:`apply_chain`)."""
    return np.ascontiguousarray(np.tile(params, (1, 1, cols)))


def row_alpha(alpha: np.ndarray) -> np.ndarray:
    """A PReLU alpha tensor (rows, cols, chans) as (rows, cols * chans)."""
    return np.ascontiguousarray(alpha.reshape(alpha.shape[0], -1))


@njit(**PJIT)
def chain_copy(x, out, pad, codes, params, alpha):
    """``out[interior] = chain(x)`` for an un-padded input ``x`` (rows, cols, channels)."""
    for r in prange(x.shape[0]):
        chain_copy_rows(r, r + 1, x, out, pad, codes, params, alpha)


@njit(**JIT)
def chain_copy_rows(r0, r1, x, out, pad, codes, params, alpha):
    """Rows [r0, r1) of :func:`chain_copy` (one task of a frame, one thread)."""
    if codes.shape[0] == 0:
        # No chain (a network whose input is preprocessed outside, EfficientNet's): a
        # plain copy into the ring's interior, sliced first so that it vectorises.
        n = x.shape[1] * x.shape[2]
        start = pad * out.shape[2]
        for r in range(r0, r1):
            src = x[r].reshape(-1)
            dst = out[r + pad].reshape(-1)[start : start + n]
            for e in range(n):
                dst[e] = src[e]
        return
    for r in range(r0, r1):
        v = x[r].reshape(-1).copy()
        apply_chain(v, r, codes, params, alpha)
        store_row(v, out, r, pad)


@njit(**PJIT)
def add_chain(a, b, out, pad, codes, params, alpha):
    """``out[interior] = chain(a + b)`` (residual connections)."""
    for r in prange(a.shape[0]):
        add_chain_rows(r, r + 1, a, b, out, pad, codes, params, alpha)


@njit(**JIT)
def add_chain_rows(r0, r1, a, b, out, pad, codes, params, alpha):
    """Rows [r0, r1) of :func:`add_chain` (one task of a frame, one thread)."""
    _, cols, chans = a.shape
    for r in range(r0, r1):
        ra = a[r].reshape(-1)
        rb = b[r].reshape(-1)
        v = np.empty(cols * chans, np.float32)
        for e in range(cols * chans):
            v[e] = ra[e] + rb[e]
        apply_chain(v, r, codes, params, alpha)
        store_row(v, out, r, pad)
