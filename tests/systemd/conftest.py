"""Fixtures for the installer tests: the installer modules and a fake system root.

The modules are loaded from their folder, not through `import edgebnn`: it is stdlib-only on
purpose (systemd/install.sh runs it before anything is installed), and so are its tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from systemd_support import CONFIG, DEBIAN, REPO


@pytest.fixture(scope="session")
def systemd_package() -> ModuleType:
    """systemd/ loaded by path as a package of its own, as systemd/install.sh loads it."""
    spec = importlib.util.spec_from_file_location(
        "edgebnn_systemd",
        REPO / "systemd/__init__.py",
        submodule_search_locations=[str(REPO / "systemd")],
    )
    assert spec and spec.loader
    package = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = package  # dataclasses look their module up
    spec.loader.exec_module(package)
    return package


@pytest.fixture(scope="session")
def installer(systemd_package: ModuleType) -> ModuleType:
    return importlib.import_module("edgebnn_systemd.installer")


@pytest.fixture(scope="session")
def platforms(systemd_package: ModuleType) -> ModuleType:
    return importlib.import_module("edgebnn_systemd.platforms")


@pytest.fixture(scope="session")
def commands(systemd_package: ModuleType) -> ModuleType:
    return importlib.import_module("edgebnn_systemd.commands")


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
