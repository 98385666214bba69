"""Fixtures for the daemon tests (helpers live in daemon_support.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from daemon_support import Recorder, Running, write_video
from edgebnn.daemon.config import SAMPLES_DIR, DaemonConfig
from edgebnn.daemon.runner import Daemon


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.avi")


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """A folder with one real photo (so every frame's expected output is known)."""
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(SAMPLES_DIR / "chelsea.jpg", folder / "chelsea.jpg")
    return folder


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(config: DaemonConfig, **kwargs: Any) -> Running:
        running = Running(Daemon(config, context=zmq.Context(), **kwargs))
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()
        running.daemon.context.term()


@pytest.fixture
def recorder() -> Iterator[Callable[..., Recorder]]:
    made: list[Recorder] = []

    def make(endpoint: str, *args: Any, **kwargs: Any) -> Recorder:
        rec = Recorder(endpoint, *args, **kwargs)
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.close()
