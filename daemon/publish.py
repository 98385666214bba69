"""The ZeroMQ PUB socket and the one thread that owns it.

Other threads hand messages over through a bounded queue (ZeroMQ sockets must not be
shared between threads); a full queue drops the message and counts it. The socket has a
low send high-water mark, so a slow or dead subscriber costs at most that many messages
of memory, and closing lingers at most CLOSE_LINGER_MS, so that the last status messages
leave but a dead network never holds up a shutdown.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

import zmq
import zmq.auth
from edgebnn.daemon.config import PublishConfig, is_loopback_endpoint
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)

SCHEMA = 2  # version of every JSON payload; 2 added "device" (docs/messages.md)
CLOSE_LINGER_MS = 100  # on close: time for already-sent messages to leave, then drop them


class PublishError(Exception):
    """The socket cannot be set up (bind failure, bad key file)."""


class CurveUnavailable(PublishError):
    """CURVE is configured but this libzmq was built without it."""


def prediction_topic(camera: str, region: str | None = None) -> bytes:
    """predictions/<camera>/, or predictions/<camera>/<region>/ for a region."""
    if region is None:
        return f"predictions/{camera}/".encode()
    return f"predictions/{camera}/{region}/".encode()


def status_topic(camera: str) -> bytes:
    return f"status/{camera}/".encode()


STATS_TOPIC = b"stats/"


class Publisher:
    """Binds the PUB socket, then sends queued [topic, JSON] messages from its own thread."""

    def __init__(self, config: PublishConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self.context = context or zmq.Context.instance()
        self.sent = 0
        self.dropped = 0  # queue full or socket refused
        self.last_endpoints: list[str] = []
        self._queue: queue.Queue[tuple[bytes, dict[str, Any]] | None] = queue.Queue(
            maxsize=config.queue_size
        )
        self._socket: zmq.Socket | None = None
        self._auth: ThreadAuthenticator | None = None
        self._thread: threading.Thread | None = None

    # -- set-up, in the caller's thread

    def start(self) -> None:
        """Create and bind the socket (PublishError on failure) and start the sender thread."""
        curve = self.config.curve
        socket = self.context.socket(zmq.PUB)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.SNDHWM, self.config.send_hwm)
            if curve is not None:
                self._auth = start_authenticator(self.context, curve.allowed_clients)
                public, secret = load_server_keys(curve.server_secret_key)
                socket.curve_secretkey = secret
                socket.curve_publickey = public
                socket.curve_server = True  # must come before bind
            for endpoint in self.config.endpoints:
                try:
                    socket.bind(endpoint)
                except zmq.ZMQError as exc:
                    raise PublishError(f"cannot bind {endpoint}: {exc}") from exc
                bound = socket.getsockopt_string(zmq.LAST_ENDPOINT)
                self.last_endpoints.append(bound)
                log.info("publishing on %s%s", bound, " (CURVE)" if curve else "")
                if curve is None and not is_loopback_endpoint(endpoint):
                    log.warning(
                        "predictions on %s are unauthenticated and unencrypted: anyone on the "
                        "network can read them; configure publish.curve to restrict them",
                        endpoint,
                    )
        except BaseException:
            socket.close(linger=0)
            self._stop_auth()
            raise
        self._socket = socket
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def reload_clients(self) -> None:
        """Re-read the allowed client keys directory (after SIGHUP)."""
        curve = self.config.curve
        if self._auth is not None and curve is not None:
            configure_curve(self._auth, curve.allowed_clients)

    # -- any thread

    def publish(self, topic: bytes, payload: dict[str, Any]) -> bool:
        """Queue a message; False (and counted) if the queue is full."""
        try:
            self._queue.put_nowait((topic, payload))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def queued(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float = 0.5) -> None:
        """Stop the thread (after it sent what was queued) and close the socket."""
        if self._thread is not None:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                pass
            self._thread.join(timeout)
        if self._socket is not None and (self._thread is None or not self._thread.is_alive()):
            self._socket.close(linger=CLOSE_LINGER_MS)
            self._socket = None
        self._stop_auth()

    # -- the sender thread

    def _run(self) -> None:
        assert self._socket is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, payload = item
            payload["published_at"] = round(time.time(), 6)
            data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
            try:
                self._socket.send_multipart([topic, data], flags=zmq.NOBLOCK)
                self.sent += 1
            except zmq.Again:
                self.dropped += 1
            except zmq.ZMQError as exc:
                self.dropped += 1
                log.warning("send failed: %s", exc)

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def load_server_keys(path: Any) -> tuple[bytes, bytes]:
    """(public, secret) from a zmq.auth secret key file; the secret is never logged."""
    if not zmq.has("curve"):
        raise CurveUnavailable(
            "publish.curve is configured but this libzmq was built without CURVE (libsodium)"
        )
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise PublishError(f"cannot read the CURVE key file {path}: {exc}") from exc
    if not secret:
        raise PublishError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def start_authenticator(context: zmq.Context, clients: Any) -> ThreadAuthenticator:
    """A ZAP handler on our context that admits the configured client keys."""
    if not zmq.has("curve"):
        raise CurveUnavailable(
            "publish.curve is configured but this libzmq was built without CURVE (libsodium)"
        )
    auth = ThreadAuthenticator(context, log=logging.getLogger("edgebnn.daemon.zap"))
    auth.start()
    configure_curve(auth, clients)
    return auth


def configure_curve(auth: ThreadAuthenticator, clients: Any) -> None:
    """Admit the public keys in `clients` (a directory), or any client when None."""
    location = str(clients) if clients is not None else zmq.auth.CURVE_ALLOW_ANY
    auth.configure_curve(domain="*", location=location)
