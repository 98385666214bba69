"""The daemon's messages as the web view sees them: the latest prediction of every
(camera, region), the latest status of every camera, and a short ring of recent events
that server-sent-event clients follow.

`offer()` is called on the inference and main threads for every message the daemon
publishes; it copies the payload's top level and returns at once. The ring is shared by
all clients and has a fixed size: a client that reads too slowly finds older events gone
and skips them (counted), so a slow browser costs fewer events, never more memory. Each
event is encoded to JSON once, by the first client that sends it, never by the publisher.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

RING_SIZE = 256  # events kept for clients that fall behind (a few seconds at 30 fps)


class Event:
    """One message: its number, SSE event name and payload (JSON made on first use)."""

    __slots__ = ("_data", "name", "number", "payload")

    def __init__(self, number: int, name: str, payload: dict[str, Any]) -> None:
        self.number = number
        self.name = name
        self.payload = payload
        self._data: bytes | None = None

    def encode(self) -> bytes:
        """The SSE frame: `id`, `event` and one `data` line."""
        if self._data is None:  # two clients racing here both get the same bytes
            data = json.dumps(self.payload, separators=(",", ":"), allow_nan=False)
            self._data = f"id: {self.number}\nevent: {self.name}\ndata: {data}\n\n".encode()
        return self._data


class EventHub:
    """Latest values and the shared event ring (all methods are thread-safe)."""

    def __init__(self, ring_size: int = RING_SIZE) -> None:
        self._cond = threading.Condition()
        self._ring: deque[Event] = deque(maxlen=ring_size)
        self._number = 0
        self._clients = 0
        self._latest: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._status: dict[str, dict[str, Any]] = {}
        self.closed = False

    # -- producers

    def offer(self, topic: bytes, payload: dict[str, Any]) -> None:
        """Record one published message (predictions/, status/ or stats/)."""
        kind = topic.split(b"/", 1)[0].decode()
        message = dict(payload)  # the publisher thread sets published_at on the original
        if message.get("published_at") is None:
            message["published_at"] = round(time.time(), 6)
        with self._cond:
            if kind == "predictions":
                self._latest[(message["camera"], message.get("region"))] = message
                name = "prediction"
            elif kind == "status":
                self._status[message["camera"]] = message
                name = "status"
            else:
                name = kind
            if not self._clients:
                return
            self._number += 1
            self._ring.append(Event(self._number, name, message))
            self._cond.notify_all()

    def forget(self, camera: str) -> None:
        """Drop a removed camera's latest values."""
        with self._cond:
            for key in [k for k in self._latest if k[0] == camera]:
                del self._latest[key]
            self._status.pop(camera, None)

    def close(self) -> None:
        """Wake every client so it ends."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # -- readers

    def latest(self, camera: str, region: str | None) -> dict[str, Any] | None:
        with self._cond:
            return self._latest.get((camera, region))

    def status(self, camera: str) -> dict[str, Any] | None:
        with self._cond:
            return self._status.get(camera)

    def current(self) -> list[Event]:
        """The latest status and prediction of everything, as events numbered 0
        (what a new client is sent first)."""
        with self._cond:
            statuses = [Event(0, "status", p) for p in self._status.values()]
            predictions = [Event(0, "prediction", p) for p in self._latest.values()]
        return statuses + predictions

    def attach(self) -> int:
        """Count a new client; returns its cursor (it receives events after this)."""
        with self._cond:
            self._clients += 1
            return self._number

    def detach(self) -> None:
        with self._cond:
            self._clients -= 1

    @property
    def clients(self) -> int:
        return self._clients

    def wait(self, cursor: int, timeout: float) -> tuple[list[Event], int, int]:
        """(events after `cursor`, new cursor, events the client missed) once there are
        any, or empty lists after `timeout` seconds or on close."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._number <= cursor and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return [], cursor, 0
                self._cond.wait(remaining)
            if self.closed:
                return [], cursor, 0
            first = self._ring[0].number if self._ring else self._number + 1
            missed = max(0, first - cursor - 1)
            events = [e for e in self._ring if e.number > cursor]
            return events, self._number, missed
