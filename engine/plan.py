"""Plan once, run many: buffers, fused steps and kernels chosen per layer at build time.

The plan walks the layers in order and groups each *producer* (input, convolution, binary
convolution, pooling, fully connected, softmax, add) with the run of element-wise layers
that follows it (bias, scaling, batch-norm, activations); the group becomes one kernel
call whose epilogue applies the run op by op, each op rounded to float32 as its own ELL
layer would be. A group whose only consumer is a binary convolution and that is a pooling
(or nothing) followed by monotone per-channel ops does not write floats at all: it writes
the convolution's packed sign bits through exact thresholds (:mod:`.thresholds`).

Every buffer is allocated and its padding ring filled once; ``run`` allocates nothing.
"""

from __future__ import annotations

import numpy as np
from edgebnn.engine.count_thresholds import count_test
from edgebnn.engine.frame import FrameRunner
from edgebnn.engine.layers import (
    ActivationLayer,
    AddLayer,
    BinaryConvolutionalLayer,
    ConvolutionalLayer,
    FullyConnectedLayer,
    InputLayer,
    Layer,
    PaddingScheme,
    PoolingLayer,
    ScalingLayer,
    SoftmaxLayer,
    filled_tensor,
)
from edgebnn.engine.steps import Step, encode_chain
from edgebnn.engine.steps_mobile import MobilePlanning
from edgebnn.engine.thresholds import chain_thresholds, interval_bounds, is_monotone
from edgebnn.kernels import (
    binary,
    binary_pool,
    conv,
    conv_blocked,
    dense,
    elementwise,
    pool,
    softmax,
)
from edgebnn.kernels.aligned import aligned
from edgebnn.kernels.threads import numba_threads

#: Binary conv blocks with fewer output rows keep separate conv and pooling steps (measured
#: here: fusing every d-series block that feeds a binary conv, down to 8x8, saves ~7%).
BAND_MIN_ROWS = 8


def _bands() -> int:
    """Row bands of a fused binary block: one per core Numba may use (each band recomputes
    the rows it shares with the next, so more bands than threads only costs)."""
    return max(1, numba_threads())


def _fusable_into_chain(layer: Layer, chain: list[Layer]) -> bool:
    """Element-wise, and at most one PReLU (one alpha tensor) per chain."""
    if not layer.elementwise or isinstance(layer, AddLayer):
        return False
    if isinstance(layer, ActivationLayer) and layer.function == "prelu":
        return not any(isinstance(x, ActivationLayer) and x.function == "prelu" for x in chain)
    return True


