"""The notify protocol against a real AF_UNIX datagram socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from edgebnn.daemon.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_messages_arrive_and_env_is_consumed(listener) -> None:
    path, sock = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(env)
    assert "NOTIFY_SOCKET" not in env  # children must not inherit it
    assert notifier.enabled and notifier.watchdog_interval == 1.5
    notifier.extend_timeout(30)
    notifier.ready("1/1 cameras online")
    notifier.watchdog()
    notifier.reloading()
    notifier.status("compiling")
    notifier.stopping()
    got = [sock.recv(4096).decode() for _ in range(6)]
    assert got[0] == "EXTEND_TIMEOUT_USEC=30000000"
    assert got[1] == "READY=1\nSTATUS=1/1 cameras online"
    assert got[2] == "WATCHDOG=1"
    lines = got[3].split("\n")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    assert int(lines[1].split("=")[1]) > 0
    assert got[4:] == ["STATUS=compiling", "STOPPING=1"]
    notifier.close()


def test_abstract_namespace_socket() -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"edgebnn-test-{os.getpid()}"
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_without_socket_everything_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False
    assert notifier.watchdog_interval is None


def test_watchdog_meant_for_another_process_is_ignored(listener) -> None:
    path, _ = listener
    notifier = Notifier(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    )
    assert notifier.watchdog_interval is None


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled and notifier.ready() is False
