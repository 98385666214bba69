"""Benchmark: EfficientNet-Lite0 ms/frame in edgebnn, optionally against ONNX Runtime.

ONNX Runtime runs the very same folded float32 weights: the graph is built here with the
``onnx`` helper API from the state dict (no torch), with TF "same" padding written as
ONNX's asymmetric ``pads`` (so ORT does not pay for our leading zero taps). Both engines
run in this process, one after the other, at each thread count (Numba's threads; the
GEMMs run as BLAS calls on those threads, the BLAS's own pool kept at one); the figure is
the median of ``runs`` timed forward passes after ``warmup`` untimed ones, input
preprocessed, with the fastest run beside it (the least disturbed by other processes).
"""

from __future__ import annotations

import functools
import os
import statistics
import time

import numba
import numpy as np
from edgebnn.bench.timing import median_ms, min_ms
from edgebnn.engine.efficientnet import (
    HEAD_CHANNELS,
    INPUT_SIZE,
    LITE0_STAGES,
    STEM_CHANNELS,
    fold_batch_norm,
    same_padding,
)
from edgebnn.engine.formats.builtin import convert_efficientnet_lite0, efficientnet_pth
from edgebnn.engine.formats.torch_pth import load_state_dict
from edgebnn.engine.host import machine_line
from edgebnn.kernels.threads import blas_threads, set_blas_threads, set_threads


