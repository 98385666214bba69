"""Where the daemon's messages go: the ZeroMQ publisher, the MQTT bridge and the web
view's event hub. Every message leaves through :meth:`Outlets.publish`; none of the three
makes the caller wait."""

from __future__ import annotations

import logging
from typing import Any

import zmq
from edgebnn.daemon.config import DaemonConfig
from edgebnn.daemon.events import EventHub
from edgebnn.daemon.mqtt_bridge import MqttBridge
from edgebnn.daemon.publish import Publisher, PublishError

log = logging.getLogger(__name__)


class Outlets:
    """The publisher (started by :meth:`start_publisher`), MQTT when configured, the hub
    once the web view is on."""

    def __init__(self, context: zmq.Context) -> None:
        self.context = context
        self.publisher: Publisher | None = None
        self.mqtt: MqttBridge | None = None
        self.hub: EventHub | None = None

    def publish(self, device: str, topic: bytes, payload: dict[str, Any]) -> bool:
        """Send one message everywhere; whether the ZeroMQ socket took it."""
        payload["device"] = device
        if self.hub is not None:
            self.hub.offer(topic, payload)
        if self.mqtt is not None:
            self.mqtt.forward(topic, payload)
        publisher = self.publisher
        return publisher.publish(topic, payload) if publisher is not None else False

    @property
    def dropped(self) -> int:
        """Messages the ZeroMQ publisher dropped (its queue was full)."""
        return self.publisher.dropped if self.publisher else 0

    def start_publisher(self, config: DaemonConfig) -> None:
        publisher = Publisher(config.publish, self.context)
        publisher.start()
        self.publisher = publisher

    def restart_publisher(self, new: DaemonConfig, old: DaemonConfig) -> None:
        """Bind ``new``'s endpoints; on failure put ``old``'s socket back and re-raise."""
        running = self.publisher
        if running is not None:
            running.stop()
        try:
            self.start_publisher(new)
        except PublishError:
            if running is not None:
                self.start_publisher(old)
            raise

    def start_mqtt(self, config: DaemonConfig, model_name: str) -> None:
        self.mqtt = MqttBridge(config, model_name)
        self.mqtt.start()
        assert config.mqtt is not None
        log.info(
            "MQTT to %s:%d under %s%s",
            config.mqtt.host,
            config.mqtt.port,
            config.mqtt.prefix(config.device),
            " (TLS)" if config.mqtt.tls else "",
        )

    def apply_mqtt(self, new: DaemonConfig, model_name: str) -> None:
        """Start, stop or reconfigure MQTT after a reload."""
        if new.mqtt is None:
            if self.mqtt is not None:
                self.mqtt.stop()
                self.mqtt = None
        elif self.mqtt is None:
            self.start_mqtt(new, model_name)
        else:
            self.mqtt.reconfigure(new, model_name)

    def stop(self, publisher_timeout: float) -> None:
        """MQTT says `offline` and disconnects; the publisher sends what it holds."""
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.publisher is not None:
            self.publisher.stop(timeout=publisher_timeout)
