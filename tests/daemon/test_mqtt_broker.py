"""MQTT against a real Mosquitto broker (password file, TLS), observed the way Home
Assistant observes it: discovery configs, state and availability topics, templates."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_support import MODEL, free_endpoint, make_config
from edgebnn.daemon.config import SAMPLES_DIR
from edgebnn.daemon.detection import Detector, Thresholds
from mqtt_support import USER, Broker, HassObserver
from test_commands import Process

ALL_GROUPS = ("dog", "cat", "low")  # make_config's groups


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def hass_view(broker: Broker) -> Iterator[HassObserver]:
    observer = HassObserver(broker)
    yield observer
    observer.close()
    observer.check()


def mqtt_section(broker: Broker, tls: bool = False, **extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": broker.tls_port if tls else broker.port,
        "username": USER,
        "password_file": str(broker.password_file),
        "reconnect": {"initial": 0.2, "max": 1.0},
        **extra,
    }
    if tls:
        section["tls"] = {"ca_file": str(broker.certs["ca"])}
    return section


def photos(folder: Path, *names: str) -> Path:
    """Make `folder` hold exactly these sample photos (the image source re-reads it)."""
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        if old.name not in names:
            old.unlink()
    for name in names:
        if not (folder / name).exists():
            shutil.copy(SAMPLES_DIR / name, folder / name)
    return folder


def mqtt_stats(recorder: Any) -> list[dict[str, Any]]:
    """The `mqtt` part of every stats/ message received so far."""
    return [s["mqtt"] for s in recorder.of("stats/")]


def entity_count(cameras: int, scopes: int, groups: int) -> int:
    return 3 * cameras + scopes * (1 + groups)  # status, fps, inference; label, detected


def test_home_assistant_sees_entities_that_follow_predictions_with_hysteresis(
    tmp_path, broker, hass_view, start_daemon, recorder
) -> None:
    """EfficientNet-Lite0 on a folder of photos over TLS: the cat photo turns `door cat
    detected` on; cat and rocket photos alternating (the score crossing both thresholds at
    every frame) keep it on; the rocket alone turns it off after the hold time."""
    folder = photos(tmp_path / "door", "chelsea.jpg")
    config = make_config(
        tmp_path,
        [{"name": "door", "source": str(folder), "max_fps": 4}],
        model="efficientnet-lite0",
        groups={"dog": {"builtin": "dogs"}, "cat": {"builtin": "cats"}, "low": ["0-99"]},
        device="pi-ha",
        mqtt=mqtt_section(
            broker,
            tls=True,
            max_rate=4,
            detection={"on_score": 0.5, "off_score": 0.2, "hold": 4},
        ),
    )
    zmq = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    running.wait_ready(1200)  # a cold Numba cache compiles EfficientNet first
    expected = entity_count(1, 1, len(ALL_GROUPS))
    assert hass_view.wait_for(
        lambda h: (
            len(h.device_entities("pi-ha")) == expected
            and all(e.available and e.state for e in h.device_entities("pi-ha").values())
        )
    ), {u: (e.state, e.available) for u, e in hass_view.entities.items()}
    cat = hass_view.find("pi-ha", "_door_cat_detected")
    label = hass_view.find("pi-ha", "_door_label")
    assert cat is not None and label is not None
    assert hass_view.wait_for(lambda h: cat.state == "on")
    device = label.config["device"]
    assert device["model"] == "efficientnet-lite0" and device["sw_version"]

    # The label sensor shows a published prediction: same seq, same top list.
    predictions = {p["seq"]: p for p in zmq.of("predictions/door/")}
    shown = predictions[label.attributes["seq"]]
    assert shown["device"] == "pi-ha" and shown["schema"] == 2
    assert label.state == shown["top"][0]["label"] and label.attributes["top"] == shown["top"]
    assert "cat" in label.state  # tabby / tiger cat / Egyptian cat
    assert cat.attributes["score"] >= 0.5
    assert hass_view.find("pi-ha", "_door_status").state == "online"
    fps = hass_view.find("pi-ha", "_door_fps")
    assert hass_view.wait_for(lambda h: fps.state not in (None, "None") and float(fps.state) > 0)

    # Home Assistant restarted (its birth message): every config is sent again.
    before = hass_view.config_messages
    hass_view.client.publish("homeassistant/status", "online")
    assert hass_view.wait_for(lambda h: h.config_messages >= before + expected)

    photos(folder, "chelsea.jpg", "rocket.jpg")  # alternating: no flapping
    seen = len(zmq.of("predictions/door/"))
    assert zmq.wait_for(lambda r: len(r.of("predictions/door/")) >= seen + 12, timeout=90)
    recent = [p["groups"]["cat"] for p in zmq.of("predictions/door/")[seen:]]
    assert max(recent) >= 0.5 and min(recent) < 0.2  # the score did cross both ways
    naive = sum((a >= 0.5) != (b >= 0.5) for a, b in itertools.pairwise(recent))
    assert naive >= 2  # one threshold would have flipped (at every frame where inference keeps up)

    photos(folder, "rocket.jpg")
    assert hass_view.wait_for(lambda h: cat.state == "off", timeout=60)
    last_cat = max(
        p["captured_at"] for p in zmq.of("predictions/door/") if p["groups"]["cat"] > 0.2
    )
    assert json.loads(hass_view.last[cat.config["state_topic"]])["published_at"] >= last_cat + 4
    # HA's history is the hysteresis rule applied to every published score (the daemon
    # also applies the hold time between frames: tick before each score). Where inference
    # keeps up with the camera, that is exactly off -> on -> off: no flapping.
    reference = Detector(Thresholds(on=0.5, off=0.2, hold=4))
    replayed = ["off"]
    for p in zmq.of("predictions/door/"):
        if reference.tick(p["captured_at"]):
            replayed.append("off")
        if reference.update(p["groups"]["cat"], p["captured_at"]):
            replayed.append("on" if reference.state else "off")
    if reference.tick(time.time()):  # the daemon ticks after the last frame too
        replayed.append("off")
    assert cat.history == replayed
    times = [p["captured_at"] for p in zmq.of("predictions/door/")[seen:]]
    if max(b - a for a, b in itertools.pairwise(times)) < 1.0:  # inference kept up
        assert cat.history == ["off", "on", "off"]
    assert hass_view.wait_for(
        lambda h: label.state == zmq.of("predictions/door/")[-1]["top"][0]["label"]
    )

    # Reload: the camera `door` becomes `yard`; door's entities are removed from HA.
    door_ids = set(hass_view.device_entities("pi-ha"))
    renamed = make_config(
        tmp_path,
        [{"name": "yard", "source": str(folder), "max_fps": 4}],
        model="efficientnet-lite0",
        groups={"dog": {"builtin": "dogs"}, "cat": {"builtin": "cats"}, "low": ["0-99"]},
        device="pi-ha",
        publish={"endpoints": list(config.publish.endpoints)},
        mqtt=mqtt_section(broker, tls=True, max_rate=4),
    )
    assert running.daemon.reload(renamed)
    assert hass_view.wait_for(
        lambda h: (
            door_ids <= set(h.removed)
            and len(h.device_entities("pi-ha")) == expected
            and all(e.state for e in h.device_entities("pi-ha").values())
        )
    )
    assert all("_yard_" in uid for uid in hass_view.device_entities("pi-ha"))

    assert running.stop() == 0  # clean stop: offline, every entity unavailable
    assert hass_view.wait_for(
        lambda h: (
            h.last.get("edgebnn/pi-ha/availability") == b"offline"
            and not any(e.available for e in h.device_entities("pi-ha").values())
        )
    )


def write_config(
    tmp_path: Path, name: str, broker: Broker, folder: Path, regions: str = "", **mqtt: Any
) -> Path:
    section = json.dumps(mqtt_section(broker, **mqtt))
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"model: {MODEL}\n"
        f"device: {name}\n"
        f"cameras: [{{name: cam, source: '{folder}', max_fps: 10{regions}}}]\n"
        "groups: {dog: {builtin: dogs}, cat: {builtin: cats}}\n"
        f"publish: {{endpoints: ['{free_endpoint()}']}}\n"
        "stats: {interval: 1, status_interval: 1}\n"
        f"mqtt: {section}\n"
    )
    return path


def test_three_devices_on_one_broker_and_their_last_will(tmp_path, broker, hass_view) -> None:
    """Three daemons (processes) share the broker; each is its own HA device with distinct
    entities (pi-c has a region with a group of its own). SIGKILL: the broker publishes the
    Last Will (offline); SIGTERM: the daemon says offline itself; the third stays online."""
    folder = photos(tmp_path / "img", "coffee.jpg", "astronaut.jpg")
    names = ["pi-a", "pi-b", "pi-c"]
    region = ", regions: [{name: corner, box: [0, 0, 0.5, 0.5], groups: {cup: ['967-968']}}]"
    procs = {
        n: Process(
            "run",
            "--config",
            str(write_config(tmp_path, n, broker, folder, region if n == "pi-c" else "")),
        )
        for n in names
    }
    try:
        count = {"pi-a": entity_count(1, 1, 2), "pi-b": entity_count(1, 1, 2)}
        count["pi-c"] = entity_count(1, 1, 2) + 1 + 1  # the region's label and cup sensor
        assert hass_view.wait_for(
            lambda h: all(
                len(h.device_entities(n)) == count[n]
                and all(e.available and e.state for e in h.device_entities(n).values())
                for n in names
            ),
            timeout=600,  # three processes start at once (a cold cache compiles the model)
        ), {u: (e.state, e.available) for u, e in hass_view.entities.items()}
        ids = [set(hass_view.device_entities(n)) for n in names]
        assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
        topics = [
            {e.config["state_topic"] for e in hass_view.device_entities(n).values()} for n in names
        ]
        assert not (topics[0] & topics[1] or topics[0] & topics[2] or topics[1] & topics[2])
        devices = {e.config["device"]["identifiers"][0] for e in hass_view.entities.values()}
        assert devices == {f"edgebnn_{n}" for n in names}
        for n in names:  # each label sensor follows its own device's predictions
            label = hass_view.find(n, "_cam_label")
            raw = json.loads(hass_view.last[label.config["state_topic"]])
            assert raw["device"] == n and raw["camera"] == "cam" and "region" not in raw
        corner = hass_view.find("pi-c", "_cam_corner_label")
        assert corner is not None, sorted(hass_view.device_entities("pi-c"))
        raw = json.loads(hass_view.last[corner.config["state_topic"]])
        assert raw["region"] == "corner" and set(raw["groups"]) == {"cup"}
        assert corner.attributes["seq"] == raw["seq"] and corner.state == raw["top"][0]["label"]
        cup = hass_view.find("pi-c", "_cam_corner_cup_detected")
        assert cup.state in ("on", "off") and cup.config["state_topic"].endswith(
            "corner/detected/cup"
        )

        procs["pi-a"].proc.send_signal(signal.SIGKILL)
        procs["pi-b"].proc.send_signal(signal.SIGTERM)
        assert procs["pi-b"].finish(10) == 0
        assert hass_view.wait_for(
            lambda h: (
                h.last.get("edgebnn/pi-a/availability") == b"offline"
                and h.last.get("edgebnn/pi-b/availability") == b"offline"
            )
        )
        assert not any(e.available for e in hass_view.device_entities("pi-a").values())
        assert not any(e.available for e in hass_view.device_entities("pi-b").values())
        assert all(e.available for e in hass_view.device_entities("pi-c").values())
        assert hass_view.last["edgebnn/pi-c/availability"] == b"online"
    finally:
        for proc in procs.values():
            if proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
                proc.finish(10)


def test_broker_outage_costs_mqtt_nothing_else(
    tmp_path, broker, start_daemon, recorder, caplog
) -> None:
    """The broker stops for 20 s: ZeroMQ predictions go on without a gap, RSS stays flat,
    the bounded queue drops its oldest messages (counted), MQTT resumes with `online`."""
    caplog.set_level(logging.INFO, logger="edgebnn.daemon.mqtt")
    folder = photos(tmp_path / "img", "coffee.jpg")
    config = make_config(
        tmp_path,
        [{"name": "cam", "source": str(folder), "max_fps": 10}],
        device="pi-out",
        mqtt=mqtt_section(broker, max_rate=5, queue_size=30),
        metrics={"enabled": True, "port": 0},
    )
    zmq = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    running.wait_ready(300)
    daemon = running.daemon
    assert zmq.wait_for(lambda r: len(mqtt_stats(r)) >= 2 and mqtt_stats(r)[-1]["connected"])

    broker.stop()
    down_at = time.time()
    assert zmq.wait_for(lambda r: not mqtt_stats(r)[-1]["connected"])
    rss_start = zmq.of("stats/")[-1]["rss_bytes"]
    time.sleep(20)
    rss_end = zmq.of("stats/")[-1]["rss_bytes"]
    outage = daemon.mqtt.snapshot()
    port = daemon.metrics.address[1]
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    broker.start()
    up_at = time.time()

    during = [p for p in zmq.of("predictions/cam/") if down_at <= p["captured_at"] <= up_at]
    seqs = [p["seq"] for p in during]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a ZeroMQ prediction went missing"
    times = [p["captured_at"] for p in during]
    # at least 1 frame/s even on a loaded machine, and no stall while MQTT waited
    assert len(during) >= 20 and max(b - a for a, b in itertools.pairwise(times)) < 2.5
    assert abs(rss_end - rss_start) < 8 * 2**20, (rss_start, rss_end)
    # up to 5 predictions/s for 20 s into a queue of 30: the oldest were dropped and counted
    assert outage["queued"] == 30 and outage["dropped"] >= 1
    assert "edgebnn_mqtt_connected 0.0" in body
    dropped = [x for x in body.splitlines() if x.startswith("edgebnn_mqtt_messages_dropped_total")]
    assert dropped and float(dropped[0].split()[-1]) >= outage["dropped"]

    listener = broker.client("late-listener")
    got: list[tuple[str, bytes]] = []
    listener.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    listener.subscribe("edgebnn/pi-out/#")
    try:
        assert zmq.wait_for(lambda r: mqtt_stats(r)[-1]["connected"], timeout=15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            t == "edgebnn/pi-out/cam/prediction" and json.loads(p)["captured_at"] > up_at
            for t, p in list(got)
        ):
            time.sleep(0.05)
        topics = {t for t, _ in got}
        assert "edgebnn/pi-out/cam/prediction" in topics
        assert (
            "edgebnn/pi-out/availability",
            b"online",
        ) in got  # the broker kept no retained state (no persistence): we sent it again
        assert daemon.mqtt.snapshot()["connects"] == 2
    finally:
        listener.loop_stop()
        listener.disconnect()
    lost = [r for r in caplog.records if "lost the connection" in r.getMessage()]
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lost) == 1 and len(warned) <= 2, [r.getMessage() for r in warned]


@pytest.mark.parametrize("problem", ["password", "tls"])
def test_wrong_password_or_certificate_is_one_clear_line(
    tmp_path, broker, start_daemon, recorder, caplog, problem
) -> None:
    caplog.set_level(logging.DEBUG, logger="edgebnn.daemon.mqtt")
    folder = photos(tmp_path / "img", "coffee.jpg")
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    if problem == "password":
        section = mqtt_section(broker, password_file=str(wrong))
        expected = "refused the connection: Not authorized (check mqtt.username"
    else:
        section = mqtt_section(broker, tls=True)
        section["tls"] = {"ca_file": str(broker.certs["other_ca"])}
        expected = "failed: certificate verify failed"
    config = make_config(
        tmp_path, [{"name": "cam", "source": str(folder), "max_fps": 10}], mqtt=section
    )
    zmq = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    running.wait_ready(300)
    assert zmq.wait_for(lambda r: len(r.of("predictions/cam/")) >= 20)  # inference goes on
    assert zmq.wait_for(
        lambda r: len([x for x in caplog.records if expected in x.getMessage()]) >= 3
    )
    assert running.stop() == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert expected in warnings[0].getMessage() and not warnings[0].exc_info
    assert "not-the-password" not in caplog.text and "s3cret" not in caplog.text
    assert zmq.of("stats/")[-1]["mqtt"]["connected"] is False
