"""Where a capture process gets its frames: V4L2 devices, files and streams (OpenCV),
image folders, Picamera2 and a synthetic test source, behind one small interface.

Imported by the capture process only (:mod:`edgebnn.daemon.capture_child`): the standard
library, NumPy and OpenCV (imported when a source opens), never the engine.
"""

from __future__ import annotations

import glob
import os
from typing import Any

import numpy as np


class CaptureError(Exception):
    """The source is lost (cannot be opened, or stopped delivering)."""


class BadFrame(Exception):
    """One frame could not be read or is not an image; the source itself still works."""


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
