"""Random-weight networks with the shapes of ELL's gallery d-series, for tests and benchmarks.

``d_series(256, "NCMNBMNBMNBMNBMNBMNC1A")`` builds the headline model's 55 layers exactly as
spec section 5.2 lists them (ELL's importer output): Minus, a float 3x3 conv (16 filters)
with bias, ReLU and batch-norm, a 2x2 max-pool, six binary 3x3 blocks (64, 64, 128, 256,
512, 1024 filters: binary conv, bias, PReLU, 3x3/s2 max-pool, batch-norm), a float 1x1 conv
to 1000 classes with bias, mean pooling, scaling and softmax.

Architecture letters: a leading ``N`` is the input Minus layer; the first ``C`` is the float
stem; each later ``C``/``B`` is a float/binary 3x3 block and the last letter type also makes
the final 1024-filter block (the gallery names list one block fewer than the models have,
spec 5.2); ``N`` elsewhere adds batch-norm after each block; ``C1``/``B1`` is the final 1x1
conv (float/binary); ``A`` mean pooling + scaling; the softmax always ends the network.
"""

from __future__ import annotations

import re

import numpy as np
from edgebnn.engine.layers import (
    ActivationLayer,
    BatchNormalizationLayer,
    BiasLayer,
    BinaryConvolutionalLayer,
    ConvolutionalLayer,
    InputLayer,
    Layer,
    Padding,
    PaddingScheme,
    PoolingLayer,
    ScalingLayer,
    SoftmaxLayer,
)
from edgebnn.engine.network import Network

HEADLINE = "NCMNBMNBMNBMNBMNBMNC1A"
BLOCK_WIDTHS = (64, 64, 128, 256, 512, 1024)
ZEROS, MIN = PaddingScheme.ZEROS, PaddingScheme.MIN


def parse_name(name: str) -> tuple[int, str]:
    """``d_I256x256x3NCMN...`` -> (256, "NCMN..."); also accepts the bare architecture."""
    m = re.fullmatch(r"(?:[a-z0-9_]*_)?I(\d+)x(\d+)x3([A-Z0-9]+)", name)
    if not m:
        raise ValueError(f"not a d-series model name: {name!r}")
    if m.group(1) != m.group(2):
        raise ValueError(f"only square inputs are supported: {name!r}")
    return int(m.group(1)), m.group(3)


def _blocks(architecture: str) -> tuple[bool, list[str], str]:
    """(has batch-norm, block kinds 'C'/'B' after the stem, final 1x1 kind)."""
    m = re.fullmatch(r"(N?)C([NCBM]*?)([CB])1AS?", architecture)
    if not m:
        raise ValueError(
            f"unsupported architecture {architecture!r}: expected e.g. {HEADLINE!r} "
            "(stem C, then C/B blocks with M/N, then C1A or B1A)"
        )
    body = m.group(2)
    kinds = [ch for ch in body if ch in "CB"]
    if kinds:
        kinds.append(kinds[-1])
    kinds = kinds[: len(BLOCK_WIDTHS)]
    return "N" in architecture, kinds, m.group(3)


