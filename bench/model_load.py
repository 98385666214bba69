"""Benchmark (not a test): write the headline network's ELL file, time loading it and the native file.

    python -m edgebnn.bench.model_load [--size 256] [--dir /tmp/edgebnn-bench]

Writes ``d_I<size>x<size>x3NCMNBMNBMNBMNBMNBMNC1A`` with random weights in the 2017 dialect
with 6-digit floats (the real file's format and size class), as ``.ell.zip`` and ``.ell``,
and the native file converted from it. Each load runs in a fresh process, so the reported
peak RSS is that load's alone (the kernel's peak mark is reset after the imports);
"baseline" is the same process's RSS just before loading (Python, NumPy, edgebnn imported). For comparison it also times a plain
``json.loads`` of the text, which is what a straightforward reader would start with.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

_CHILD = r"""
import json, sys, time
import edgebnn
from edgebnn.engine import host
from edgebnn.engine.formats import ell, native
path, mode = sys.argv[1], sys.argv[2]
host.reset_peak()
base = host.current_rss_mb()
start = time.perf_counter()
if mode == "json":
    data = open(path, "rb").read()
    doc = json.loads(data)
else:
    net = edgebnn.load(path)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mb": host.peak_rss_mb(), "base_mb": base}))
"""


def measure(path: Path, mode: str = "load") -> dict[str, float]:
    """Load ``path`` in a fresh interpreter; returns seconds, peak and baseline RSS (MB)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), mode], check=True,
                         capture_output=True, text=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    from edgebnn.engine.d_series import HEADLINE, d_series
    from edgebnn.engine.formats.ell import read_ell
    from edgebnn.engine.formats.ell_writer import write_ell
    from edgebnn.engine.formats.native import write_native

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument(
        "--dir", default=None, help="where to write the files (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    directory = Path(args.dir or tempfile.mkdtemp(prefix="edgebnn-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    name = f"d_I{args.size}x{args.size}x3{HEADLINE}"
    zipped = write_ell(d_series(args.size), directory / f"{name}.ell.zip", dialect="2017", digits=6)
    plain = directory / f"{name}.ell"
    with zipfile.ZipFile(zipped) as archive:
        plain.write_bytes(archive.read(f"{name}.ell"))
    native = write_native(read_ell(zipped), directory / f"{name}.ebnn")
    rows = [
        ("edgebnn.load(.ell.zip)", zipped, "load"),
        ("edgebnn.load(.ell)", plain, "load"),
        ("json.loads(.ell) only", plain, "json"),
        ("edgebnn.load(.ebnn)", native, "load"),
    ]
    print(f"{name}: {len(d_series(args.size).layers)} layers; files in {directory}")
    print(f"{'what':<24} {'file MB':>8} {'seconds':>8} {'peak RSS MB':>12} {'baseline MB':>12}")
    for label, path, mode in rows:
        m = measure(path, mode)
        print(f"{label:<24} {path.stat().st_size / 1e6:>8.1f} {m['seconds']:>8.3f} "
              f"{m['peak_mb']:>12.0f} {m['base_mb']:>12.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
