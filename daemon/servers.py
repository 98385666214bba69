"""The daemon's optional HTTP servers: Prometheus metrics and the web view, each running
while its config section turns it on. The Prometheus client is imported only then."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from edgebnn.daemon.config import DaemonConfig, is_loopback_endpoint
from edgebnn.daemon.events import EventHub
from edgebnn.daemon.web import DaemonView, WebServer, serve

log = logging.getLogger(__name__)


class Servers:
    """Metrics serve ``snapshot()`` at each scrape; the web view shows ``view``, fed by the
    hub ``web_hub()`` returns (called when the web view starts)."""

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        view: DaemonView,
        web_hub: Callable[[], EventHub],
    ) -> None:
        self.snapshot = snapshot
        self.view = view
        self.web_hub = web_hub
        self.metrics: Any = None  # a metrics.MetricsServer while on
        self.web: WebServer | None = None

    def start_metrics(self, config: DaemonConfig) -> None:
        """Serve /metrics (raises OSError when the port cannot be bound)."""
        from edgebnn.daemon.metrics import MetricsServer  # prometheus-client: only when asked

        self.metrics = MetricsServer(config.metrics.host, config.metrics.port, self.snapshot)
        self.metrics.start()
        log.info("Prometheus metrics on http://%s:%d/metrics", *self.metrics.address)
        if not is_loopback_endpoint(f"tcp://{config.metrics.host}:1"):
            log.warning(
                "metrics are served unauthenticated on %s: anyone on the network can read them",
                config.metrics.host,
            )

    def start_web(self, config: DaemonConfig) -> None:
        """Serve the web view (raises OSError or ValueError)."""
        self.web = serve(config.web, self.view, self.web_hub())

    def apply(self, old: DaemonConfig, new: DaemonConfig) -> None:
        """After a reload: restart each server whose section changed (or stop it)."""
        if new.metrics != old.metrics:
            if self.metrics is not None:
                self.metrics.stop()
                self.metrics = None
            if new.metrics.enabled:
                self.start_metrics(new)
        if new.web != old.web:
            if self.web is not None:
                self.web.stop()
                self.web = None
            if new.web.enabled:
                self.start_web(new)

    def forget_camera(self, name: str) -> None:
        """A camera left the config: the web view drops its last image."""
        if self.web is not None:
            self.web.snapshots.forget(name)

    def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()
        if self.web is not None:
            self.web.stop()
