"""Fixtures for the installer tests: the installer module and a fake system root.

The module is loaded from its file, not through `import edgebnn`: it is stdlib-only on
purpose (systemd/install.sh runs it before anything is installed), and so are its tests.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from service_support import CONFIG, DEBIAN, REPO


@pytest.fixture(scope="session")
def service() -> ModuleType:
    """daemon/service.py, loaded by path."""
    spec = importlib.util.spec_from_file_location("edgebnn_service", REPO / "daemon/service.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def make_root(tmp_path: Path) -> Callable[[str], Path]:
    """A fake system root holding only an os-release."""

    def make(os_release: str = DEBIAN) -> Path:
        root = tmp_path / "root"
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc/os-release").write_text(os_release)
        return root

    return make


@pytest.fixture
def config_source(tmp_path: Path) -> Path:
    """The shipped config if it exists yet, else a small stand-in."""
    shipped = REPO / "config" / "edgebnn.yaml"
    if shipped.is_file():
        return shipped
    path = tmp_path / "edgebnn.yaml"
    path.write_text(CONFIG)
    return path
