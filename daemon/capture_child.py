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
import glob
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

HEAVY_MODULES = ("numba", "llvmlite", "zmq", "edgebnn.engine")


class CaptureError(Exception):
    """The source is lost (cannot be opened, or stopped delivering)."""


class BadFrame(Exception):
    """One frame could not be read or is not an image; the source itself still works."""


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


# ---------------------------------------------------------------- sources


class Source:
    """A place frames come from. read() returns None at the end of a finite stream."""

    live = False  # a device or stream: frames go stale if not read
    nominal_fps: float | None = None

    def open(self) -> None:
        """Open the source; CaptureError when impossible."""

    def read(self) -> np.ndarray | None:
        """The next frame (None at the end); CaptureError or BadFrame on failure."""
        raise NotImplementedError

    def grab(self) -> None:
        """Read and drop a frame cheaply (live sources under a rate limit)."""
        self.read()

    def rewind(self) -> bool:
        """Start a finite source again without reopening it; False if it must be reopened."""
        return False

    def close(self) -> None:
        """Release the source."""


class OpenCVSource(Source):
    """V4L2 devices, video files and network streams through cv2.VideoCapture."""

    def __init__(self, camera: dict[str, Any]) -> None:
        self.camera = camera
        self.target = camera["source"]
        self.live = camera["kind"] in ("v4l2", "url")
        self._cap: Any = None
        self._identity: tuple[int, int, int, int] | None = None

    def open(self) -> None:
        import cv2

        params: list[int] = []
        for name, seconds in (
            ("CAP_PROP_OPEN_TIMEOUT_MSEC", self.camera["open_timeout"]),
            ("CAP_PROP_READ_TIMEOUT_MSEC", self.camera["read_timeout"]),
        ):
            prop = getattr(cv2, name, None)  # missing from some OpenCV builds
            if prop is not None:
                params += [int(prop), int(seconds * 1000)]
        self._identity = self._file_identity()
        try:
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY, params)
        except (TypeError, cv2.error):  # OpenCV < 4.5.2 has no params argument
            cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise CaptureError(f"cannot open {self.camera['kind']} source {self.target!r}")
        if self.camera["width"]:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.camera["width"])
        if self.camera["height"]:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.camera["height"])
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps = fps if 0 < fps <= 1000 else None
        self._cap = cap

    def _file_identity(self) -> tuple[int, int, int, int] | None:
        if self.camera["kind"] != "file":
            return None
        try:
            st = os.stat(self.target)
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok:
            if self.live:
                raise CaptureError("the source stopped delivering frames")
            return None  # end of file (or the file went away: reopening will tell)
        return frame

    def grab(self) -> None:
        if not self._cap.grab() and self.live:
            raise CaptureError("the source stopped delivering frames")

    def rewind(self) -> bool:
        """Seek a file back to its start, unless it was replaced or removed meanwhile."""
        import cv2

        if self._cap is None or self.live or self._identity is None:
            return False
        if self._file_identity() != self._identity:
            return False  # replaced or gone: reopening picks up the new file or says why
        return bool(self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFilesSource(Source):
    """Still images from a directory or a glob, in name order; the list is re-read per pass
    (no video decoder is opened, ever)."""

    def __init__(self, camera: dict[str, Any]) -> None:
        self.camera = camera
        self.pattern = str(camera["source"])
        self.suffixes = tuple(camera["image_suffixes"])
        self._files: list[str] = []
        self._next = 0

    def _list(self) -> list[str]:
        if os.path.isdir(self.pattern):
            names = sorted(os.listdir(self.pattern))
            return [
                os.path.join(self.pattern, n)
                for n in names
                if os.path.splitext(n)[1].lower() in self.suffixes
            ]
        return sorted(p for p in glob.glob(self.pattern) if os.path.isfile(p))

    def open(self) -> None:
        self._files = self._list()
        self._next = 0
        if not self._files:
            raise CaptureError(f"no images in {self.pattern}")

    def read(self) -> np.ndarray | None:
        import cv2

        if self._next >= len(self._files):
            if not self.camera["loop"]:
                return None
            self.open()
        path = self._files[self._next]
        self._next += 1
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            if not os.path.exists(path):
                raise CaptureError(f"image vanished: {path}")
            raise BadFrame(f"cannot decode {path}")
        return image


class Picamera2Source(Source):
    """The Raspberry Pi camera through libcamera (picamera2 is imported only when used)."""

    live = True

    def __init__(self, camera: dict[str, Any]) -> None:
        self.camera = camera
        self._cam: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CaptureError(
                "picamera2 is not installed (apt install python3-picamera2; use a venv "
                "created with --system-site-packages)"
            ) from exc
        try:
            cam = Picamera2(int(self.camera["source"]))
            size = (self.camera["width"] or 640, self.camera["height"] or 480)
            # libcamera's RGB888 is B, G, R in memory: the BGR order the engine expects.
            cam.configure(cam.create_video_configuration(main={"size": size, "format": "RGB888"}))
            cam.start()
        except Exception as exc:  # picamera2 raises RuntimeError, IndexError, OSError ...
            raise CaptureError(
                f"cannot open picamera2 camera {self.camera['source']}: {exc}"
            ) from exc
        self._cam = cam

    def read(self) -> np.ndarray | None:
        try:
            return self._cam.capture_array("main")
        except Exception as exc:
            raise CaptureError(f"picamera2 capture failed: {exc}") from exc

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None


class SyntheticSource(Source):
    """Generated frames of size "WxH" at no decoding cost: measures the hand-over alone
    (`edgebnn bench --capture`; not a configurable source kind). Paced like a file."""

    def __init__(self, camera: dict[str, Any]) -> None:
        width, height = (int(n) for n in str(camera["source"]).split("x"))
        self._frame = np.zeros((height, width, 3), np.uint8)
        self._frame[:, :, 1] = np.arange(width, dtype=np.uint32)[None, :] % 256
        self._count = 0

    def read(self) -> np.ndarray | None:
        self._count += 1
        self._frame[0, :8, 0] = np.frombuffer(self._count.to_bytes(8, "little"), np.uint8)
        return self._frame


def make_source(camera: dict[str, Any]) -> Source:
    """The source class for a camera's kind."""
    if camera["kind"] == "synthetic":
        return SyntheticSource(camera)
    if camera["kind"] == "images":
        return ImageFilesSource(camera)
    if camera["kind"] == "picamera2":
        return Picamera2Source(camera)
    return OpenCVSource(camera)


def check_frame(frame: Any) -> None:
    """BadFrame unless an HxW, HxWx1, HxWx3 or HxWx4 uint8 image."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise BadFrame(f"not a uint8 image: {type(frame).__name__}")
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))):
        raise BadFrame(f"unexpected frame shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise BadFrame("empty frame")


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
