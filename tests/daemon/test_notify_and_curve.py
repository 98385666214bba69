"""systemd notifications from a running daemon, and CURVE between daemon and subscribers."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import zmq
from daemon_support import make_config
from edgebnn.daemon.keys import KeyGenerationError, generate_keypair
from edgebnn.daemon.sdnotify import Notifier


class NotifyListener:
    """A real AF_UNIX datagram socket standing in for systemd; records (time, message)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path = str(path)
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append((time.monotonic(), data.decode()))

    def messages(self) -> list[str]:
        return [m for _, m in self.got]

    def wait_for(self, prefix: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(m.startswith(prefix) for m in self.messages()):
            assert time.monotonic() < deadline, self.messages()
            time.sleep(0.01)

    def watchdogs_between(self, start: float, end: float) -> int:
        return sum(1 for t, m in self.got if m == "WATCHDOG=1" and start <= t <= end)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


def test_notify_protocol(tmp_path, image_dir, start_daemon) -> None:
    listener = NotifyListener(tmp_path / "notify")
    try:
        notifier = Notifier({"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "200000"})
        config = make_config(
            tmp_path,
            [{"name": "s", "source": str(image_dir), "max_fps": 50}],
            watchdog={"max_frame_age": 0.5, "ping_while_cameras_offline": False},
        )
        running = start_daemon(config, notifier=notifier)
        running.wait_ready()
        daemon = running.daemon
        listener.wait_for("READY=1")
        messages = listener.messages()
        ready = next(i for i, m in enumerate(messages) if m.startswith("READY=1"))
        assert any(m.startswith("EXTEND_TIMEOUT_USEC=") for m in messages[:ready])
        assert daemon.pipeline.warm.is_set()  # READY only after the JIT warm-up
        assert "cameras online" in messages[ready]

        # Frames flow (once the capture process has started): pings every 0.1 s.
        deadline = time.monotonic() + 60
        while daemon.stats["s"].processed < 3:
            assert time.monotonic() < deadline, "no frames"
            time.sleep(0.05)
        time.sleep(1.0)
        now = time.monotonic()
        assert listener.watchdogs_between(now - 0.8, now) >= 3

        # Stall the inference thread: pings stop once the last frame is older than 0.5 s.
        with daemon.pipeline.model_lock:
            stalled_at = time.monotonic()
            time.sleep(2.2)
            stall_end = time.monotonic()
        assert listener.watchdogs_between(stalled_at + 1.0, stall_end) == 0
        assert daemon.stats["s"].state == "online"  # the camera is fine: it is the pipeline
        deadline = time.monotonic() + 5
        while listener.watchdogs_between(stall_end, time.monotonic()) < 2:
            assert time.monotonic() < deadline, "pings did not resume"
            time.sleep(0.05)

        # Reload: RELOADING=1 then READY=1.
        count = len(listener.got)
        assert daemon.reload(config)
        time.sleep(0.3)
        after = listener.messages()[count:]
        reloading = next(i for i, m in enumerate(after) if m.startswith("RELOADING=1"))
        assert any(m.startswith("READY=1") for m in after[reloading + 1 :])
        assert "MONOTONIC_USEC=" in after[reloading]

        # STATUS lines carry the frame rate.
        assert running.stop() == 0
        listener.wait_for("STOPPING=1")
        assert listener.messages()[-1] == "STOPPING=1"
    finally:
        listener.close()


def test_watchdog_continues_while_every_camera_is_offline(tmp_path, start_daemon) -> None:
    listener = NotifyListener(tmp_path / "notify")
    try:
        notifier = Notifier({"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "200000"})
        config = make_config(
            tmp_path,
            [
                {
                    "name": "usb",
                    "source": "/dev/video-edgebnn-none",
                    "backoff": {"initial": 0.05, "max": 0.1},
                }
            ],
            watchdog={"max_frame_age": 0.3},
        )
        running = start_daemon(config, notifier=notifier)
        running.wait_ready()
        time.sleep(1.2)
        now = time.monotonic()
        assert running.daemon.stats["usb"].state == "reconnecting"
        assert listener.watchdogs_between(now - 0.6, now) >= 2  # camera loss is not a hang
        assert running.stop() == 0
    finally:
        listener.close()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    if not zmq.has("curve"):
        pytest.fail("this libzmq has no CURVE; the CURVE tests need it")
    server_pub, server_secret = generate_keypair(tmp_path / "keys", "server")
    clients = tmp_path / "keys" / "clients"
    client_pub, client_secret = generate_keypair(tmp_path / "client", "client")
    clients.mkdir()
    client_pub.replace(clients / "client.key")
    _, intruder_secret = generate_keypair(tmp_path / "intruder", "intruder")
    return {
        "server_public": server_pub,
        "server_secret": server_secret,
        "clients": clients,
        "client_secret": client_secret,
        "intruder_secret": intruder_secret,
    }


def test_generated_keys_are_private_and_never_overwritten(keys) -> None:
    assert keys["server_secret"].stat().st_mode & 0o777 == 0o600
    assert "secret-key" in keys["server_secret"].read_text()
    assert "secret-key" not in keys["server_public"].read_text()
    with pytest.raises(KeyGenerationError, match="exists"):
        generate_keypair(keys["server_secret"].parent, "server")


def test_curve_admits_listed_clients_only(
    tmp_path, image_dir, keys, start_daemon, recorder, caplog
) -> None:
    config = make_config(
        tmp_path,
        [{"name": "s", "source": str(image_dir), "max_fps": 30}],
        publish={
            "curve": {
                "server_secret_key": str(keys["server_secret"]),
                "allowed_clients": str(keys["clients"]),
            }
        },
    )
    endpoint = config.publish.endpoints[0]
    server_public, _ = zmq.auth.load_certificate(str(keys["server_public"]))

    def client(secret_file: Path):
        def setup(sock: zmq.Socket) -> None:
            public, secret = zmq.auth.load_certificate(str(secret_file))
            sock.curve_publickey, sock.curve_secretkey = public, secret
            sock.curve_serverkey = server_public

        return setup

    allowed = recorder(endpoint, setup=client(keys["client_secret"]))
    intruder = recorder(endpoint, setup=client(keys["intruder_secret"]))
    plain = recorder(endpoint)
    running = start_daemon(config)
    running.wait_ready()
    assert allowed.wait_for(lambda r: len(r.of("predictions/s/")) >= 10)
    time.sleep(0.3)
    assert intruder.messages == [] and plain.messages == []
    secret_text = keys["server_secret"].read_text()
    secret_line = next(line for line in secret_text.splitlines() if "secret-key" in line)
    assert secret_line.split('"')[1] not in caplog.text  # never logged
    assert running.stop() == 0


def test_curve_without_allowed_list_admits_any_client_with_the_server_key(
    tmp_path, image_dir, keys, start_daemon, recorder
) -> None:
    config = make_config(
        tmp_path,
        [{"name": "s", "source": str(image_dir), "max_fps": 30}],
        publish={"curve": {"server_secret_key": str(keys["server_secret"])}},
    )
    server_public, _ = zmq.auth.load_certificate(str(keys["server_public"]))

    def anyone(sock: zmq.Socket) -> None:
        public, secret = zmq.curve_keypair()
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey = server_public

    encrypted = recorder(config.publish.endpoints[0], setup=anyone)
    plain = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    running.wait_ready()
    assert encrypted.wait_for(lambda r: len(r.of("predictions/s/")) >= 3)
    assert plain.messages == []
    assert running.stop() == 0
