"""Plain NumPy references for every kernel family: slow, obviously correct, ELL's order.

Each function takes the *full* input tensor (padding ring included, float32, rows x cols x
channels) and returns the interior of the output, as ELL's reference predictor computes it
(spec section 4). All arithmetic is float32, one rounding per ELL operation; the exceptions
are the real-valued convolutions, whose summation order is BLAS-dependent in ELL too.
"""

from __future__ import annotations

import numpy as np

FLT_MAX = np.float32(np.finfo(np.float32).max)


def _ftype(x: np.ndarray) -> type:
    """float64 for float64 inputs (an information-only reference), else float32."""
    return np.float64 if x.dtype == np.float64 else np.float32


def bias_ref(x: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``x + bias[k]``."""
    ft = _ftype(x)
    return (x + bias).astype(ft)


def scale_ref(x: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``x * scales[k]``."""
    ft = _ftype(x)
    return (x * scales).astype(ft)


def batch_norm_ref(x: np.ndarray, mult: np.ndarray, add: np.ndarray) -> np.ndarray:
    """``mult[k] * x + add[k]``, rounded after the product and after the sum (no FMA)."""
    ft = _ftype(x)
    prod = (x * mult.astype(ft)).astype(ft)
    return (prod + add).astype(ft)


def activation_ref(
    x: np.ndarray, function: str, alpha: np.ndarray | None = None, leaky_factor: float = 0.1
) -> np.ndarray:
    """ELL's activation functions (spec 4.5); PReLU's ``alpha`` has the input's shape."""
    ft = _ftype(x)
    x = x.astype(ft)
    if function == "relu":
        return np.where(x > 0, x, ft(0)).astype(ft)
    if function == "relu6":
        return np.minimum(np.where(x > 0, x, ft(0)), ft(6)).astype(ft)
    if function == "leaky_relu":
        return np.where(x > 0, x, ft(leaky_factor) * x).astype(ft)
    if function == "prelu":
        assert alpha is not None
        return np.where(x > 0, x, alpha * x).astype(ft)
    if function == "sigmoid":
        with np.errstate(over="ignore"):
            pos = ft(1) / (np.exp(-x) + ft(1))
            e = np.exp(x)
            neg = e / (e + ft(1))
        return np.where(x > 0, pos, neg).astype(ft)
    if function == "tanh":
        return np.tanh(x).astype(ft)
    if function == "hard_sigmoid":
        mid = ft(0.2) * x + ft(0.5)
        return np.where(x < -2.5, ft(0), np.where(x > 2.5, ft(1), mid)).astype(ft)
    if function == "hard_tanh":
        return np.clip(x, ft(-1), ft(1)).astype(ft)
    raise ValueError(f"unknown activation {function!r}")


def _windows(x: np.ndarray, i: int, j: int, stride: int, rows: int, cols: int) -> np.ndarray:
    """The input values under kernel tap (i, j) for every output pixel: (rows, cols, K)."""
    return x[i : i + stride * (rows - 1) + 1 : stride, j : j + stride * (cols - 1) + 1 : stride, :]


def conv2d_ref(x: np.ndarray, weights: np.ndarray, stride: int, rows: int, cols: int) -> np.ndarray:
    """Cross-correlation over the padded input; ``weights`` is (F, k, k, C) or depthwise (F, k, k, 1).

    Terms are added one at a time in (kernel row, kernel column, channel) order, each
    product and each sum rounded to float32 (ELL's ``simple`` method order; its BLAS-based
    methods differ by rounding only). The Numba kernels follow the same order.
    """
    ft = _ftype(x)
    filters, k, _, wch = weights.shape
    depthwise = wch == 1 and x.shape[2] > 1
    out = np.zeros((rows, cols, filters), ft)
    for i in range(k):
        for j in range(k):
            patch = _windows(x, i, j, stride, rows, cols)
            if depthwise:
                out = (out + (patch * weights[:, i, j, 0]).astype(ft)).astype(ft)
                continue
            for ch in range(patch.shape[2]):
                prod = (patch[:, :, ch : ch + 1] * weights[:, i, j, ch]).astype(ft)
                out = (out + prod).astype(ft)
    return out


def pack_filter_bits(weights: np.ndarray) -> np.ndarray:
    """ELL's binarized weights: (F, k, k, C) reals -> (F, blocks) uint64, bit set iff w > 0."""
    filters = weights.shape[0]
    volume = weights[0].size
    blocks = -(-volume // 64)
    signs = (weights.reshape(filters, volume) > 0).astype(np.uint64)
    padded = np.zeros((filters, blocks * 64), np.uint64)
    padded[:, :volume] = signs
    shifts = np.arange(64, dtype=np.uint64)
    return (padded.reshape(filters, blocks, 64) << shifts).sum(axis=2, dtype=np.uint64)


def unpack_filter_signs(bits: np.ndarray, volume: int) -> np.ndarray:
    """The ±1 weights (F, volume) int32 encoded by ELL's uint64 blocks."""
    shifts = np.arange(64, dtype=np.uint64)
    unpacked = ((bits[:, :, None] >> shifts) & np.uint64(1)).reshape(bits.shape[0], -1)
    return np.where(unpacked[:, :volume] == 1, 1, -1).astype(np.int32)


def binary_conv2d_ref(
    x: np.ndarray,
    bits: np.ndarray,
    k: int,
    stride: int,
    rows: int,
    cols: int,
    mask_padding: int = 0,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """XNOR convolution (spec 4.7): ``scale_f * sum sign(w) sign(x)`` over the window.

    sign is +1 iff the value is > 0. With ``mask_padding = P > 0`` the ring of width P
    contributes 0 whatever it holds (ELL's zero-padding mask).
    """
    ft = _ftype(x)
    r_in, c_in, channels = x.shape
    volume = k * k * channels
    w = unpack_filter_signs(bits, volume)  # (F, volume)
    xs = np.where(x > 0, 1, -1).astype(np.int32)
    if mask_padding:
        p = mask_padding
        valid = np.zeros((r_in, c_in, 1), np.int32)
        valid[p : r_in - p, p : c_in - p] = 1
        xs = xs * valid
    taps = [_windows(xs, i, j, stride, rows, cols) for i in range(k) for j in range(k)]
    patches = np.concatenate(taps, axis=2).reshape(rows * cols, volume)
    dot = (patches.astype(np.int64) @ w.T.astype(np.int64)).reshape(rows, cols, -1)
    out = dot.astype(ft)
    if scale is not None:
        out = (out * scale).astype(ft)
    return out


def pool_ref(
    x: np.ndarray, function: str, size: int, stride: int, rows: int, cols: int
) -> np.ndarray:
    """Max or mean pooling; windows start at padded (0, 0); cells past the tensor count as
    −FLT_MAX (max) or 0 (mean); mean divides by size² in window order (spec 4.8)."""
    ft = _ftype(x)
    r_in, c_in, channels = x.shape
    fill = -FLT_MAX if function == "max" else ft(0)
    need_r = stride * (rows - 1) + size
    need_c = stride * (cols - 1) + size
    big = np.full((max(need_r, r_in), max(need_c, c_in), channels), fill, ft)
    big[:r_in, :c_in] = x
    if function == "max":
        acc = np.full((rows, cols, channels), -FLT_MAX, ft)
        for i in range(size):
            for j in range(size):
                v = _windows(big, i, j, stride, rows, cols)
                acc = np.where(v > acc, v, acc)  # C++ std::max(acc, v): NaN never wins
        return acc
    acc = np.zeros((rows, cols, channels), ft)
    with np.errstate(over="ignore", invalid="ignore"):  # a -FLT_MAX ring may overflow
        for i in range(size):
            for j in range(size):
                acc = (acc + _windows(big, i, j, stride, rows, cols)).astype(ft)
    return (acc / ft(size * size)).astype(ft)


def fully_connected_ref(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``W @ x.ravel()`` over the full input (ring included): float32 products summed one
    at a time in input order (as the Numba kernel does)."""
    ft = _ftype(x)
    prods = (weights * x.reshape(-1).astype(ft)).astype(ft)
    return np.cumsum(prods, axis=1, dtype=ft)[:, -1].copy()


def softmax_ref(x: np.ndarray) -> np.ndarray:
    """Softmax over the whole tensor; the sum runs sequentially in (r, c, k) order."""
    ft = _ftype(x)
    flat = x.reshape(-1).astype(ft)
    e = np.exp(flat - flat.max()).astype(ft)
    total = np.cumsum(e, dtype=ft)[-1]
    return (e / total).astype(ft).reshape(x.shape)


def sign_bits_ref(x: np.ndarray) -> np.ndarray:
    """Channel-packed activation bits: (R, C, ceil(K/64)) uint64, bit set iff x > 0."""
    r, c, k = x.shape
    words = -(-k // 64)
    padded = np.zeros((r, c, words * 64), np.uint64)
    padded[:, :, :k] = x > 0
    shifts = np.arange(64, dtype=np.uint64)
    return (padded.reshape(r, c, words, 64) << shifts).sum(axis=3, dtype=np.uint64)
