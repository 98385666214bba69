"""The target system as the service installer sees it: distribution, package manager,
userland architecture, and the packages each install mode needs (standard library only).
"""

from __future__ import annotations

import platform
import struct
from dataclasses import dataclass
from pathlib import Path

# Bookworm's own packages; the same names on Raspberry Pi OS (armhf and arm64).
APT_DISTRO = ["python3-numba", "python3-numpy", "python3-opencv", "python3-zmq", "python3-yaml"]


# openSUSE: python3-<name> are the capabilities the default-flavour python3XX-* packages
# provide (python3XX-numba, python3XX-pyzmq, python3XX-PyYAML); OpenCV's binding is
# built once, as python3-opencv.
ZYPPER_DISTRO = [
    "python3-numba",
    "python3-numpy",
    "python3-opencv",
    "python3-pyzmq",
    "python3-PyYAML",
]


class ServiceError(RuntimeError):
    """The installer cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Platform:
    """What the installer needs to know about the target system."""

    os_id: str  # ID from os-release: debian, raspbian, opensuse-tumbleweed, ...
    name: str  # PRETTY_NAME
    manager: str  # "apt" or "zypper"
    machine: str  # userland architecture: aarch64, x86_64, armv7l
    raspberry_pi_os: bool
    version_id: str = ""

    @property
    def bits(self) -> int:
        return 32 if self.machine in ("armv7l", "armv6l", "armhf", "i686") else 64

    @property
    def default_mode(self) -> str:
        """Wheels from PyPI on 64-bit; on 32-bit ARM PyPI has no numba, so distro packages."""
        return "wheels" if self.bits == 64 else "distro"


def read_os_release(root: Path) -> dict[str, str]:
    """Parse os-release(5) below root (/etc first, then /usr/lib)."""
    for rel in ("etc/os-release", "usr/lib/os-release"):
        path = root / rel
        if path.is_file():
            values = {}
            for line in path.read_text(encoding="utf-8").splitlines():
                key, sep, value = line.partition("=")
                if sep and not key.startswith("#"):
                    values[key.strip()] = value.strip().strip("\"'")
            return values
    raise ServiceError(f"no os-release below {root}: cannot tell which distribution this is")


def userland_machine() -> str:
    """The architecture of this Python, not the kernel's: 32-bit Raspberry Pi OS on a
    Pi 4/5 boots a 64-bit kernel, so `uname -m` says aarch64 for a 32-bit userland."""
    machine = platform.machine()
    if machine in ("aarch64", "arm64") and struct.calcsize("P") == 4:
        return "armv7l"
    return machine


def detect_platform(root: Path, machine: str | None = None) -> Platform:
    """Read os-release below root and pick the package manager."""
    info = read_os_release(root)
    ids = {info.get("ID", "")} | set(info.get("ID_LIKE", "").split())
    if ids & {"debian", "raspbian", "ubuntu"}:
        manager = "apt"
    elif any("suse" in i for i in ids):
        manager = "zypper"
    else:
        raise ServiceError(
            f"unsupported distribution {info.get('PRETTY_NAME', ids)!r}: "
            "edgebnn's installer knows Raspberry Pi OS/Debian (apt) and openSUSE (zypper)"
        )
    return Platform(
        os_id=info.get("ID", ""),
        name=info.get("PRETTY_NAME", info.get("ID", "")),
        manager=manager,
        machine=machine or userland_machine(),
        raspberry_pi_os=info.get("ID") == "raspbian" or (root / "etc/rpi-issue").exists(),
        version_id=info.get("VERSION_ID", ""),
    )


def system_packages(plat: Platform, mode: str) -> list[str]:
    """Distribution packages to install before the venv is made."""
    if plat.manager == "apt":
        pkgs = ["python3-venv"]
        if mode == "distro":
            pkgs += APT_DISTRO
            if plat.raspberry_pi_os:
                pkgs.append("python3-picamera2")  # CSI cameras; apt-only, needs the system site
        return pkgs
    leap15 = plat.os_id == "opensuse-leap" and plat.version_id.startswith("15")
    pkgs = ["python311"] if leap15 else ["python3"]  # Leap 15's python3 is 3.6
    return pkgs + (ZYPPER_DISTRO if mode == "distro" else [])


def interpreter(plat: Platform) -> str:
    """The system Python the venv is built on (distro packages are built for it)."""
    leap15 = plat.os_id == "opensuse-leap" and plat.version_id.startswith("15")
    return "/usr/bin/python3.11" if leap15 else "/usr/bin/python3"
