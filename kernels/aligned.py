"""Cache-line-aligned arrays for the tensors and constants kernels stream through.

NumPy aligns large arrays to 16 bytes only. A 32- or 64-byte vector load or store from such
an array spans two cache lines every other (or every) time: EfficientNet's 7x7 depthwise
layers took 1.7x as long misaligned, and the d-series frame varied by ~25% between
processes depending on where its buffers happened to land. Plans allocate with these.
"""

from __future__ import annotations

import numpy as np

#: Byte alignment: a cache line, so that no full-width (64-byte) load or store spans two.
ALIGN = 64


def aligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` whose data starts on an :data:`ALIGN`-byte boundary."""
    buf = np.empty(a.nbytes + ALIGN, np.uint8)
    start = -buf.ctypes.data % ALIGN
    out = buf[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def is_aligned(a: np.ndarray) -> bool:
    """True if ``a``'s data starts on an :data:`ALIGN`-byte boundary."""
    return a.ctypes.data % ALIGN == 0
