"""Shared constants and helpers for tests/systemd (a unique name: no clash with other
test folders' modules under pytest's default import mode)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edgebnn.service"

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
RASPBIAN = 'PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nID=raspbian\nID_LIKE=debian\n'
TUMBLEWEED = (
    'PRETTY_NAME="openSUSE Tumbleweed"\nID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n'
)
LEAP15 = (
    'PRETTY_NAME="openSUSE Leap 15.6"\nID="opensuse-leap"\nVERSION_ID="15.6"\n'
    'ID_LIKE="suse opensuse"\n'
)
CONFIG = "# edgebnn test config\npublish:\n  bind: tcp://127.0.0.1:5556\n"


def need_tool(name: str) -> str:
    """Path of a systemd tool; skip locally if absent, fail in CI (it must run there)."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} missing: apt-get install -y systemd")
    pytest.skip(f"{name} not installed (apt-get install -y systemd)")
