"""From the daemon's messages to MQTT: topics, rates, detections and HA discovery.

The daemon hands every message it publishes on ZeroMQ to `forward()` as well. Predictions
feed the per-group detectors (every frame, so the hysteresis sees them all) and are sent at
most `max_rate` times per second per camera (and region): a newer prediction replaces one
still waiting, so the last one always goes out. Nothing here waits on the network: sending
is the MqttLink thread's job, which also calls `tick()` to flush waiting predictions and to
turn detectors off when their hold time has passed.

Topics under the prefix (default edgebnn/<device>):
  availability                     online / offline (retained; offline is the Last Will)
  <camera>[/<region>]/prediction   the predictions/ JSON payload
  <camera>[/<region>]/detected/<group>  {"state": "ON"|"OFF", "score": ...} (retained)
  <camera>/status                  the status/ JSON payload (retained)
  stats                            the stats/ JSON payload (retained)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from edgebnn.daemon import hass
from edgebnn.daemon.detection import Detector
from edgebnn.daemon.hass import Scope, Topics
from edgebnn.daemon.mqtt import MqttLink
from edgebnn.daemon.mqtt_config import MqttConfig

import edgebnn

log = logging.getLogger(__name__)


def scopes(config: Any) -> list[tuple[Scope, list[str]]]:
    """The (camera, region) pairs a config classifies, with their group names: each
    camera's whole frame (unless `full_frame: false`), then each of its regions (with
    their own groups, or the daemon's)."""
    groups = [g.name for g in config.groups]
    result = []
    for camera in config.cameras:
        if camera.full_frame:
            result.append((Scope(camera.name), groups))
        for region in camera.regions:
            own = groups if region.groups is None else [name for name, _ in region.groups]
            result.append((Scope(camera.name, region.name), own))
    return result


def _connection(config: Any) -> tuple[Any, ...]:
    """The settings that need a new connection when they change."""
    m: MqttConfig = config.mqtt
    return (
        config.device,
        m.host,
        m.port,
        m.client_id,
        m.username,
        m.password_file,
        m.tls,
        m.prefix(config.device),
        m.qos,
        m.keepalive,
        m.queue_size,
        m.reconnect_initial,
        m.reconnect_max,
        m.discovery_prefix,
    )