def onnx_model(state: dict[str, np.ndarray]):
    """EfficientNet-Lite0 as an ONNX graph (NCHW, logits) from the folded state dict."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def conv_bn(x: str, conv: str, bn: str, stride: int, size: int, group: int, relu6: bool) -> str:
        w = state[f"{conv}.weight"]
        params = [state[f"{bn}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]
        wf, bf = fold_batch_norm(w, *params)
        k = w.shape[-1]
        _, before, after = same_padding(size, k, stride)
        name = conv.replace(".", "_")
        inits.extend(
            [numpy_helper.from_array(wf, name + "_w"), numpy_helper.from_array(bf, name + "_b")]
        )
        nodes.append(
            helper.make_node(
                "Conv",
                [x, name + "_w", name + "_b"],
                [name],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[before, before, after, after],
                group=group,
            )
        )
        if not relu6:
            return name
        nodes.append(helper.make_node("Clip", [name, "zero", "six"], [name + "_r6"]))
        return name + "_r6"

    inits += [
        numpy_helper.from_array(np.float32(0), "zero"),
        numpy_helper.from_array(np.float32(6), "six"),
    ]
    size = INPUT_SIZE
    x = conv_bn("input", "_conv_stem", "_bn0", 2, size, 1, True)
    size = -(-size // 2)
    index = 0
    for st in LITE0_STAGES:
        for repeat in range(st.repeats):
            p = f"_blocks.{index}"
            c_in = st.channels_in if repeat == 0 else st.channels_out
            stride = st.stride if repeat == 0 else 1
            hidden = c_in * st.expand
            block_in = x
            if st.expand != 1:
                x = conv_bn(x, f"{p}._expand_conv", f"{p}._bn0", 1, size, 1, True)
            x = conv_bn(x, f"{p}._depthwise_conv", f"{p}._bn1", stride, size, hidden, True)
            size = -(-size // stride)
            x = conv_bn(x, f"{p}._project_conv", f"{p}._bn2", 1, size, 1, False)
            if stride == 1 and c_in == st.channels_out:
                nodes.append(helper.make_node("Add", [x, block_in], [f"{p}_add"]))
                x = f"{p}_add"
            index += 1
    x = conv_bn(x, "_conv_head", "_bn1", 1, size, 1, True)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"]))
    inits += [
        numpy_helper.from_array(state["_fc.weight"], "fc_w"),
        numpy_helper.from_array(state["_fc.bias"], "fc_b"),
    ]
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
        inits,
    )
    assert STEM_CHANNELS and HEAD_CHANNELS  # the builder's constants define both graphs
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def run_efficientnet_benchmark(
    threads_list: list[int] | tuple[int, ...] = (1, 2),
    compare_onnx: bool = False,
    runs: int = 30,
    warmup: int = 5,
    paced_ms: tuple[float, ...] = (),
    breakdown: bool = False,
) -> str:
    """A text report: EfficientNet-Lite0 ms/frame per thread count (and vs ONNX Runtime).

    At one thread the calling thread's CPU time per frame is printed too (for ONNX Runtime
    as well: one intra-op thread runs on the caller). ``paced_ms``: also time frames after
    a sleep of each gap (the threads idle between
    frames, as between a camera's frames); ``breakdown``: each plan step launched as its
    own kernel at the largest thread count, back to back, before ONNX Runtime runs.
    """
    net = convert_efficientnet_lite0(softmax=False)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    x = net.preprocess(frame)
    net.warmup()
    session_for = None
    if compare_onnx:
        import onnxruntime as ort

        model_bytes = onnx_model(load_state_dict(efficientnet_pth())).SerializeToString()
        x_nchw = np.ascontiguousarray(x.transpose(2, 0, 1)[None])

        def session_for(n: int):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])

    lines = [
        f"EfficientNet-Lite0 224x224, ms/frame (median of {runs} after {warmup} warm-up)",
        machine_line(),
        _load_line("before"),
    ]
    saved, saved_blas = numba.get_num_threads(), blas_threads()
    set_blas_threads(1)
    steps: list[str] = []
    try:
        if breakdown:
            set_threads(max(threads_list))
            steps = _breakdown(net, x, runs)
        for n in threads_list:
            set_threads(n)
            ours = median_ms(lambda: net.forward(x), runs, warmup)
            best = min_ms(lambda: net.forward(x), runs)
            line = f"threads={n}: edgebnn {ours:7.2f} ms (best {best:6.2f})"
            ours_cpu = 0.0
            if n == 1:  # the calling thread does all the work: its CPU time ignores the load
                ours_cpu = _cpu_ms(lambda: net.forward(x), runs)
                line += f", cpu {ours_cpu:6.2f}"
            for gap in paced_ms:
                paced = median_ms(lambda: net.forward(x), runs, gap_s=gap / 1000.0)
                line += f", paced {gap:g} ms {paced:6.2f}"
            if session_for is not None:
                sess = session_for(n)
                diff = float(np.abs(sess.run(None, {"input": x_nchw})[0][0] - net.forward(x)).max())
                peer = functools.partial(sess.run, None, {"input": x_nchw})
                theirs = median_ms(peer, runs, warmup)
                theirs_best = min_ms(peer, runs)
                line += f" | onnxruntime {theirs:7.2f} ms (best {theirs_best:6.2f})"
                if n == 1:
                    theirs_cpu = _cpu_ms(peer, runs)
                    line += f", cpu {theirs_cpu:6.2f}"
                line += f" | ratio {ours / theirs:5.2f}x"
                if n == 1:
                    line += f" (cpu {ours_cpu / theirs_cpu:5.2f}x)"
                line += f" | max |logit diff| {diff:.1e}"
            lines.append(line)
    finally:
        set_threads(saved)
        if saved_blas is not None:
            set_blas_threads(saved_blas)
    lines.append(_load_line("after"))
    if steps:
        heading = f"per step, each launched as its own kernel ({max(threads_list)} threads, "
        lines += [heading + f"median of {runs}, back to back):", *steps]
    return "\n".join(lines)


def _cpu_ms(fn, runs: int) -> float:
    """Median CPU time of the calling thread per call, in ms: at one thread what a frame
    costs, whatever other processes take from the wall clock."""
    times = []
    for _ in range(runs):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return 1000.0 * statistics.median(times)


def _load_line(when: str) -> str:
    load = os.getloadavg()
    return f"load average {when}: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def _breakdown(net, x: np.ndarray, runs: int) -> list[str]:
    """One line per plan step (its median ms, each step launched as its own kernel on the
    previous step's output), then their sum and the frame's median in the same pass."""
    plan = net.plan
    plan.run(x)
    times: list[list[float]] = [[] for _ in plan.steps]
    frames: list[float] = []
    for _ in range(runs):
        plan._input_view[...] = x
        for i, step in enumerate(plan.steps):
            start = time.perf_counter()
            step()
            times[i].append(time.perf_counter() - start)
        start = time.perf_counter()
        plan.run(x)
        frames.append(time.perf_counter() - start)
    out = []
    total = 0.0
    for step, t in zip(plan.steps, times, strict=True):
        ms = 1000.0 * statistics.median(t)
        total += ms
        out.append(f"  {ms:7.3f} ms  {step.label}")
    out.append(f"  {total:7.3f} ms  sum of the steps")
    out.append(f"  {1000.0 * statistics.median(frames):7.3f} ms  whole frame (one parallel region)")
    return out


if __name__ == "__main__":
    print(run_efficientnet_benchmark([1, 2], compare_onnx=True))
