"""Frame sources and the per-camera capture thread.

Each camera has one thread that reads frames as the source delivers them and leaves only
the newest in a slot of the shared FrameBoard: no queue, so no seconds of lag when
inference is slower than the camera. A lost source is reopened with bounded, jittered
exponential backoff; an unreadable frame is counted and skipped.
"""

from __future__ import annotations

import glob
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from edgebnn.daemon.config import IMAGE_SUFFIXES, CameraConfig
from edgebnn.daemon.stats import OFFLINE, ONLINE, RECONNECTING, CameraStats

log = logging.getLogger(__name__)


class CaptureError(Exception):
    """The source is lost (cannot be opened, or stopped delivering)."""


class BadFrame(Exception):
    """One frame could not be read or is not an image; the source itself still works."""


class Frame(NamedTuple):
    """A captured image waiting for inference."""

    camera: str
    image: np.ndarray
    captured_at: float  # unix seconds


# ---------------------------------------------------------------- sources


class FrameSource:
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

    def close(self) -> None:
        """Release the source."""


class OpenCVSource(FrameSource):
    """V4L2 devices, video files and network streams through cv2.VideoCapture."""

    def __init__(self, camera: CameraConfig) -> None:
        self.camera = camera
        self.target = camera.source
        self.live = camera.kind in ("v4l2", "url")
        self._cap: Any = None

    def open(self) -> None:
        params: list[int] = []
        for name, seconds in (
            ("CAP_PROP_OPEN_TIMEOUT_MSEC", self.camera.open_timeout),
            ("CAP_PROP_READ_TIMEOUT_MSEC", self.camera.read_timeout),
        ):
            prop = getattr(cv2, name, None)  # missing from some OpenCV builds
            if prop is not None:
                params += [int(prop), int(seconds * 1000)]
        try:
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY, params)
        except (TypeError, cv2.error):  # OpenCV < 4.5.2 has no params argument
            cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise CaptureError(f"cannot open {self.camera.kind} source {self.target!r}")
        if self.camera.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.camera.width)
        if self.camera.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.camera.height)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps = fps if 0 < fps <= 1000 else None
        self._cap = cap

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

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFilesSource(FrameSource):
    """Still images from a directory or a glob, in name order; the list is re-read per pass."""

    def __init__(self, camera: CameraConfig) -> None:
        self.camera = camera
        self.pattern = str(camera.source)
        self._files: list[str] = []
        self._next = 0

    def _list(self) -> list[str]:
        if os.path.isdir(self.pattern):
            names = sorted(os.listdir(self.pattern))
            return [
                os.path.join(self.pattern, n)
                for n in names
                if Path(n).suffix.lower() in IMAGE_SUFFIXES
            ]
        return sorted(p for p in glob.glob(self.pattern) if os.path.isfile(p))

    def open(self) -> None:
        self._files = self._list()
        self._next = 0
        if not self._files:
            raise CaptureError(f"no images in {self.pattern}")

    def read(self) -> np.ndarray | None:
        if self._next >= len(self._files):
            if not self.camera.loop:
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


class Picamera2Source(FrameSource):
    """The Raspberry Pi camera through libcamera (picamera2 is imported only when used)."""

    live = True

    def __init__(self, camera: CameraConfig) -> None:
        self.camera = camera
        self._cam: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise CaptureError(
                "picamera2 is not installed (apt install python3-picamera2; use a venv "
                "created with --system-site-packages)"
            ) from exc
        try:
            cam = Picamera2(int(self.camera.source))
            size = (self.camera.width or 640, self.camera.height or 480)
            # libcamera's RGB888 is B, G, R in memory: the BGR order the engine expects.
            cam.configure(cam.create_video_configuration(main={"size": size, "format": "RGB888"}))
            cam.start()
        except Exception as exc:  # picamera2 raises RuntimeError, IndexError, OSError ...
            raise CaptureError(f"cannot open picamera2 camera {self.camera.source}: {exc}") from exc
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


def make_source(camera: CameraConfig) -> FrameSource:
    """The source class for a camera's kind."""
    if camera.kind == "images":
        return ImageFilesSource(camera)
    if camera.kind == "picamera2":
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


# ---------------------------------------------------------------- newest-frame board


class FrameBoard:
    """One slot per camera holding only the newest frame; inference takes them in turn."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: dict[str, Frame | None] = {}
        self._tokens: dict[str, object] = {}
        self._served: dict[str, float] = {}

    def add(self, camera: str) -> object:
        """Register a camera; the returned token authorises put() (a replaced camera's
        old thread keeps its old token and can no longer deliver)."""
        token = object()
        with self._cond:
            self._slots[camera] = None
            self._tokens[camera] = token
            self._served.setdefault(camera, 0.0)
        return token

    def remove(self, camera: str) -> None:
        with self._cond:
            self._slots.pop(camera, None)
            self._tokens.pop(camera, None)
            self._served.pop(camera, None)

    def put(self, token: object, frame: Frame) -> bool | None:
        """Store a frame; True if it replaced one inference never took (a skipped frame),
        None if the token is stale."""
        with self._cond:
            if self._tokens.get(frame.camera) is not token:
                return None
            replaced = self._slots[frame.camera] is not None
            self._slots[frame.camera] = frame
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Frame | None:
        """The pending frame of the camera served longest ago, or None after timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                pending = [name for name, frame in self._slots.items() if frame is not None]
                if pending:
                    name = min(pending, key=self._served.__getitem__)
                    frame = self._slots[name]
                    self._slots[name] = None
                    self._served[name] = time.monotonic()
                    return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def pending(self) -> int:
        """How many cameras have a frame waiting."""
        with self._cond:
            return sum(frame is not None for frame in self._slots.values())


