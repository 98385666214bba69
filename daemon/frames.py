"""The newest frame of each camera, as the daemon's threads see it.

Each camera's capture process writes frames into shared memory; a :class:`FrameSource`
per camera keeps the newest one. Readers (the inference thread, and anything else that
wants to look at a camera, such as a web view) ask for it and get a :class:`Frame`: a
read-only view of the shared slot, valid until released. There is no queue: a frame
nobody took before the next one arrived is counted as skipped and its slot goes back to
the capture process.

    with source.latest() as frame:      # None until the camera delivered a frame
        use(frame.image)                # HxWx3 BGR uint8, do not keep it after the block

The :class:`FrameBoard` serves the inference thread: each camera's newest unseen frame,
the camera served longest ago first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self


class Frame:
    """A captured image held for reading; release() (or leave the `with` block) when done."""

    __slots__ = ("_release", "camera", "captured_at", "image", "seq")

    def __init__(
        self,
        camera: str,
        image: np.ndarray,
        captured_at: float,
        seq: int = 0,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.camera = camera
        self.image = image
        self.captured_at = captured_at  # unix seconds
        self.seq = seq  # this camera's frame number since the daemon started
        self._release = release

    def release(self) -> None:
        """Give the frame's memory back (idempotent); the image must not be used after."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Slot:
    """One lent slot of shared memory: the frame in it, who holds it, how to give it back."""

    __slots__ = ("captured_at", "give_back", "holders", "image", "seq")

    def __init__(
        self, image: np.ndarray, seq: int, captured_at: float, give_back: Callable[[], None]
    ) -> None:
        self.image, self.seq, self.captured_at = image, seq, captured_at
        self.holders = 1  # the source itself, while this is the newest frame
        self.give_back = give_back


class FrameSource:
    """The newest frame of one camera, fed by its capture process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._latest: _Slot | None = None
        self._seq = 0
        self._taken_seq = 0  # the newest frame the inference thread took
        self._listeners: list[Callable[[], None]] = []

    @property
    def seq(self) -> int:
        """Number of the newest frame (0: none yet); cheap, for polling readers."""
        return self._seq

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (on the capture supervisor's thread) at every new frame."""
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def latest(self) -> Frame | None:
        """Hold the newest frame (None before the first one)."""
        with self._lock:
            return self._hold(self._latest)

    def take_unseen(self) -> Frame | None:
        """Hold the newest frame if the inference thread has not taken it yet."""
        with self._lock:
            slot = self._latest
            if slot is None or slot.seq <= self._taken_seq:
                return None
            self._taken_seq = slot.seq
            return self._hold(slot)

    def has_unseen(self) -> bool:
        slot = self._latest
        return slot is not None and slot.seq > self._taken_seq

    def _hold(self, slot: _Slot | None) -> Frame | None:
        if slot is None:
            return None
        slot.holders += 1
        return Frame(
            self.name,
            slot.image,
            slot.captured_at,
            slot.seq,
            lambda: self._drop(slot),
        )

    def _drop(self, slot: _Slot) -> None:
        with self._lock:
            slot.holders -= 1
            free = slot.holders == 0
        if free:
            slot.give_back()

    def put(self, image: np.ndarray, captured_at: float, give_back: Callable[[], None]) -> bool:
        """A new frame, a view of a lent slot; `give_back()` returns the slot to its writer
        once nobody holds it. True if the frame it replaces was never taken (skipped)."""
        with self._lock:
            self._seq += 1
            previous, self._latest = (
                self._latest,
                _Slot(image, self._seq, captured_at, give_back),
            )
            skipped = previous is not None and previous.seq > self._taken_seq
            listeners = list(self._listeners)
        if previous is not None:
            self._drop(previous)
        for listener in listeners:
            listener()
        return skipped

    def clear(self) -> None:
        """Forget the newest frame (its writer is gone; holders keep their views)."""
        with self._lock:
            previous, self._latest = self._latest, None
        if previous is not None:
            self._drop(previous)


class FrameBoard:
    """All cameras' sources; the inference thread takes their newest frames in turn."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sources: dict[str, FrameSource] = {}
        self._served: dict[str, float] = {}

    def add(self, source: FrameSource) -> None:
        """Register (or replace) a camera's source."""
        with self._cond:
            old = self._sources.get(source.name)
            if old is not None:
                old.unsubscribe(self._wake)
            self._sources[source.name] = source
            self._served.setdefault(source.name, 0.0)
        source.subscribe(self._wake)

    def remove(self, name: str) -> None:
        with self._cond:
            source = self._sources.pop(name, None)
            self._served.pop(name, None)
        if source is not None:
            source.unsubscribe(self._wake)

    def get(self, name: str) -> FrameSource | None:
        """A camera's source (for readers other than the inference thread)."""
        with self._cond:
            return self._sources.get(name)

    def names(self) -> list[str]:
        with self._cond:
            return list(self._sources)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def take(self, timeout: float) -> Frame | None:
        """The newest unseen frame of the camera served longest ago, or None after timeout.
        The caller releases it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                pending = [n for n, s in self._sources.items() if s.has_unseen()]
                for name in sorted(pending, key=self._served.__getitem__):
                    frame = self._sources[name].take_unseen()
                    if frame is not None:
                        self._served[name] = time.monotonic()
                        return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def pending(self) -> int:
        """How many cameras have a frame inference has not taken yet."""
        with self._cond:
            return sum(s.has_unseen() for s in self._sources.values())


def as_frame(camera: str, image: Any, captured_at: float | None = None) -> Frame:
    """A Frame around a private array (tests, benchmarks): nothing to give back."""
    return Frame(camera, image, time.time() if captured_at is None else captured_at)
