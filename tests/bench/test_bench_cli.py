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
            "--paced",
            "5,20",
            "--idle-seconds",
            "0.3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("machine: ")
    assert "cores" in out and "numba" in out
    assert "back-to-back ms" in out and "paced 5 ms" in out and "paced 20 ms" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("1 "))
    back_to_back, paced_5, paced_20 = (float(v) for v in row.split()[1:4])
    assert back_to_back > 0 and paced_5 > 0 and paced_20 > 0
    idle = next(line for line in out.splitlines() if line.startswith("idle: "))
    assert 0.0 <= float(idle.split()[1].rstrip("%")) < 100.0
    assert "load average before" in out
    assert "per step" in out and "BinaryConvolutional+Bias+Activation" in out
    assert "peak RSS" in out


def test_paced_gaps_add_the_config_cameras_rates(tmp_path) -> None:
    from edgebnn.bench.commands import paced_gaps

    config = tmp_path / "edgebnn.yaml"
    config.write_text(
        "cameras:\n"
        "  - {name: door, source: 'builtin:samples', max_fps: 10}\n"
        "  - {name: yard, source: 'builtin:samples', max_fps: 4}\n"
        "  - {name: hall, source: 'builtin:samples'}\n"
    )
    assert paced_gaps("100,33", None) == (100.0, 33.0)
    assert paced_gaps("", None) == ()
    assert paced_gaps("100", str(config)) == (100.0, 250.0)


def test_paced_gaps_reject_zero_and_bad_config(tmp_path) -> None:
    from edgebnn.bench.commands import paced_gaps

    with pytest.raises(SystemExit, match="must be > 0"):
        paced_gaps("0", None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: 3\n")
    with pytest.raises(SystemExit, match="edgebnn bench"):
        paced_gaps("100", str(bad))
