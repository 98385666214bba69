"""The `mqtt:` section and the top-level `device` key: settings and their validation.

Validation goes through the config reader (same line / key-path errors as every other
section). The broker password is never part of the configuration: only the path of the
file holding it, read when connecting.
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebnn.daemon.config_values import between, positive
from edgebnn.daemon.detection import Thresholds

DEVICE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOPIC_FORBIDDEN = re.compile(r"[#+\x00]")


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the broker: the CA that signed its certificate (None: the system's CAs) and
    an optional client certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT connection, topics, rates and Home Assistant discovery."""

    host: str = "localhost"
    port: int = 1883
    client_id: str | None = None  # None: edgebnn-<device>
    username: str | None = None
    password_file: Path | None = None
    tls: TlsConfig | None = None
    topic_prefix: str | None = None  # None: edgebnn/<device>
    qos: int = 0
    keepalive: int = 60
    max_rate: float = 1.0  # prediction messages per second per camera (and region)
    camera_max_rate: tuple[tuple[str, float], ...] = ()
    queue_size: int = 1000
    reconnect_initial: float = 1.0
    reconnect_max: float = 30.0
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    detection: Thresholds = field(default_factory=Thresholds)
    group_detection: tuple[tuple[str, Thresholds], ...] = ()

    def prefix(self, device: str) -> str:
        return self.topic_prefix or f"edgebnn/{device}"

    def client(self, device: str) -> str:
        return self.client_id or f"edgebnn-{device}"

    def rate(self, camera: str) -> float:
        return dict(self.camera_max_rate).get(camera, self.max_rate)

    def thresholds(self, group: str) -> Thresholds:
        return dict(self.group_detection).get(group, self.detection)


def default_device() -> str:
    """The host name up to its first dot, reduced to the characters topics allow."""
    name = socket.gethostname().split(".", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:64]
    return name or "edgebnn"


def tls_problem(tls: TlsConfig) -> str | None:
    """Why the certificate files cannot be loaded, or None (checked at load, not at connect)."""
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return f"cannot load ca_file {tls.ca_file}: {exc}"
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ValueError) as exc:
            return f"cannot load cert_file/key_file: {exc}"
    return None


def topic_problem(text: str) -> str | None:
    """Why a string cannot be an MQTT topic prefix, or None."""
    if _TOPIC_FORBIDDEN.search(text):
        return "must not contain '#', '+' or NUL"
    if text.startswith("/") or text.endswith("/") or "//" in text:
        return "must not start or end with '/' or contain an empty level"
    return None


def read_device(reader: Any, top: dict[str, Any]) -> str:
    return (
        reader.value(
            ("device",),
            top,
            "str",
            None,
            lambda v: (
                None
                if DEVICE_NAME.match(v)
                else "use 1-64 letters, digits, '_', '-' or '.' (it is part of topics and ids)"
            ),
        )
        or default_device()
    )


