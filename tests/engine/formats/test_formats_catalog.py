"""Catalog listing/resolution and verified downloads from a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import pytest
from edgebnn.engine.formats.catalog import Entry, load_catalog, renamed, resolve, select
from edgebnn.engine.formats.fetch import fetch, models_dir

import edgebnn
from edgebnn.cli import main

HEADLINE = "d_I256x256x3NCMNBMNBMNBMNBMNBMNC1A"


# -- the packaged catalog ---------------------------------------------------------------------
def test_packaged_catalog_lists_and_filters():
    entries = load_catalog()
    assert len(entries) == 158
    d256 = select(entries, series="d", input_size=256)
    assert {e.name for e in d256} >= {
        "d_I256x256x3CMBMBMBMBMBMC1AS",
        "d_I256x256x3CMCMCMCMCMCMC1AS",
    }
    assert all(e.present_on_master and e.input_size == 256 and e.series == "d" for e in d256)
    archived = select(entries, series="d", input_size=256, include_archived=True)
    assert any(e.name == HEADLINE and not e.present_on_master for e in archived)


def test_headline_name_resolves_to_the_renamed_file():
    entry, note = resolve(HEADLINE)
    assert entry.name == "d_I256x256x3CMBMBMBMBMBMC1AS" and entry.present_on_master
    assert (
        entry.path_in_repo
        == "models/ILSVRC2012/d_I256x256x3CMBMBMBMBMBMC1AS/d_I256x256x3CMBMBMBMBMBMC1AS.ell.zip"
    )
    assert "renamed" in note
    assert resolve(HEADLINE + ".ell.zip")[0] == entry
    assert resolve("d_I256x256x3CMBMBMBMBMBMC1AS") == (entry, None)
    assert renamed("d_I160x160x3NCMNCMNBMNBMNBMNBMNB1A") == "d_I160x160x3CMCMBMBMBMBMB1AS"


def test_unknown_names_suggest_close_matches():
    with pytest.raises(edgebnn.ModelError, match="did you mean d_I256x256x3CMBMBMBMBMBMC1AS"):
        resolve("d_I256x256x3CMBMBMBMBMBMC1AX")


def test_models_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGEBNN_MODELS_DIR", raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:/other")
    assert models_dir() == tmp_path / "state" / "models"
    monkeypatch.setenv("EDGEBNN_MODELS_DIR", str(tmp_path / "env"))
    assert models_dir() == tmp_path / "env"
    assert models_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv("EDGEBNN_MODELS_DIR")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert models_dir() == tmp_path / "xdg" / "edgebnn" / "models"


def test_cli_list_prints_a_filtered_table(capsys):
    assert main(["models", "list", "--series", "d", "--input-size", "256"]) == 0
    out = capsys.readouterr().out
    assert "d_I256x256x3CMBMBMBMBMBMC1AS" in out and "38.26" in out and "6 model(s)" in out
    assert "I128x128" not in out


# -- downloads from 127.0.0.1 -----------------------------------------------------------------
class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; drops the first response of paths in ``server.drop_once``."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[len("bytes=") :].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if self.path in server.drop_once:
            server.drop_once.discard(self.path)
            self.wfile.write(data[start : start + (len(data) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.drop_once, httpd.requests = {}, set(), []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def entry_for(name: str, data: bytes, served: bytes | None = None) -> Entry:
    path = f"models/ILSVRC2012/{name}/{name}.ell.zip"
    return Entry(name=name, file=f"{name}.ell.zip", path_in_repo=path, url=f"https://invalid.example/{path}",
                 sha256=hashlib.sha256(data).hexdigest(), size=len(data), present_on_master=True)  # fmt: skip


def base_url(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def test_fetch_verifies_and_renames(server, tmp_path):
    entry = entry_for("good", PAYLOAD)
    server.files["/" + entry.path_in_repo] = PAYLOAD
    bar = io.StringIO()
    path = fetch(entry, tmp_path, url_base=base_url(server), progress=bar)
    assert path == tmp_path / "good.ell.zip" and path.read_bytes() == PAYLOAD
    assert "100.0%" in bar.getvalue()
    assert not list(tmp_path.glob(".*.part"))
    fetch(entry, tmp_path, url_base=base_url(server))  # already there: no new request
    assert len(server.requests) == 1


def test_fetch_resumes_after_a_dropped_connection(server, tmp_path):
    entry = entry_for("flaky", PAYLOAD)
    url_path = "/" + entry.path_in_repo
    server.files[url_path] = PAYLOAD
    server.drop_once.add(url_path)
    path = fetch(entry, tmp_path, url_base=base_url(server), backoff=0.01)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[0] == (url_path, None)
    assert server.requests[1] == (url_path, f"bytes={len(PAYLOAD) // 2}-")


def test_fetch_refuses_a_corrupted_file(server, tmp_path):
    entry = entry_for("corrupt", PAYLOAD)
    corrupted = bytearray(PAYLOAD)
    corrupted[1000] ^= 0xFF
    server.files["/" + entry.path_in_repo] = bytes(corrupted)
    with pytest.raises(edgebnn.ModelError, match="sha256 mismatch"):
        fetch(entry, tmp_path, url_base=base_url(server))
    assert not list(tmp_path.iterdir())  # nothing kept, not even the partial file


def test_fetch_refuses_a_wrong_size_and_a_missing_file(server, tmp_path):
    entry = entry_for("big", PAYLOAD)
    server.files["/" + entry.path_in_repo] = PAYLOAD + b"extra"
    with pytest.raises(edgebnn.ModelError, match="size mismatch"):
        fetch(entry, tmp_path, url_base=base_url(server))
    with pytest.raises(edgebnn.ModelError, match="HTTP 404"):
        fetch(entry_for("absent", PAYLOAD), tmp_path, url_base=base_url(server))


def test_cli_fetch_with_a_catalog_and_url_base(server, tmp_path, capsys):
    """The end-to-end path: a real ELL zip served locally, fetched, verified, then loaded."""
    model = (Path(__file__).resolve().parents[2] / "data" / "tiny_2017.ell").read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("d_I4x4x3NCMNC1A.ell", model)
    data = buffer.getvalue()
    entry = entry_for("d_I4x4x3CMC1AS", data)
    catalog = tmp_path / "catalog.json"
    old = {
        **entry.__dict__,
        "name": "d_I4x4x3NCMNC1A",
        "file": "d_I4x4x3NCMNC1A.ell.zip",
        "present_on_master": False,
    }
    catalog.write_text(json.dumps([entry.__dict__, old]))
    server.files["/" + entry.path_in_repo] = data
    args = ["models", "fetch", "d_I4x4x3NCMNC1A", "--dir", str(tmp_path / "m"), "--url-base", base_url(server),
            "--catalog", str(catalog)]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    fetched = Path(out.strip())
    assert fetched == tmp_path / "m" / "d_I4x4x3CMC1AS.ell.zip" and "renamed" in err
    assert edgebnn.load(fetched).name == "d_I4x4x3NCMNC1A"
    server.files["/" + entry.path_in_repo] = data[:100] + bytes([data[100] ^ 1]) + data[101:]
    fetched.unlink()
    assert main(args) == 1
    assert "sha256 mismatch" in capsys.readouterr().err