class Plan(MobilePlanning):
    """The compiled form of a :class:`~edgebnn.engine.network.Network`."""

    def __init__(self, network) -> None:
        self.network = network
        self.nodes: list[Layer] = [network.input_layer, *network.layers]
        self.inputs: list[tuple[int, ...]] = network.node_inputs
        n = len(self.nodes)
        self.consumers: list[list[int]] = [[] for _ in range(n)]
        for node, producers in enumerate(self.inputs):
            for p in producers:
                self.consumers[p].append(node)
        self.buffers: dict[int, np.ndarray] = {}
        self.bit_buffers: dict[int, np.ndarray] = {}  # binary conv node -> its input bits
        self.steps: list[Step] = []
        self._input_view: np.ndarray | None = None
        self._frames: FrameRunner | None = None
        self._build()
        self.output = self.buffers[n - 1]

    # -- buffers -------------------------------------------------------------------
    def _ring_fill(self, node: int) -> PaddingScheme | float:
        """The value the node's ring holds: its scheme, or the max-pool override."""
        layer = self.nodes[node]
        override = self.network.maxpool_ring_value
        if (
            override is not None
            and layer.output_padding.scheme == PaddingScheme.MIN
            and any(
                isinstance(self.nodes[c], PoolingLayer) and self.nodes[c].function == "max"
                for c in self.consumers[node]
            )
        ):
            return float(override)
        return layer.output_padding.scheme

    def _filled(self, node: int) -> np.ndarray:
        """A new ring-filled output tensor for ``node``, cache-line aligned."""
        layer = self.nodes[node]
        fill = self._ring_fill(node)
        if isinstance(fill, float):
            return aligned(np.full(layer.output_shape, fill, np.float32))
        return aligned(filled_tensor(layer.output_shape, fill))

    def buffer(self, node: int) -> np.ndarray:
        """The float output tensor of ``node`` (allocated and ring-filled once)."""
        if node not in self.buffers:
            self.buffers[node] = self._filled(node)
        return self.buffers[node]

    # -- planning ------------------------------------------------------------------
    def _chain_after(self, node: int) -> list[int]:
        """Element-wise nodes that follow ``node`` and can be fused as its epilogue."""
        chain: list[int] = []
        last = node
        while True:
            nxt = last + 1
            if nxt >= len(self.nodes) or self.consumers[last] != [nxt]:
                return chain
            if self.inputs[nxt] != (last,):
                return chain
            if not _fusable_into_chain(self.nodes[nxt], [self.nodes[i] for i in chain]):
                return chain
            chain.append(nxt)
            last = nxt

    def _build(self) -> None:
        node = 0
        n = len(self.nodes)
        while node < n:
            chain = self._chain_after(node)
            last = chain[-1] if chain else node
            consumers = self.consumers[last]
            if (
                len(consumers) == 1
                and isinstance(self.nodes[consumers[0]], BinaryConvolutionalLayer)
                and self._try_bits_step(node, chain, consumers[0])
            ):
                node = last + 1
                continue
            fused_to = self._try_conv_pool_bits_step(node, chain)
            if fused_to is None:
                fused_to = self._try_binary_pool_bits_step(node, chain)
            if fused_to is None:
                fused_to = self._try_mbconv_step(node, chain)
            if fused_to is not None:
                node = fused_to + 1
                continue
            self._float_step(node, chain)
            node = last + 1

    def _input_of(self, node: int, k: int = 0) -> np.ndarray:
        return self.buffer(self.inputs[node][k])

    def _float_step(self, node: int, chain: list[int]) -> None:
        """One producer plus its element-wise epilogue, writing floats."""
        layer = self.nodes[node]
        last = chain[-1] if chain else node
        out = self.buffer(last)
        pad = self.nodes[last].output_padding.size
        chans = layer.interior_shape[2]
        chain_layers = [self.nodes[i] for i in chain]
        nodes = (node, *chain)
        label = self._label(nodes)

        if isinstance(layer, InputLayer):
            # InputLayer computes data * scale; a scale of 1 is exact identity.
            pre = (
                []
                if layer.scale == 1.0
                else [ScalingLayer(layer.interior_shape, scales=np.full(chans, layer.scale))]
            )
            codes, params, alpha = encode_chain(pre + chain_layers, chans, layer.interior_shape[1])
            self._input_view = aligned(np.zeros(layer.input_shape, np.float32))
            args = (self._input_view, out, pad, codes, params, alpha)
            self.steps.append(Step(nodes, label, elementwise.chain_copy, args))
            return
        if layer.elementwise:
            # An element-wise layer whose producer could not take it as an epilogue.
            codes, params, alpha = encode_chain(
                [layer, *chain_layers], chans, layer.interior_shape[1]
            )
            args = (self._input_of(node), out, pad, codes, params, alpha)
            self.steps.append(Step(nodes, label, elementwise.chain_copy, args))
            return
        codes, params, alpha = encode_chain(chain_layers, chans, layer.interior_shape[1])
        rows, cols, _ = layer.interior_shape
        if isinstance(layer, ConvolutionalLayer):
            x = self._input_of(node)
            # Depthwise and (for BLAS-pointwise networks) GEMM-shaped convolutions.
            mobile = self._mobile_conv(layer, x, rows, cols, out, pad, codes, params, alpha)
            if mobile is not None:
                self.steps.append(Step(nodes, label, *mobile))
            else:
                w = aligned(conv.conv_weights_layout(layer.weights))
                # Few filters and long rows: vectorise along columns instead of filters.
                few = layer.weights.shape[0] <= 32 and cols >= 32
                kernel = conv_blocked.conv2d_columns_chain if few else conv.conv2d_chain
                args = (x, w, layer.stride, rows, cols, out, pad, codes, params, alpha)
                self.steps.append(Step(nodes, label, kernel, args))
        elif isinstance(layer, BinaryConvolutionalLayer):
            self._binary_conv_step(node, nodes, label, out, pad, codes, params, alpha)
        elif isinstance(layer, PoolingLayer):
            x = self._input_of(node)
            args = (
                x,
                layer.function == "max",
                layer.size,
                layer.stride,
                rows,
                cols,
                out,
                pad,
                codes,
                params,
                alpha,
            )
            self.steps.append(Step(nodes, label, pool.pool_chain, args))
        elif isinstance(layer, AddLayer):
            a, b = self._input_of(node, 0), self._input_of(node, 1)
            args = (a, b, out, pad, codes, params, alpha)
            self.steps.append(Step(nodes, label, elementwise.add_chain, args))
        elif isinstance(layer, FullyConnectedLayer):
            x = self._input_of(node)
            if pad == 0 and not chain:
                flat = out.reshape(-1)
            else:
                flat = np.zeros(int(np.prod(layer.interior_shape)), np.float32)
            self.steps.append(
                Step((node,), "FullyConnected", dense.fully_connected, (x, layer.weights, flat))
            )
            if pad or chain:
                shaped = flat.reshape(layer.interior_shape)
                args = (shaped, out, pad, codes, params, alpha)
                self.steps.append(Step(tuple(chain), label, elementwise.chain_copy, args))
        elif isinstance(layer, SoftmaxLayer):
            x = self._input_of(node)
            if chain:
                tmp = np.zeros(layer.interior_shape, np.float32)
                self.steps.append(Step((node,), "Softmax", softmax.softmax, (x, tmp, 0)))
                self.steps.append(
                    Step(
                        tuple(chain),
                        label,
                        elementwise.chain_copy,
                        (tmp, out, pad, codes, params, alpha),
                    )
                )
            else:
                self.steps.append(Step((node,), "Softmax", softmax.softmax, (x, out, pad)))
        else:
            raise TypeError(f"no kernel for {type(layer).__name__}")

    def _filled_shape(self, node: int) -> tuple[int, ...]:
        """The (ring-included) shape of ``node``'s input tensor, without allocating it."""
        return self.nodes[self.inputs[node][0]].output_shape

    def _bits_for(self, conv_node: int) -> np.ndarray:
        """The packed input bits of a binary conv, ring bits set from the ring's values."""
        if conv_node not in self.bit_buffers:
            producer = self.inputs[conv_node][0]
            ring = self._filled(producer)
            words = binary.words_for(ring.shape[2])
            bits = aligned(np.zeros((*ring.shape[:2], words), np.uint64))
            binary.sign_pack(ring, bits)
            self.bit_buffers[conv_node] = bits
        return self.bit_buffers[conv_node]

    def _try_bits_step(self, node: int, chain: list[int], conv_node: int) -> bool:
        """Fuse pooling (or nothing) + monotone chain + sign into the conv's input bits."""
        layer = self.nodes[node]
        chain_layers = [self.nodes[i] for i in chain]
        if not all(is_monotone(x) for x in chain_layers):
            return False
        if isinstance(layer, PoolingLayer):
            pooled, x, chans = True, self._input_of(node), layer.output_shape[2]
            rows, cols, _ = layer.interior_shape
            ops = chain_layers
        elif (
            layer.elementwise
            and is_monotone(layer)
            and self.nodes[self.inputs[node][0]].output_padding.size == 0
        ):
            pooled, x, chans = False, self._input_of(node), layer.output_shape[2]
            rows, cols, _ = layer.interior_shape
            ops = [layer, *chain_layers]
        else:
            return False
        last = chain[-1] if chain else node
        thresholds, modes, specials = chain_thresholds(ops, chans)
        lo, hi, specials = (aligned(a) for a in (*interval_bounds(thresholds, modes), specials))
        bits = self._bits_for(conv_node)
        pad = self.nodes[last].output_padding.size
        size = layer.size if pooled else 1
        stride = layer.stride if pooled else 1
        is_max = layer.function == "max" if pooled else True
        args = (x, pooled, is_max, size, stride, rows, cols, lo, hi, specials, bits, pad)
        nodes = (node, *chain)
        label = self._label(nodes, "+Sign")
        self.steps.append(Step(nodes, label, pool.pool_to_bits, args))
        return True

    def _try_conv_pool_bits_step(self, node: int, chain: list[int]) -> int | None:
        """Fuse conv + monotone chain + max-pool + sign when a binary conv reads the pool.

        The d-series stem: only the binary conv's bits are ever needed, so the 256x256x16
        float tensor is never written. Returns the pool node, or None when not applicable.
        """
        layer = self.nodes[node]
        last = chain[-1] if chain else node
        if not isinstance(layer, ConvolutionalLayer) or len(self.consumers[last]) != 1:
            return None
        x = self._input_of(node)
        rows, cols, filters = layer.interior_shape
        if layer.is_depthwise(x.shape[2]) or filters > 32 or cols < 32:
            return None
        chain_layers = [self.nodes[i] for i in chain]
        if self.nodes[last].output_padding.size or not all(is_monotone(c) for c in chain_layers):
            return None
        pool_node = self.consumers[last][0]
        pool_layer = self.nodes[pool_node]
        if (
            not isinstance(pool_layer, PoolingLayer)
            or pool_layer.function != "max"
            or self.inputs[pool_node] != (last,)
            or self._chain_after(pool_node)
            or len(self.consumers[pool_node]) != 1
            or not isinstance(self.nodes[self.consumers[pool_node][0]], BinaryConvolutionalLayer)
        ):
            return None
        thresholds, modes, specials = chain_thresholds(chain_layers, filters)
        lo, hi, specials = (aligned(a) for a in (*interval_bounds(thresholds, modes), specials))
        conv_node = self.consumers[pool_node][0]
        bits = self._bits_for(conv_node)
        p_rows, p_cols, _ = pool_layer.interior_shape
        w = aligned(conv.conv_weights_layout(layer.weights))
        args = (
            x,
            w,
            layer.stride,
            rows,
            cols,
            pool_layer.size,
            pool_layer.stride,
            p_rows,
            p_cols,
            lo,
            hi,
            specials,
            bits,
            pool_layer.output_padding.size,
        )
        nodes = (node, *chain, pool_node)
        label = self._label(nodes, "+Sign")
        self.steps.append(Step(nodes, label, conv_blocked.conv2d_columns_pool_bits, args))
        return pool_node

    def _binary_conv_args(self, node: int) -> tuple:
        """The binary convolution's inputs, bits to scale: (bits, chans, ..., use_scale).

        Adds a sign-packing step first when the producer writes floats.
        """
        layer: BinaryConvolutionalLayer = self.nodes[node]  # type: ignore[assignment]
        producer = self.inputs[node][0]
        if node not in self.bit_buffers:
            # The producer wrote floats: binarise its whole tensor (ring included) first.
            bits = self._bits_for(node)
            self.steps.append(Step((), "Sign", binary.sign_pack, (self.buffer(producer), bits)))
        bits = self.bit_buffers[node]
        r_in, c_in, chans = self.nodes[producer].output_shape
        rows, cols, _ = layer.interior_shape
        k = layer.receptive_field
        mask_pad = layer.input_padding.size if layer.masks_padding() else 0
        geometry = (r_in, c_in, chans, k, layer.stride, rows, cols, mask_pad)
        windows = binary.row_windows(chans, k)
        if windows:
            masks, nvalid = binary.window_masks(*geometry)
            wt = binary.window_weights_layout(layer.weights_bits, chans, k)
        else:
            masks, nvalid = binary.patch_masks(*geometry)
            wt = binary.binary_weights_layout(layer.weights_bits)
        use_scale = layer.weights_scale == 1
        masks, nvalid, wt, means = (aligned(a) for a in (masks, nvalid, wt, layer.filter_means))
        return (bits, chans, k, layer.stride, masks, nvalid, wt, means, use_scale, windows)

    def _binary_conv_step(self, node, nodes, label, out, pad, codes, params, alpha) -> None:
        rows, cols, _ = self.nodes[node].interior_shape
        args = (*self._binary_conv_args(node), rows, cols, out, pad, codes, params, alpha)
        self.steps.append(Step(nodes, label, binary.binary_conv_chain, args))

    def _try_binary_pool_bits_step(self, node: int, chain: list[int]) -> int | None:
        """Fuse a binary conv block (conv, chain, max-pool, monotone chain, sign) into one
        step when the next binary conv reads it; returns its last node, or None.

        Only for layers of at least :data:`BAND_MIN_ROWS` output rows: each thread's band
        recomputes the rows it shares with the next, which costs more than it saves on the
        smallest maps.
        """
        layer = self.nodes[node]
        last = chain[-1] if chain else node
        if not isinstance(layer, BinaryConvolutionalLayer) or len(self.consumers[last]) != 1:
            return None
        rows, cols, filters = layer.interior_shape
        pool_node = self.consumers[last][0]
        pool_layer = self.nodes[pool_node]
        if (
            rows < BAND_MIN_ROWS
            or not isinstance(pool_layer, PoolingLayer)
            or pool_layer.function != "max"
            or self.inputs[pool_node] != (last,)
        ):
            return None
        post = self._chain_after(pool_node)
        post_layers = [self.nodes[i] for i in post]
        end = post[-1] if post else pool_node
        if not all(is_monotone(x) for x in post_layers) or len(self.consumers[end]) != 1:
            return None
        next_conv = self.consumers[end][0]
        if not isinstance(self.nodes[next_conv], BinaryConvolutionalLayer):
            return None
        pre_layers = [self.nodes[i] for i in chain]
        thresholds, modes, specials = chain_thresholds(post_layers, filters)
        conv_args = self._binary_conv_args(node)
        ring = self._filled(last)
        bits = self._bits_for(next_conv)
        p_rows, p_cols, _ = pool_layer.interior_shape
        pool = (pool_layer.size, pool_layer.stride, p_rows, p_cols)
        out = (bits, self.nodes[end].output_padding.size, _bands())
        nodes = (node, *chain, pool_node, *post)
        label = self._label(nodes, "+Sign")
        (bits_in, chans, k, stride, masks, nvalid, wt, means, use_scale, windows) = conv_args
        unpadded = all(self.nodes[i].output_padding.size == 0 for i in (node, *chain[:-1]))
        test = (
            count_test(
                pre_layers,
                thresholds,
                modes,
                nvalid,
                means if use_scale else None,
                (rows, cols, filters),
                ring,
            )
            if unpadded
            else None
        )
        if test is not None:  # integers only
            limits = aligned(test.limits)
            args = (
                bits_in,
                chans,
                k,
                stride,
                masks,
                wt,
                windows,
                rows,
                cols,
                limits,
                aligned(test.ring_words),
                test.flip,
                test.keep,
                test.force,
                *pool,
                *out,
            )
            self.steps.append(Step(nodes, label, binary_pool.binary_conv_pool_counts, args))
            return end
        codes, params, alpha = encode_chain(pre_layers, filters, cols)
        lo, hi, specials = (aligned(a) for a in (*interval_bounds(thresholds, modes), specials))
        args = (*conv_args, rows, cols, codes, params, alpha, ring, *pool, lo, hi, specials, *out)
        self.steps.append(Step(nodes, label, binary_pool.binary_conv_pool_bits, args))
        return end

    def _label(self, nodes: tuple[int, ...], suffix: str = "") -> str:
        """A step's name: its layer types joined by '+' (e.g. Pooling+BatchNormalization)."""
        return "+".join(type(self.nodes[i]).__name__.replace("Layer", "") for i in nodes) + suffix

    # -- running -------------------------------------------------------------------
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run every step on ``x`` (input shape, float32); returns the output buffer.

        A C-contiguous float32 ``x`` goes straight to the first step (the input layer's,
        which reads it into its ringed buffer); anything else is copied in first. The steps
        run as one parallel region per frame where their kernels allow (:mod:`.frame`).
        """
        assert self._input_view is not None and self.steps[0].args[0] is self._input_view
        if self._frames is None:
            self._frames = FrameRunner(self.steps)
        if x.dtype == np.float32 and x.flags.c_contiguous and x.shape == self._input_view.shape:
            self._frames.run(x)
        else:
            self._input_view[...] = x
            self._frames.run()
        return self.output

    def describe(self) -> str:
        """The steps, one per line (what was fused with what)."""
        return "\n".join(
            f"{i:3d} {s.label} nodes={list(s.nodes)}" for i, s in enumerate(self.steps)
        )
