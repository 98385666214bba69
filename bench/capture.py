"""`edgebnn bench --capture`: what one capture process per camera costs.

1. The hand-over alone: a real capture process with a generated source (no decoding)
   hands WxH frames to this process through shared memory; reports the latency from
   capture to a reader holding the frame, and the CPU time both processes spend per frame,
   beside a plain in-process copy of one frame for scale.
2. The whole daemon's memory: `edgebnn run` in a subprocess with N cameras (looping MJPG
   clips of WxH) and the given model; after a warm-in, the resident memory of the daemon
   and its capture processes, counted honestly (PSS shares each shared page among the
   processes that map it; USS is what each process alone holds; RSS sums overcount).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from edgebnn.bench.timing import median_ms
from edgebnn.daemon.capture import CameraProcess
from edgebnn.daemon.config import SAMPLES_DIR, CameraConfig
from edgebnn.daemon.frames import FrameBoard, FrameSource
from edgebnn.daemon.stats import CameraStats
from edgebnn.daemon.subscribe import connect
from edgebnn.engine.host import child_pids, machine_line, process_memory

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def handover(size: tuple[int, int], frames: int, fps: float | None) -> dict[str, float]:
    """Run a synthetic capture process until `frames` frames were taken; measure."""
    camera = CameraConfig(
        name="bench",
        kind="synthetic",
        source=f"{size[0]}x{size[1]}",
        max_fps=fps,
        realtime=False,
    )
    board, source, stats = FrameBoard(), FrameSource("bench"), CameraStats("bench")
    board.add(source)
    worker = CameraProcess(camera, source, stats, lambda name: None)
    worker.start()
    latencies: list[float] = []
    try:
        first = board.take(60.0)
        assert first is not None, "the capture process delivered nothing"
        first.release()
        pid = worker.pid
        assert pid is not None
        child_start, parent_start = _cpu_seconds(pid), time.process_time()
        seq_start, dropped_start, wall = source.seq, stats.skipped, time.monotonic()
        while len(latencies) < frames:
            frame = board.take(5.0)
            if frame is None:
                raise RuntimeError("the capture process stopped delivering")
            with frame:
                latencies.append((time.time() - frame.captured_at) * 1000)
                int(frame.image[0, 0, 0])  # a reader touches the frame
        child_cpu = _cpu_seconds(pid) - child_start
        parent_cpu = time.process_time() - parent_start
        delivered = source.seq - seq_start  # frames handed over (not dropped for want of a slot)
        dropped = stats.skipped - dropped_start
        seconds = time.monotonic() - wall
    finally:
        worker.stop()
        worker.join(2.0)
    lat = np.array(latencies)
    return {
        "delivered": delivered,
        "dropped": dropped,
        "taken": len(latencies),
        "fps": delivered / seconds,
        "latency_p50": float(np.median(lat)),
        "latency_p95": float(np.percentile(lat, 95)),
        "child_ms": child_cpu * 1000 / max(1, delivered),
        "parent_ms": parent_cpu * 1000 / max(1, delivered),
    }


def copy_ms(size: tuple[int, int], runs: int = 200) -> float:
    """Median milliseconds of one frame copy in this process (the floor of any hand-over)."""
    src = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), np.uint8)
    dst = np.empty_like(src)
    return median_ms(lambda: np.copyto(dst, src), runs)


# ---------------------------------------------------------------- whole-daemon memory


def write_clip(path: Path, size: tuple[int, int], frames: int = 60, fps: float = 30.0) -> Path:
    """An MJPG clip of the bundled photos at `size`."""
    photos = [
        image
        for p in sorted(SAMPLES_DIR.glob("*.jpg"))
        if (image := cv2.imread(str(p))) is not None
    ]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(cv2.resize(photos[(i * len(photos)) // frames], size))
    writer.release()
    return path


def daemon_memory(
    model: str, cameras: int, size: tuple[int, int], fps: float, seconds: float
) -> dict[str, Any]:
    """Run `edgebnn run` with `cameras` looping clips; sample memory once a second."""
    with tempfile.TemporaryDirectory(prefix="edgebnn-bench-") as tmp:
        clip = write_clip(Path(tmp) / "clip.avi", size)
        with connect_free() as (endpoint, sub):
            config = Path(tmp) / "edgebnn.yaml"
            lines = [f"model: '{model}'", f"publish: {{endpoints: ['{endpoint}']}}"]
            lines += ["stats: {interval: 3600}", "cameras:"]
            lines += [
                f"  - {{name: cam{i}, source: '{clip}', max_fps: {fps}}}" for i in range(cameras)
            ]
            config.write_text("\n".join(lines) + "\n")
            daemon = subprocess.Popen(
                [sys.executable, "-m", "edgebnn", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                return _sample(daemon, sub, cameras, seconds)
            finally:
                daemon.terminate()
                daemon.wait(10)


class connect_free:
    """A SUB socket on a free loopback port, as a context manager."""

    def __enter__(self) -> tuple[str, Any]:
        from edgebnn.daemon.demo import free_port

        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.socket = connect(self.endpoint, [b"predictions/"])
        return self.endpoint, self.socket

    def __exit__(self, *exc: object) -> None:
        self.socket.close(linger=0)


def _sample(daemon: subprocess.Popen[bytes], sub: Any, cameras: int, seconds: float) -> dict:
    received = 0
    deadline = time.monotonic() + 600
    while received < 20 * cameras:  # warm: the model compiled, every camera flowing
        if daemon.poll() is not None:
            raise RuntimeError(f"edgebnn run exited with {daemon.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("no predictions from the daemon")
        if sub.poll(500):
            sub.recv_multipart()
            received += 1
    samples: list[dict[str, int]] = []
    per_process: dict[int, dict[str, int]] = {}
    end = time.monotonic() + seconds
    received = 0
    start = time.monotonic()
    while time.monotonic() < end:
        while sub.poll(0):
            sub.recv_multipart()
            received += 1
        pids = [daemon.pid, *child_pids(daemon.pid)]
        total = {"rss": 0, "pss": 0, "uss": 0, "processes": len(pids)}
        for pid in pids:
            try:
                mem = process_memory(pid)
            except OSError:
                continue
            per_process[pid] = mem
            for key in ("rss", "pss", "uss"):
                total[key] += mem[key]
        samples.append(total)
        time.sleep(1.0)
    children = [per_process[p] for p in child_pids(daemon.pid) if p in per_process]
    return {
        "samples": samples,
        "daemon": per_process.get(daemon.pid, {}),
        "children": children,
        "fps": received / (time.monotonic() - start),
    }


def run_capture_benchmark(model: str, cameras: int, size: tuple[int, int], seconds: float) -> int:
    """Print the figures with the machine line; returns 0."""
    print(f"machine: {machine_line()}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    w, h = size
    print(f"one {w}x{h} frame copied in one process: {copy_ms(size):.3f} ms (median)")
    for fps, frames in ((30.0, 300), (None, 2000)):
        r = handover(size, frames, fps)
        pace = f"{fps:.0f} fps" if fps else "unpaced"
        print(
            f"hand-over {w}x{h}, {pace}: {r['delivered']} frames at {r['fps']:.0f} fps "
            f"({r['taken']} taken by the reader, {r['dropped']} skipped), "
            f"capture -> reader latency median {r['latency_p50']:.3f} ms, p95 "
            f"{r['latency_p95']:.3f} ms; CPU per frame: capture process "
            f"{r['child_ms']:.3f} ms, daemon {r['parent_ms']:.3f} ms"
        )
    m = daemon_memory(model, cameras, size, 15.0, seconds)
    last = m["samples"][-1]
    mb = 2**20
    print(
        f"whole daemon, {cameras} cameras at {w}x{h} (15 fps each, {m['fps']:.0f} predictions/s), "
        f"model {model}, steady after warm-in, {len(m['samples'])} samples over {seconds:.0f} s, "
        f"{last['processes']} processes:"
    )
    pss = [s["pss"] for s in m["samples"]]
    print(
        f"  PSS total {last['pss'] / mb:.1f} MB (min {min(pss) / mb:.1f}, max {max(pss) / mb:.1f}); "
        f"USS total {last['uss'] / mb:.1f} MB; RSS sum {last['rss'] / mb:.1f} MB (overcounts "
        f"shared pages)"
    )
    d = m["daemon"]
    print(
        f"  daemon process: RSS {d['rss'] / mb:.1f} MB, PSS {d['pss'] / mb:.1f} MB, "
        f"USS {d['uss'] / mb:.1f} MB"
    )
    for i, c in enumerate(m["children"]):
        print(
            f"  capture process {i}: RSS {c['rss'] / mb:.1f} MB, PSS {c['pss'] / mb:.1f} MB, "
            f"USS {c['uss'] / mb:.1f} MB"
        )
    return 0
