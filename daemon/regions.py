"""Regions of a frame classified on their own, and the order the inference thread serves them.

A camera's frame is classified as a whole (unless `full_frame: false`) and once per region
(a box in fractions of the frame, or in pixels). Every (camera, region) pair is a *unit*
with its own predictions topic, sequence numbers, groups and counters.

The single inference thread asks the `Scheduler` what to classify next. The scheduler
keeps only the newest frame of each camera (newest frame first: a region never works on
an old frame when a newer one has arrived) and serves cameras in turn, longest waiting
first, then the regions of that camera in turn, so every camera gets an equal share of the
inference and every region of a camera an equal share of its camera's. A frame replaced
before a unit got to it counts as skipped for that unit (and for the camera when no unit
classified it at all).

Frames are views of the capture processes' shared memory: the scheduler releases a frame
as soon as it is replaced or every unit has classified it, but never while the inference
thread still works on it (`finished()` tells it when that ends).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

GroupSpec = tuple[tuple[str, tuple[int, ...]], ...]  # (group name, class indices)


@dataclass(frozen=True)
class RegionConfig:
    """One named box of a camera's frame."""

    name: str
    box: tuple[float, float, float, float]  # x, y, width, height
    pixels: bool = False  # True: box in pixels; False: fractions of the frame
    groups: GroupSpec | None = None  # None: the daemon's groups

    def pixel_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x, y, w, h) in pixels of a width x height frame, clipped to it (w or h may be 0)."""
        x, y, w, h = self.box
        if not self.pixels:
            x, y, w, h = x * width, y * height, w * width, h * height
        left, top = round(x), round(y)
        right, bottom = round(x + w), round(y + h)
        left, right = min(max(left, 0), width), min(max(right, 0), width)
        top, bottom = min(max(top, 0), height), min(max(bottom, 0), height)
        return left, top, right - left, bottom - top

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The region's pixels of a frame (a view); ValueError when it lies outside."""
        height, width = image.shape[:2]
        x, y, w, h = self.pixel_box(width, height)
        if w < 1 or h < 1:
            raise ValueError(
                f"region {self.name!r} {list(self.box)} lies outside the {width}x{height} frame"
            )
        return image[y : y + h, x : x + w]


def box_problem(
    box: Any, frame_width: int | None = None, frame_height: int | None = None
) -> tuple[str | None, bool]:
    """(why `box` is not a valid [x, y, w, h], or None; whether it is in pixels)."""
    if not isinstance(box, list | tuple) or len(box) != 4:
        return "must be a list [x, y, width, height]", False
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
        return "must be four numbers [x, y, width, height]", False
    x, y, w, h = (float(v) for v in box)
    pixels = any(v > 1 for v in (x, y, w, h))
    if x < 0 or y < 0:
        return "x and y must be >= 0", pixels
    if w <= 0 or h <= 0:
        return "width and height must be > 0", pixels
    if pixels:
        if not all(float(v).is_integer() for v in box):
            return "a box in pixels (any value > 1) must be whole numbers", pixels
        if frame_width is not None and x + w > frame_width:
            return f"x + width ({x + w:g}) is beyond the frame width {frame_width}", pixels
        if frame_height is not None and y + h > frame_height:
            return f"y + height ({y + h:g}) is beyond the frame height {frame_height}", pixels
    elif x + w > 1.000001 or y + h > 1.000001:
        return "a box in fractions must lie inside the frame (x + width <= 1, y + height <= 1)", (
            pixels
        )
    return None, pixels


class Unit(NamedTuple):
    """What one inference classifies: a camera's whole frame (region None) or one region."""

    camera: str
    region: RegionConfig | None

    @property
    def key(self) -> tuple[str, str | None]:
        return self.camera, self.region.name if self.region is not None else None


class CameraPlan(NamedTuple):
    """The units of one camera."""

    name: str
    full_frame: bool
    regions: tuple[RegionConfig, ...]

    def units(self) -> tuple[Unit, ...]:
        whole = (Unit(self.name, None),) if self.full_frame or not self.regions else ()
        return whole + tuple(Unit(self.name, r) for r in self.regions)


class FrameLike(Protocol):
    camera: str
    image: np.ndarray
    captured_at: float

    def release(self) -> None: ...


class Board(Protocol):
    def take(self, timeout: float) -> Any: ...


class _Held:
    """A camera's newest frame and which of its units have classified it."""

    __slots__ = ("classified", "frame", "number")

    def __init__(self, frame: FrameLike, number: int) -> None:
        self.frame = frame
        self.number = number
        self.classified = False