class MqttBridge:
    """MQTT beside ZeroMQ for one daemon."""

    def __init__(
        self,
        config: Any,
        model_name: str,
        link_factory: Callable[..., MqttLink] = MqttLink,
    ) -> None:
        self._link_factory = link_factory
        self._lock = threading.Lock()
        self.link: MqttLink | None = None
        self.rate_limited = 0  # predictions replaced by a newer one before their turn
        self._detectors: dict[tuple[Scope, str], Detector] = {}
        self._last_sent: dict[Scope, float] = {}
        self._waiting: dict[Scope, dict[str, Any]] = {}
        self._entity_topics: set[str] = set()
        self._configure(config, model_name)

    # -- life cycle (main thread)

    def start(self) -> None:
        """Connect in the background and publish discovery and initial states."""
        self.link = self._new_link()
        self.link.start()
        self._publish_entities(set())

    def stop(self) -> None:
        """Clean stop: `offline` on the availability topic, then disconnect."""
        if self.link is not None:
            self.link.stop()

    def reconfigure(self, config: Any, model_name: str) -> None:
        """Apply a reloaded config: entities of removed cameras, groups or regions are
        removed from Home Assistant; a changed connection reconnects."""
        reconnect = _connection(config) != _connection(self.config)
        old_topics = set(self._entity_topics)
        with self._lock:
            self._configure(config, model_name)
        if reconnect and self.link is not None:
            for topic in old_topics:  # remove everything through the old connection
                self.link.set_retained(topic, "")
            self.link.stop()
            self.link = self._new_link()
            self.link.start()
            old_topics = set()
        self._publish_entities(old_topics)

    def _configure(self, config: Any, model_name: str) -> None:
        self.config = config
        self.mqtt: MqttConfig = config.mqtt
        self.device = config.device
        self.topics = Topics(self.mqtt.prefix(config.device))
        self.model_name = model_name
        self.scopes = scopes(config)
        self.cameras = [c.name for c in config.cameras]
        detectors = {}
        for scope, groups in self.scopes:
            for group in groups:
                limits = self.mqtt.thresholds(group)
                old = self._detectors.get((scope, group))
                if old is not None and old.limits == limits:
                    detectors[(scope, group)] = old
                else:
                    detectors[(scope, group)] = Detector(limits)
        self._detectors = detectors
        live = {scope for scope, _ in self.scopes}
        self._waiting = {s: p for s, p in self._waiting.items() if s in live}

    def _new_link(self) -> MqttLink:
        m = self.mqtt
        return self._link_factory(
            host=m.host,
            port=m.port,
            client_id=m.client(self.device),
            availability_topic=self.topics.availability,
            username=m.username,
            password_file=m.password_file,
            tls=m.tls,
            qos=m.qos,
            keepalive=m.keepalive,
            queue_size=m.queue_size,
            backoff_initial=m.reconnect_initial,
            backoff_max=m.reconnect_max,
            subscriptions={f"{m.discovery_prefix}/status": self._hass_status},
            on_tick=self.tick,
        )

    def _publish_entities(self, old_topics: set[str]) -> None:
        """Discovery configs and the detectors' current states (all retained); topics of
        entities that are gone get an empty retained message."""
        link = self.link
        assert link is not None
        topics: dict[str, Any] = {}
        if self.mqtt.discovery:
            device = hass.Device(self.device, self.model_name, edgebnn.__version__)
            topics.update(
                hass.discovery_configs(
                    self.mqtt.discovery_prefix,
                    device,
                    self.topics,
                    self.cameras,
                    self.scopes,
                )
            )
        with self._lock:
            for (scope, group), detector in self._detectors.items():
                topics[self.topics.detected(scope, group)] = self._detected(scope, group, detector)
        states = {self.topics.status(camera) for camera in self.cameras}
        for topic in old_topics - set(topics) - states:
            link.set_retained(topic, "")
        for topic, payload in topics.items():
            link.set_retained(topic, payload)
        self._entity_topics = set(topics) | states

    def _hass_status(self, payload: bytes) -> None:
        """Home Assistant (re)started (its birth message): send discovery and states again."""
        if payload.strip() == b"online" and self.link is not None:
            log.debug("mqtt: Home Assistant came online; sending discovery again")
            self.link.resend_retained()

    # -- from the daemon (any thread; never blocks)

    def forward(self, topic: bytes, payload: dict[str, Any]) -> None:
        """Route one ZeroMQ message (predictions/, status/, stats/) to MQTT."""
        link = self.link
        if link is None:
            return
        message = dict(payload)
        if topic.startswith(b"predictions/"):
            self.prediction(message)
        elif topic.startswith(b"status/"):
            message["published_at"] = round(time.time(), 6)
            link.set_retained(self.topics.status(message["camera"]), message)
        elif topic.startswith(b"stats/"):
            message["published_at"] = round(time.time(), 6)
            link.set_retained(self.topics.stats, message)

    def prediction(self, message: dict[str, Any]) -> None:
        """Update the detectors; send now, or keep it as the latest waiting one."""
        scope = Scope(message["camera"], message.get("region"))
        now = time.monotonic()
        changed = []
        with self._lock:
            for group, score in (message.get("groups") or {}).items():
                detector = self._detectors.get((scope, group))
                if detector is not None and detector.update(score, now):
                    changed.append((group, detector))
            interval = 1.0 / self.mqtt.rate(scope.camera)
            if now - self._last_sent.get(scope, -1e9) >= interval:
                self._last_sent[scope] = now
                self._waiting.pop(scope, None)
                send = True
            else:
                if scope in self._waiting:
                    self.rate_limited += 1
                self._waiting[scope] = message
                send = False
        for group, detector in changed:
            self._send_detected(scope, group, detector)
        if send:
            self._send_prediction(scope, message)

    # -- from the link thread

    def tick(self) -> None:
        """Send waiting predictions whose turn has come; apply hold times."""
        now = time.monotonic()
        due = []
        changed = []
        with self._lock:
            for scope, message in list(self._waiting.items()):
                if now - self._last_sent.get(scope, -1e9) >= 1.0 / self.mqtt.rate(scope.camera):
                    self._last_sent[scope] = now
                    del self._waiting[scope]
                    due.append((scope, message))
            for (scope, group), detector in self._detectors.items():
                if detector.tick(now):
                    changed.append((scope, group, detector))
        for scope, message in due:
            self._send_prediction(scope, message)
        for scope, group, detector in changed:
            self._send_detected(scope, group, detector)

    # -- messages

    def _send_prediction(self, scope: Scope, message: dict[str, Any]) -> None:
        assert self.link is not None
        message["published_at"] = round(time.time(), 6)
        self.link.send(self.topics.prediction(scope), message)

    def _send_detected(self, scope: Scope, group: str, detector: Detector) -> None:
        assert self.link is not None
        payload = self._detected(scope, group, detector)
        self.link.set_retained(self.topics.detected(scope, group), payload)
        log.debug("mqtt: %s %s %s", scope.title, group, payload["state"])

    def _detected(self, scope: Scope, group: str, detector: Detector) -> dict[str, Any]:
        limits = detector.limits
        return {
            "device": self.device,
            "camera": scope.camera,
            "region": scope.region,
            "group": group,
            "state": "ON" if detector.state else "OFF",
            "score": round(detector.score, 6),
            "on": limits.on,
            "off": limits.off,
            "hold": limits.hold,
            "published_at": round(time.time(), 6),
        }

    def snapshot(self) -> dict[str, Any]:
        """The `mqtt` part of the stats payload."""
        link = self.link
        if link is None:
            return {"connected": False}
        return {
            "broker": link.address,
            "connected": link.connected,
            "connects": link.connects,
            "sent": link.sent,
            "queued": link.queued(),
            "dropped": link.dropped,
            "rate_limited": self.rate_limited,
            "last_error": link.last_error,
        }
