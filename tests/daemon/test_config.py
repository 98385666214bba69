"""Config validation: the shipped config, path resolution, and every error path with its
key path, YAML line and the allowed values."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from daemon_support import EDGEBNN, subprocess_env
from edgebnn.daemon.config import (
    EX_CONFIG,
    SAMPLES_DIR,
    ConfigError,
    is_loopback_endpoint,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "edgebnn.yaml"

MINIMAL = """\
model: random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A
cameras:
  - name: cam0
    source: clip.avi
"""


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "clip.avi").write_bytes(b"not really a video")
    (tmp_path / "ids.txt").write_text("1\n2 3  # comment\n4-6\n")
    (tmp_path / "bad_ids.txt").write_text("1\nseven\n")
    (tmp_path / "frames").mkdir()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "server.key_secret").write_text("placeholder")
    return tmp_path


def test_without_a_model_key_the_real_model_runs(tmp_path: Path) -> None:
    config = parse_config("cameras: [{name: a, source: 0}]\n", base_dir=tmp_path)
    assert config.model == "efficientnet-lite0" and config.fallback_model is None


def test_shipped_config_is_valid_and_complete() -> None:
    config = load_config(SHIPPED)
    assert config.cameras[0].kind == "images"
    assert Path(str(config.cameras[0].source)) == SAMPLES_DIR
    groups = {g.name: g.indices for g in config.groups}
    dogs_file = (SAMPLES_DIR.parent / "groups" / "dogs.txt").read_text().split()
    assert len(dogs_file) == len(set(dogs_file)) + 1  # ELL's list has one index twice
    assert list(groups["dog"]) == sorted({int(x) for x in dogs_file})
    assert config.publish.endpoints == ("tcp://127.0.0.1:5556",)
    # The real model, and no random network unless an operator names one.
    assert config.model == "efficientnet-lite0" and config.fallback_model is None
    text = SHIPPED.read_text()
    for key in (
        "model",
        "fallback_model",
        "threads",
        "bind_threads",
        "top_k",
        "min_score",
        "groups",
        "kind",
        "loop",
        "realtime",
        "max_fps",
        "open_timeout",
        "read_timeout",
        "width",
        "height",
        "failures_before_reconnect",
        "initial",
        "max",
        "endpoints",
        "send_hwm",
        "queue_size",
        "curve",
        "server_secret_key",
        "allowed_clients",
        "interval",
        "status_interval",
        "level",
        "enabled",
        "host",
        "port",
        "max_frame_age",
        "ping_while_cameras_offline",
    ):
        assert f"{key}:" in text, key


def test_defaults_and_relative_paths(base: Path) -> None:
    text = MINIMAL + textwrap.dedent("""\
          - name: stills
            source: frames
          - name: shots
            source: "frames/*.jpg"
          - name: usb
            source: 0
          - name: ip
            source: rtsp://192.0.2.1/stream
          - name: pi
            source: picamera2:1
        groups:
          g: [{file: ids.txt}, 9, "10-11"]
        """)
    config = parse_config(text, base_dir=base, filename=str(base / "c.yaml"))
    kinds = {c.name: (c.kind, c.source) for c in config.cameras}
    assert kinds["cam0"] == ("file", str(base / "clip.avi"))
    assert kinds["stills"] == ("images", str(base / "frames"))
    assert kinds["shots"] == ("images", str(base / "frames" / "*.jpg"))
    assert kinds["usb"] == ("v4l2", 0)
    assert kinds["ip"] == ("url", "rtsp://192.0.2.1/stream")
    assert kinds["pi"] == ("picamera2", 1)
    assert config.groups[0].indices == (1, 2, 3, 4, 5, 6, 9, 10, 11)
    assert config.publish.send_hwm == 20 and config.publish.curve is None
    assert config.path == base / "c.yaml"


# (yaml appended to or replacing MINIMAL, key path, line, words the message must contain)
ERRORS = [
    ("modle: x\n", "modle", 5, ["unknown key", "did you mean 'model'"]),
    (
        "model: nets/missing.ebnn\ncameras: [{name: a, source: 0}]",
        "model",
        1,
        ["model file not found", "builtin name"],
    ),
    ("threads: 0\n", "threads", 5, ["must be >= 1"]),
    ("bind_threads: maybe\n", "bind_threads", 5, ["true or false"]),
    ("predictions: {top_k: 0}\n", "predictions.top_k", 5, ["between 1 and 100"]),
    ("predictions: {min_score: 2}\n", "predictions.min_score", 5, ["between 0 and 1"]),
    ("predictions: {top_k: five}\n", "predictions.top_k", 5, ["an integer", "'five'"]),
    ("predictions: [1]\n", "predictions", 5, ["must be a mapping"]),
    ("groups: [dog]\n", "groups", 5, ["mapping of group name"]),
    ("groups: {dog: '10-5'}\n", "groups.dog", 5, ["range goes backwards"]),
    ("groups: {dog: [-3]}\n", "groups.dog[0]", 5, [">= 0"]),
    ("groups: {dog: {file: nope.txt}}\n", "groups.dog.file", 5, ["cannot read class indices"]),
    ("groups: {dog: {file: bad_ids.txt}}\n", "groups.dog.file", 5, ["line 2", "seven"]),
    ("groups: {dog: {builtin: horses}}\n", "groups.dog.builtin", 5, ["horses.txt"]),
    ("groups: {dog: {url: x}}\n", "groups.dog", 5, ["{file: PATH}"]),
    ("groups: {dog: []}\n", "groups.dog", 5, ["no class indices"]),
    ("cameras: []\n", "cameras", 1, ["non-empty list"]),
    (
        "fallback_model: 3\ncameras: [{name: a, source: 0}]",
        "fallback_model",
        1,
        ["a non-empty string"],
    ),
    ("x", "", 1, ["must be a mapping"]),
    ("predictions: {top_k: 1\n", "", 6, ["not valid YAML"]),
    ("cameras:\n\t- name: a\n", "", 2, ["tab"]),
    ("model: a\n", "model", 5, ["duplicate key"]),
    ("publish: {endpoints: [tcp://127.0.0.1]}\n", "publish.endpoints[0]", 5, ["tcp://HOST:PORT"]),
    ("publish: {endpoints: ['tcp://127.0.0.1:70000']}\n", "publish.endpoints[0]", 5, ["1-65535"]),
    ("publish: {endpoints: []}\n", "publish.endpoints", 5, ["non-empty list"]),
    ("publish: {send_hwm: 0}\n", "publish.send_hwm", 5, ["between 1 and 10000"]),
    (
        "publish: {curve: {allowed_clients: keys}}\n",
        "publish.curve.server_secret_key",
        5,
        ["required"],
    ),
    (
        "publish: {curve: {server_secret_key: keys/nope}}\n",
        "publish.curve.server_secret_key",
        5,
        ["file not found", "keys generate"],
    ),
    (
        "publish: {curve: {server_secret_key: keys/server.key_secret, allowed_clients: x}}\n",
        "publish.curve.allowed_clients",
        5,
        ["client public keys"],
    ),
    ("stats: {interval: -1}\n", "stats.interval", 5, ["> 0"]),
    ("logging: {level: loud}\n", "logging.level", 5, ["debug, info, warning, error"]),
    ("metrics: {port: http}\n", "metrics.port", 5, ["an integer"]),
    ("metrics: {port: 99999}\n", "metrics.port", 5, ["between 0 and 65535"]),
    (
        "watchdog: {ping_while_cameras_offline: maybe}\n",
        "watchdog.ping_while_cameras_offline",
        5,
        ["true or false"],
    ),
    ("watchdog: {max_age: 3}\n", "watchdog.max_age", 5, ["did you mean 'max_frame_age'"]),
]
CAMERA_ERRORS = [
    ("- name: cam/1\n  source: 0\n", "cameras[1].name", 5, ["part of topics"]),
    ("- name: cam0\n  source: 0\n", "cameras[1].name", 5, ["duplicate camera name"]),
    ("- source: 0\n", "cameras[1].name", 5, ["required"]),
    ("- name: b\n", "cameras[1].source", 5, ["required", "rtsp://"]),
    ("- name: b\n  source: nothing.mp4\n", "cameras[1].source", 6, ["file not found"]),
    ("- name: b\n  source: ftp://host/x\n", "cameras[1].source", 6, ["unsupported URL"]),
    ("- name: b\n  source: picamera2:x\n", "cameras[1].source", 6, ["picamera2:N"]),
    ("- name: b\n  source: 3\n  kind: file\n", "cameras[1].source", 6, ["device index"]),
    ("- name: b\n  source: 0\n  kind: webcam\n", "cameras[1].kind", 7, ["v4l2, file"]),
    ("- name: b\n  source: [0]\n", "cameras[1].source", 6, ["number or a string"]),
    ("- name: b\n  source: 'gone/*.jpg'\n", "cameras[1].source", 6, ["directory of the image"]),
    ("- name: b\n  source: 0\n  max_fps: 0\n", "cameras[1].max_fps", 7, ["> 0"]),
    ("- name: b\n  source: 0\n  loop: yes please\n", "cameras[1].loop", 7, ["true or false"]),
    ("- name: b\n  source: 0\n  fps: 3\n", "cameras[1].fps", 7, ["unknown key", "max_fps"]),
    (
        "- name: b\n  source: 0\n  backoff: {initial: 10, max: 2}\n",
        "cameras[1].backoff.max",
        7,
        [">= backoff.initial"],
    ),
    ("- name: b\n  source: 0\n  width: 0\n", "cameras[1].width", 7, [">= 1"]),
    ("- 7\n", "cameras[1]", 5, ["must be a mapping"]),
]


def _cases() -> list[tuple[str, str, int, list[str]]]:
    cases = list(ERRORS)
    for text, key, line, words in CAMERA_ERRORS:
        indented = textwrap.indent(text, "  ")
        cases.append(("@cameras" + indented, key, line, words))
    return cases


@pytest.mark.parametrize(
    ("text", "key", "line", "words"),
    _cases(),
    ids=lambda v: v if isinstance(v, str) and "\n" not in v else None,
)
def test_config_error(base: Path, text: str, key: str, line: int, words: list[str]) -> None:
    if text.startswith("@cameras"):
        document = MINIMAL + text[len("@cameras") :]
    elif (
        text.startswith(("model:", "cameras:", "fallback_model:", "x"))
        and "cameras" in text
        or text in ("x", "cameras: []\n")
    ):
        document = text
    else:
        document = MINIMAL + text
    with pytest.raises(ConfigError) as info:
        parse_config(document, base_dir=base, filename="edgebnn.yaml")
    issues = info.value.issues
    matching = [i for i in issues if i.key == key]
    assert matching, f"no issue for {key!r} in {info.value.lines()}"
    issue = matching[0]
    assert issue.line == line, info.value.lines()
    for word in words:
        assert word in issue.message, issue.message
    printed = info.value.lines()[issues.index(issue)]
    assert printed.startswith(f"edgebnn.yaml:{line}: " + (f"{key}: " if key else ""))


def test_all_problems_are_reported_at_once(base: Path) -> None:
    text = MINIMAL + "threads: 0\nstats: {interval: 0}\n  \n"
    with pytest.raises(ConfigError) as info:
        parse_config(text.replace("source: clip.avi", "source: gone.avi"), base_dir=base)
    keys = {i.key for i in info.value.issues}
    assert {"threads", "stats.interval", "cameras[0].source"} <= keys


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5556", True),
        ("tcp://localhost:1", True),
        ("tcp://[::1]:5", True),
        ("ipc:///run/edgebnn.sock", True),
        ("tcp://0.0.0.0:5556", False),
        ("tcp://*:5556", False),
        ("tcp://eth0:5556", False),
        ("tcp://192.168.1.4:5556", False),
    ],
)
def test_loopback_detection(endpoint: str, loopback: bool) -> None:
    assert is_loopback_endpoint(endpoint) is loopback


def test_check_config_command(base: Path) -> None:
    good = base / "good.yaml"
    good.write_text(MINIMAL)
    bad = base / "bad.yaml"
    bad.write_text(MINIMAL + "predictions:\n  top_k: 1000\n")
    ok = subprocess.run(
        [*EDGEBNN, "check-config", str(good)],
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout and "cam0 (file)" in ok.stdout
    fail = subprocess.run(
        [*EDGEBNN, "check-config", str(bad)],
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert fail.returncode == EX_CONFIG
    assert f"{bad}:6: predictions.top_k: must be between 1 and 100; got 1000" in fail.stderr
