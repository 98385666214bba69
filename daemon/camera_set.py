"""The running cameras: each one's capture process, its slot on the frame board and its
stats, started, stopped and swapped as the config says."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from edgebnn.daemon.capture import CameraProcess
from edgebnn.daemon.frames import FrameBoard, FrameSource
from edgebnn.daemon.stats import OFFLINE, CameraStats


class CameraSet:
    """Capture processes by camera name; ``on_status(name)`` publishes a camera's state."""

    def __init__(
        self, board: FrameBoard, stats: dict[str, CameraStats], on_status: Callable[[str], None]
    ) -> None:
        self.board = board
        self.stats = stats
        self.on_status = on_status
        self.workers: dict[str, CameraProcess] = {}

    def start(self, camera: Any) -> None:
        """Start ``camera``'s capture process (its stats survive a restart)."""
        stats = self.stats.get(camera.name)
        if stats is None:
            stats = self.stats[camera.name] = CameraStats(camera.name)
        source = FrameSource(camera.name)
        self.board.add(source)
        worker = CameraProcess(camera, source, stats, self.on_status)
        self.workers[camera.name] = worker
        worker.start()

    def stop(self, name: str, removed: bool) -> None:
        """Stop one camera; a ``removed`` one says so and loses its stats."""
        worker = self.workers.pop(name)
        worker.stop()
        self.board.remove(name)
        worker.join(0.5)
        if removed:
            self.stats[name].set_state(OFFLINE, "removed from the configuration")
            self.on_status(name)
            del self.stats[name]

    def reconfigure(self, old: Sequence[Any], new: Sequence[Any]) -> list[str]:
        """Restart the cameras whose config changed, stop the removed ones, start the
        added ones; returns the names removed."""
        old_cameras = {c.name: c for c in old}
        new_cameras = {c.name: c for c in new}
        removed = [name for name in old_cameras if name not in new_cameras]
        for name, camera in old_cameras.items():
            if new_cameras.get(name) != camera:
                self.stop(name, removed=name not in new_cameras)
        for name, camera in new_cameras.items():
            if old_cameras.get(name) != camera:
                self.start(camera)
        return removed

    def signal_stop(self) -> None:
        """Ask every capture process to stop (no waiting: see :meth:`join_all`)."""
        for worker in self.workers.values():
            worker.stop()

    def join_all(self, deadline: float) -> None:
        """Wait for each process until ``deadline`` (monotonic) and mark it offline."""
        for name, worker in self.workers.items():
            worker.join(max(0.0, deadline - time.monotonic()))
            self.stats[name].set_state(OFFLINE, "daemon stopping")
            self.on_status(name)