class Scheduler:
    """Chooses the next (frame, unit) for the inference thread; see the module docstring."""

    def __init__(
        self,
        board: Board,
        on_skip: Callable[[str, str | None, bool], None] = lambda camera, region, any_: None,
    ) -> None:
        """`on_skip(camera, region, unclassified)` is called for every unit that misses
        a frame; `unclassified` is True (once per frame, region None) when no unit did."""
        self._board = board
        self._on_skip = on_skip
        self._lock = threading.Lock()
        self._units: dict[str, tuple[Unit, ...]] = {}
        self._held: dict[str, _Held] = {}
        self._done: dict[tuple[str, str | None], int] = {}  # frame number last classified
        self._camera_served: dict[str, float] = {}
        self._unit_served: dict[tuple[str, str | None], float] = {}
        self._numbers = 0
        self._in_use: Any = None  # the frame the inference thread works on

    def configure(self, cameras: Iterable[CameraPlan]) -> None:
        """Set every camera's units (at start and on reload); cameras not listed are dropped."""
        units = {plan.name: plan.units() for plan in cameras}
        with self._lock:
            self._units = units
            keys = {u.key for us in units.values() for u in us}
            for key in list(self._done):
                if key not in keys:
                    del self._done[key]
                    self._unit_served.pop(key, None)
            for name in list(self._held):
                if name not in units:
                    self._let_go(self._held.pop(name).frame)
                    self._camera_served.pop(name, None)

    def finished(self, frame: Any) -> None:
        """The inference thread is done with `frame` (from next()); it may be released."""
        with self._lock:
            self._in_use = None
            held = self._held.get(frame.camera)
            if held is None or held.frame is not frame:
                frame.release()  # replaced (or its camera removed) meanwhile
            elif not any(self._waiting(u, held) for u in self._unit_list(frame.camera)):
                del self._held[frame.camera]  # every unit has it: give the memory back now
                frame.release()

    def close(self) -> None:
        """Release every frame held (the daemon stops)."""
        with self._lock:
            for held in self._held.values():
                self._let_go(held.frame)
            self._held.clear()

    def pending(self) -> int:
        """How many units have a frame waiting."""
        with self._lock:
            return sum(1 for _ in self._pending_units())

    def next(self, timeout: float) -> tuple[Any, Unit, bool] | None:
        """(frame, unit, first) to classify next, or None after `timeout` seconds without;
        `first` is True for the first unit of a frame (the camera's processed count)."""
        deadline = time.monotonic() + timeout
        while True:
            while (frame := self._board.take(0)) is not None:
                self._receive(frame)
            with self._lock:
                choice = self._choose()
            if choice is not None:
                return choice
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            frame = self._board.take(remaining)
            if frame is not None:
                self._receive(frame)

    # -- inside

    def _unit_list(self, camera: str) -> tuple[Unit, ...]:
        return self._units.get(camera) or (Unit(camera, None),)

    def _receive(self, frame: FrameLike) -> None:
        with self._lock:
            self._numbers += 1
            old = self._held.get(frame.camera)
            if old is not None:
                missed = [u for u in self._unit_list(frame.camera) if self._waiting(u, old)]
                for unit in missed:
                    self._on_skip(unit.camera, unit.key[1], False)
                if not old.classified:
                    self._on_skip(frame.camera, None, True)
                self._let_go(old.frame)
            self._held[frame.camera] = _Held(frame, self._numbers)

    def _let_go(self, frame: Any) -> None:
        if frame is not self._in_use:
            frame.release()

    def _waiting(self, unit: Unit, held: _Held) -> bool:
        return self._done.get(unit.key, 0) < held.number

    def _pending_units(self) -> Iterable[Unit]:
        for camera, held in self._held.items():
            for unit in self._unit_list(camera):
                if self._waiting(unit, held):
                    yield unit

    def _choose(self) -> tuple[Any, Unit, bool] | None:
        waiting: dict[str, list[Unit]] = {}
        for unit in self._pending_units():
            waiting.setdefault(unit.camera, []).append(unit)
        if not waiting:
            return None
        camera = min(waiting, key=lambda c: self._camera_served.get(c, 0.0))
        unit = min(waiting[camera], key=lambda u: self._unit_served.get(u.key, 0.0))
        held = self._held[camera]
        now = time.monotonic()
        self._camera_served[camera] = now
        self._unit_served[unit.key] = now
        self._done[unit.key] = held.number
        first = not held.classified
        held.classified = True
        self._in_use = held.frame
        return held.frame, unit, first
