"""The daemon's sub-commands: run, check-config, subscribe, keys generate, demo."""

from __future__ import annotations

import argparse
import sys

from edgebnn.daemon.config import EX_CONFIG

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the daemon's sub-commands to the root parser."""
    run = subparsers.add_parser("run", help="run the daemon with a YAML config")
    run.add_argument("--config", required=True, metavar="PATH", help="YAML config file")
    run.add_argument(
        "--frames",
        type=_positive_int,
        metavar="N",
        help="exit after publishing N predictions (for testing)",
    )
    run.set_defaults(func=cmd_run)

    comp = subparsers.add_parser(
        "compile",
        help="compile a model's kernels into the Numba cache (warm start; the installer runs it)",
    )
    what = comp.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", metavar="PATH", help="the model of this YAML config")
    what.add_argument("--model", metavar="SPEC", help="a model file or built-in name")
    comp.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="compile processes (default: one per core, memory permitting)",
    )
    comp.set_defaults(func=cmd_compile)

    check = subparsers.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", metavar="PATH")
    check.set_defaults(func=cmd_check_config)

    sub = subparsers.add_parser("subscribe", help="print what a daemon publishes")
    sub.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"default {DEFAULT_ENDPOINT}")
    sub.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="NAME",
        help="only this camera (repeatable)",
    )
    sub.add_argument("--json", action="store_true", help="print the JSON payloads, one a line")
    sub.add_argument("--count", type=_positive_int, metavar="N", help="exit after N messages")
    sub.add_argument("--status", action="store_true", help="also print status messages")
    sub.add_argument("--stats", action="store_true", help="also print stats messages")
    sub.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="give up after S seconds (exit 1 if nothing arrived)",
    )
    sub.add_argument("--server-key", metavar="PATH", help="the daemon's public key (CURVE)")
    sub.add_argument(
        "--client-key",
        metavar="PATH",
        help="our .key_secret file (CURVE; must be in the daemon's allowed list)",
    )
    sub.set_defaults(func=cmd_subscribe)

    keys = subparsers.add_parser("keys", help="CURVE key management")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    generate = keys_sub.add_parser("generate", help="create NAME.key and NAME.key_secret")
    generate.add_argument("dir", metavar="DIR")
    generate.add_argument("--name", default="server", help="file name stem (default: server)")
    generate.set_defaults(func=cmd_keys_generate)

    demo = subparsers.add_parser(
        "demo", help="run the daemon on bundled photos and print what a subscriber receives"
    )
    demo.add_argument(
        "--frames",
        type=_positive_int,
        default=8,
        metavar="N",
        help="exit after N predictions (default 8)",
    )
    demo.add_argument("--model", help="model to use instead of the bundled one")
    demo.add_argument("--json", action="store_true", help="print JSON payloads")
    demo.set_defaults(func=cmd_demo)


def cmd_run(args: argparse.Namespace) -> int:
    from edgebnn.daemon.logs import setup_logging
    from edgebnn.daemon.runner import run_config_file

    setup_logging("info")
    return run_config_file(args.config, max_frames=args.frames)


def cmd_compile(args: argparse.Namespace) -> int:
    """Load the model (as the daemon would) and compile every kernel its plan calls."""
    import logging

    from edgebnn.daemon.config import ConfigError, load_config
    from edgebnn.daemon.logs import setup_logging, under_systemd
    from edgebnn.engine.progress import ProgressBar, ProgressLog

    import edgebnn

    setup_logging("info")
    spec = args.model
    if args.config:
        try:
            spec = load_config(args.config).model
        except ConfigError as exc:
            for line in exc.lines():
                print(line, file=sys.stderr)
            return EX_CONFIG
    try:
        net = edgebnn.load(spec)
    except edgebnn.ModelError as exc:
        print(f"edgebnn compile: {exc}", file=sys.stderr)
        return EX_CONFIG
    tty = sys.stderr.isatty() and not under_systemd()
    report = ProgressBar(sys.stderr) if tty else ProgressLog(logging.getLogger("edgebnn.compile"))
    seconds = net.warmup(report=report, workers=args.workers)
    print(f"{net.name}: kernels ready in {seconds:.1f} s", file=sys.stderr)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from edgebnn.daemon.config import ConfigError, load_config

    try:
        config = load_config(args.path)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EX_CONFIG
    cameras = ", ".join(f"{c.name} ({c.kind})" for c in config.cameras)
    print(
        f"{args.path}: OK: model {config.model}; cameras: {cameras}; "
        f"publishing on {', '.join(config.publish.endpoints)}"
        + (" with CURVE" if config.publish.curve else "")
    )
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    from edgebnn.daemon.subscribe import run_subscriber

    try:
        return run_subscriber(
            args.endpoint,
            cameras=args.camera,
            as_json=args.json,
            count=args.count,
            status=args.status,
            stats=args.stats,
            server_key=args.server_key,
            client_key=args.client_key,
            timeout=args.timeout,
        )
    except (OSError, ValueError) as exc:
        print(f"edgebnn subscribe: {exc}", file=sys.stderr)
        return 1


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from edgebnn.daemon.keys import KeyGenerationError, generate_keypair

    try:
        public, secret = generate_keypair(args.dir, args.name)
    except (KeyGenerationError, OSError) as exc:
        print(f"edgebnn keys generate: {exc}", file=sys.stderr)
        return 1
    print(f"public key (give to the other side): {public}")
    print(f"secret key (keep private, mode 0600): {secret}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edgebnn.daemon.demo import run_demo
    from edgebnn.daemon.logs import setup_logging

    setup_logging("info")
    return run_demo(frames=args.frames, model=args.model, as_json=args.json)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value
