"""What the daemon says about itself: the stats payload and log line, each camera's status
message, and the one-line ``STATUS=`` text shown by ``systemctl status``.

Frame rates are computed between two reports of the same kind (:class:`RateMeter`), so the
stats topic and the status line each keep their own meter.
"""

from __future__ import annotations

import time
from typing import Any

from edgebnn.daemon.publish import SCHEMA
from edgebnn.daemon.stats import ONLINE, CameraStats, RateMeter, cpu_temperature, throttled
from edgebnn.engine.host import rss_bytes

import edgebnn


class Reports:
    """Builds the daemon's reports from its cameras' counters (shared, not copied)."""

    def __init__(self, stats: dict[str, CameraStats], started_at: float) -> None:
        self.stats = stats
        self.started_at = started_at
        self.stats_rates = RateMeter()
        self.status_rates = RateMeter()
        self._fps: dict[str, tuple[float, float]] = {}

    def status(self, camera: str) -> dict[str, Any] | None:
        """One camera's status message, or None if the camera is gone."""
        stats = self.stats.get(camera)
        if stats is None:
            return None
        with stats.lock:
            return {
                "schema": SCHEMA,
                "camera": camera,
                "state": stats.state,
                "reason": stats.reason,
                "since": round(stats.state_since, 3),
                "published_at": None,
            }

    def snapshot(
        self,
        net: Any,
        dropped: int,
        rates: RateMeter | None = None,
        mqtt: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The stats payload; ``rates`` (if given) updates the cameras' frame rates, ``mqtt``
        is the MQTT bridge's own snapshot (None when MQTT is off)."""
        cameras = {}
        for name, stats in list(self.stats.items()):
            cam = stats.snapshot()
            if rates is not None:
                self._fps[name] = rates.update(name, cam["processed"], cam["captured"])
            fps, capture_fps = self._fps.get(name, (0.0, 0.0))
            cam["fps"] = round(fps, 3)
            cam["capture_fps"] = round(capture_fps, 3)
            cameras[name] = cam
        return {
            "schema": SCHEMA,
            "uptime_s": round(time.time() - self.started_at, 3),
            "version": edgebnn.__version__,
            "model": {
                "name": getattr(net, "name", None),
                "sha256": getattr(net, "source_sha256", None),
            },
            "cameras": cameras,
            "rss_bytes": rss_bytes(),
            "cpu_temp_c": cpu_temperature(),
            "throttled": throttled(),
            "dropped_messages": dropped,
            "mqtt": mqtt,
            "published_at": None,
        }

    @staticmethod
    def stats_line(snapshot: dict[str, Any]) -> str:
        """The periodic stats log line for a :meth:`snapshot`."""
        parts = []
        for name, cam in snapshot["cameras"].items():
            p50 = cam["inference_ms_p50"]
            parts.append(
                f"{name} {cam['state']} {cam['fps']:.1f} fps (capture {cam['capture_fps']:.1f}, "
                f"skipped {cam['skipped']}, failed {cam['failed']}, reconnects "
                f"{cam['reconnects']}) p50 {'-' if p50 is None else f'{p50:.1f}'} ms"
            )
        rss_mb = snapshot["rss_bytes"] / 2**20
        return (
            f"stats: {'; '.join(parts)}; rss {rss_mb:.0f} MB; "
            f"dropped {snapshot['dropped_messages']}"
        )

    def status_line(self) -> str:
        """STATUS= text for `systemctl status`."""
        online = sum(s.state == ONLINE for s in self.stats.values())
        snapshot = {name: s.snapshot() for name, s in self.stats.items()}
        fps = 0.0
        for name, cam in snapshot.items():
            fps += self.status_rates.update(name, cam["processed"], cam["captured"])[0]
        p50s = [c["inference_ms_p50"] for c in snapshot.values() if c["inference_ms_p50"]]
        inference = f", inference {max(p50s):.0f} ms" if p50s else ""
        return f"{online}/{len(snapshot)} cameras online, {fps:.1f} fps{inference}"
