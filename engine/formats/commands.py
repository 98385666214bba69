"""``edgebnn models ...``: list/fetch gallery models, inspect, convert and export model files."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from edgebnn.engine import host
from edgebnn.engine.errors import ModelError
from edgebnn.engine.network import Network

if TYPE_CHECKING:
    from edgebnn.engine.tflite_network import TfliteNetwork


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``models`` and its sub-commands to the CLI."""
    models = subparsers.add_parser("models", help="list, fetch, inspect, convert and export models")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="the ELL gallery catalog as a table")
    p.add_argument("--series", help="only this series, e.g. d, dr, v, dcda (other: named models)")
    p.add_argument("--input-size", type=int, help="only this input size, e.g. 256")
    p.add_argument(
        "--all", action="store_true", help="include archived files (not on ELL-models master)"
    )
    p.add_argument("--catalog", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("fetch", help="download a gallery model, verified by size and sha256")
    p.add_argument(
        "name", help="a catalog name (the seed's old names resolve to the renamed files)"
    )
    p.add_argument("--dir", help="target directory (default: $EDGEBNN_MODELS_DIR, "
                   "$STATE_DIRECTORY/models under systemd, else ~/.local/share/edgebnn/models)")  # fmt: skip
    p.add_argument("--url-base", help="download from this base URL instead of GitHub "
                   "(also $EDGEBNN_MODELS_URL_BASE)")  # fmt: skip
    p.add_argument("--retries", type=int, default=5, help="retries after a dropped connection")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--catalog", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("info", help="architecture, parameters, load time and memory of a model")
    p.add_argument("path", help="an .ell/.ell.zip/native file, or random:<d-series name>")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert any loadable model to the native format")
    p.add_argument("input", help="an .ell/.ell.zip/native file, or random:<d-series name>")
    p.add_argument("output", help="the native file to write (e.g. model.ebnn)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="write a random-weight d-series network as an ELL file")
    p.add_argument("--ell", required=True, metavar="OUT", help="output .ell or .ell.zip file")
    p.add_argument("--dialect", choices=("2017", "new"), default="2017")
    p.add_argument("--arch", default="NCMNBMNBMNBMNBMNBMNC1A", help="d-series architecture letters")
    p.add_argument("--size", type=int, default=256, help="input size (64..256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--digits", type=int, default=9,
                   help="significant digits of floats: 9 is exact; ELL wrote 6 (2017) or 7")  # fmt: skip
    p.set_defaults(func=cmd_export)


def cmd_list(args: argparse.Namespace) -> int:
    from edgebnn.engine.formats.catalog import load_catalog, select

    entries = select(load_catalog(args.catalog), args.series, args.input_size, args.all)
    rows = [("name", "input", "top-1", "top-5", "Pi3 s/frame", "MB", "on master")]
    for e in sorted(entries, key=lambda e: (e.series, e.input_size or 0, e.name)):
        rows.append((
            e.name,
            f"{e.input_size}x{e.input_size}" if e.input_size else "?",
            _num(e.top1, "{:.2f}"), _num(e.top5, "{:.2f}"), _num(e.secs_per_frame_pi3, "{:.2f}"),
            f"{e.size / 1e6:.1f}", "yes" if e.present_on_master else "no",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(f"{len(entries)} model(s)")
    return 0


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def cmd_fetch(args: argparse.Namespace) -> int:
    from edgebnn.engine.formats.catalog import load_catalog, resolve
    from edgebnn.engine.formats.fetch import fetch, models_dir, url_for

    entry, note = resolve(args.name, load_catalog(args.catalog))
    if note:
        print(note, file=sys.stderr)
    directory = models_dir(args.dir)
    print(f"fetching {url_for(entry, args.url_base)} -> {directory}", file=sys.stderr)
    path = fetch(entry, directory, url_base=args.url_base, retries=args.retries,
                 progress=None if args.quiet else sys.stderr)  # fmt: skip
    print(path)
    return 0


def timed_load(spec: str) -> tuple[Network | TfliteNetwork, float, float, float]:
    """Load ``spec``; returns (network, seconds, RSS before, peak RSS during the load), MiB."""
    from edgebnn.engine.formats.load import load

    host.reset_peak()
    before = host.current_rss_mb()
    start = time.perf_counter()
    net = load(spec)
    seconds = time.perf_counter() - start
    return net, seconds, before, host.peak_rss_mb()


def packed_bytes(net: Network) -> tuple[int, int]:
    """(all parameter bytes as stored, of which binary weight words)."""
    total = binary = 0
    for layer in [net.input_layer, *net.layers]:
        for value in vars(layer).values():
            if isinstance(value, np.ndarray):
                total += value.nbytes
                binary += value.nbytes if value.dtype == np.uint64 else 0
    return total, binary


def cmd_info(args: argparse.Namespace) -> int:
    net, seconds, before, peak = timed_load(args.path)
    if not isinstance(net, Network):  # a .tflite model
        print("\n".join(net.info_lines()))
        print(f"load time: {seconds:.3f} s; peak RSS during the load: {peak:.0f} MiB")
        return 0
    total, binary = packed_bytes(net)
    meta = net.metadata
    print(net.summary())
    print(f"format: {describe_format(args.path, meta)}")
    print(f"layers: {len(net.layers)}; parameters: {net.parameter_count():,}")
    print(f"packed size: {total / 1e6:.2f} MB ({binary / 1e3:.1f} kB of packed binary weights)")
    print(f"labels: {len(net.labels or [])}; preprocessing: {net.preprocessing.to_dict()}")
    if net.source_sha256:
        print(f"source sha256: {net.source_sha256}")
    print(
        f"load time: {seconds:.3f} s; peak RSS during the load: {peak:.0f} MiB "
        f"(+{peak - before:.0f} MiB over the {before:.0f} MiB before it)"
    )
    return 0


def describe_format(spec: str, meta: dict) -> str:
    """``ELL (2017 dialect)``, ``native (from ELL, new dialect)`` or ``built-in``."""
    from edgebnn.engine.formats.native import is_native

    dialect = f"ELL {meta['ell_dialect']} dialect" if "ell_dialect" in meta else ""
    if not Path(spec).exists():
        return "built-in"
    if is_native(spec):
        return "native" + (f" (converted from {dialect})" if dialect else "")
    return dialect or "ELL"


def cmd_convert(args: argparse.Namespace) -> int:
    from edgebnn.engine.formats.native import write_native

    net, seconds, _, _ = timed_load(args.input)
    if not isinstance(net, Network):
        raise ModelError(
            "a .tflite model has no native form; edgebnn runs the .tflite file as it is",
            path=args.input,
        )
    out = write_native(net, args.output)
    start = time.perf_counter()
    from edgebnn.engine.formats.native import read_native

    read_native(out)
    native_seconds = time.perf_counter() - start
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); loaded the input in {seconds:.3f} s, "
          f"the native file in {native_seconds:.3f} s")  # fmt: skip
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edgebnn.engine.d_series import d_series
    from edgebnn.engine.formats.ell_writer import write_ell

    try:
        net = d_series(args.size, args.arch, seed=args.seed)
    except ValueError as exc:
        raise ModelError(str(exc), field="--arch/--size") from None
    start = time.perf_counter()
    out = write_ell(net, args.ell, dialect=args.dialect, digits=args.digits)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(net.layers)} layers, "
          f"{args.dialect} dialect) in {time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0
