"""`edgebnn bench` runs end to end on a small network and prints its figures with the machine."""

from __future__ import annotations

import pytest

from edgebnn.cli import main


def test_bench_prints_figures_and_machine(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "bench",
            "--model",
            "random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A",
            "--runs",
            "3",
            "--threads",
            "1",
            "--no-cold",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("machine: ")
    assert "cores" in out and "numba" in out
    assert "edgebnn ms/frame" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("1 "))
    assert float(row.split()[1]) > 0
    assert "per step" in out and "BinaryConvolutional+Bias+Activation" in out
    assert "peak RSS" in out
