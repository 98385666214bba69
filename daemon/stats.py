"""Counters and rates for the stats topic, the stats log line and Prometheus.

Counters are updated by the capture threads and the inference thread; a lock per camera
keeps snapshots consistent. Rates are computed between two snapshots by the main loop.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ONLINE, RECONNECTING, OFFLINE = "online", "reconnecting", "offline"


@dataclass
class CameraStats:
    """What happened to one camera's frames since the daemon started."""

    name: str
    captured: int = 0  # frames delivered by the source
    processed: int = 0  # frames classified and published
    skipped: int = 0  # replaced by a newer frame before inference got to them
    failed: int = 0  # unreadable or malformed frames, or frames the model rejected
    reconnects: int = 0  # times the source was lost and reopened
    state: str = RECONNECTING
    reason: str = "starting"
    state_since: float = field(default_factory=time.time)
    last_frame_at: float | None = None
    inference_ms: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    regions: dict[str, RegionStats] = field(default_factory=dict)
    skipped_held: int = 0  # of `skipped`: taken by inference but replaced before any use
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Increment counters atomically, e.g. add(captured=1)."""
        with self.lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def set_state(self, state: str, reason: str) -> bool:
        """Record a state change; True when it differs from the current state."""
        with self.lock:
            if state == self.state and reason == self.reason:
                return False
            changed = state != self.state
            self.state, self.reason = state, reason
            if changed:
                self.state_since = time.time()
            return True

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the counters."""
        with self.lock:
            times = np.array(self.inference_ms, dtype=np.float64)
            return {
                "state": self.state,
                "reason": self.reason,
                "captured": self.captured,
                "processed": self.processed,
                "skipped": self.skipped,
                "failed": self.failed,
                "reconnects": self.reconnects,
                "inference_ms_p50": _percentile(times, 50),
                "inference_ms_p95": _percentile(times, 95),
                **(
                    {
                        "regions": {
                            name: r.snapshot(self.skipped - self.skipped_held)
                            for name, r in self.regions.items()
                        }
                    }
                    if self.regions
                    else {}
                ),
            }

    def region(self, name: str) -> RegionStats:
        """The counters of one region (created on first use; call with the lock held)."""
        stats = self.regions.get(name)
        if stats is None:
            stats = self.regions[name] = RegionStats(board_base=self.skipped - self.skipped_held)
        return stats


@dataclass
class RegionStats:
    """One region's counters (kept inside its camera's CameraStats, under its lock)."""

    processed: int = 0  # frames of the camera this region was classified on
    missed: int = 0  # frames inference held that were replaced before this region's turn
    board_base: int = 0  # the camera's frames replaced before inference took them, at start
    inference_ms: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def snapshot(self, board_skipped: int) -> dict[str, Any]:
        """`skipped`: every frame of the camera this region never saw since it started."""
        times = np.array(self.inference_ms, dtype=np.float64)
        return {
            "processed": self.processed,
            "skipped": self.missed + max(0, board_skipped - self.board_base),
            "inference_ms_p50": _percentile(times, 50),
            "inference_ms_p95": _percentile(times, 95),
        }


def _percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values.size else None


class RateMeter:
    """Per-camera frames/s between two calls of update()."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._last: dict[str, tuple[float, int, int]] = {}

    def update(self, name: str, processed: int, captured: int) -> tuple[float, float]:
        """(processed fps, captured fps) since the previous call for this camera."""
        now = time.monotonic()
        previous = self._last.get(name, (self._start, 0, 0))
        self._last[name] = (now, processed, captured)
        if now <= previous[0]:
            return 0.0, 0.0
        elapsed = now - previous[0]
        return (processed - previous[1]) / elapsed, (captured - previous[2]) / elapsed


def cpu_temperature() -> float | None:
    """SoC temperature in °C where the kernel exposes it (Raspberry Pi: thermal_zone0)."""
    try:
        return round(int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000, 1)
    except (OSError, ValueError):
        return None


THROTTLED_FILE = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")


def throttled() -> int | None:
    """The Raspberry Pi firmware's throttling bits (as `vcgencmd get_throttled`), or None."""
    try:
        return int(THROTTLED_FILE.read_text().strip(), 16)
    except (OSError, ValueError):
        return None
