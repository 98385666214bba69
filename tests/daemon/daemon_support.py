"""Helpers for the daemon tests: small random models, generated videos, free loopback
endpoints, an in-process daemon and a real SUB socket that records messages."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq
from edgebnn.daemon.config import DaemonConfig, config_from_dict
from edgebnn.daemon.runner import Daemon

MODEL = "random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A"
OTHER_MODEL = "random:d_I32x32x3NCMNBMNBMNBMNBMNBMNC1A"


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def write_video(
    path: Path, frames: int = 20, size: tuple[int, int] = (96, 72), fps: float = 30.0
) -> Path:
    """An MJPG .avi of moving colour bars (each frame differs)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    x = np.arange(size[0], dtype=np.int32)
    for i in range(frames):
        row = ((x * 3 + i * 17) % 256).astype(np.uint8)
        frame = np.stack([np.tile(row, (size[1], 1))] * 3, axis=2)
        frame[:, :, 1] = 255 - frame[:, :, 1]
        frame[: size[1] // 2, :, 2] = (i * 40) % 256
        writer.write(frame)
    writer.release()
    return path


def make_config(tmp_path: Path, cameras: list[dict[str, Any]], **extra: Any) -> DaemonConfig:
    data: dict[str, Any] = {
        "model": MODEL,
        "cameras": cameras,
        "publish": {"endpoints": [free_endpoint()]},
        "stats": {"interval": 0.5, "status_interval": 0.5},
        "groups": {"dog": {"builtin": "dogs"}, "cat": {"builtin": "cats"}, "low": ["0-99"]},
    }
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(data, base_dir=tmp_path)


class Recorder:
    """A SUB socket on its own thread that keeps every (topic, payload) it receives."""

    def __init__(
        self,
        endpoint: str,
        topics: tuple[bytes, ...] = (b"",),
        setup: Callable[[zmq.Socket], None] | None = None,
    ) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        if setup:
            setup(self.socket)
        for topic in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.socket.connect(endpoint)
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while not self._stop.is_set():
            if poller.poll(50):
                topic, raw = self.socket.recv_multipart()
                with self._lock:
                    self.messages.append((topic.decode(), json.loads(raw)))

    def of(self, prefix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for t, p in self.messages if t.startswith(prefix)]

    def wait_for(self, check: Callable[[Recorder], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self):
                return True
            time.sleep(0.02)
        return check(self)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.socket.close(linger=0)
        self.context.term()


class Running:
    """An in-process daemon on a thread; stop() returns its exit code."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.daemon.run()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.daemon.ready.wait(0.05):
            assert self.thread.is_alive(), f"daemon exited with {self.code}"
            assert time.monotonic() < deadline, "daemon not ready in time"

    def stop(self) -> int | None:
        self.daemon.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.code


def subprocess_env() -> dict[str, str]:
    """The environment for `edgebnn` subprocesses (keeps NUMBA_CACHE_DIR, no systemd vars)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM", "INVOCATION_ID")
    }
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


EDGEBNN = [sys.executable, "-m", "edgebnn"]
