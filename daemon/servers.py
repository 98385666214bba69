"""The daemon's optional HTTP servers: Prometheus metrics and the web view. Each is
Prometheus client is imported only when the metrics section turns it on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from edgebnn.daemon.config import DaemonConfig, is_loopback_endpoint
from edgebnn.daemon.events import EventHub
from edgebnn.daemon.web import DaemonView, WebServer, serve

log = logging.getLogger(__name__)


def start_metrics(config: DaemonConfig, snapshot: Callable[[], dict[str, Any]]) -> Any:
    """A started ``metrics.MetricsServer`` serving ``snapshot()`` (raises OSError)."""
    from edgebnn.daemon.metrics import MetricsServer  # prometheus-client: only when asked

    server = MetricsServer(config.metrics.host, config.metrics.port, snapshot)
    server.start()
    log.info("Prometheus metrics on http://%s:%d/metrics", *server.address)
    if not is_loopback_endpoint(f"tcp://{config.metrics.host}:1"):
        log.warning(
            "metrics are served unauthenticated on %s: anyone on the network can read them",
            config.metrics.host,
        )
    return server


def start_web(config: DaemonConfig, view: DaemonView, hub: EventHub) -> WebServer:
    """A started web view for ``view``, fed by ``hub`` (raises OSError, ValueError)."""
    return serve(config.web, view, hub)