def d_series(
    input_size: int = 256, architecture: str = HEADLINE, seed: int = 0, name: str | None = None
) -> Network:
    """A d-series network with random (but well-scaled) weights; deterministic per seed."""
    if input_size < 16:
        raise ValueError(f"input_size must be >= 16, got {input_size}")
    rng = np.random.default_rng(seed)
    norm, kinds, final_kind = _blocks(architecture)
    s = input_size
    layers: list[Layer] = []

    def batch_norm(n: int, chans: int, out_pad: Padding) -> None:
        mult = rng.uniform(0.5, 2.0, chans).astype(np.float32)
        mult *= np.where(rng.random(chans) < 0.1, -1, 1).astype(np.float32)
        add = rng.normal(0, 0.5, chans).astype(np.float32)
        layers.append(BatchNormalizationLayer((n, n, chans), multiplication=mult, addition=add))
        layers.append(ScalingLayer((n, n, chans), scales=rng.uniform(0.5, 1.5, chans)))
        shape = (n + 2 * out_pad.size, n + 2 * out_pad.size, chans)
        layers.append(BiasLayer(shape, output_padding=out_pad, bias=rng.normal(0, 0.2, chans)))

    inp = InputLayer((s, s, 3))
    mean = rng.uniform(100, 130, 3).astype(np.float32)
    layers.append(BiasLayer((s + 2, s + 2, 3), output_padding=Padding(ZEROS, 1), bias=-mean))
    # Stem: float 3x3 conv, bias, ReLU, batch-norm, 2x2/s2 max-pool.
    w = rng.normal(0, 1 / np.sqrt(27 * 60.0**2), (16, 3, 3, 3)).astype(np.float32)
    layers.append(ConvolutionalLayer((s, s, 16), Padding(ZEROS, 1), weights=w))
    layers.append(BiasLayer((s, s, 16), bias=rng.normal(0, 0.1, 16)))
    layers.append(ActivationLayer((s, s, 16), function="relu"))
    if norm:
        batch_norm(s, 16, Padding(MIN, 0))
    else:
        layers[-1].output_padding = Padding(MIN, 0)
    n = s // 2
    layers.append(
        PoolingLayer(
            (n + 2, n + 2, 16), Padding(MIN, 0), Padding(ZEROS, 1), function="max", size=2, stride=2
        )
    )
    chans = 16
    for i, kind in enumerate(kinds):
        width = BLOCK_WIDTHS[i]
        last = i == len(kinds) - 1
        if kind == "B":
            weights = rng.normal(0, 1, (width, 3, 3, chans)).astype(np.float32)
            layers.append(
                BinaryConvolutionalLayer.from_real_weights(
                    weights, output_shape=(n, n, width), input_padding=Padding(ZEROS, 1)
                )
            )
            volume = 9 * chans
            layers.append(BiasLayer((n, n, width), bias=rng.normal(0, np.sqrt(volume) / 2, width)))
            alpha = rng.uniform(0.0, 0.5, (n, n, width)).astype(np.float32)
            layers.append(
                ActivationLayer(
                    (n + 2, n + 2, width),
                    output_padding=Padding(MIN, 1),
                    function="prelu",
                    alpha=alpha,
                )
            )
        else:
            weights = rng.normal(0, 1 / np.sqrt(9 * chans), (width, 3, 3, chans)).astype(np.float32)
            layers.append(ConvolutionalLayer((n, n, width), Padding(ZEROS, 1), weights=weights))
            layers.append(BiasLayer((n, n, width), bias=rng.normal(0, 0.1, width)))
            layers.append(
                ActivationLayer(
                    (n + 2, n + 2, width), output_padding=Padding(MIN, 1), function="relu"
                )
            )
        m = (n - 1) // 2 + 1
        out_pad = Padding(ZEROS, 0 if last else 1)
        if norm:
            layers.append(
                PoolingLayer((m, m, width), Padding(MIN, 1), function="max", size=3, stride=2)
            )
            batch_norm(m, width, out_pad)
        else:
            shape = (m + 2 * out_pad.size, m + 2 * out_pad.size, width)
            layers.append(
                PoolingLayer(shape, Padding(MIN, 1), out_pad, function="max", size=3, stride=2)
            )
        n, chans = m, width
    # Head: 1x1 conv to 1000 classes, bias, mean pooling, scaling, softmax.
    if final_kind == "B":
        weights = rng.normal(0, 1, (1000, 1, 1, chans)).astype(np.float32)
        layers.append(
            BinaryConvolutionalLayer.from_real_weights(weights, output_shape=(n, n, 1000))
        )
    else:
        weights = rng.normal(0, 1 / np.sqrt(chans), (1000, 1, 1, chans)).astype(np.float32)
        layers.append(ConvolutionalLayer((n, n, 1000), weights=weights))
    layers.append(BiasLayer((n, n, 1000), bias=rng.normal(0, 0.1, 1000)))
    layers.append(PoolingLayer((1, 1, 1000), function="mean", size=n, stride=1))
    layers.append(
        ScalingLayer((1, 1, 1000), scales=np.full(1000, 0.5 if final_kind == "C" else 0.05))
    )
    layers.append(SoftmaxLayer((1, 1, 1000)))
    label = name or f"d_I{s}x{s}x3{architecture}"
    return Network(inp, layers, name=label, metadata={"random_seed": seed})
