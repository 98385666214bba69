"""`edgebnn subscribe`: print what a daemon publishes, as a table or as JSON lines.

Also the reference client: a SUB socket, topic prefixes that end with '/', optional
CURVE keys, and JSON payloads (never pickle).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import zmq
import zmq.auth


def topics_for(cameras: Sequence[str], status: bool, stats: bool) -> list[bytes]:
    """The subscription prefixes (each ends with '/', so cam1 never matches cam10)."""
    kinds = ["predictions"] + (["status"] if status else [])
    prefixes = (
        [f"{k}/{c}/" for k in kinds for c in cameras] if cameras else [f"{k}/" for k in kinds]
    )
    if stats:
        prefixes.append("stats/")
    return [p.encode() for p in prefixes]


def connect(
    endpoint: str,
    topics: Sequence[bytes],
    context: zmq.Context | None = None,
    server_key: str | Path | None = None,
    client_key: str | Path | None = None,
) -> zmq.Socket:
    """A SUB socket connected to `endpoint`; CURVE when a server public key is given."""
    socket = (context or zmq.Context.instance()).socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    if server_key is not None:
        server_public, _ = zmq.auth.load_certificate(str(server_key))
        if client_key is not None:
            public, secret = zmq.auth.load_certificate(str(client_key))
            if not secret:
                raise ValueError(f"{client_key} holds no secret key (use the .key_secret file)")
        else:
            public, secret = zmq.curve_keypair()
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_serverkey = server_public
    for topic in topics:
        socket.setsockopt(zmq.SUBSCRIBE, topic)
    socket.connect(endpoint)
    return socket


def format_message(topic: str, payload: dict[str, Any]) -> str:
    """One human-readable line for a message."""
    clock = time.strftime("%H:%M:%S", time.localtime(payload.get("published_at") or time.time()))
    if topic.startswith("predictions/"):
        top = ", ".join(f"{t['label']} {t['score']:.2f}" for t in payload["top"][:3])
        groups = " ".join(f"{k} {v:.2f}" for k, v in payload.get("groups", {}).items())
        age = (payload["published_at"] - payload["captured_at"]) * 1000
        return (
            f"{clock}  {payload['camera']:<12} #{payload['seq']:<6} {top}"
            + (f"  | {groups}" if groups else "")
            + f"  ({payload['inference_ms']:.1f} ms, age {age:.0f} ms)"
        )
    if topic.startswith("status/"):
        return f"{clock}  {payload['camera']:<12} {payload['state']}: {payload['reason']}"
    cams = ", ".join(f"{n} {c['state']} {c['fps']:.1f} fps" for n, c in payload["cameras"].items())
    return (
        f"{clock}  stats: {cams}; rss {payload['rss_bytes'] / 2**20:.0f} MB; "
        f"uptime {payload['uptime_s']:.0f} s"
    )


def receive(
    socket: zmq.Socket,
    handle: Callable[[str, dict[str, Any], bytes], None],
    count: int | None = None,
    timeout: float | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> int:
    """Call `handle(topic, payload, raw)` per message until `count` or `timeout`; returns
    the number handled."""
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    deadline = None if timeout is None else time.monotonic() + timeout
    handled = 0
    while (count is None or handled < count) and keep_going():
        wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
        if wait <= 0:
            break
        if not poller.poll(int(wait * 1000)):
            continue
        parts = socket.recv_multipart()
        if len(parts) != 2:
            continue
        topic, raw = parts[0].decode(errors="replace"), parts[1]
        try:
            payload = json.loads(raw)
        except ValueError:
            continue
        handle(topic, payload, raw)
        handled += 1
    return handled


def run_subscriber(
    endpoint: str,
    cameras: Sequence[str] = (),
    as_json: bool = False,
    count: int | None = None,
    status: bool = False,
    stats: bool = False,
    server_key: str | None = None,
    client_key: str | None = None,
    timeout: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """`edgebnn subscribe`; returns the exit code (0, or 1 if nothing arrived in time)."""
    socket = connect(
        endpoint, topics_for(cameras, status, stats), server_key=server_key, client_key=client_key
    )

    def show(topic: str, payload: dict[str, Any], raw: bytes) -> None:
        print(raw.decode() if as_json else format_message(topic, payload), file=out, flush=True)

    try:
        handled = receive(socket, show, count=count, timeout=timeout)
    except KeyboardInterrupt:
        handled = 1
    finally:
        socket.close(linger=0)
    return 0 if handled or timeout is None else 1
