"""The capture process of one camera: open the source, read frames, hand the newest over.

Runs in its own process (started by :mod:`edgebnn.daemon.capture`), so nothing a source
does (an ``open()`` that never returns, a driver stuck in the kernel, a decoder that
crashes) can stall another camera or the daemon. It imports only the standard library,
NumPy and OpenCV, never the engine or Numba: a small process, quick to restart.

It reads frames as the source delivers them and puts each one into a free slot of the
shared ring (:mod:`edgebnn.daemon.handover`). When the daemon still holds every slot, a
live source's frame is dropped and counted, never queued (a file waits for a slot). A
lost source is reopened with bounded, jittered exponential backoff; an unreadable frame is
reported and skipped. Before every call that may block it tells the daemon how long it may
take, so the daemon can tell a slow source from a hung process.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
from edgebnn.daemon import handover
from edgebnn.daemon.capture_sources import (
    BadFrame,
    CaptureError,
    Source,
    check_frame,
    make_source,
)

HEAVY_MODULES = ("numba", "llvmlite", "zmq", "edgebnn.engine")


# ---------------------------------------------------------------- the link to the daemon


class Link:
    """Messages to the daemon and the ring of slots it lends back."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)  # a slot came back
        self._send_lock = threading.Lock()
        self._ring: handover.Ring | None = None
        self._ring_id = 0
        self._free: list[int] = []
        self._answer_by = 0.0  # monotonic time the daemon expects the next message by
        self._seq = 0
        self.dropped = 0  # frames dropped for want of a free slot, not yet reported

    def start(self) -> None:
        threading.Thread(target=self._receive, name="link", daemon=True).start()

    def _receive(self) -> None:
        """Take slots back; end the process when the daemon goes away or says stop."""
        while True:
            try:
                message, fd = handover.receive(self.sock)
            except ValueError:
                continue
            if fd is not None:
                os.close(fd)
            if message is None or message.get("t") == "stop":
                self.stopping.set()
                os._exit(0)  # the main thread may be stuck in a source call: do not wait
            if message.get("t") == "free":
                with self._lock:
                    if message.get("ring") == self._ring_id:
                        self._free.append(int(message["slot"]))
                        self._returned.notify()

    def send(self, message: handover.Message, within: float) -> None:
        """Send; `within`: seconds until the next message at the latest."""
        message["within"] = round(within, 3)
        with self._send_lock:
            self._answer_by = time.monotonic() + within
            if not handover.send(self.sock, message):
                os._exit(0)  # the daemon is gone

    def busy(self, limit: float, doing: str) -> None:
        """About to make a call that may take `limit` seconds: make sure the daemon waits."""
        if time.monotonic() + limit > self._answer_by - 0.2:
            self.send({"t": "beat", "doing": doing}, limit + 0.5)

    def wait(self, seconds: float, doing: str = "waiting") -> bool:
        """Sleep (telling the daemon so); True if the process is stopping."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            step = min(left, 1.0)
            self.busy(step, doing)
            if self.stopping.wait(step):
                return True
        return self.stopping.is_set()

    def deliver(
        self, image: np.ndarray, captured_at: float, within: float, wait: float = 0.0
    ) -> bool:
        """Copy a frame into a free slot and announce it; False if no slot was free
        (after waiting up to `wait` seconds for one)."""
        shape = tuple(image.shape)
        if self._ring is None or handover.frame_bytes(shape) > self._ring.slot_bytes:
            ring, fd = handover.Ring.create(handover.frame_bytes(shape))
            with self._lock:
                self._ring, self._ring_id = ring, self._ring_id + 1
                self._free = list(range(ring.slots))
            try:
                message = {"t": "ring", "ring": self._ring_id, "slot_bytes": ring.slot_bytes}
                message.update(slots=ring.slots, within=within)
                with self._send_lock:
                    if not handover.send(self.sock, message, fd):
                        os._exit(0)
            finally:
                os.close(fd)
        with self._lock:
            if not self._free and wait > 0:
                self._returned.wait(wait)
            if not self._free:
                self.dropped += 1
                return False
            slot = self._free.pop()
            ring, ring_id = self._ring, self._ring_id
        np.copyto(ring.slot(slot, shape), image)
        self._seq += 1
        message = {"t": "frame", "ring": ring_id, "slot": slot, "seq": self._seq}
        message["shape"] = list(shape)
        message["at"] = captured_at
        if self.dropped:  # reported with the next frame, not one message per drop
            message["dropped"], self.dropped = self.dropped, 0
        self.send(message, within)
        return True


def backoff(camera: dict[str, Any], attempt: int, rng: random.Random) -> float:
    """Seconds before reopen attempt `attempt` (0-based): doubling, capped, 50-100% jitter."""
    cap = min(camera["backoff_max"], camera["backoff_initial"] * 2 ** min(attempt, 30))
    return cap * rng.uniform(0.5, 1.0)


# ---------------------------------------------------------------- the capture loop


class Capture:
    """Open, read, hand over, reopen on loss: the old capture thread, now a process."""

    def __init__(self, camera: dict[str, Any], link: Link) -> None:
        self.camera = camera
        self.link = link
        self.rng = random.Random()
        self.opens = 0  # successful opens of the source by this process

    def report(self, state: str, reason: str, **extra: Any) -> None:
        self.link.send({"t": "state", "state": state, "reason": reason, **extra}, 1.0)

    def run(self) -> int:
        camera, link = self.camera, self.link
        attempt = int(camera.get("attempt", 0))
        while not link.stopping.is_set():
            source = make_source(camera)
            try:
                link.busy(camera["open_timeout"], "opening the source")
                source.open()
                self.opens += 1
                self.report("online", f"opened {camera['kind']} source", opens=self.opens)
                while True:
                    delivered = self.read_frames(source)
                    if delivered:
                        attempt = 0
                    if source.live or not delivered:
                        raise CaptureError("the source ended" if delivered else "no frames")
                    if not camera["loop"]:
                        self.report("offline", "end of stream")
                        return 0
                    if not source.rewind():
                        break  # reopen (a file replaced or gone, or one that cannot seek)
            except CaptureError as exc:
                delay = backoff(camera, attempt, self.rng)
                attempt += 1
                self.report("reconnecting", f"{exc}; retrying in {delay:.1f} s", lost=True)
                link.wait(delay, "waiting to reopen")
            except Exception:  # noqa: BLE001 (reported, then retried like a loss)
                link.send({"t": "log", "level": "error", "text": traceback.format_exc()}, 1.0)
                delay = backoff(camera, attempt, self.rng)
                attempt += 1
                link.wait(delay)
            finally:
                source.close()
        return 0

    def read_frames(self, source: Source) -> bool:
        """Read until the stream ends; True if any frame arrived."""
        camera, link = self.camera, self.link
        interval = 1.0 / camera["max_fps"] if camera["max_fps"] else 0.0
        if camera["kind"] == "file" and camera["realtime"] and source.nominal_fps:
            interval = max(interval, 1.0 / source.nominal_fps)
        read_limit = float(camera["read_timeout"])
        next_due = time.monotonic()
        failures = 0
        delivered = False
        while not link.stopping.is_set():
            if interval:
                now = time.monotonic()
                if now < next_due:
                    if source.live:
                        link.busy(read_limit, "reading a frame")
                        source.grab()  # keep it fresh
                        continue
                    if link.wait(next_due - now, "pacing"):
                        break
                next_due = max(next_due + interval, time.monotonic())
            try:
                link.busy(read_limit, "reading a frame")
                image = source.read()
                if image is None:
                    return delivered
                check_frame(image)
            except BadFrame as exc:
                failures += 1
                link.send({"t": "bad", "reason": str(exc)}, read_limit + interval + 0.5)
                if failures >= camera["failures_before_reconnect"]:
                    raise CaptureError(f"{failures} unreadable frames in a row") from exc
                continue
            failures = 0
            delivered = True
            # A live source keeps reading (its frames go stale); a file waits for a slot.
            wait = 0.0 if source.live else 1.0
            link.deliver(image, time.time(), read_limit + interval + wait + 0.5, wait)
        return delivered


# ---------------------------------------------------------------- process entry


def _prepare_process(parent: int, name: str) -> None:
    """Die with the daemon; leave Ctrl-C to the daemon; a readable name in `top`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
            libc.prctl(15, f"cap:{name}"[:15].encode(), 0, 0, 0)  # PR_SET_NAME
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the daemon died before the death signal was set
        os._exit(0)


def main(fd: int, parent: int) -> int:
    """Run one camera's capture on the socket `fd` until told to stop."""
    sock = socket.socket(fileno=fd)
    settings, _ = handover.receive(sock)
    if settings is None:
        return 0
    _prepare_process(parent, str(settings["name"]))
    link = Link(sock)
    link.start()
    heavy = [m for m in HEAVY_MODULES if m in sys.modules]
    link.send({"t": "hello", "pid": os.getpid(), "heavy": heavy}, 60.0)  # cv2 import next
    import cv2

    cv2.setNumThreads(1)  # decoding one stream: no thread pool per process
    return Capture(settings, link).run()
