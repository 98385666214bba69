"""One capture process per camera, supervised by the daemon.

Each camera runs in its own process (:mod:`edgebnn.daemon.capture_child`) so that nothing
a camera does, an ``open()`` stuck on a silent server, a driver hung in the kernel, a
decoder that segfaults, can delay another camera or the daemon; OpenCV's FFmpeg backend
even serialises ``VideoCapture`` opens within one process. A supervisor thread per camera
starts the process, reads its messages (frames in shared memory, states, bad frames),
forwards its stderr (FFmpeg's and OpenCV's chatter) to the log at debug level, and kills
and restarts it, with the camera's backoff, when it exits or stops answering within the
time it announced for its current call plus a grace period.

The process is started with a fresh interpreter (never ``fork``: the daemon's Numba and
OpenMP threads exist by then), and imports only NumPy and OpenCV: the parent packages'
``__init__`` modules are skipped, so the engine never loads there.
"""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import threading
from collections.abc import Callable

from edgebnn.daemon.capture_run import ChildRun
from edgebnn.daemon.config import CameraConfig
from edgebnn.daemon.frames import FrameSource
from edgebnn.daemon.stats import OFFLINE, ONLINE, RECONNECTING, CameraStats

log = logging.getLogger(__name__)


class CameraProcess:
    """Runs one camera's capture process: start, watch, kill and restart on failure."""

    def __init__(
        self,
        camera: CameraConfig,
        source: FrameSource,
        stats: CameraStats,
        on_state: Callable[[str], None],
        start_delay: float = 0.0,
    ) -> None:
        self.camera = camera
        self.source = source
        self.stats = stats
        self.on_state = on_state
        self.start_delay = start_delay
        self.pid: int | None = None  # the running capture process
        self.restarts = 0  # processes killed or lost and started again
        self.opens = 0  # times the current process opened its source
        self._failing = False  # a failure was logged at warning level since the last online
        self._process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._random = random.Random()
        self._thread = threading.Thread(
            target=self._run, name=f"capture-{camera.name}", daemon=True
        )

    # -- control

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the capture process to end now (SIGTERM; SIGKILL follows if needed)."""
        self._stop.set()
        process = self._process
        if process is not None and process.returncode is None:
            try:
                process.send_signal(signal.SIGTERM)
            except OSError:
                pass

    def join(self, timeout: float) -> bool:
        """Wait for the supervisor (and its process) to end; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def backoff(self, attempt: int) -> float:
        """Seconds before restart `attempt` (0-based): doubling, capped, 50-100% jitter."""
        cap = min(self.camera.backoff_max, self.camera.backoff_initial * 2 ** min(attempt, 30))
        return cap * self._random.uniform(0.5, 1.0)

    # -- states and logging

    def _state(self, state: str, reason: str, detail: str = "") -> None:
        """Record and announce a state. A failure logs a warning the first time (at start
        too), then debug lines while the camera keeps failing; recovery logs info.
        `detail` goes to the log line only (not to the published status)."""
        if self._stop.is_set():
            return  # stopped: a newer supervisor or the shutdown owns the camera's state
        previous = self.stats.state
        if not self.stats.set_state(state, reason):
            return
        if state == ONLINE:
            if previous != ONLINE:
                log.info("camera %s online: %s", self.camera.name, reason)
            self._failing = False
        elif state == OFFLINE and reason == "end of stream":
            log.info("camera %s offline: %s", self.camera.name, reason)
        else:
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(level, "camera %s %s: %s%s", self.camera.name, state, reason, detail)
            self._failing = True
        self.on_state(self.camera.name)

    # -- the supervisor thread

    def _run(self) -> None:
        attempt = 1 if self.start_delay else 0
        if self.start_delay and self._stop.wait(self.start_delay):
            return
        while not self._stop.is_set():
            tail = ""
            try:
                run = ChildRun(self, attempt)
            except OSError as exc:  # no memory, no descriptors, no executable ...
                failure, delivered = f"cannot start a capture process: {exc}", False
            else:
                try:
                    run.supervise()
                except Exception:
                    log.exception("camera %s: capture supervisor error", self.camera.name)
                    run.failure = run.failure or "supervisor error"
                finally:
                    run.finish()
                if run.ended:
                    return
                failure, delivered = str(run.failure), run.delivered
                tail = " | ".join(run.stderr_tail) if run.exited else ""
            if self._stop.is_set():
                return
            if delivered:
                attempt = 0
            delay = self.backoff(attempt)
            attempt += 1
            self.restarts += 1
            self.stats.add(reconnects=1)
            self._state(
                RECONNECTING,
                f"{failure}; restarting in {delay:.1f} s",
                f" (last output: {tail})" if tail else "",
            )
            self._stop.wait(delay)
