"""Download a catalog model: progress bar, resume, size + sha256 check, atomic rename.

The file grows in ``<dir>/.<file>.part``; a dropped connection is retried with an HTTP
``Range`` request from where it stopped. Only a file whose size and sha256 match the
catalog is renamed into place; a mismatch deletes the partial file and raises
:class:`ModelError`. ``$EDGEBNN_MODELS_URL_BASE`` (or ``url_base``) replaces the GitHub
base URL, e.g. with a mirror or, in the tests, a server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

from edgebnn.engine.errors import ModelError
from edgebnn.engine.formats.catalog import Entry

URL_BASE_ENV = "EDGEBNN_MODELS_URL_BASE"
MODELS_DIR_ENV = "EDGEBNN_MODELS_DIR"
CHUNK = 1 << 16


def models_dir(explicit: str | Path | None = None) -> Path:
    """``--dir``, else ``$EDGEBNN_MODELS_DIR``, else ``$STATE_DIRECTORY/models`` (systemd),
    else ``$XDG_DATA_HOME/edgebnn/models`` (default ``~/.local/share/edgebnn/models``)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV]).expanduser()
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0]) / "models"
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "edgebnn" / "models"


def url_for(entry: Entry, url_base: str | None = None) -> str:
    """The entry's URL, or its repository path under ``url_base`` / ``$EDGEBNN_MODELS_URL_BASE``."""
    base = url_base or os.environ.get(URL_BASE_ENV)
    if not base:
        return entry.url
    return base.rstrip("/") + "/" + entry.path_in_repo.lstrip("/")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Progress:
    """A one-line progress bar on a terminal stream (redrawn at most 10 times a second)."""

    def __init__(self, stream: TextIO | None, label: str, total: int) -> None:
        self.stream, self.label, self.total, self.last = stream, label, max(total, 1), 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.stream is None or (not force and now - self.last < 0.1):
            return
        self.last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        self.stream.write(
            f"\r{self.label} [{bar:<30}] {frac:6.1%} {done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
        )
        self.stream.flush()

    def close(self, done: int) -> None:
        if self.stream is not None:
            self.update(done, force=True)
            self.stream.write("\n")


def fetch(entry: Entry, directory: str | Path, *, url_base: str | None = None,
          progress: TextIO | None = None, retries: int = 5, backoff: float = 1.0,
          timeout: float = 30.0) -> Path:  # fmt: skip
    """Download ``entry`` into ``directory``; returns the verified file's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / entry.file
    if final.exists() and final.stat().st_size == entry.size and sha256_file(final) == entry.sha256:
        return final
    part = directory / f".{entry.file}.part"
    url = url_for(entry, url_base)
    bar = Progress(progress, entry.file, entry.size)
    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if have > entry.size:
            part.unlink()
            have = 0
        if have == entry.size:
            break
        try:
            _download(url, part, have, entry.size, timeout, bar)
            failures = 0  # progress was made; keep going
        except _Retryable as exc:
            made_progress = part.exists() and part.stat().st_size > have
            failures = 0 if made_progress else failures + 1
            if failures > retries:
                bar.close(part.stat().st_size if part.exists() else 0)
                raise ModelError(
                    f"download failed after {retries} retries: {exc}", path=url
                ) from None
            time.sleep(backoff * min(failures, 5))
        except OSError as exc:
            raise ModelError(f"cannot write the download: {exc}", path=str(part)) from None
    bar.close(entry.size)
    digest = sha256_file(part)
    if digest != entry.sha256:
        part.unlink()
        raise ModelError(
            f"sha256 mismatch: expected {entry.sha256}, got {digest}; the download was deleted "
            "(corrupted file or a wrong mirror)",
            path=url,
        )
    with part.open("rb") as stream:
        os.fsync(stream.fileno())
    os.replace(part, final)
    return final


class _Retryable(Exception):
    """A transient failure: the connection dropped, timed out or the server hiccupped."""


def _download(url: str, part: Path, have: int, size: int, timeout: float, bar: Progress) -> None:
    """Append to ``part`` from byte ``have`` on; raises _Retryable or ModelError."""
    if not url.startswith(("http://", "https://", "file:")):
        raise ModelError("only http(s) URLs are supported", path=url)
    request = urllib.request.Request(url, headers={"User-Agent": "edgebnn"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = getattr(response, "status", 200)
            if have and status != 206:
                have = 0  # the server ignored the Range header: start over
            length = response.headers.get("Content-Length")
            if length is not None and have + int(length) > size:
                raise ModelError(
                    f"size mismatch: the server sends {have + int(length)} bytes, the catalog "
                    f"says {size}; refusing the download", path=url)  # fmt: skip
            with part.open("r+b" if have else "wb") as stream:
                stream.seek(have)
                stream.truncate()
                done = have
                while done < size:
                    block = response.read(min(CHUNK, size - done + 1))
                    if not block:
                        break
                    stream.write(block)
                    done += len(block)
                    bar.update(done)
                    if done > size:
                        stream.truncate(size)
                        raise ModelError(
                            f"size mismatch: the server sends more than {size} bytes", path=url
                        )
            if done < size:
                raise _Retryable(f"connection closed at {done} of {size} bytes")
    except urllib.error.HTTPError as exc:
        if exc.code in (408, 429) or exc.code >= 500:
            raise _Retryable(f"HTTP {exc.code}") from None
        if exc.code == 416:
            raise _Retryable("HTTP 416 (range not satisfiable)") from None
        raise ModelError(f"HTTP {exc.code} {exc.reason}", path=url) from None
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        raise _Retryable(str(getattr(exc, "reason", exc)) or type(exc).__name__) from None
