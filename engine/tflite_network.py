"""A TFLite model (float ops and Larq Compute Engine's binary ops) run by edgebnn's kernels.

``TfliteNetwork`` has the same user-facing interface as :class:`~edgebnn.engine.network.
Network` (``forward``, ``classify``, ``preprocess``, ``warmup``, ``labels``, ...), so the
daemon and the CLI take either. Operators run in the file's order; every tensor's shape is
known when the model is loaded, and buffers are allocated once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from edgebnn.engine import tflite_bconv, tflite_ops, tflite_tensor_ops
from edgebnn.engine.errors import ModelError
from edgebnn.engine.frame import Region, step_task_form
from edgebnn.engine.network import Prediction, Preprocessing, imagenet_labels
from edgebnn.engine.tflite_context import Context, KernelRun
from edgebnn.engine.tflite_graph import Graph, Operator
from edgebnn.kernels.placement import PLACEMENT

#: Operator name -> step builder.
BUILDERS: dict[str, Callable] = {
    "LceQuantize": tflite_ops.build_lce_quantize,
    "LceDequantize": tflite_ops.build_lce_dequantize,
    "LceBconv2d": tflite_bconv.plan_bconv,
    "LceBMaxPool2d": tflite_ops.build_lce_bmaxpool,
    "CONV_2D": tflite_ops.build_conv_2d,
    "DEPTHWISE_CONV_2D": tflite_ops.build_depthwise_conv_2d,
    "MAX_POOL_2D": tflite_ops.build_max_pool_2d,
    "AVERAGE_POOL_2D": tflite_ops.build_average_pool_2d,
    "ADD": tflite_tensor_ops.build_add,
    "SUB": tflite_tensor_ops.build_sub,
    "MUL": tflite_tensor_ops.build_mul,
    "FULLY_CONNECTED": tflite_tensor_ops.build_fully_connected,
    "SOFTMAX": tflite_tensor_ops.build_softmax,
    "CONCATENATION": tflite_tensor_ops.build_concatenation,
    "MEAN": tflite_tensor_ops.build_mean,
    "PAD": tflite_tensor_ops.build_pad,
    "PADV2": tflite_tensor_ops.build_padv2,
    "RESHAPE": tflite_tensor_ops.build_reshape,
    "STRIDED_SLICE": tflite_tensor_ops.build_strided_slice,
    "LOGISTIC": tflite_tensor_ops.build_logistic,
    "RELU": tflite_tensor_ops.build_relu,
    "RELU6": tflite_tensor_ops.build_relu6,
    "TANH": tflite_tensor_ops.build_tanh,
}

#: Larq Zoo's ImageNet preprocessing (``larq_zoo.preprocess_input``): RGB, centre crop of
#: 224/256 of the short side, ImageNet mean and standard deviation in 0..255 units.
LARQ_ZOO_PREPROCESSING = Preprocessing(
    channel_order="rgb",
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
    crop_fraction=0.875,
)

#: Tensor types a model may compute with (int32 only for bit-packed tensors and constants).
FLOAT_TYPES = ("float32",)


@dataclass(frozen=True)
class Step:
    """One operator ready to run."""

    index: int
    name: str
    run: Callable[[list], None]
    output_shape: tuple[int, ...]
    bits: bool = False
    fused_into: int | None = None  # computed by the step of this operator index


def _computed_earlier(values: list) -> None:
    """The run of an operator that an earlier step computes (see ``Step.fused_into``)."""


def frame_groups(steps: list[Step], buffers: dict[int, np.ndarray]) -> list:
    """The steps as a frame runs them: runs of consecutive kernel steps that have a task
    form become one parallel region each (one thread wake-up for all of them, tasks
    claimed, see :mod:`edgebnn.engine.frame`); the others are called one by one."""
    groups: list = []
    run: list[SimpleNamespace] = []
    for step in steps:
        if step.fused_into is not None:
            continue
        task = None
        if isinstance(step.run, KernelRun) and (args := step.run.bind(buffers)) is not None:
            task = SimpleNamespace(kernel=step.run.kernel, args=args)
        if task is not None and step_task_form(task) is not None:
            run.append(task)
            continue
        if run:
            groups.append(Region(run))
            run = []
        groups.append(step.run)
    if run:
        groups.append(Region(run))
    return groups


def supported_operators() -> list[str]:
    """Names of the operators edgebnn runs."""
    return sorted(BUILDERS)


class TfliteNetwork:
    """A ``.tflite`` model planned for edgebnn's kernels."""

    def __init__(
        self,
        graph: Graph,
        *,
        name: str | None = None,
        labels: list[str] | None = None,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        self.graph = graph
        self.name = name or Path(graph.path).name
        self.source_sha256 = graph.sha256
        self.preprocessing = preprocessing or LARQ_ZOO_PREPROCESSING
        self.metadata = {"format": "tflite", "description": graph.description}
        self._check_io()
        self.steps = self._plan()
        out = int(np.prod(self.output_shape))
        if labels is None:
            labels = list(imagenet_labels()) if out == 1000 else [f"class {i}" for i in range(out)]
        if len(labels) != out:
            raise ModelError(f"{len(labels)} labels for {out} outputs", path=graph.path)
        self.labels = list(labels)

    # -- structure -------------------------------------------------------------------------
    def _check_io(self) -> None:
        g = self.graph
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise ModelError(
                f"needs one input and one output, has {len(g.inputs)} and {len(g.outputs)}",
                path=g.path,
            )
        for t in g.tensors:
            if t.quantized or t.type_name in ("int8", "uint8", "int16"):
                raise ModelError(
                    f"tensor {t.name!r} is {t.type_name}-quantized: edgebnn runs float32 and "
                    "Larq binary models (convert without integer quantization)",
                    path=g.path,
                )
        src = g.tensors[g.inputs[0]]
        if src.type_name not in FLOAT_TYPES or len(src.shape) < 2 or src.shape[0] != 1:
            raise ModelError(f"input {src.name!r} must be float32 with batch 1, got "
                             f"{src.type_name} {list(src.shape)}", path=g.path)  # fmt: skip
        if g.tensors[g.outputs[0]].type_name not in FLOAT_TYPES:
            raise ModelError("the output must be float32", path=g.path)
        self.input_shape: tuple[int, ...] = tuple(src.shape[1:])

    def _plan(self) -> list[Step]:
        g = self.graph
        ctx = Context(g)
        ctx.shapes[g.inputs[0]] = self.input_shape
        ctx.buffers[g.inputs[0]] = np.zeros(self.input_shape, np.float32)
        steps = []
        for op in g.operators:
            builder = BUILDERS.get(op.name)
            if builder is None:
                raise ModelError(
                    f"operator {op.name} is not supported (supported: "
                    f"{', '.join(supported_operators())})",
                    path=g.path, layer=op.index, layer_type=op.name,
                )  # fmt: skip
            self._check_operands(op)
            fused_into = ctx.fused.get(op.index)
            run = _computed_earlier if fused_into is not None else builder(ctx, op)
            shape = ctx.shapes[op.outputs[0]]
            if op.outputs[0] in ctx.packed:  # shown as (rows, cols, channels) of bits
                shape = (*shape[:-1], ctx.packed[op.outputs[0]])
            bits = op.outputs[0] in ctx.packed
            steps.append(Step(op.index, op.name, run, shape, bits, fused_into))
        out = g.outputs[0]
        if out not in ctx.shapes:
            raise ModelError("no operator computes the output", path=g.path)
        self.output_shape: tuple[int, ...] = ctx.shapes[out]
        self._output = out
        self._values: list = [None] * len(g.tensors)
        for tensor, buffer in ctx.buffers.items():
            self._values[tensor] = buffer
        self._input = ctx.buffers[g.inputs[0]]
        self._groups = frame_groups(steps, ctx.buffers)
        return steps

    def _check_operands(self, op: Operator) -> None:
        if not op.outputs or op.outputs[0] < 0:
            raise ModelError("operator has no output", path=self.graph.path, layer=op.index,
                             layer_type=op.name)  # fmt: skip

    def parameter_count(self) -> int:
        return int(sum(t.data.size for t in self.graph.tensors if t.data is not None))

    def summary(self) -> str:
        lines = [f"{self.name}: input {'x'.join(map(str, self.input_shape))} (TFLite)"]
        for step in self.steps:
            shape = "x".join(map(str, step.output_shape))
            fused = "" if step.fused_into is None else f" (in step {step.fused_into})"
            lines.append(
                f"  {step.index:3d} {step.name:<18} -> {shape}{' bits' if step.bits else ''}"
                + fused
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def info_lines(self) -> list[str]:
        """What ``edgebnn models info`` prints for a .tflite model."""
        consts = [t.data for t in self.graph.tensors if t.data is not None]
        filters = [
            self.graph.tensors[op.inputs[1]].data
            for op in self.graph.operators
            if op.name == "LceBconv2d"
        ]
        binary = sum(int(f.nbytes) for f in filters if f is not None)
        ops = ", ".join(f"{name} x{n}" for name, n in sorted(self.operator_counts().items()))
        return [
            self.summary(),
            f"format: TFLite ({self.graph.description or 'no description'})",
            f"operators: {len(self.steps)} ({ops})",
            (
                f"parameters: {self.parameter_count():,}; constants "
                f"{sum(c.nbytes for c in consts) / 1e6:.2f} MB "
                f"({binary / 1e3:.1f} kB of packed binary filters)"
            ),
            f"output: {'x'.join(map(str, self.output_shape))}; labels: {len(self.labels)}",
            f"preprocessing: {self.preprocessing.to_dict()}",
            f"source sha256: {self.source_sha256}",
        ]

    def operator_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.name] = counts.get(step.name, 0) + 1
        return counts

    # -- running -----------------------------------------------------------------------------
    def run_all(self, x: np.ndarray) -> list:
        """Run and return every tensor's value (bit-packed tensors as uint64 words; None for
        a convolution's output that a fused step adds to its residual at once)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != self.input_shape:
            if x.ndim == 1 and x.size == int(np.prod(self.input_shape)):
                x = x.reshape(self.input_shape)
            else:
                raise ValueError(f"input must have shape {self.input_shape}, got {x.shape}")
        values = self._values
        np.copyto(self._input, x)
        with PLACEMENT.frame():
            for group in self._groups:
                if isinstance(group, Region):
                    group.run()
                else:
                    group(values)
        return values

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run on a preprocessed float32 input (rows, cols, channels), no batch axis;
        returns the output flattened (a copy)."""
        return np.array(self.run_all(x)[self._output], dtype=np.float32).reshape(-1)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        rows, cols = self.input_shape[0], self.input_shape[1]
        return self.preprocessing.apply(image, rows, cols)

    def predict(self, image: np.ndarray) -> np.ndarray:
        return self.forward(self.preprocess(image))

    def classify(self, image: np.ndarray, top_k: int = 5) -> list[Prediction]:
        return self.top(self.predict(image), top_k)

    def top(self, scores: np.ndarray, top_k: int = 5) -> list[Prediction]:
        order = np.argsort(-scores, kind="stable")[: max(0, top_k)]
        return [Prediction(int(i), self.labels[i], float(scores[i])) for i in order]

    def warmup(self, report=None, interval: float = 5.0, workers: int | None = None) -> float:
        """Compile by running one zero frame; same signature as `Network.warmup`.

        `report` hears what is compiling every `interval` seconds (no total: the kernels
        are found by running); `workers` is accepted so callers can treat every network
        alike: the TFLite kernels compile in this process.
        """
        from edgebnn.engine.host import release_free_memory
        from edgebnn.engine.warmup import warm_up_by_running

        zeros = np.zeros(self.input_shape, np.float32)
        seconds = warm_up_by_running(lambda: self.forward(zeros), self.name, report, interval)
        release_free_memory()
        return seconds
