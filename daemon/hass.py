"""Home Assistant MQTT discovery: the retained config messages that make entities appear.

Pure functions of the configuration: given the device, its topics and what it classifies,
they return {discovery topic: config payload}. One HA device per edgebnn device; every
entity has a `unique_id` built from the device, the camera, the region and the entity kind,
so many devices can share one broker. Entities are generated per *scope*, a (camera,
region) pair; region None is the whole frame.

Schema: https://www.home-assistant.io/integrations/mqtt/ (discovery), sensor.mqtt and
binary_sensor.mqtt (the keys used here are all documented there).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

ONLINE, OFFLINE = "online", "offline"
STATUS_OPTIONS = ["online", "reconnecting", "offline"]
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Scope:
    """What one set of classification entities describes: a camera, or one of its regions."""

    camera: str
    region: str | None = None

    @property
    def slug(self) -> str:
        return slug(self.camera if self.region is None else f"{self.camera}_{self.region}")

    @property
    def title(self) -> str:
        return self.camera if self.region is None else f"{self.camera} {self.region}"


@dataclass(frozen=True)
class Topics:
    """Every state topic of one device, under its topic prefix."""

    prefix: str

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    def status(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/status"

    def base(self, scope: Scope) -> str:
        region = "" if scope.region is None else f"/{scope.region}"
        return f"{self.prefix}/{scope.camera}{region}"

    def prediction(self, scope: Scope) -> str:
        return f"{self.base(scope)}/prediction"

    def detected(self, scope: Scope, group: str) -> str:
        return f"{self.base(scope)}/detected/{group}"


@dataclass(frozen=True)
class Device:
    """The HA device block: one per edgebnn device."""

    name: str
    model: str
    sw_version: str

    @property
    def node_id(self) -> str:
        return f"edgebnn_{slug(self.name)}"

    def block(self) -> dict[str, Any]:
        return {
            "identifiers": [self.node_id],
            "name": self.name,
            "manufacturer": "edgebnn",
            "model": self.model,
            "sw_version": self.sw_version,
        }


def slug(text: str) -> str:
    """An id HA accepts in discovery topics and unique_ids ([A-Za-z0-9_-])."""
    return _NOT_ID.sub("_", text)


def discovery_configs(
    discovery_prefix: str,
    device: Device,
    topics: Topics,
    cameras: Sequence[str],
    scopes: Iterable[tuple[Scope, Sequence[str]]],
) -> dict[str, dict[str, Any]]:
    """{config topic: payload} for every entity of the device: per camera its status and
    diagnostics, per scope (with the names of its groups) a label sensor and a "detected"
    binary sensor per group."""
    common = {
        "device": device.block(),
        "origin": {"name": "edgebnn", "sw_version": device.sw_version},
    }
    device_only = {"availability": [{"topic": topics.availability}]}
    configs: dict[str, dict[str, Any]] = {}

    def add(component: str, object_id: str, payload: dict[str, Any]) -> None:
        unique_id = f"{device.node_id}_{object_id}"
        topic = f"{discovery_prefix}/{component}/{device.node_id}/{object_id}/config"
        configs[topic] = {**payload, "unique_id": unique_id, **common}

    for camera in cameras:
        cid = slug(camera)
        add(
            "sensor",
            f"{cid}_status",
            {
                "name": f"{camera} status",
                "state_topic": topics.status(camera),
                "value_template": "{{ value_json.state }}",
                "json_attributes_topic": topics.status(camera),
                "json_attributes_template": (
                    "{{ {'reason': value_json.reason, 'since': value_json.since} | tojson }}"
                ),
                "device_class": "enum",
                "options": STATUS_OPTIONS,
                "icon": "mdi:cctv",
                **device_only,
            },
        )
        stat = f"value_json.cameras[{camera!r}]"
        known = f"{camera!r} in value_json.cameras"  # a stats message from before a reload
        add(
            "sensor",
            f"{cid}_fps",
            {
                "name": f"{camera} fps",
                "state_topic": topics.stats,
                "value_template": f"{{{{ {stat}.fps if {known} else None }}}}",
                "unit_of_measurement": "fps",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "icon": "mdi:speedometer",
                **device_only,
            },
        )
        add(
            "sensor",
            f"{cid}_inference_ms",
            {
                "name": f"{camera} inference",
                "state_topic": topics.stats,
                "value_template": f"{{{{ {stat}.inference_ms_p50 if {known} else None }}}}",
                "unit_of_measurement": "ms",
                "device_class": "duration",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                **device_only,
            },
        )
    for scope, groups in scopes:
        camera_online = {
            "availability": [
                {"topic": topics.availability},
                {
                    "topic": topics.status(scope.camera),
                    "value_template": (
                        "{{ 'online' if value_json.state == 'online' else 'offline' }}"
                    ),
                },
            ],
            "availability_mode": "all",
        }
        add(
            "sensor",
            f"{scope.slug}_label",
            {
                "name": f"{scope.title} label",
                "state_topic": topics.prediction(scope),
                "value_template": ("{{ value_json.top[0].label if value_json.top else 'none' }}"),
                "json_attributes_topic": topics.prediction(scope),
                "json_attributes_template": (
                    "{{ {'score': value_json.top[0].score if value_json.top else 0,"
                    " 'top': value_json.top, 'groups': value_json.groups,"
                    " 'seq': value_json.seq} | tojson }}"
                ),
                "icon": "mdi:eye",
                **camera_online,
            },
        )
        for group in groups:
            add(
                "binary_sensor",
                f"{scope.slug}_{slug(group)}_detected",
                {
                    "name": f"{scope.title} {group} detected",
                    "state_topic": topics.detected(scope, group),
                    "value_template": "{{ value_json.state }}",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "json_attributes_topic": topics.detected(scope, group),
                    "json_attributes_template": (
                        "{{ {'score': value_json.score, 'on': value_json.on,"
                        " 'off': value_json.off, 'hold': value_json.hold} | tojson }}"
                    ),
                    "device_class": "occupancy",
                    "icon": "mdi:eye-check",
                    **camera_online,
                },
            )
    return configs
