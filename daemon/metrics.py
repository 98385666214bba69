"""The optional Prometheus endpoint (needs prometheus-client; off by default).

Metrics are computed from the daemon's stats snapshot at scrape time, served by a small
HTTP server on its own thread, bound to loopback unless configured otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SnapshotCollector:
    """Turns one stats snapshot into Prometheus metric families."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        cams = snap["cameras"]
        info = GaugeMetricFamily(
            "edgebnn_info", "Version and model", labels=["version", "model", "sha256"]
        )
        info.add_metric(
            [snap["version"], str(snap["model"]["name"]), str(snap["model"]["sha256"] or "")], 1
        )
        yield info
        yield GaugeMetricFamily(
            "edgebnn_uptime_seconds", "Seconds since start", value=snap["uptime_s"]
        )
        yield GaugeMetricFamily("edgebnn_resident_memory_bytes", "RSS", value=snap["rss_bytes"])
        if snap["cpu_temp_c"] is not None:
            yield GaugeMetricFamily(
                "edgebnn_cpu_temperature_celsius", "SoC temperature", value=snap["cpu_temp_c"]
            )
        if snap["throttled"] is not None:
            yield GaugeMetricFamily(
                "edgebnn_throttled_flags", "Firmware throttling bits", value=snap["throttled"]
            )
        yield CounterMetricFamily(
            "edgebnn_messages_dropped", "Messages not sent", value=snap["dropped_messages"]
        )
        mqtt = snap.get("mqtt")
        if mqtt is not None:
            yield GaugeMetricFamily(
                "edgebnn_mqtt_connected", "1 if connected to the broker", value=mqtt["connected"]
            )
            yield CounterMetricFamily(
                "edgebnn_mqtt_messages_dropped",
                "MQTT messages dropped from the full queue",
                value=mqtt.get("dropped", 0),
            )
        online = GaugeMetricFamily("edgebnn_camera_online", "1 if frames arrive", labels=["camera"])
        fps = GaugeMetricFamily(
            "edgebnn_camera_fps", "Frames classified per second", labels=["camera"]
        )
        counters = {
            key: CounterMetricFamily(f"edgebnn_frames_{key}", f"Frames {key}", labels=["camera"])
            for key in ("captured", "processed", "skipped", "failed")
        }
        reconnects = CounterMetricFamily(
            "edgebnn_camera_reconnects", "Source reopen attempts", labels=["camera"]
        )
        inference = GaugeMetricFamily(
            "edgebnn_inference_seconds", "Inference time quantiles", labels=["camera", "quantile"]
        )
        regions = {
            key: CounterMetricFamily(
                f"edgebnn_region_frames_{key}",
                f"Frames of the camera {key} for one region",
                labels=["camera", "region"],
            )
            for key in ("processed", "skipped")
        }
        for name, cam in cams.items():
            for region, counts in cam.get("regions", {}).items():
                for key, family in regions.items():
                    family.add_metric([name, region], counts[key])
            online.add_metric([name], 1.0 if cam["state"] == "online" else 0.0)
            fps.add_metric([name], cam.get("fps", 0.0))
            for key, family in counters.items():
                family.add_metric([name], cam[key])
            reconnects.add_metric([name], cam["reconnects"])
            for q, key in (("0.5", "inference_ms_p50"), ("0.95", "inference_ms_p95")):
                if cam[key] is not None:
                    inference.add_metric([name, q], cam[key] / 1000.0)
        yield from (online, fps, *counters.values(), reconnects, inference, *regions.values())


class MetricsServer:
    """GET /metrics on host:port from a daemon thread."""

    def __init__(self, host: str, port: int, snapshot: Callable[[], dict[str, Any]]) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(snapshot))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # no line per scrape
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
