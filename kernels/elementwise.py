"""Element-wise layer chains (bias, scaling, batch-norm, activations), fusable into producers.

A chain is encoded as plain arrays so that one compiled kernel serves every combination:
``codes[i]`` is the op, ``params[i, 0, k]`` / ``params[i, 1, k]`` its per-channel values
(bias; scale; BN mult and add; leaky factor), ``alpha`` the PReLU tensor (interior
coordinates). Each op rounds to float32 on its own, exactly as ELL's separate layers do,
so fusing a chain into the kernel that produces its input changes no bit (spec 6.1).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from edgebnn.kernels._jit import JIT, PJIT, prange

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
EMPTY_ALPHA = np.zeros((1, 1, 1), np.float32)


def empty_params(channels: int) -> np.ndarray:
    """Parameters of an empty chain."""
    return np.zeros((0, 2, channels), np.float32)


@njit(inline="always", **JIT)
def apply_chain(v, r, c, codes, params, alpha):  # type: ignore[no-untyped-def]
    """Apply the chain in place to the channel vector ``v`` of interior pixel (r, c)."""
    n = v.shape[0]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for i in range(codes.shape[0]):
        op = codes[i]
        if op == OP_BIAS:
            for k in range(n):
                v[k] = v[k] + params[i, 0, k]
        elif op == OP_SCALE:
            for k in range(n):
                v[k] = v[k] * params[i, 0, k]
        elif op == OP_BATCH_NORM:
            for k in range(n):
                t = params[i, 0, k] * v[k]
                v[k] = t + params[i, 1, k]
        elif op == OP_RELU:
            for k in range(n):
                v[k] = v[k] if v[k] > zero else zero
        elif op == OP_LEAKY_RELU:
            for k in range(n):
                v[k] = v[k] if v[k] > zero else params[i, 0, k] * v[k]
        elif op == OP_PRELU:
            for k in range(n):
                v[k] = v[k] if v[k] > zero else alpha[r, c, k] * v[k]
        elif op == OP_RELU6:
            six = np.float32(6.0)
            for k in range(n):
                x = v[k] if v[k] > zero else zero
                v[k] = x if x < six else six
        elif op == OP_SIGMOID:
            for k in range(n):
                x = v[k]
                if x > zero:
                    v[k] = one / (np.exp(-x) + one)
                else:
                    e = np.exp(x)
                    v[k] = e / (e + one)
        elif op == OP_TANH:
            for k in range(n):
                v[k] = np.tanh(v[k])
        elif op == OP_HARD_SIGMOID:
            for k in range(n):
                x = v[k]
                if x < np.float32(-2.5):
                    v[k] = zero
                elif x > np.float32(2.5):
                    v[k] = one
                else:
                    v[k] = np.float32(0.2) * x + np.float32(0.5)
        elif op == OP_HARD_TANH:
            for k in range(n):
                x = v[k]
                v[k] = -one if x < -one else (one if x > one else x)


@njit(**PJIT)
def chain_copy(x, out, pad, codes, params, alpha):  # type: ignore[no-untyped-def]
    """``out[interior] = chain(x)`` for an un-padded input ``x`` (rows, cols, channels)."""
    rows, cols, chans = x.shape
    for r in prange(rows):
        v = np.empty(chans, np.float32)
        for c in range(cols):
            for k in range(chans):
                v[k] = x[r, c, k]
            apply_chain(v, r, c, codes, params, alpha)
            for k in range(chans):
                out[r + pad, c + pad, k] = v[k]


@njit(**PJIT)
def add_chain(a, b, out, pad, codes, params, alpha):  # type: ignore[no-untyped-def]
    """``out[interior] = chain(a + b)`` (residual connections)."""
    rows, cols, chans = a.shape
    for r in prange(rows):
        v = np.empty(chans, np.float32)
        for c in range(cols):
            for k in range(chans):
                v[k] = a[r, c, k] + b[r, c, k]
            apply_chain(v, r, c, codes, params, alpha)
            for k in range(chans):
                out[r + pad, c + pad, k] = v[k]


@njit(**JIT)
def softmax(x, out, pad):  # type: ignore[no-untyped-def]
    """Softmax over the whole tensor: max, ``exp(x - max)``, sequential sum, divide."""
    rows, cols, chans = x.shape
    m = x[0, 0, 0]
    for r in range(rows):
        for c in range(cols):
            for k in range(chans):
                if x[r, c, k] > m:
                    m = x[r, c, k]
    total = np.float32(0.0)
    for r in range(rows):
        for c in range(cols):
            for k in range(chans):
                e = np.exp(x[r, c, k] - m)
                out[r + pad, c + pad, k] = e
                total += e
    for r in range(rows):
        for c in range(cols):
            for k in range(chans):
                out[r + pad, c + pad, k] = out[r + pad, c + pad, k] / total


@njit(**PJIT)
def fully_connected(x, weights, out_flat):  # type: ignore[no-untyped-def]
    """``out_flat = weights @ x.ravel()`` in float32, one output per row of ``weights``."""
    flat = x.reshape(-1)
    n_out, n_in = weights.shape
    for o in prange(n_out):
        acc = np.float32(0.0)
        for i in range(n_in):
            acc += weights[o, i] * flat[i]
        out_flat[o] = acc