def read_mqtt(
    reader: Any, top: dict[str, Any], cameras: list[str], groups: list[str]
) -> MqttConfig | None:
    """Validate the `mqtt:` section; None (MQTT off) when it is absent or `enabled: false`.
    An empty `mqtt:` means every default (a broker on localhost)."""
    if "mqtt" not in top:
        return None
    raw = top["mqtt"] if top["mqtt"] is not None else {}
    path = ("mqtt",)
    keys = (
        "enabled",
        "host",
        "port",
        "client_id",
        "username",
        "password_file",
        "tls",
        "topic_prefix",
        "qos",
        "keepalive",
        "max_rate",
        "cameras",
        "queue_size",
        "reconnect",
        "discovery",
        "detection",
    )
    m = reader.section(path, raw, keys)
    if not isinstance(raw, dict):
        return None

    def topic(value: str) -> str | None:
        return topic_problem(value)

    username = reader.value((*path, "username"), m, "str", None)
    password_file = _file(reader, (*path, "password_file"), m)
    if password_file is not None and username is None:
        reader.error((*path, "password_file"), "needs mqtt.username")
    tls = None
    if m.get("tls") is not None:
        if m["tls"] is True or m["tls"] == {}:
            tls = TlsConfig()
        else:
            t = reader.section((*path, "tls"), m["tls"], ("ca_file", "cert_file", "key_file"))
            tls = TlsConfig(
                _file(reader, (*path, "tls", "ca_file"), t),
                _file(reader, (*path, "tls", "cert_file"), t),
                _file(reader, (*path, "tls", "key_file"), t),
            )
            if (tls.cert_file is None) != (tls.key_file is None):
                reader.error((*path, "tls"), "cert_file and key_file go together")
            else:
                problem = tls_problem(tls)
                if problem:
                    reader.error((*path, "tls"), problem)
    rates = []
    per_camera = reader.section((*path, "cameras"), m.get("cameras"), tuple(cameras))
    for name, section in per_camera.items():
        if name not in cameras:
            continue
        c = reader.section((*path, "cameras", name), section, ("max_rate",))
        rate = reader.value((*path, "cameras", name, "max_rate"), c, "number", None, positive)
        if rate is not None:
            rates.append((name, rate))
    backoff = reader.section((*path, "reconnect"), m.get("reconnect"), ("initial", "max"))
    initial = reader.value((*path, "reconnect", "initial"), backoff, "number", 1.0, positive)
    maximum = reader.value((*path, "reconnect", "max"), backoff, "number", 30.0, positive)
    if initial and maximum and maximum < initial:
        reader.error((*path, "reconnect", "max"), f"must be >= reconnect.initial ({initial})")
    disc = reader.section((*path, "discovery"), m.get("discovery"), ("enabled", "prefix"))
    enabled = reader.value((*path, "enabled"), m, "bool", True)
    detection, per_group = _detection(reader, (*path, "detection"), m.get("detection"), groups)
    settings = MqttConfig(
        host=reader.value((*path, "host"), m, "str", "localhost"),
        port=reader.value((*path, "port"), m, "int", 1883, between(1, 65535)),
        client_id=reader.value((*path, "client_id"), m, "str", None),
        username=username,
        password_file=password_file,
        tls=tls,
        topic_prefix=reader.value((*path, "topic_prefix"), m, "str", None, topic),
        qos=reader.value((*path, "qos"), m, "int", 0, between(0, 2)),
        keepalive=reader.value((*path, "keepalive"), m, "int", 60, between(5, 3600)),
        max_rate=reader.value((*path, "max_rate"), m, "number", 1.0, positive),
        camera_max_rate=tuple(rates),
        queue_size=reader.value((*path, "queue_size"), m, "int", 1000, between(1, 100000)),
        reconnect_initial=initial,
        reconnect_max=maximum,
        discovery=reader.value((*path, "discovery", "enabled"), disc, "bool", True),
        discovery_prefix=reader.value(
            (*path, "discovery", "prefix"), disc, "str", "homeassistant", topic
        ),
        detection=detection,
        group_detection=per_group,
    )
    return settings if enabled else None


def _detection(
    reader: Any, path: tuple[str, ...], raw: Any, groups: list[str]
) -> tuple[Thresholds, tuple[tuple[str, Thresholds], ...]]:
    section = reader.section(path, raw, ("on_score", "off_score", "hold", "groups"))
    default = _thresholds(reader, path, section, Thresholds())
    per_group = []
    overrides = reader.section((*path, "groups"), section.get("groups"), tuple(groups))
    for name, value in overrides.items():
        if name not in groups:
            continue
        gpath = (*path, "groups", name)
        per_group.append(
            (
                name,
                _thresholds(
                    reader,
                    gpath,
                    reader.section(gpath, value, ("on_score", "off_score", "hold")),
                    default,
                ),
            )
        )
    return default, tuple(per_group)


def _thresholds(
    reader: Any, path: tuple[str, ...], section: dict[str, Any], base: Thresholds
) -> Thresholds:
    # `on`/`off` would be YAML 1.1 booleans as keys, hence on_score/off_score
    on = reader.value((*path, "on_score"), section, "number", base.on, between(0, 1))
    off = reader.value((*path, "off_score"), section, "number", base.off, between(0, 1))
    hold = reader.value((*path, "hold"), section, "number", base.hold, between(0, 86400))
    if on is not None and off is not None and off > on:
        inherited = "" if "off_score" in section else " (inherited: set off_score here too)"
        reader.error((*path, "off_score"), f"must be <= on_score ({on}); got {off}{inherited}")
    return Thresholds(on, off, hold)


def _file(reader: Any, path: tuple[str, ...], section: dict[str, Any]) -> Path | None:
    name = reader.value(path, section, "str", None)
    if name is None:
        return None
    file = reader.base_dir / Path(name).expanduser()
    if not file.is_file():
        reader.error(path, f"file not found: {file}")
        return None
    return file
