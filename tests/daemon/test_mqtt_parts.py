"""The MQTT parts without a broker: hysteresis, discovery payloads, config validation."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from edgebnn.daemon import hass
from edgebnn.daemon import mqtt as mqtt_module
from edgebnn.daemon.config import ConfigError, parse_config
from edgebnn.daemon.detection import Detector, Thresholds
from edgebnn.daemon.mqtt import MqttLink, password_file_warning, read_password
from edgebnn.daemon.mqtt_bridge import scopes
from edgebnn.daemon.mqtt_config import MqttConfig, default_device


def test_detector_turns_on_at_once_and_off_after_the_hold_time() -> None:
    d = Detector(Thresholds(on=0.6, off=0.3, hold=2.0))
    feed = [  # (time, score, expected state after it)
        (0.0, 0.5, False),  # between off and on: stays off
        (0.5, 0.6, True),  # reaches on
        (1.0, 0.4, True),  # between: stays on
        (1.5, 0.2, True),  # below off: hold starts
        (2.5, 0.59, True),  # back above off: hold cancelled
        (3.0, 0.1, True),  # below again: hold restarts at 3.0
        (4.9, 0.1, True),
        (5.0, 0.1, False),  # 2 s below off
        (5.5, 0.55, False),  # below on: stays off
        (6.0, 0.9, True),
    ]
    for now, score, expected in feed:
        d.update(score, now)
        assert d.state is expected, (now, score)


def test_detector_tick_turns_off_without_new_scores() -> None:
    d = Detector(Thresholds(on=0.5, off=0.5, hold=1.0))
    assert d.update(0.7, 10.0) and d.state
    assert not d.update(0.1, 10.5)
    assert not d.tick(11.4) and d.state
    assert d.tick(11.5) and not d.state and d.since == 11.5
    assert not d.tick(20.0)


def test_detector_does_not_flap_on_alternating_scores() -> None:
    """A score that jumps across both thresholds every frame (2 fps) stays on."""
    d = Detector(Thresholds(on=0.6, off=0.4, hold=1.5))
    changes = sum(d.update(0.9 if i % 2 == 0 else 0.05, i * 0.5) for i in range(40))
    assert changes == 1 and d.state


def configs(cameras=("front", "back.yard"), scopes=None, groups=("dog", "cat"), device="pi-1"):
    scopes = scopes or [hass.Scope(c) for c in cameras]
    return hass.discovery_configs(
        "homeassistant",
        hass.Device(device, "efficientnet-lite0", "0.1.0"),
        hass.Topics(f"edgebnn/{device}"),
        list(cameras),
        [(scope, list(groups)) for scope in scopes],
    )


def test_discovery_has_every_entity_once_with_unique_ids() -> None:
    made = configs()
    # per camera: status, fps, inference; per scope: label + one binary_sensor per group
    assert len(made) == 2 * 3 + 2 * (1 + 2)
    ids = [c["unique_id"] for c in made.values()]
    assert len(set(ids)) == len(ids)
    for topic, config in made.items():
        prefix, component, node, object_id, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", "edgebnn_pi-1", "config")
        assert config["unique_id"] == f"{node}_{object_id}"
        assert component in ("sensor", "binary_sensor")
        assert config["device"]["identifiers"] == ["edgebnn_pi-1"]
        assert config["availability"][0] == {"topic": "edgebnn/pi-1/availability"}
    # '.' is not allowed in discovery ids; the topics keep the camera's name
    label = made["homeassistant/sensor/edgebnn_pi-1/back_yard_label/config"]
    assert label["state_topic"] == "edgebnn/pi-1/back.yard/prediction"
    dog = made["homeassistant/binary_sensor/edgebnn_pi-1/front_dog_detected/config"]
    assert dog["state_topic"] == "edgebnn/pi-1/front/detected/dog"
    assert dog["availability_mode"] == "all"


def test_discovery_of_regions_and_devices_do_not_collide() -> None:
    scopes = [hass.Scope("cam"), hass.Scope("cam", "feeder")]
    one = configs(cameras=["cam"], scopes=scopes, groups=["bird"])
    feeder = one["homeassistant/sensor/edgebnn_pi-1/cam_feeder_label/config"]
    assert feeder["state_topic"] == "edgebnn/pi-1/cam/feeder/prediction"
    other = configs(cameras=["cam"], scopes=scopes, groups=["bird"], device="pi-2")
    assert not set(one) & set(other)
    assert not {c["unique_id"] for c in one.values()} & {c["unique_id"] for c in other.values()}


def parse(text: str, tmp_path: Path):
    return parse_config(text, tmp_path, "edgebnn.yaml")


BASE = "cameras: [{name: front, source: builtin:samples}]\ngroups: {dog: [1, 2], cat: [3]}\n"


def test_mqtt_is_off_without_its_section_and_device_defaults_to_the_host(tmp_path) -> None:
    config = parse(BASE, tmp_path)
    assert config.mqtt is None
    assert config.device == default_device() and config.device
    assert parse(BASE + "mqtt:\n  enabled: false\n  host: b\n", tmp_path).mqtt is None
    assert parse(BASE + "mqtt:\n", tmp_path).mqtt == MqttConfig()  # empty: the defaults


def test_mqtt_settings_and_their_defaults(tmp_path) -> None:
    (tmp_path / "pw").write_text("secret\n")
    config = parse(
        BASE + "device: garage\n"
        "mqtt:\n"
        "  host: broker.lan\n"
        "  username: pi\n"
        "  password_file: pw\n"
        "  max_rate: 0.5\n"
        "  cameras: {front: {max_rate: 4}}\n"
        "  detection:\n"
        "    on_score: 0.7\n"
        "    groups: {cat: {off_score: 0.2, hold: 10}}\n",
        tmp_path,
    )
    m = config.mqtt
    assert config.device == "garage"
    assert (m.host, m.port, m.qos, m.username) == ("broker.lan", 1883, 0, "pi")
    assert m.password_file == tmp_path / "pw"
    assert m.prefix("garage") == "edgebnn/garage" and m.client("garage") == "edgebnn-garage"
    assert m.rate("front") == 4 and m.rate("other") == 0.5
    assert m.thresholds("dog") == Thresholds(0.7, 0.3, 5.0)
    assert m.thresholds("cat") == Thresholds(0.7, 0.2, 10.0)
    assert (m.discovery, m.discovery_prefix) == (True, "homeassistant")
    assert "secret" not in repr(config)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("  prot: 1\n", "edgebnn.yaml:4: mqtt.prot: unknown key (did you mean 'port'?)"),
        ("  port: 70000\n", "edgebnn.yaml:4: mqtt.port: must be between 1 and 65535"),
        ("  qos: 3\n", "edgebnn.yaml:4: mqtt.qos: must be between 0 and 2"),
        ("  password: x\n", "edgebnn.yaml:4: mqtt.password: unknown key"),
        ("  username: u\n  password_file: nope\n", "edgebnn.yaml:5: mqtt.password_file: file "),
        ("  topic_prefix: a/+/b\n", "edgebnn.yaml:4: mqtt.topic_prefix: must not contain"),
        ("  tls: {ca_file: missing.crt}\n", "edgebnn.yaml:4: mqtt.tls.ca_file: file not found"),
        ("  cameras: {fron: {max_rate: 1}}\n", "mqtt.cameras.fron: unknown key (did you mean"),
        ("  max_rate: 0\n", "edgebnn.yaml:4: mqtt.max_rate: must be > 0"),
        (
            "  detection:\n    on_score: 0.2\n    off_score: 0.5\n",
            "edgebnn.yaml:6: mqtt.detection.off_score: must be <= on_score (0.2); got 0.5",
        ),
        (
            "  detection: {groups: {dgo: {hold: 1}}}\n",
            "mqtt.detection.groups.dgo: unknown key (did you mean 'dog'?)",
        ),
        ("  discovery: {enabled: yes please}\n", "mqtt.discovery.enabled: must be true or false"),
    ],
)
def test_mqtt_errors_name_the_line_and_key(tmp_path, section, expected) -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE + "mqtt:\n" + section, tmp_path)
    assert any(expected in line for line in err.value.lines()), err.value.lines()


def test_unloadable_certificates_are_config_errors(tmp_path) -> None:
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    with pytest.raises(ConfigError) as err:
        parse(BASE + "mqtt:\n  tls: {ca_file: ca.crt}\n", tmp_path)
    assert err.value.lines()[0].startswith("edgebnn.yaml:4: mqtt.tls: cannot load ca_file")
    with pytest.raises(ConfigError) as err:
        parse(BASE + "mqtt:\n  tls: {cert_file: ca.crt}\n", tmp_path)
    assert "cert_file and key_file go together" in err.value.lines()[0]


def test_device_must_be_usable_in_topics(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE + "device: my pi/2\n", tmp_path)
    assert err.value.lines()[0].startswith("edgebnn.yaml:3: device: use 1-64 letters")


def test_the_shipped_config_documents_every_mqtt_key(tmp_path) -> None:
    """Uncommented, the shipped example section is valid and gives the documented defaults."""
    shipped = (Path(__file__).parents[2] / "config" / "edgebnn.yaml").read_text()
    block = shipped[shipped.index("# mqtt:") :]
    lines = [line[2:] for line in block.splitlines() if line.startswith("# ")]
    lines += [line for line in shipped.splitlines() if line.startswith("# device:")]
    text = BASE.replace("front", "samples") + "\n".join(
        x.replace("# device", "device") for x in lines
    )
    config = parse(text, tmp_path)
    m = config.mqtt
    assert config.device == "garage-pi"
    assert (m.host, m.port, m.qos, m.keepalive, m.max_rate, m.queue_size) == (
        "localhost", 1883, 0, 60, 1.0, 1000,
    )  # fmt: skip
    assert (m.reconnect_initial, m.reconnect_max) == (1.0, 30.0)
    assert m.rate("samples") == 0.2 and m.discovery and m.discovery_prefix == "homeassistant"
    assert m.thresholds("dog") == Thresholds(0.5, 0.3, 5.0)
    assert m.thresholds("cat") == Thresholds(0.4, 0.3, 5.0)
    for field in MqttConfig.__dataclass_fields__:
        key = {"camera_max_rate": "cameras", "reconnect_initial": "reconnect",
               "reconnect_max": "reconnect", "discovery_prefix": "discovery",
               "group_detection": "detection"}.get(field, field)  # fmt: skip
        assert f"#   {key}:" in block, key


def test_regions_get_entities_with_their_own_groups(tmp_path) -> None:
    config = parse(
        "cameras:\n"
        "  - name: garden\n"
        "    source: builtin:samples\n"
        "    regions:\n"
        "      - {name: feeder, box: [0, 0, 0.5, 0.5], groups: {bird: ['7-24']}}\n"
        "      - {name: gate, box: [0.5, 0.5, 0.5, 0.5]}\n"
        "  - name: door\n"
        "    source: builtin:samples\n"
        "    full_frame: false\n"
        "    regions: [{name: flap, box: [0, 0.5, 1, 0.5]}]\n"
        "groups: {dog: [1, 2], cat: [3]}\n"
        "mqtt:\n"
        "  detection: {groups: {bird: {on_score: 0.2, off_score: 0.1}}}\n",
        tmp_path,
    )
    assert config.mqtt.thresholds("bird") == Thresholds(0.2, 0.1, 5.0)
    listed = [(s.camera, s.region, groups) for s, groups in scopes(config)]
    assert listed == [
        ("garden", None, ["dog", "cat"]),
        ("garden", "feeder", ["bird"]),
        ("garden", "gate", ["dog", "cat"]),
        ("door", "flap", ["dog", "cat"]),
    ]
    made = hass.discovery_configs(
        "homeassistant",
        hass.Device("pi", "m", "1"),
        hass.Topics("edgebnn/pi"),
        ["garden", "door"],
        scopes(config),
    )
    ids = {c["unique_id"].removeprefix("edgebnn_pi_") for c in made.values()}
    assert {"garden_feeder_label", "garden_feeder_bird_detected", "door_flap_cat_detected"} <= ids
    assert "garden_feeder_dog_detected" not in ids and "door_label" not in ids
    assert len(ids) == 2 * 3 + (1 + 2) + (1 + 1) + (1 + 2) + (1 + 2)
    flap = made["homeassistant/binary_sensor/edgebnn_pi/door_flap_cat_detected/config"]
    assert flap["state_topic"] == "edgebnn/pi/door/flap/detected/cat"


def test_a_password_file_every_user_can_read_is_a_warning(tmp_path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    secret.chmod(0o640)
    assert password_file_warning(secret) is None and password_file_warning(None) is None
    secret.chmod(0o644)
    assert "is readable by every user; chmod 600" in password_file_warning(secret)
    assert read_password(secret) == "x"


def test_the_queue_keeps_the_newest_messages_and_counts_the_rest() -> None:
    link = MqttLink(host="127.0.0.1", port=1, client_id="t", availability_topic="a", queue_size=3)
    for i in range(5):
        link.send("t", {"i": i})
    assert (link.queued(), link.dropped) == (3, 2)
    assert [p["i"] for _, p, _ in link._queue] == [2, 3, 4]


def test_a_broker_that_never_answers_is_given_up_on(monkeypatch) -> None:
    """TCP accepted, no CONNACK: one warning, retries, and a prompt stop."""
    monkeypatch.setattr(mqtt_module, "CONNACK_TIMEOUT", 0.3)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        link = MqttLink(
            host="127.0.0.1",
            port=server.getsockname()[1],
            client_id="t",
            availability_topic="a",
            backoff_initial=0.05,
            backoff_max=0.1,
        )
        link.start()
        deadline = time.monotonic() + 10
        while link.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (
            link.last_error == f"127.0.0.1:{server.getsockname()[1]} did not answer CONNECT in 0 s"
        )
        assert not link.connected
        start = time.monotonic()
        link.stop()
        assert time.monotonic() - start < 1.0
