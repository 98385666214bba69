"""`edgebnn service install|uninstall`: the installer's command line.

Registered in the ``edgebnn`` CLI, and run by ``systemd/install.sh`` from a source checkout
(standard library only; see :mod:`.installer`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .installer import Installer, InstallOptions, install, uninstall
from .platforms import ServiceError


def _install_cmd(args: argparse.Namespace) -> int:
    opts = InstallOptions(
        mode=args.mode,
        machine=args.arch,
        source=args.source,
        config_source=args.config_source,
        start=not args.no_start,
        upgrade=args.upgrade,
        model=args.model,
        model_url_base=args.model_url_base,
        catalog=args.catalog,
        compile=not args.no_compile,
    )
    return _report(lambda: install(Path(args.root), args.dry_run, opts))


def _uninstall_cmd(args: argparse.Namespace) -> int:
    return _report(lambda: uninstall(Path(args.root), args.dry_run, args.purge))


def _report(job: Callable[[], Installer]) -> int:
    try:
        inst = job()
    except (ServiceError, subprocess.CalledProcessError, OSError) as err:
        print(f"edgebnn service: error: {err}", file=sys.stderr)
        return 1
    print(f"# {len(inst.changed)} change(s)" + (" (dry run)" if inst.dry_run else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `service install` and `service uninstall` to the edgebnn CLI."""
    service = subparsers.add_parser("service", help="install or remove the systemd service")
    actions = service.add_subparsers(dest="service_action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dry-run", action="store_true", help="print every action, do none")
    common.add_argument(
        "--root",
        default="/",
        help="install below this directory (tests); host commands are only printed",
    )
    inst = actions.add_parser("install", parents=[common], help="install and enable the service")
    inst.add_argument(
        "--mode",
        choices=("auto", "wheels", "distro"),
        default="auto",
        help="wheels: pip venv (64-bit default); distro: apt/zypper packages "
        "in a --system-site-packages venv (32-bit default)",
    )
    inst.add_argument("--arch", help="userland architecture to plan for (default: this one)")
    inst.add_argument("--source", help="what pip installs (checkout dir, wheel, requirement)")
    inst.add_argument("--config-source", type=Path, help="default config to install")
    inst.add_argument("--no-start", action="store_true", help="enable but do not start")
    inst.add_argument("--upgrade", action="store_true", help="reinstall even if up to date")
    inst.add_argument(
        "--model",
        metavar="NAME",
        help="fetch this ELL gallery model (sha256-checked) and configure it, "
        "e.g. d_I160x160x3CMCMBMBMBMBMC1AS",
    )
    inst.add_argument(
        "--model-url-base", metavar="URL", help="download from this ELL-models mirror"
    )
    inst.add_argument("--catalog", type=Path, help=argparse.SUPPRESS)
    inst.add_argument(
        "--no-compile", action="store_true", help="do not warm the Numba cache before the start"
    )
    inst.set_defaults(func=_install_cmd)
    rm = actions.add_parser("uninstall", parents=[common], help="stop and remove the service")
    rm.add_argument("--purge", action="store_true", help="also remove config and models")
    rm.set_defaults(func=_uninstall_cmd)


def main(argv: list[str] | None = None) -> int:
    """Entry point when run from a checkout (systemd/install.sh), not through ``edgebnn``."""
    parser = argparse.ArgumentParser(prog="edgebnn")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
