"""One camera can never stall another: misbehaving cameras beside healthy ones, with real
capture processes, real HTTP servers and a real SUB socket.

The stall window lasts EDGEBNN_STALL_SECONDS (default 25 s): during it the healthy cameras
(a looping video file, an image folder) must keep publishing with no gap over 2 s while
the others hang in the HTTP handshake, hang after the headers, stop sending frames, get
their capture process SIGKILLed or frozen (SIGSTOP). All run at once in one daemon, so the
window is paid once.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from daemon_support import EDGEBNN, MODEL, free_endpoint, make_config, subprocess_env
from edgebnn.daemon.stats import ONLINE, RECONNECTING
from mjpeg_server import MjpegServer

STALL_SECONDS = float(os.environ.get("EDGEBNN_STALL_SECONDS", "25"))
MAX_GAP = 2.0
DETECTION_SECONDS = 20.0  # read_timeout 2 s + hang grace 2 s + kill, with slack for a loaded CI
FAST_RETRY = {"initial": 0.2, "max": 1.0}


def gaps(published: list[float], start: float, end: float) -> float:
    """The longest time without a message between start and end."""
    times = [start] + sorted(t for t in published if start <= t <= end) + [end]
    return max(b - a for a, b in itertools.pairwise(times))


def states(rec, camera: str) -> list[str]:
    return [s["state"] for s in rec.of(f"status/{camera}/")]


def test_hung_cameras_never_stall_the_others(
    tmp_path, video, image_dir, start_daemon, recorder, caplog
) -> None:
    caplog.set_level(logging.DEBUG, logger="edgebnn")
    shm_before = _shm()
    servers = {
        "handshake": MjpegServer("serve"),
        "headers": MjpegServer("serve"),
        "stopped": MjpegServer("serve"),
        "killed": MjpegServer("serve"),
        "frozen": MjpegServer("serve"),
    }
    down = MjpegServer("serve")
    down_url = down.url
    down.close()  # nothing listens there: the camera is down when the daemon starts
    url_camera = {"open_timeout": 2, "read_timeout": 2, "backoff": FAST_RETRY, "max_fps": 10}
    config = make_config(
        tmp_path,
        [
            {"name": "clip", "source": str(video), "max_fps": 15},
            {"name": "stills", "source": str(image_dir), "max_fps": 15},
            {"name": "down", "source": down_url, **url_camera},
            *({"name": name, "source": s.url, **url_camera} for name, s in servers.items()),
        ],
        logging={"level": "debug"},
    )
    rec = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    daemon = running.daemon
    try:
        running.wait_ready()
        every = ("clip", "stills", *servers)
        assert rec.wait_for(lambda r: all(r.of(f"predictions/{c}/") for c in every), 60)

        # The stall window: every misbehaviour at once.
        servers["handshake"].mode = "hang_handshake"
        servers["headers"].mode = "hang_after_headers"
        servers["stopped"].frames_before_stop = 0
        servers["stopped"].mode = "stop_frames"  # its stream stalls, the connection stays
        for name in ("handshake", "headers"):
            servers[name].drop_clients()  # their streams end: the reconnection hangs
        killed = daemon.workers["killed"].pid
        frozen = daemon.workers["frozen"].pid
        assert killed and frozen
        start = time.time()
        os.kill(killed, signal.SIGKILL)
        os.kill(frozen, signal.SIGSTOP)
        time.sleep(STALL_SECONDS)
        end = time.time()

        for camera in ("clip", "stills"):
            published = [p["published_at"] for p in rec.of(f"predictions/{camera}/")]
            longest = gaps(published, start, end)
            assert longest <= MAX_GAP, f"{camera}: {longest:.2f} s without a prediction"
        # Each misbehaving camera is noticed: a frozen process only after the time its
        # last call announced (read_timeout) plus the hang grace, hence a bounded wait.
        for camera in ("handshake", "headers", "stopped", "killed", "frozen", "down"):
            assert rec.wait_for(
                lambda r, c=camera: any(
                    s["state"] == RECONNECTING and s["published_at"] >= start
                    for s in r.of(f"status/{c}/")
                ),
                DETECTION_SECONDS,
            ), (camera, rec.of(f"status/{camera}/")[-3:])
        assert "SIGKILL" in " ".join(s["reason"] for s in rec.of("status/killed/"))
        assert "stuck" in " ".join(s["reason"] for s in rec.of("status/frozen/"))
        assert daemon.workers["frozen"].pid != frozen
        assert daemon.workers["killed"].pid != killed
        assert not Path(f"/proc/{frozen}").exists() or "Z" in _state(frozen)

        # The servers recover: so do their cameras, and the down one comes up.
        recovered_at = time.time()
        for server in servers.values():
            server.mode = "serve"
            server.drop_clients()
        for camera in ("handshake", "headers", "stopped", "killed", "frozen"):
            assert rec.wait_for(
                lambda r, c=camera: any(
                    p["published_at"] > recovered_at for p in r.of(f"predictions/{c}/")
                ),
                60,
            ), camera
            assert daemon.stats[camera].state == ONLINE
        assert daemon.stats["down"].state == RECONNECTING
        assert running.stop() == 0
    finally:
        for server in servers.values():
            server.close()

    assert not _ours(_shm() - shm_before)  # nothing left in /dev/shm, SIGKILL or not

    # Log levels: a warning when a camera starts failing (the down camera at start too),
    # debug lines while it keeps failing, info when it comes back.
    records = [r for r in caplog.records if r.name == "edgebnn.daemon.capture"]
    for camera in ("down", "handshake", "headers", "stopped", "killed", "frozen"):
        failing, warned = False, 0
        for record in records:
            text = record.getMessage()
            if not text.startswith(f"camera {camera} "):
                continue
            if text.startswith(f"camera {camera} reconnecting"):
                assert record.levelno == (logging.DEBUG if failing else logging.WARNING), text
                warned += not failing
                failing = True
            elif text.startswith(f"camera {camera} online"):
                assert record.levelno == logging.INFO
                failing = False
        assert warned >= 1, camera
    repeats = [r for r in records if r.getMessage().startswith("camera down reconnecting")]
    assert len(repeats) >= 3 and repeats[0].levelno == logging.WARNING
    # FFmpeg's and OpenCV's own stderr lines arrive through the logger, at debug level.
    chatter = [r for r in records if "[capture]" in r.getMessage()]
    assert chatter and all(r.levelno == logging.DEBUG for r in chatter)


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _ours(names: set[str]) -> list[str]:
    """Shared memory names this suite could have made (other jobs on the machine may add
    their own meanwhile): multiprocessing's psm_*, or anything naming edgebnn."""
    return [n for n in names if n.startswith("psm_") or "edgebnn" in n]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_sigterm_during_a_hung_open_exits_at_once_and_leaves_nothing(tmp_path, video) -> None:
    server = MjpegServer("hang_after_headers")
    shm_before = _shm()
    endpoint = free_endpoint()
    config = tmp_path / "edgebnn.yaml"
    config.write_text(
        f"model: {MODEL}\npublish: {{endpoints: ['{endpoint}']}}\ncameras:\n"
        f"  - {{name: clip, source: '{video}', max_fps: 15}}\n"
        f"  - {{name: hung, source: '{server.url}', open_timeout: 60, read_timeout: 60}}\n"
    )
    daemon = subprocess.Popen(
        [*EDGEBNN, "run", "--config", str(config)],
        env=subprocess_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_children(daemon.pid)) < 2 or server.connections < 1:
            assert daemon.poll() is None, daemon.stderr.read()
            assert time.monotonic() < deadline, "the capture processes did not start"
            time.sleep(0.1)
        time.sleep(1.0)  # the hung camera is now inside VideoCapture's open
        children = _children(daemon.pid)
        assert len(children) == 2
        start = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(10)
        took = time.monotonic() - start
        err = daemon.stderr.read()
    finally:
        if daemon.poll() is None:
            daemon.kill()
        server.close()
    assert code == 0, err
    assert took <= 2.0, f"took {took:.2f} s"
    time.sleep(0.2)
    left = [pid for pid in children if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"]
    assert not left, left
    assert not _ours(_shm() - shm_before)
    # Everything on stderr came through the logger: no raw FFmpeg or OpenCV lines.
    for line in err.splitlines():
        assert " edgebnn." in line, line


def test_a_killed_daemon_takes_its_capture_processes_along(tmp_path, video) -> None:
    endpoint = free_endpoint()
    config = tmp_path / "edgebnn.yaml"
    config.write_text(
        f"model: {MODEL}\npublish: {{endpoints: ['{endpoint}']}}\ncameras:\n"
        f"  - {{name: clip, source: '{video}', max_fps: 15}}\n"
    )
    daemon = subprocess.Popen(
        [*EDGEBNN, "run", "--config", str(config)],
        env=subprocess_env(),
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(_comm(p) == "cap:clip" for p in _children(daemon.pid)):
            assert daemon.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, "no capture process started"
            time.sleep(0.1)
        children = _children(daemon.pid)
    finally:
        daemon.kill()
        daemon.wait(10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() and _state(p) != "Z" for p in children):
        assert time.monotonic() < deadline, "a capture process outlived the daemon"
        time.sleep(0.05)
