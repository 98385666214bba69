"""The web server and its API against a stand-in daemon: JSON, JPEG, auth, events, caching."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from edgebnn.daemon.config import SAMPLES_DIR, ConfigError, parse_config
from edgebnn.daemon.events import EventHub
from edgebnn.daemon.frames import Frame
from edgebnn.daemon.regions import RegionConfig
from edgebnn.daemon.web import DaemonView, WebServer, read_password

PASSWORD = "correct horse"


class FakeDaemon:
    """Two cameras, one with a region; frames and statuses set by the test."""

    def __init__(self) -> None:
        flap = RegionConfig("flap", (0.5, 0.5, 0.5, 0.5))
        self.cameras = [
            SimpleNamespace(name="door", regions=(flap,), full_frame=True),
            SimpleNamespace(name="garden", regions=(), full_frame=True),
        ]
        self.frames: dict[str, Frame] = {}
        self.healthy = (True, "predictions flowing")

    def set_frame(self, camera: str, value: int) -> None:
        image = np.full((240, 320, 3), value, np.uint8)
        self.frames[camera] = Frame(camera, image, time.time())

    def view(self) -> DaemonView:
        return DaemonView(
            cameras=lambda: self.cameras,
            camera_stats=lambda name: {"state": "online", "reason": "frames flowing"},
            stats=lambda: {"schema": 1, "cameras": {}, "rss_bytes": 1},
            latest_frame=self.frames.get,
            healthy=lambda: self.healthy,
        )


@pytest.fixture
def served() -> Iterator[tuple[FakeDaemon, WebServer, str]]:
    fake = FakeDaemon()
    server = WebServer("127.0.0.1", 0, fake.view(), EventHub(), password=PASSWORD)
    server.start()
    yield fake, server, "http://{}:{}".format(*server.address)
    server.stop()


def get(url: str, password: str | None = PASSWORD, user: str = "edgebnn") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url)
    if password is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_api_returns_json_and_jpeg(served) -> None:
    fake, server, base = served
    status, kind, body = get(f"{base}/api/cameras/door/snapshot.jpg")
    assert status == 503 and kind == "application/json"  # no frame yet
    fake.set_frame("door", 90)
    server.hub.offer(
        b"predictions/door/flap/",
        {"camera": "door", "region": "flap", "seq": 4, "top": [], "groups": {"cat": 0.5}},
    )
    status, kind, body = get(f"{base}/api/cameras")
    assert status == 200 and kind == "application/json"
    cameras = json.loads(body)
    assert [c["name"] for c in cameras] == ["door", "garden"]
    door = cameras[0]
    assert door["state"] == "online" and door["latest"] is None
    assert door["regions"][0]["name"] == "flap" and door["regions"][0]["latest"]["seq"] == 4
    status, kind, body = get(f"{base}/api/cameras/door/snapshot.jpg")
    assert status == 200 and kind == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3) and abs(int(image.mean()) - 90) <= 2
    status, _, body = get(f"{base}/api/cameras/door/snapshot.jpg?annotate=1&width=160")
    small = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert small.shape == (120, 160, 3)
    # the region's box is drawn: its outline differs from the flat frame, the rest does not
    assert np.abs(small[60:, 80].astype(int) - 90).max() > 40
    assert np.abs(small[:55, :75].astype(int) - 90).max() <= 4
    assert get(f"{base}/api/cameras/nope/snapshot.jpg")[0] == 404
    assert get(f"{base}/api/cameras/door/snapshot.jpg?width=x")[0] == 400
    assert get(f"{base}/nothing")[0] == 404
    status, kind, body = get(f"{base}/api/status")
    assert status == 200 and json.loads(body)["schema"] == 1
    status, kind, body = get(f"{base}/")
    assert status == 200 and kind.startswith("text/html") and b"EventSource" in body
    assert b"{{MAX_FPS}}" not in body
    assert get(f"{base}/status")[0] == 200


def test_wrong_or_missing_password_gets_401(served, tmp_path) -> None:
    fake, _, base = served
    for password, user in ((None, "edgebnn"), ("wrong", "edgebnn"), (PASSWORD, "admin")):
        status, _, _ = get(f"{base}/api/cameras", password, user)
        assert status == 401
    request = urllib.request.Request(f"{base}/")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.headers["WWW-Authenticate"].startswith("Basic realm=")
    # /healthz is for load balancers and systemd checks: no password, nothing secret
    status, _, body = get(f"{base}/healthz", None)
    assert status == 200 and json.loads(body)["status"] == "ok"
    fake.healthy = (False, "no prediction for 12 s")
    status, _, body = get(f"{base}/healthz", None)
    assert status == 503 and json.loads(body)["reason"] == "no prediction for 12 s"
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    assert read_password(secret) == "s3cret"
    secret.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_password(secret)


def test_twenty_viewers_of_one_frame_cost_one_encode(served) -> None:
    fake, server, base = served
    fake.set_frame("garden", 30)
    for _ in range(20):
        assert get(f"{base}/api/cameras/garden/snapshot.jpg?annotate=1")[0] == 200
    assert server.snapshots.encoded == 1
    fake.set_frame("garden", 60)  # a new frame within 1/max_fps: still the cached image
    get(f"{base}/api/cameras/garden/snapshot.jpg?annotate=1")
    assert server.snapshots.encoded == 1
    time.sleep(1.0 / server.max_fps + 0.05)
    get(f"{base}/api/cameras/garden/snapshot.jpg?annotate=1")
    assert server.snapshots.encoded == 2


def read_events(response: Any, count: int, timeout: float = 10.0) -> list[tuple[str, Any]]:
    """Parse `count` SSE events (comments are skipped)."""
    events: list[tuple[str, Any]] = []
    name = None
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        line = response.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def open_events(base: str) -> tuple[http.client.HTTPConnection, Any]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    token = base64.b64encode(f"edgebnn:{PASSWORD}".encode()).decode()
    conn.request("GET", "/api/events", headers={"Authorization": f"Basic {token}"})
    response = conn.getresponse()
    assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
    return conn, response


def test_events_stream_predictions_and_statuses(served) -> None:
    _, server, base = served
    hub = server.hub
    hub.offer(b"status/door/", {"camera": "door", "state": "online", "reason": "x"})
    conn, response = open_events(base)
    first = read_events(response, 1)  # a new client first gets the current state
    assert first == [("status", {**first[0][1], "camera": "door", "state": "online"})]
    deadline = time.monotonic() + 5
    while hub.clients < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    for seq in range(1, 4):
        hub.offer(b"predictions/door/", {"camera": "door", "seq": seq, "top": [], "groups": {}})
    events = read_events(response, 3)
    assert [(n, p["seq"]) for n, p in events] == [("prediction", s) for s in (1, 2, 3)]
    assert all(p["published_at"] > 0 for _, p in events)
    response.close()
    conn.close()
    deadline = time.monotonic() + 5
    while hub.clients and time.monotonic() < deadline:  # noticed at the next write
        hub.offer(b"stats/", {"schema": 1})
        time.sleep(0.05)
    assert hub.clients == 0


def test_a_client_that_falls_behind_skips_events_and_the_ring_stays_bounded() -> None:
    hub = EventHub(ring_size=8)
    cursor = hub.attach()
    for seq in range(100):
        hub.offer(b"predictions/cam/", {"camera": "cam", "seq": seq})
    events, cursor, missed = hub.wait(cursor, 0.1)
    assert missed == 92 and [e.payload["seq"] for e in events] == list(range(92, 100))
    assert hub.wait(cursor, 0.05) == ([], cursor, 0)
    assert hub.latest("cam", None)["seq"] == 99
    hub.detach()
    hub.offer(b"predictions/cam/", {"camera": "cam", "seq": 100})  # nobody listens: no event
    assert hub.latest("cam", None)["seq"] == 100 and len(hub._ring) == 8


# ---------------------------------------------------------------- configuration and start

WEB_CONFIG = """\
model: random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A
cameras:
  - {{name: cam, source: {source}}}
{web}"""


def web_config(tmp_path: Path, web: str) -> Any:
    text = WEB_CONFIG.format(source=SAMPLES_DIR, web=web)
    return parse_config(text, base_dir=tmp_path, filename="c.yaml").web


def test_web_section_defaults_and_keys(tmp_path: Path) -> None:
    assert not web_config(tmp_path, "").enabled  # absent: off
    on = web_config(tmp_path, "web: {}\n")
    assert (on.enabled, on.host, on.port, on.password_file, on.max_fps) == (
        True,
        "127.0.0.1",
        8080,
        None,
        2.0,
    )
    (tmp_path / "pw").write_text("secret\n")
    full = web_config(
        tmp_path,
        "web:\n  host: 0.0.0.0\n  port: 9000\n  username: me\n  password_file: pw\n  max_fps: 5\n",
    )
    assert (full.host, full.port, full.username, full.password_file, full.max_fps) == (
        "0.0.0.0",
        9000,
        "me",
        tmp_path / "pw",
        5.0,
    )
    assert not web_config(tmp_path, "web: {enabled: false, port: 1}\n").enabled


@pytest.mark.parametrize(
    ("web", "key", "words"),
    [
        ("web: {port: 70000}\n", "web.port", ["between 0 and 65535"]),
        ("web: {password_file: nope}\n", "web.password_file", ["file not found"]),
        ("web: {passwd_file: x}\n", "web.passwd_file", ["did you mean 'password_file'"]),
        ("web: {max_fps: 0}\n", "web.max_fps", ["> 0"]),
        ("web: {username: 'a:b'}\n", "web.username", ["':'"]),
        ("web: 3\n", "web", ["must be a mapping"]),
    ],
)
def test_web_section_errors(tmp_path: Path, web: str, key: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        web_config(tmp_path, web)
    matching = [i for i in info.value.issues if i.key == key]
    assert matching and matching[0].line == 4, info.value.lines()
    for word in words:
        assert word in matching[0].message


def test_an_empty_password_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n")
    with pytest.raises(ConfigError, match="web.password_file: .* is empty"):
        web_config(tmp_path, "web: {password_file: pw}\n")


def test_open_to_the_network_without_a_password_warns(caplog) -> None:
    from edgebnn.daemon.viewconfig import WebConfig
    from edgebnn.daemon.web import serve

    fake = FakeDaemon()
    for host, warned in (("127.0.0.1", False), ("0.0.0.0", True)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="edgebnn.daemon.web"):
            server = serve(WebConfig(True, host, 0), fake.view(), EventHub())
        server.stop()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert bool(warnings) == warned, caplog.text
        if warned:
            assert "no password" in warnings[0].getMessage()


def test_the_daemon_serves_follows_reloads_and_fails_on_a_busy_port(
    tmp_path: Path, image_dir: Path, start_daemon
) -> None:
    from browser_support import free_port
    from daemon_support import make_config

    port = free_port()
    cameras = [{"name": "stills", "source": str(image_dir), "max_fps": 20}]
    config = make_config(tmp_path, cameras, web={"port": port})
    running = start_daemon(config)
    running.wait_ready()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not json.loads(get(f"{base}/api/cameras", None)[2])[0]["latest"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    region = {"name": "top", "box": [0, 0, 1, 0.5]}
    new = make_config(tmp_path, [{**cameras[0], "regions": [region]}], web={"port": port})
    new = type(new)(**{**new.__dict__, "publish": config.publish})
    assert running.daemon.reload(new)
    deadline = time.monotonic() + 20
    while not json.loads(get(f"{base}/api/cameras", None)[2])[0]["regions"][0]["latest"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    off = type(new)(**{**new.__dict__, "web": type(new.web)()})
    assert running.daemon.reload(off)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base}/healthz", timeout=5)
    assert running.stop() == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = make_config(tmp_path, cameras, web={"port": busy.getsockname()[1]})
        failing = start_daemon(taken)
        failing.thread.join(120)
        assert failing.code == 1  # EX_ERROR: cannot serve the web view (logged)