# ---------------------------------------------------------------- capture thread


class CameraWorker:
    """Runs one camera: open, read, hand over the newest frame, reopen on loss."""

    def __init__(
        self,
        camera: CameraConfig,
        board: FrameBoard,
        stats: CameraStats,
        on_state: Callable[[str], None],
        source_factory: Callable[[CameraConfig], FrameSource] = make_source,
        start_delay: float = 0.0,
    ) -> None:
        self.camera = camera
        self.start_delay = start_delay
        self.busy_since: float | None = None  # monotonic time a source call started
        self.busy_limit = 0.0  # seconds that call may take (the configured timeout)
        self.board = board
        self.stats = stats
        self.on_state = on_state
        self.source_factory = source_factory
        self._token = board.add(camera.name)
        self._stop = threading.Event()
        self._random = random.Random()
        self._thread = threading.Thread(
            target=self._run, name=f"capture-{camera.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (it may be blocked in a read; it is a daemon thread)."""
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True if it ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def backoff(self, attempt: int) -> float:
        """Seconds before reopen attempt `attempt` (0-based): doubling, capped, 50-100% jitter."""
        cap = min(self.camera.backoff_max, self.camera.backoff_initial * 2 ** min(attempt, 30))
        return cap * self._random.uniform(0.5, 1.0)

    def hung_for(self, grace: float = 1.0) -> float | None:
        """Seconds spent in one open/read call beyond its timeout plus `grace`, or None.

        OpenCV's own timeouts do not cover every backend (V4L2 reads, some streams), so the
        daemon checks this and replaces a hung worker instead of waiting forever."""
        since = self.busy_since
        if since is None or self._stop.is_set():
            return None
        elapsed = time.monotonic() - since
        return elapsed if elapsed > self.busy_limit + grace else None

    def _call(self, limit: float, function: Callable[[], Any]) -> Any:
        """Run a source call with busy tracking."""
        self.busy_limit = limit
        self.busy_since = time.monotonic()
        try:
            return function()
        finally:
            self.busy_since = None

    def _state(self, state: str, reason: str) -> None:
        """Record and announce a state; repeated retries log at debug level only."""
        if self._stop.is_set():
            return  # stopped or abandoned: a newer worker owns the camera's state
        previous = self.stats.state
        if self.stats.set_state(state, reason):
            level = logging.INFO if state == ONLINE else logging.WARNING
            log.log(
                level if state != previous else logging.DEBUG,
                "camera %s %s: %s",
                self.camera.name,
                state,
                reason,
            )
            self.on_state(self.camera.name)

    def _run(self) -> None:
        attempt = 1 if self.start_delay else 0
        if self.start_delay and self._stop.wait(self.start_delay):
            return
        while not self._stop.is_set():
            source = self.source_factory(self.camera)
            try:
                self._call(self.camera.open_timeout, source.open)
                if self._stop.is_set():
                    break
                self._state(ONLINE, f"opened {self.camera.kind} source")
                delivered = self._read_frames(source)
                if self._stop.is_set():
                    break
                if delivered:
                    attempt = 0
                if source.live or not delivered:
                    raise CaptureError("the source ended" if delivered else "no frames")
                if not self.camera.loop:
                    self._state(OFFLINE, "end of stream")
                    return
                # a finite source that loops: reopen at once
            except CaptureError as exc:
                delay = self.backoff(attempt)
                attempt += 1
                self.stats.add(reconnects=1)
                self._state(RECONNECTING, f"{exc}; retrying in {delay:.1f} s")
                self._stop.wait(delay)
            except Exception:
                log.exception("camera %s: unexpected capture error", self.camera.name)
                delay = self.backoff(attempt)
                attempt += 1
                self._stop.wait(delay)
            finally:
                source.close()

    def _read_frames(self, source: FrameSource) -> bool:
        """Read until the stream ends or stop is requested; True if any frame arrived."""
        interval = 1.0 / self.camera.max_fps if self.camera.max_fps else 0.0
        if self.camera.kind == "file" and self.camera.realtime and source.nominal_fps:
            interval = max(interval, 1.0 / source.nominal_fps)
        next_due = time.monotonic()
        failures = 0
        delivered = False
        while not self._stop.is_set():
            if interval:
                now = time.monotonic()
                if now < next_due:
                    if source.live:
                        self._call(self.camera.read_timeout, source.grab)  # keep it fresh
                        continue
                    if self._stop.wait(next_due - now):
                        break
                next_due = max(next_due + interval, time.monotonic())
            try:
                image = self._call(self.camera.read_timeout, source.read)
                if image is None:
                    return delivered
                check_frame(image)
            except BadFrame as exc:
                failures += 1
                self.stats.add(failed=1)
                log.debug("camera %s: skipped a bad frame: %s", self.camera.name, exc)
                if failures >= self.camera.failures_before_reconnect:
                    raise CaptureError(f"{failures} unreadable frames in a row") from exc
                continue
            failures = 0
            delivered = True
            now = time.time()
            self.stats.last_frame_at = now
            replaced = self.board.put(self._token, Frame(self.camera.name, image, now))
            if replaced is None:
                return delivered  # this camera was removed or replaced
            self.stats.add(captured=1, skipped=int(replaced))
            if self.stats.state != ONLINE:
                self._state(ONLINE, "frames flowing")
        return delivered
