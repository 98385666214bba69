"""A real Mosquitto broker (password file, plain and TLS listeners, a test CA) and a
subscriber that behaves like Home Assistant's MQTT discovery."""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

USER, PASSWORD = "edgebnn", "s3cret-Pa55"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768-60999), so that no outgoing
    connection takes it while the broker is stopped and it can start again on it."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and a second CA
    that signed nothing (for the TLS failure test)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        k: folder / v
        for k, v in {
            "ca": "ca.crt",
            "ca_key": "ca.key",
            "other_ca": "other-ca.crt",
            "other_key": "other-ca.key",
            "server": "server.crt",
            "server_key": "server.key",
            "csr": "server.csr",
            "ext": "server.ext",
        }.items()
    }

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    for cert, key, name in (
        (files["ca"], files["ca_key"], "edgebnn test CA"),
        (files["other_ca"], files["other_key"], "another CA"),
    ):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                f"/CN={name}", "-keyout", key, "-out", cert)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", files["server_key"], "-out", files["csr"])  # fmt: skip
    files["ext"].write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", files["csr"], "-CA", files["ca"], "-CAkey", files["ca_key"],
            "-CAcreateserial", "-days", "2", "-extfile", files["ext"], "-out", files["server"])  # fmt: skip
    return files


class Broker:
    """mosquitto on two free loopback ports: plain (`port`) and TLS (`tls_port`), both
    with a password file and no anonymous access."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.certs = make_certificates(folder / "certs")
        self.port, self.tls_port = free_port(), free_port()
        passwords = folder / "passwd"
        passwords.write_text("")
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwords), USER, PASSWORD],
            check=True,
            capture_output=True,
        )
        self.password_file = folder / "mqtt-password"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            "user root\n"  # keep our uid when the tests run as root (files in /tmp, 0700)
            "persistence false\n"
            "allow_anonymous false\n"
            f"password_file {passwords}\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.tls_port} 127.0.0.1\n"
            f"cafile {self.certs['ca']}\n"
            f"certfile {self.certs['server']}\n"
            f"keyfile {self.certs['server_key']}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "mosquitto.log"

    def start(self, attempts: int = 5) -> None:
        """Start mosquitto and wait for both listeners (a port still held by a closing
        socket is retried)."""
        for attempt in range(attempts):
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(
                    [MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=out
                )
            if self._listening():
                return
            assert attempt < attempts - 1, self.log.read_text()
            time.sleep(1.0)

    def _listening(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + 10
        for port in (self.port, self.tls_port):
            while True:
                if self.proc.poll() is not None:
                    return False
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, self.log.read_text()
                    time.sleep(0.05)
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def client(self, name: str) -> paho.Client:
        """A connected test client on the plain listener, its loop running."""
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name)
        client.username_pw_set(USER, PASSWORD)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        return client


# ---------------------------------------------------------------- Home Assistant's view

# The keys of sensor.mqtt and binary_sensor.mqtt (home-assistant.io/integrations/*.mqtt)
# that a discovery payload may use; anything else is a mistake on our side.
COMMON_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "device", "enabled_by_default", "encoding", "entity_category", "entity_picture",
    "expire_after", "force_update", "icon", "json_attributes_template",
    "json_attributes_topic", "name", "object_id", "default_entity_id", "origin",
    "payload_available", "payload_not_available", "qos", "state_topic", "unique_id",
    "value_template", "device_class", "platform",
}  # fmt: skip
COMPONENT_KEYS = {
    "sensor": COMMON_KEYS | {"last_reset_value_template", "options", "suggested_display_precision",
                             "state_class", "unit_of_measurement"},
    "binary_sensor": COMMON_KEYS | {"off_delay", "payload_off", "payload_on"},
}  # fmt: skip
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
SENSOR_DEVICE_CLASSES = {"enum", "duration", None}
BINARY_DEVICE_CLASSES = {"occupancy", "motion", "presence", None}
DISCOVERY_TOPIC = re.compile(
    r"^(?P<prefix>[^/]+)/(?P<component>[^/]+)/(?P<node>[A-Za-z0-9_-]+)/"
    r"(?P<object>[A-Za-z0-9_-]+)/config$"
)


@dataclass
class Entity:
    component: str
    config: dict[str, Any]
    state: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    availability: dict[str, bool] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        entries = self.config.get("availability") or []
        values = [self.availability.get(e["topic"], False) for e in entries]
        if not values:
            return True
        return all(values) if self.config.get("availability_mode") == "all" else values[-1]


class HassObserver:
    """Subscribes to `<prefix>/#`, checks every discovery config, follows the state,
    attribute and availability topics each entity names, and renders their templates
    with Jinja2 (as Home Assistant does, with `value_json`)."""

    def __init__(self, broker: Broker, prefix: str = "homeassistant") -> None:
        self.prefix = prefix
        self.entities: dict[str, Entity] = {}  # by unique_id
        self.config_topics: dict[str, str] = {}  # config topic -> unique_id
        self.removed: list[str] = []  # unique_ids removed with an empty config
        self.config_messages = 0  # non-empty discovery configs received
        self.problems: list[str] = []
        self.last: dict[str, bytes] = {}  # topic -> last payload
        self._env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        self._lock = threading.RLock()
        self._followed: set[str] = set()
        self.client = broker.client(f"hass-{id(self)}")
        self.client.on_message = self._on_message
        self.client.subscribe(f"{prefix}/#")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            try:
                self._handle(message.topic, message.payload)
            except (AssertionError, ValueError, KeyError, TypeError, jinja2.TemplateError) as exc:
                # a failed check on our payloads, reported by check()
                self.problems.append(f"{message.topic}: {type(exc).__name__}: {exc}")

    def _handle(self, topic: str, payload: bytes) -> None:
        self.last[topic] = payload
        match = DISCOVERY_TOPIC.match(topic)
        if topic.startswith(f"{self.prefix}/") and topic.endswith("/config"):
            assert match, f"discovery topic not in HA's form: {topic}"
            if not payload:
                uid = self.config_topics.pop(topic, None)
                if uid is not None:
                    self.entities.pop(uid, None)
                    self.removed.append(uid)
                return
            self.config_messages += 1
            config = json.loads(payload)
            self._validate(match.group("component"), config, topic)
            uid = config["unique_id"]
            owner = next((t for t, u in self.config_topics.items() if u == uid), topic)
            assert owner == topic, f"unique_id {uid} used by {owner} and {topic}"
            self.config_topics[topic] = uid
            entity = self.entities.get(uid)
            if entity is None:
                entity = self.entities[uid] = Entity(match.group("component"), config)
            entity.config = config  # an update (or the same config again) keeps the state
            for t in self._topics_of(config):
                if t not in self._followed:
                    self._followed.add(t)
                    self.client.subscribe(t)
                if t in self.last:  # already received (retained): apply now
                    self._apply(entity, t, self.last[t])
            return
        for entity in self.entities.values():
            self._apply(entity, topic, payload)

    @staticmethod
    def _topics_of(config: dict[str, Any]) -> list[str]:
        topics = [config["state_topic"]]
        if "json_attributes_topic" in config:
            topics.append(config["json_attributes_topic"])
        topics += [a["topic"] for a in config.get("availability", [])]
        return topics

    def _validate(self, component: str, config: dict[str, Any], topic: str) -> None:
        assert component in COMPONENT_KEYS, f"unexpected component {component}"
        unknown = set(config) - COMPONENT_KEYS[component]
        assert not unknown, f"keys HA does not document for {component}: {unknown}"
        assert isinstance(config.get("unique_id"), str) and config["unique_id"]
        assert isinstance(config.get("name"), str) and config["name"]
        assert isinstance(config.get("state_topic"), str)
        for t in self._topics_of(config):
            assert t and "#" not in t and "+" not in t, t
        device = config["device"]
        assert set(device) <= DEVICE_KEYS, set(device) - DEVICE_KEYS
        assert isinstance(device["identifiers"], list) and device["identifiers"]
        assert device.get("model") and device.get("sw_version")
        assert config.get("origin", {}).get("name")
        for entry in config.get("availability", []):
            assert set(entry) <= {"topic", "value_template", "payload_available",
                                  "payload_not_available"}, entry  # fmt: skip
        assert config.get("availability_mode", "latest") in ("all", "any", "latest")
        assert config.get("entity_category") in (None, "diagnostic", "config")
        classes = SENSOR_DEVICE_CLASSES if component == "sensor" else BINARY_DEVICE_CLASSES
        assert config.get("device_class") in classes, config.get("device_class")
        if config.get("device_class") == "enum":
            assert config.get("options") and "unit_of_measurement" not in config
        for key in ("value_template", "json_attributes_template"):
            if key in config:
                self._env.from_string(config[key])  # must compile

    def _render(self, template: str | None, payload: bytes) -> str:
        text = payload.decode()
        if template is None:
            return text
        return self._env.from_string(template).render(value=text, value_json=json.loads(text))

    def _apply(self, entity: Entity, topic: str, payload: bytes) -> None:
        config = entity.config
        for entry in config.get("availability", []):
            if entry["topic"] == topic and payload:
                value = self._render(entry.get("value_template"), payload)
                entity.availability[topic] = value == entry.get("payload_available", "online")
        if not payload:
            return
        if config["state_topic"] == topic:
            value = self._render(config.get("value_template"), payload)
            if entity.component == "binary_sensor":
                assert value in (config["payload_on"], config["payload_off"]), value
                value = "on" if value == config["payload_on"] else "off"
            elif config.get("device_class") == "enum":
                assert value in config["options"], value
            elif config.get("state_class") == "measurement" and value != "None":
                float(value)
            if not entity.history or entity.history[-1] != value:
                entity.history.append(value)
            entity.state = value
        if config.get("json_attributes_topic") == topic:
            rendered = self._render(config.get("json_attributes_template"), payload)
            attributes = json.loads(rendered)
            assert isinstance(attributes, dict)
            entity.attributes = attributes

    # -- queries

    def check(self) -> None:
        assert not self.problems, self.problems

    def device_entities(self, device: str) -> dict[str, Entity]:
        with self._lock:
            return {
                uid: e for uid, e in self.entities.items() if e.config["device"]["name"] == device
            }

    def find(self, device: str, suffix: str) -> Entity | None:
        with self._lock:
            for uid, entity in self.entities.items():
                if entity.config["device"]["name"] == device and uid.endswith(suffix):
                    return entity
        return None

    def wait_for(self, check: Callable[[HassObserver], Any], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if check(self):
                    return True
            time.sleep(0.05)
        with self._lock:
            return bool(check(self))
