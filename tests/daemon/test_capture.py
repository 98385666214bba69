"""Capture: the shared-memory hand-over, newest-frame sources, and real capture processes
(real sources, bad frames, loss and recovery, backoff, looping without reopening)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_support import write_video
from edgebnn.daemon import capture_run, handover
from edgebnn.daemon.capture import CameraProcess
from edgebnn.daemon.capture_sources import BadFrame, check_frame
from edgebnn.daemon.config import CameraConfig
from edgebnn.daemon.frames import FrameBoard, FrameSource
from edgebnn.daemon.stats import OFFLINE, ONLINE, RECONNECTING, CameraStats


class Writer:
    """The writing side of a ring, in this process: which slots were given back."""

    def __init__(self, shape: tuple[int, ...] = (4, 4, 3), slots: int = 4) -> None:
        self.shape = shape
        self.ring, fd = handover.Ring.create(handover.frame_bytes(shape), slots)
        os.close(fd)
        self.free = list(range(slots))

    def put(self, source: FrameSource, value: int) -> bool:
        index = self.free.pop()
        view = self.ring.slot(index, self.shape)
        view[...] = value
        return source.put(view, time.time(), lambda: self.free.append(index))


# ---------------------------------------------------------------- hand-over, in process


def test_ring_is_shared_between_mappings_and_read_only_for_the_reader() -> None:
    ring, fd = handover.Ring.create(18, slots=3)
    try:
        reader = handover.Ring.attach(fd, 18, 3)
    finally:
        os.close(fd)
    ring.slot(2, (2, 3, 3))[...] = 7
    assert reader.slot(2, (2, 3, 3))[1, 2, 0] == 7 and reader.slot(1, (2, 3, 3)).sum() == 0
    assert reader.slot(2, (4, 2)).shape == (4, 2)  # a smaller frame uses the slot's start
    with pytest.raises(ValueError):
        reader.slot(0, (2, 3, 3))[0, 0, 0] = 1
    with pytest.raises(ValueError):
        ring.slot(0, (4, 4, 3))  # does not fit
    with pytest.raises(ValueError):
        handover.Ring.attach(os.memfd_create("small"), 18, 3)


def test_messages_and_descriptors_cross_the_socket_pair() -> None:
    a, b = handover.socket_pair()
    ring, fd = handover.Ring.create(4, 2)
    ring.slot(1, (2, 2))[...] = 9
    assert handover.send(a, {"t": "ring", "slot_bytes": 4}, fd)
    os.close(fd)
    message, received = handover.receive(b)
    assert message == {"t": "ring", "slot_bytes": 4} and received is not None
    assert handover.Ring.attach(received, 4, 2).slot(1, (2, 2))[0, 0] == 9
    os.close(received)
    a.send(b"[1, 2]")
    with pytest.raises(ValueError):
        handover.receive(b)
    a.close()
    assert handover.receive(b) == (None, None)  # the peer is gone
    assert handover.send(b, {"t": "free"}) is False
    b.close()


def test_source_keeps_only_the_newest_frame_and_gives_slots_back() -> None:
    source, writer = FrameSource("a"), Writer()
    assert source.latest() is None
    assert writer.put(source, 1) is False
    assert writer.put(source, 2) is True  # frame 1 was never taken: skipped
    assert len(writer.free) == 3  # frame 1's slot went back at once
    frame = source.take_unseen()
    assert frame is not None and frame.image[0, 0, 0] == 2 and frame.seq == 2
    assert source.take_unseen() is None  # nothing newer
    assert writer.put(source, 3) is False  # frame 2 was taken: not a skip
    assert len(writer.free) == 2  # frame 2 is still held by its reader
    frame.release()
    frame.release()  # idempotent
    assert len(writer.free) == 3
    with source.latest() as newest:  # another reader: the newest, seen or not
        assert newest.image[0, 0, 0] == 3
        source.clear()
        assert newest.image[0, 0, 0] == 3  # still valid while held
        assert len(writer.free) == 3
    assert len(writer.free) == 4 and source.latest() is None


def test_board_serves_cameras_in_turn() -> None:
    board = FrameBoard()
    sources = {name: FrameSource(name) for name in "abc"}
    writers = {name: Writer() for name in "abc"}
    for source in sources.values():
        board.add(source)
    served = []
    for _ in range(6):
        for name, source in sources.items():
            writers[name].put(source, 0)
        taken = board.take(0.1)
        assert taken is not None
        served.append(taken.camera)
        taken.release()
    assert sorted(served[:3]) == ["a", "b", "c"] and sorted(served[3:]) == ["a", "b", "c"]
    assert board.pending() == 2  # the last round: two cameras still wait


def test_a_removed_camera_cannot_deliver() -> None:
    board, old = FrameBoard(), FrameSource("a")
    board.add(old)
    board.remove("a")
    board.add(FrameSource("a"))
    Writer().put(old, 1)
    assert board.take(0.05) is None


def test_take_wakes_up_when_a_frame_arrives() -> None:
    board, source, writer = FrameBoard(), FrameSource("a"), Writer()
    board.add(source)
    threading.Timer(0.1, lambda: writer.put(source, 5)).start()
    start = time.monotonic()
    got = board.take(5.0)
    assert got is not None and time.monotonic() - start < 2.0


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
    with pytest.raises(BadFrame):
        check_frame(bad)


# ---------------------------------------------------------------- real capture processes


def camera(source: Path | str, kind: str, **kw) -> CameraConfig:
    values = {"loop": True, "realtime": False, "backoff_initial": 0.05, "backoff_max": 0.2}
    values.update(kw)
    return CameraConfig(name="cam", kind=kind, source=str(source), **values)


class Run:
    """A supervised capture process plus what it reported."""

    def __init__(self, config: CameraConfig) -> None:
        self.board = FrameBoard()
        self.source = FrameSource(config.name)
        self.board.add(self.source)
        self.stats = CameraStats(config.name)
        self.states: list[str] = []
        self.worker = CameraProcess(
            config, self.source, self.stats, lambda name: self.states.append(self.stats.state)
        )
        self.worker.start()

    def wait(self, check, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not check():
            time.sleep(0.01)
        return check()

    def stop(self) -> None:
        pid = self.worker.pid
        self.worker.stop()
        assert self.worker.join(2.0)
        if pid is not None:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "gone"


def test_capture_process_is_small_and_never_loads_the_engine(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.avi", frames=5)
    run = Run(camera(clip, "file", max_fps=50))
    try:
        assert run.wait(lambda: run.stats.captured >= 2)
        pid = run.worker.pid
        assert pid is not None and pid != os.getpid()
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "cv2" in maps  # it is the capture process
        # Python packages, by directory (Debian's OpenCV itself may link libzmq).
        for package in ("/numba/", "/llvmlite/", "/zmq/"):
            assert package not in maps, package
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "cap:cam"
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert str(clip).encode() not in cmdline  # settings travel over the socket
    finally:
        run.stop()


def test_image_folder_skips_undecodable_files(tmp_path: Path) -> None:
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
        taken.release()
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
        assert run.worker.restarts == 0  # retried inside the same process
    finally:
        run.stop()


def test_video_file_without_loop_ends_offline(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.avi", frames=5)
    run = Run(camera(clip, "file", loop=False))
    try:
        assert run.wait(lambda: run.stats.state == OFFLINE)
        assert run.stats.captured == 5
        assert run.stats.reason == "end of stream"
        assert run.worker.join(3.0)  # the process and its supervisor ended by themselves
        assert run.worker.restarts == 0
    finally:
        run.stop()


def test_realtime_video_is_paced_at_its_own_frame_rate(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.avi", frames=10, fps=20.0)
    run = Run(camera(clip, "file", loop=False, realtime=True))
    try:
        assert run.wait(lambda: run.stats.captured >= 1)
        start = time.monotonic()
        assert run.wait(lambda: run.stats.state == OFFLINE)
        assert time.monotonic() - start >= 0.4  # 9 more frames at 20 fps, not decoding speed
    finally:
        run.stop()


def test_a_looping_file_seeks_back_instead_of_reopening(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.avi", frames=6)
    run = Run(camera(clip, "file", max_fps=200))
    try:
        assert run.wait(lambda: run.stats.captured >= 30)  # five passes
        assert run.worker.opens == 1 and run.worker.restarts == 0
        # A file replaced by another one (new size) is reopened at the end of the pass.
        replacement = write_video(tmp_path / "new.avi", frames=6, size=(128, 96))  # a new ring
        replacement.replace(clip)
        assert run.wait(lambda: run.worker.opens == 2)
        assert run.wait(lambda: (f := run.source.latest()) is not None and f.image.shape[1] == 128)
    finally:
        run.stop()


def test_camera_loss_then_recovery(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.avi", frames=5)
    away = tmp_path / "away.avi"
    run = Run(camera(clip, "file", max_fps=100))
    try:
        assert run.wait(lambda: run.stats.captured >= 3)
        clip.rename(away)  # the file disappears: the next pass reopens, and that fails
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
    worker = CameraProcess(
        camera("x", "file", backoff_initial=1.0, backoff_max=8.0),
        FrameSource("cam"),
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


def test_a_killed_capture_process_is_restarted(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.avi", frames=5)
    run = Run(camera(clip, "file", max_fps=50))
    try:
        assert run.wait(lambda: run.stats.captured >= 2)
        first = run.worker.pid
        assert first is not None
        os.kill(first, 9)
        assert run.wait(lambda: run.stats.state == RECONNECTING)
        assert "SIGKILL" in run.stats.reason
        assert run.wait(lambda: run.worker.pid not in (None, first) and run.stats.state == ONLINE)
        count = run.stats.captured
        assert run.wait(lambda: run.stats.captured > count + 2)
        assert run.worker.restarts == 1
    finally:
        run.stop()


def test_frames_cross_whole_and_in_order_at_full_speed() -> None:
    """A generated source as fast as the hand-over goes: every frame a reader holds is
    intact (no slot is rewritten while held) and frame numbers only grow."""
    run = Run(CameraConfig(name="cam", kind="synthetic", source="64x48", realtime=False))
    try:
        expected = np.arange(64, dtype=np.uint32)[None, :] % 256
        numbers = []
        while len(numbers) < 300:
            frame = run.board.take(10.0)
            assert frame is not None
            with frame:
                stamp = int.from_bytes(frame.image[0, :8, 0].tobytes(), "little")
                time.sleep(0.001)  # hold it while the capture process keeps writing
                assert int.from_bytes(frame.image[0, :8, 0].tobytes(), "little") == stamp
                assert (frame.image[:, :, 1] == expected).all()
                numbers.append((frame.seq, stamp))
        for (seq_a, stamp_a), (seq_b, stamp_b) in itertools.pairwise(numbers):
            assert seq_b > seq_a and stamp_b > stamp_a
        assert run.stats.captured >= 300
    finally:
        run.stop()


def test_a_capture_process_that_cannot_start_is_retried(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(capture_run, "child_command", lambda fd: [str(tmp_path / "no-python")])
    run = Run(camera(tmp_path, "images"))
    try:
        assert run.wait(lambda: run.worker.restarts >= 2)
        assert run.stats.state == RECONNECTING
        assert "cannot start a capture process" in run.stats.reason
    finally:
        run.stop()
