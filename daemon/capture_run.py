"""One capture process from start to end, seen from its supervisor
(:class:`~edgebnn.daemon.capture.CameraProcess`): the command that starts it, the
settings it is sent, its messages (frames in shared memory, states, bad frames), its
stderr, and its end: exited, hung past the time it announced, or stopped.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Any

from edgebnn.daemon import handover
from edgebnn.daemon.config import IMAGE_SUFFIXES, CameraConfig
from edgebnn.daemon.stats import OFFLINE, ONLINE

# The supervisor's logger (edgebnn.daemon.capture): all of a camera's capture lines, the
# supervisor's and its process's stderr, share one logger name, so one rule covers them.
log = logging.getLogger(__name__.rsplit(".", 1)[0] + ".capture")

CHILD_MODULE = __name__.rsplit(".", 1)[0] + ".capture_child"
SPAWN_LIMIT = 30.0  # seconds for a new process to say hello (interpreter start-up)
HANG_GRACE = 2.0  # seconds beyond the time a call announced before the process is killed
KILL_WAIT = 0.5  # seconds between SIGTERM and SIGKILL when stopping a process

# Start the child with the packages above it as empty stubs: their __init__ (which loads
# the engine) never runs, and only the child module and what it imports are loaded.
BOOTSTRAP = (
    "import importlib,json,os,sys,types\n"
    "if sys.platform.startswith('linux'):\n"  # die with the daemon, before any import
    " import ctypes;ctypes.CDLL(None).prctl(1,9,0,0,0)\n"
    "if os.getppid()!=int(sys.argv[4]):sys.exit(0)\n"
    "if sys.path and sys.path[0]=='':del sys.path[0]\n"
    "for n,p in json.loads(sys.argv[1]):\n"
    " m=types.ModuleType(n);m.__path__=p;sys.modules[n]=m\n"
    "sys.exit(importlib.import_module(sys.argv[2]).main(int(sys.argv[3]),int(sys.argv[4])))"
)


def child_command(fd: int) -> list[str]:
    """The command line of a capture process talking on descriptor `fd`."""
    parts = CHILD_MODULE.split(".")[:-1]
    packages = []
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        packages.append((name, list(sys.modules[name].__path__)))
    return [
        sys.executable,
        "-c",
        BOOTSTRAP,
        json.dumps(packages),
        CHILD_MODULE,
        str(fd),
        str(os.getpid()),
    ]


def child_settings(camera: CameraConfig, attempt: int) -> dict[str, Any]:
    """What the capture process needs to know (sent over the socket, never on argv: a
    URL may carry a password)."""
    return {
        "t": "settings",
        "name": camera.name,
        "kind": camera.kind,
        "source": camera.source,
        "loop": camera.loop,
        "realtime": camera.realtime,
        "max_fps": camera.max_fps,
        "open_timeout": camera.open_timeout,
        "read_timeout": camera.read_timeout,
        "width": camera.width,
        "height": camera.height,
        "backoff_initial": camera.backoff_initial,
        "backoff_max": camera.backoff_max,
        "failures_before_reconnect": camera.failures_before_reconnect,
        "image_suffixes": list(IMAGE_SUFFIXES),
        "attempt": attempt,
    }


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


class ChildRun:
    """One capture process from start to end, seen from its supervisor."""

    def __init__(self, owner: Any, attempt: int) -> None:
        # owner: the CameraProcess supervising this run (its pid, stats and frame slot)
        self.owner = owner
        self.camera = owner.camera
        self.attempt = attempt
        self.delivered = False  # any frame arrived
        self.ended = False  # the stream ended (a file without loop): no restart
        self.failure: str | None = None
        self.exited = False  # the process ended by itself (its last output is worth a look)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=8)
        self._stderr_buffer = b""
        self._ring: handover.Ring | None = None
        self._ring_id = 0
        self._doing = "starting"
        self.sock, child_sock = handover.socket_pair()
        try:
            self.process = subprocess.Popen(
                child_command(child_sock.fileno()),
                pass_fds=[child_sock.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C in a terminal reaches the daemon only
            )
        except BaseException:
            self.sock.close()
            raise
        finally:
            child_sock.close()
        owner._process = self.process
        owner.pid = self.process.pid
        if owner._stop.is_set():  # stop() came while starting
            self.process.send_signal(signal.SIGTERM)
        handover.send(self.sock, child_settings(self.camera, attempt))

    def supervise(self) -> None:
        """Read messages and stderr until the process ends, hangs or is stopped."""
        assert self.process.stderr is not None
        stderr = self.process.stderr.fileno()
        os.set_blocking(stderr, False)
        deadline = time.monotonic() + SPAWN_LIMIT
        announced = SPAWN_LIMIT
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            selector.register(stderr, selectors.EVENT_READ)
            while not self.owner._stop.is_set():
                now = time.monotonic()
                if now > deadline:
                    self.failure = (
                        f"capture process stuck for {announced + HANG_GRACE:.0f} s "
                        f"({self._doing}); killed"
                    )
                    return
                for key, _ in selector.select(min(0.25, deadline - now)):
                    if key.fileobj is self.sock:
                        message, fd = handover.receive(self.sock)
                        if message is None:
                            self._lost()
                            return
                        announced = float(message.get("within", 1.0))
                        deadline = time.monotonic() + announced + HANG_GRACE
                        self._handle(message, fd)
                        if self.ended:
                            return
                    elif not self._read_stderr(stderr):
                        selector.unregister(stderr)

    def _lost(self) -> None:
        """The process closed its socket: it ended by itself."""
        try:
            code = self.process.wait(KILL_WAIT)
        except subprocess.TimeoutExpired:
            code = None
        self._drain_stderr()
        if self.ended or self.owner._stop.is_set():
            return
        self.failure = f"capture process ended ({describe_exit(code)})"
        self.exited = True

    def _handle(self, message: handover.Message, fd: int | None) -> None:
        kind = message.get("t")
        stats, name = self.owner.stats, self.camera.name
        if fd is not None and kind != "ring":
            os.close(fd)
        if kind in ("frame", "bad") or message.get("state") == ONLINE:
            self._doing = "reading a frame"
        if kind == "frame":
            if message.get("ring") != self._ring_id or self._ring is None:
                return
            index, ring_id = int(message["slot"]), self._ring_id
            sock = self.sock

            def give_back() -> None:
                handover.send(sock, {"t": "free", "ring": ring_id, "slot": index}, block=False)

            shape = tuple(int(n) for n in message["shape"])
            skipped = self.owner.source.put(
                self._ring.slot(index, shape), float(message["at"]), give_back
            )
            self.delivered = True
            dropped = int(message.get("dropped", 0))  # frames that found no free slot
            with stats.lock:
                stats.captured += 1 + dropped
                stats.skipped += int(skipped) + dropped
                stats.last_frame_at = float(message["at"])
            if stats.state != ONLINE:
                self.owner._state(ONLINE, "frames flowing")
        elif kind == "ring":
            assert fd is not None, "a ring message carries its memory"
            try:
                slot_bytes, slots = int(message["slot_bytes"]), int(message["slots"])
                self._ring = handover.Ring.attach(fd, slot_bytes, slots)
                self._ring_id = int(message["ring"])
            finally:
                os.close(fd)
        elif kind == "beat":
            self._doing = str(message.get("doing", self._doing))
        elif kind == "bad":
            stats.add(failed=1)
            log.debug("camera %s: skipped a bad frame: %s", name, message.get("reason"))
        elif kind == "state":
            state, reason = str(message["state"]), str(message["reason"])
            if message.get("lost"):
                stats.add(reconnects=1)
            if "opens" in message:
                self.owner.opens = int(message["opens"])
            if state == OFFLINE:
                self.ended = True
            self.owner._state(state, reason)
        elif kind == "hello":
            heavy = message.get("heavy") or []
            if heavy:
                log.warning("camera %s: capture process loaded %s", name, ", ".join(heavy))
        elif kind == "log":
            level = logging.getLevelName(str(message.get("level", "info")).upper())
            log.log(
                level if isinstance(level, int) else logging.INFO,
                "camera %s: %s",
                name,
                str(message.get("text", "")).rstrip(),
            )

    def _read_stderr(self, fd: int) -> bool:
        """Forward complete lines of the process's stderr to the log; False at its end."""
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            if self._stderr_buffer:
                self._log_line(self._stderr_buffer)
                self._stderr_buffer = b""
            return False
        lines = (self._stderr_buffer + chunk).split(b"\n")
        self._stderr_buffer = lines.pop()[-4096:]
        for line in lines:
            self._log_line(line)
        return True

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        fd = self.process.stderr.fileno()
        while self._read_stderr(fd):
            if not _readable(fd):
                break

    def _log_line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").strip()
        if line:
            self.stderr_tail.append(line[:300])
            log.debug("camera %s: [capture] %s", self.camera.name, line)

    def finish(self) -> None:
        """Make sure the process is gone and reaped, and the socket closed."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(KILL_WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                try:
                    process.wait(KILL_WAIT)
                except subprocess.TimeoutExpired:  # stuck in the kernel (state D)
                    log.warning(
                        "camera %s: capture process %d does not die (stuck in the kernel?)",
                        self.camera.name,
                        process.pid,
                    )
                    _ZOMBIES.append(process)
        if process.stderr is not None:
            process.stderr.close()
        self.sock.close()
        self.owner._process = None
        self.owner.pid = None


_ZOMBIES: list[subprocess.Popen[bytes]] = []  # reaped later by Popen's own bookkeeping


def _readable(fd: int) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        return bool(selector.select(0))
