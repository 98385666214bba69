"""Capture: newest-frame slots, real sources, bad frames, loss and recovery, backoff."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_support import write_video
from edgebnn.daemon.capture import CameraWorker, Frame, FrameBoard
from edgebnn.daemon.config import CameraConfig
from edgebnn.daemon.stats import OFFLINE, ONLINE, RECONNECTING, CameraStats


def frame(camera: str, value: int) -> Frame:
    return Frame(camera, np.full((4, 4, 3), value, np.uint8), time.time())


def test_board_keeps_only_the_newest_frame_and_counts_replacements() -> None:
    board = FrameBoard()
    token = board.add("a")
    assert board.put(token, frame("a", 1)) is False
    assert board.put(token, frame("a", 2)) is True  # frame 1 was never taken: skipped
    taken = board.take(0.1)
    assert taken is not None and taken.image[0, 0, 0] == 2
    assert board.take(0.05) is None


def test_board_serves_cameras_in_turn() -> None:
    board = FrameBoard()
    tokens = {name: board.add(name) for name in "abc"}
    served = []
    for _ in range(6):
        for name, token in tokens.items():
            board.put(token, frame(name, 0))
        taken = board.take(0.1)
        assert taken is not None
        served.append(taken.camera)
    assert sorted(served[:3]) == ["a", "b", "c"] and sorted(served[3:]) == ["a", "b", "c"]


def test_a_replaced_camera_cannot_deliver() -> None:
    board = FrameBoard()
    old = board.add("a")
    board.remove("a")
    board.add("a")
    assert board.put(old, frame("a", 1)) is None
    assert board.take(0.05) is None


def test_take_wakes_up_when_a_frame_arrives() -> None:
    board = FrameBoard()
    token = board.add("a")
    threading.Timer(0.1, lambda: board.put(token, frame("a", 5))).start()
    start = time.monotonic()
    got = board.take(5.0)
    assert got is not None and time.monotonic() - start < 2.0


def camera(source: Path | str, kind: str, **kw) -> CameraConfig:
    values = {"loop": True, "realtime": False, "backoff_initial": 0.05, "backoff_max": 0.2}
    values.update(kw)
    return CameraConfig(name="cam", kind=kind, source=str(source), **values)


class Run:
    """A worker plus what it reported."""

    def __init__(self, config: CameraConfig) -> None:
        self.board = FrameBoard()
        self.stats = CameraStats(config.name)
        self.states: list[str] = []
        self.worker = CameraWorker(
            config, self.board, self.stats, lambda name: self.states.append(self.stats.state)
        )
        self.worker.start()

    def wait(self, check, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not check():
            time.sleep(0.01)
        return check()

    def stop(self) -> None:
        self.worker.stop()
        assert self.worker.join(2.0)


def test_image_folder_skips_undecodable_files(tmp_path: Path) -> None:
    import cv2

    good = np.zeros((20, 30, 3), np.uint8)
    good[:, :, 2] = 200
    cv2.imwrite(str(tmp_path / "a.png"), good)
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    run = Run(camera(tmp_path, "images", max_fps=200))
    try:
        assert run.wait(lambda: run.stats.failed >= 2 and run.stats.captured >= 2)
        taken = run.board.take(1.0)
        assert taken is not None and taken.image.shape == (20, 30, 3)
        assert taken.image[0, 0, 2] == 200
        assert run.stats.state == ONLINE
    finally:
        run.stop()


def test_only_bad_frames_make_the_source_reconnect(tmp_path: Path) -> None:
    (tmp_path / "b.jpg").write_bytes(b"garbage")
    run = Run(camera(tmp_path, "images", failures_before_reconnect=3))
    try:
        assert run.wait(lambda: RECONNECTING in run.states and run.stats.reconnects >= 1)
        assert run.stats.failed >= 3 and run.stats.captured == 0
        assert "unreadable frames" in run.stats.reason
    finally:
        run.stop()


def test_video_file_without_loop_ends_offline(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.avi", frames=5)
    run = Run(camera(clip, "file", loop=False))
    try:
        assert run.wait(lambda: run.stats.state == OFFLINE)
        assert run.stats.captured == 5
        assert run.stats.reason == "end of stream"
        assert run.worker.join(2.0)  # the thread ended by itself
    finally:
        run.stop()


def test_realtime_video_is_paced_at_its_own_frame_rate(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.avi", frames=10, fps=20.0)
    run = Run(camera(clip, "file", loop=False, realtime=True))
    try:
        start = time.monotonic()
        assert run.wait(lambda: run.stats.state == OFFLINE)
        assert time.monotonic() - start >= 0.4  # 10 frames at 20 fps, not as fast as decoding
    finally:
        run.stop()


def test_camera_loss_then_recovery(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.avi", frames=5)
    away = tmp_path / "away.avi"
    run = Run(camera(clip, "file", max_fps=100))
    try:
        assert run.wait(lambda: run.stats.captured >= 3)
        clip.rename(away)  # the file disappears: the next reopen fails
        assert run.wait(lambda: run.stats.state == RECONNECTING)
        assert "cannot open" in run.stats.reason
        lost_at = run.stats.captured
        assert run.wait(lambda: run.stats.reconnects >= 2)  # retries with backoff
        away.rename(clip)
        assert run.wait(lambda: run.stats.state == ONLINE and run.stats.captured > lost_at)
        assert RECONNECTING in run.states and run.states[-1] == ONLINE
    finally:
        run.stop()


def test_backoff_doubles_is_capped_and_jittered() -> None:
    worker = CameraWorker(
        camera("x", "file", backoff_initial=1.0, backoff_max=8.0),
        FrameBoard(),
        CameraStats("cam"),
        lambda name: None,
    )
    for attempt, cap in enumerate([1, 2, 4, 8, 8, 8]):
        delays = [worker.backoff(attempt) for _ in range(200)]
        assert all(cap * 0.5 <= d <= cap for d in delays)
        assert max(delays) - min(delays) > cap * 0.2  # jittered, not constant
    assert worker.backoff(10_000) <= 8.0


def test_a_device_that_does_not_exist_keeps_retrying() -> None:
    run = Run(camera("/dev/video-edgebnn-missing", "v4l2", open_timeout=1))
    try:
        assert run.wait(lambda: run.stats.reconnects >= 2)
        assert run.stats.state == RECONNECTING
    finally:
        run.stop()


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4, 2), np.uint8),
        "frame",
    ],
)
def test_malformed_frames_are_rejected(bad) -> None:
    from edgebnn.daemon.capture import BadFrame, check_frame

    with pytest.raises(BadFrame):
        check_frame(bad)
