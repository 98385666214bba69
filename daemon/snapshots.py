"""JPEG snapshots of the cameras' latest frames for the web view, made only on request.

Encoding never happens on the inference thread, nor in the web request threads: one
encoder thread does it all, so OpenCV's per-thread buffers exist once (twenty keep-alive
connections that each encoded now and then kept ~1 MB each). Each camera's images are
cached: every client asking within `1 / max_fps` seconds (or for the same frame) gets
the cached bytes, so twenty browsers cost as much as one, and an unwatched camera costs
nothing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
from edgebnn.daemon.regions import RegionConfig

QUALITY = 80  # JPEG quality
CACHED_VARIANTS = 4  # (annotate, width) variants kept per camera
COLOURS = ((0, 200, 255), (80, 220, 80), (255, 160, 0), (200, 80, 255), (0, 80, 255))


class NoFrame(Exception):
    """The camera has not delivered a frame yet (or is unknown)."""


class Snapshots:
    """Cached, rate-limited JPEGs of each camera's newest frame."""

    def __init__(
        self,
        latest_frame: Callable[[str], Any],
        regions: Callable[[str], Sequence[RegionConfig] | None],
        max_fps: float = 2.0,
    ) -> None:
        """`latest_frame(camera)` holds the newest frames.Frame (released here) or returns
        None; `regions(camera)` gives the camera's regions, or None for an unknown camera."""
        self.latest_frame = latest_frame
        self.regions = regions
        self.min_interval = 1.0 / max_fps
        self.encoded = 0  # JPEGs made (for tests and the status page)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._cache: dict[str, OrderedDict[tuple[bool, int], tuple[float, float, bytes]]] = {}
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="jpeg")

    def close(self) -> None:
        """Stop the encoder thread (requests after this fail)."""
        self._encoder.shutdown(wait=False, cancel_futures=True)

    def jpeg(self, camera: str, annotate: bool = False, width: int | None = None) -> bytes:
        """The newest frame as JPEG (regions drawn with `annotate`, scaled down to `width`);
        NoFrame when there is none."""
        regions = self.regions(camera)
        if regions is None:
            raise NoFrame(f"no camera named {camera!r}")
        key = (annotate, int(width or 0))
        with self._lock(camera):
            cache = self._cache.setdefault(camera, OrderedDict())
            hit = cache.get(key)
            now = time.monotonic()
            if hit is not None and now - hit[1] < self.min_interval:
                cache.move_to_end(key)
                return hit[2]
            frame = self.latest_frame(camera)  # held: released as soon as it is encoded
            if frame is None:
                raise NoFrame(f"camera {camera!r} has no frame yet")
            try:
                if hit is not None and hit[0] == frame.captured_at:
                    cache.move_to_end(key)
                    return hit[2]
                job = self._encoder.submit(encode, frame.image, regions if annotate else (), width)
                data = job.result()
            finally:
                frame.release()
            self.encoded += 1
            cache[key] = (frame.captured_at, now, data)
            cache.move_to_end(key)
            while len(cache) > CACHED_VARIANTS:
                cache.popitem(last=False)
            return data

    def forget(self, camera: str) -> None:
        """Drop a removed camera's cached images."""
        with self._lock(camera):
            self._cache.pop(camera, None)

    def _lock(self, camera: str) -> threading.Lock:
        with self._locks_lock:
            lock = self._locks.get(camera)
            if lock is None:
                lock = self._locks[camera] = threading.Lock()
            return lock


def encode(image: np.ndarray, regions: Sequence[RegionConfig], width: int | None) -> bytes:
    """JPEG bytes of a BGR (or grey/BGRA) frame, boxes drawn, scaled down to `width`."""
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    height, full_width = image.shape[:2]
    scale = 1.0
    if width and 16 <= width < full_width:
        scale = width / full_width
        image = cv2.resize(
            image, (width, max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    elif regions:
        image = image.copy()  # never draw on the frame inference may be reading
    thickness = max(1, round(image.shape[1] / 320))
    for index, region in enumerate(regions):
        x, y, w, h = region.pixel_box(full_width, height)
        if w < 1 or h < 1:
            continue
        colour = COLOURS[index % len(COLOURS)]
        p1 = (round(x * scale), round(y * scale))
        p2 = (round((x + w) * scale) - 1, round((y + h) * scale) - 1)
        cv2.rectangle(image, p1, p2, colour, thickness)
        font_scale = 0.4 * thickness
        (tw, th), base = cv2.getTextSize(region.name, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = max(0, p1[1] - th - base - 2) if p1[1] > th + base + 2 else p1[1]
        cv2.rectangle(image, (p1[0], top), (p1[0] + tw + 4, top + th + base + 2), colour, -1)
        cv2.putText(
            image,
            region.name,
            (p1[0] + 2, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()
