"""``edgebnn bench``: benchmarks that print figures (never timed tests)."""

from __future__ import annotations

import argparse

from edgebnn.engine.d_series import HEADLINE

DEFAULT_MODEL = f"random:d_I256x256x3{HEADLINE}"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` sub-command."""
    p = subparsers.add_parser(
        "bench",
        help="time the engine (and a peer runtime) on this machine",
        description="Time the engine on this machine and print the figures with the machine.",
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model file or built-in name (default {DEFAULT_MODEL})",
    )
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per setting (default 30)")
    p.add_argument(
        "--compare",
        choices=["onnxruntime", "lce"],
        help="also time the same network in ONNX Runtime, or a .tflite model in Larq Compute "
        "Engine's interpreter",
    )
    p.add_argument(
        "--lce-python",
        default=None,
        help="--compare lce: the Python of an environment with larq-compute-engine and numpy<2 "
        "(default: this one)",
    )
    p.add_argument("--no-cold", action="store_true", help="skip the cold/warm start measurements")
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-step breakdown")
    p.add_argument(
        "--paced",
        default="100",
        help="comma-separated gaps in ms before each paced frame, as a camera delivers "
        "them (default 100; empty: none)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="also pace frames at the cameras' max_fps of this daemon config file",
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=3.0,
        help="measure the process's CPU while no frame arrives for this long (default 3; 0: skip)",
    )
    p.add_argument(
        "--daemon", action="store_true", help="benchmark the whole daemon pipeline instead"
    )
    p.add_argument("--frames", type=int, default=None, help="--daemon: soak length in frames")
    p.add_argument(
        "--capture",
        action="store_true",
        help="benchmark the frame hand-over of the capture processes and the whole daemon's "
        "memory with several cameras instead",
    )
    p.add_argument(
        "--first-start",
        action="store_true",
        help="time a new install's first start instead: cold compile (in this process and in "
        "worker processes) and edgebnn demo's first prediction, cold and warm",
    )
    p.add_argument("--cameras", type=int, default=4, help="--capture: cameras (default 4)")
    p.add_argument("--size", default="640x480", help="--capture: frame size WxH (default 640x480)")
    p.add_argument(
        "--seconds", type=float, default=30.0, help="--capture: memory sampling time (default 30)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    threads = [int(t) for t in str(args.threads).split(",") if t.strip()]
    if args.first_start:
        from edgebnn.bench.first_start import run_first_start_benchmark

        model = args.model if args.model != DEFAULT_MODEL else "efficientnet-lite0"
        return run_first_start_benchmark(model)
    if args.capture:
        from edgebnn.bench.capture import run_capture_benchmark

        width, height = (int(n) for n in str(args.size).lower().split("x"))
        return run_capture_benchmark(args.model, args.cameras, (width, height), args.seconds)
    if args.daemon:
        from edgebnn.bench.daemon_bench import run_daemon_benchmark

        return run_daemon_benchmark(args)
    if args.model == "efficientnet-lite0":
        from edgebnn.bench.efficientnet import run_efficientnet_benchmark

        print(
            run_efficientnet_benchmark(
                threads,
                args.compare == "onnxruntime",
                runs=max(1, args.runs),
                paced_ms=paced_gaps(args.paced, args.config),
                breakdown=not args.no_breakdown,
            )
        )
        return 0
    if str(args.model).lower().endswith(".tflite") or args.compare == "lce":
        from edgebnn.bench.tflite_bench import run_tflite_benchmark

        return run_tflite_benchmark(
            args.model,
            threads,
            max(1, args.runs),
            args.compare == "lce",
            args.lce_python,
            not args.no_breakdown,
        )
    from edgebnn.bench.engine_bench import run_engine_benchmark

    return run_engine_benchmark(
        args.model,
        threads,
        max(1, args.runs),
        args.compare,
        not args.no_cold,
        not args.no_breakdown,
        paced_gaps(args.paced, args.config),
        max(0.0, args.idle_seconds),
    )


def paced_gaps(spec: str, config: str | None) -> tuple[float, ...]:
    """The paced gaps in ms: ``spec``'s, then one per distinct camera rate in ``config``."""
    gaps = [float(g) for g in str(spec).split(",") if g.strip()]
    if any(g <= 0 for g in gaps):
        raise SystemExit(f"edgebnn bench: --paced gaps must be > 0 ms, got {spec!r}")
    if config:
        from edgebnn.daemon.config import ConfigError, load_config

        try:
            cameras = load_config(config).cameras
        except ConfigError as e:
            raise SystemExit(f"edgebnn bench: {e}") from e
        for camera in cameras:
            if camera.max_fps:
                gaps.append(round(1000.0 / camera.max_fps, 1))
    return tuple(dict.fromkeys(gaps))
