"""The MQTT connection: one thread owns the paho-mqtt client and everything it sends.

Other threads never wait on the broker. They hand messages over through `send()` (a
bounded queue: when it is full the oldest message is dropped and counted) or
`set_retained()` (the latest value per topic, sent again after every reconnect, so that
a broker restarted without persistence gets back the availability, the discovery configs
and the current states). The thread connects, reconnects with doubling delays, publishes
`online` on the availability topic after each connect (the Last Will publishes `offline`
when the connection dies; a clean stop publishes it too) and logs each distinct connection
problem once (a wrong password or a TLS failure is one line, not a line per retry).
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

log = logging.getLogger(__name__)

LOOP_TIMEOUT = 0.05  # seconds the thread waits for network events between queue checks
BATCH = 50  # messages handed to paho per loop pass (bounds paho's own write buffer)
CONNACK_TIMEOUT = 10.0  # seconds a broker may take to accept a connection
STOP_FLUSH = 0.5  # seconds a clean stop waits for `offline` and the queue to leave


class MqttSetupError(Exception):
    """The client cannot be set up (unreadable TLS certificates)."""


class MqttLink:
    """A broker connection with availability, a bounded outgoing queue and reconnects."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        availability_topic: str,
        username: str | None = None,
        password_file: Path | None = None,
        tls: Any = None,  # an object with ca_file, cert_file, key_file (Paths or None)
        qos: int = 0,
        keepalive: int = 60,
        queue_size: int = 1000,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        subscriptions: dict[str, Callable[[bytes], None]] | None = None,
        on_tick: Callable[[], None] | None = None,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self.address = f"{host}:{port}"
        self.availability_topic = availability_topic
        self.qos = qos
        self.sent = 0
        self.dropped = 0  # oldest messages pushed out of the full queue, or refused by paho
        self.connects = 0  # successful connections (the first one included)
        self.connected = False
        self.last_error: str | None = None
        self._host, self._port, self._keepalive = host, port, keepalive
        self._password_file = password_file
        self._username = username
        self._tls = tls
        self._backoff = (backoff_initial, backoff_max)
        self._subscriptions = dict(subscriptions or {})
        self._on_tick = on_tick
        self._on_connect = on_connect
        self._queue: deque[tuple[str, Any, bool]] = deque(maxlen=queue_size)
        self._retained: dict[str, Any] = {}  # topic -> payload ("" clears it)
        self._dirty: dict[str, None] = {}  # retained topics still to send, in order
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None
        self._client_id = client_id
        self._socket_open = False
        self._opened_at = 0.0
        self._refused: str | None = None

    # -- any thread

    def send(self, topic: str, payload: Any, retain: bool = False) -> None:
        """Queue a message (dict payloads are sent as JSON); never blocks."""
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append((topic, payload, retain))

    def set_retained(self, topic: str, payload: Any) -> None:
        """Keep `payload` as the retained value of `topic` (again after each reconnect);
        an empty payload deletes the retained message at the broker."""
        with self._lock:
            self._retained[topic] = payload
            self._dirty.pop(topic, None)
            self._dirty[topic] = None

    def resend_retained(self) -> None:
        """Send every retained value again (e.g. when Home Assistant restarted)."""
        with self._lock:
            self._dirty = dict.fromkeys(self._retained)

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    # -- life cycle

    def start(self) -> None:
        """Create the client and start the thread (which connects in the background)."""
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
        )
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        warning = password_file_warning(self._password_file)
        if warning:
            log.warning("mqtt: %s", warning)
        if self._tls is not None:
            try:
                client.tls_set(
                    ca_certs=_str(self._tls.ca_file),
                    certfile=_str(self._tls.cert_file),
                    keyfile=_str(self._tls.key_file),
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise MqttSetupError(f"mqtt.tls: cannot load the certificates: {exc}") from exc
        client.max_queued_messages_set(max(1, self._queue.maxlen or 1))
        client.on_connect = self._connected
        client.on_message = self._message
        self._client = client
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_FLUSH) -> None:
        """Publish `offline`, let queued messages leave for up to `timeout`, disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)

    # -- the thread

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            if not self._socket_open and not self._open():
                self._wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            assert self._client is not None
            rc = self._client.loop(LOOP_TIMEOUT)
            if not self.connected and time.monotonic() - self._opened_at > CONNACK_TIMEOUT:
                self._refused = f"{self.address} did not answer CONNECT in {CONNACK_TIMEOUT:.0f} s"
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._refused is not None:
                self._lost(rc)
                self._wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            if self.connected:
                delay = self._backoff[0]
                self._drain()
            if self._on_tick is not None:
                self._on_tick()
        self._close()

    def _open(self) -> bool:
        """Open the TCP/TLS connection and send CONNECT; False (logged once) on failure."""
        assert self._client is not None
        self._refused = None
        if self._username is not None:  # read each time: the file may have been replaced
            try:
                password = read_password(self._password_file)
            except OSError as exc:
                self._problem(f"cannot read mqtt.password_file: {exc.strerror or exc}")
                return False
            self._client.username_pw_set(self._username, password)
        try:
            self._client.connect(self._host, self._port, self._keepalive)
        except ssl.SSLError as exc:
            self._problem(f"TLS with {self.address} failed: {_ssl_reason(exc)} (check mqtt.tls)")
            return False
        except OSError as exc:
            self._problem(f"cannot connect to {self.address}: {exc.strerror or exc}")
            return False
        except ValueError as exc:
            self._problem(f"cannot connect to {self.address}: {exc}")
            return False
        self._socket_open = True
        self._opened_at = time.monotonic()
        return True

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            hint = ""
            if str(reason) in ("Not authorized", "Bad user name or password"):
                hint = " (check mqtt.username and mqtt.password_file)"
            self._refused = f"{self.address} refused the connection: {reason}{hint}"
            return
        self.connected = True
        self.connects += 1
        if self.last_error is not None or self.connects > 1:
            log.info("mqtt: connected to %s again", self.address)
        else:
            log.info("mqtt: connected to %s as %s", self.address, self._client_id)
        self.last_error = None
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        for topic in self._subscriptions:
            client.subscribe(topic)
        with self._lock:  # a new session: every retained value is sent again
            self._dirty = dict.fromkeys(self._retained)
        if self._on_connect is not None:
            self._on_connect()

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        handler = self._subscriptions.get(message.topic)
        if handler is not None:
            handler(message.payload)

    def _lost(self, rc: MQTTErrorCode) -> None:
        was_connected = self.connected
        self.connected = False
        self._socket_open = False
        assert self._client is not None
        self._client._sock_close()  # paho has no public close that sends no DISCONNECT
        if self._refused is not None:
            self._problem(self._refused)
        elif was_connected:
            self._problem(
                f"lost the connection to {self.address} ({paho.error_string(rc)}); "
                f"reconnecting, messages wait in a queue of {self._queue.maxlen}"
            )
        else:
            self._problem(f"{self.address} closed the connection ({paho.error_string(rc)})")

    def _problem(self, text: str) -> None:
        """Log a connection problem once; repeats of the same one go to debug."""
        if text != self.last_error:
            log.warning("mqtt: %s", text)
            self.last_error = text
        else:
            log.debug("mqtt: %s", text)

    def _drain(self) -> None:
        """Hand retained values, then queued messages, to paho (a batch per pass)."""
        client = self._client
        assert client is not None
        for _ in range(BATCH):
            if client.want_write() or not self.connected:
                return
            with self._lock:
                if self._dirty:
                    topic = next(iter(self._dirty))
                    del self._dirty[topic]
                    payload, retain = self._retained[topic], True
                    if payload == "":
                        del self._retained[topic]
                elif self._queue:
                    topic, payload, retain = self._queue.popleft()
                else:
                    return
            info = client.publish(topic, encode(payload), qos=self.qos, retain=retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.sent += 1
            else:
                self.dropped += 1

    def _wait(self, delay: float) -> None:
        """Sleep before the next attempt (50-100% jitter), ticking and waking on stop."""
        deadline = time.monotonic() + delay * random.uniform(0.5, 1.0)
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self._on_tick is not None:
                self._on_tick()
            self._stop.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    def _close(self) -> None:
        """The clean stop: `offline`, the last queued messages, DISCONNECT."""
        client = self._client
        if client is None or not self.connected:
            if client is not None and self._socket_open:
                client._sock_close()
            return
        deadline = time.monotonic() + STOP_FLUSH
        while time.monotonic() < deadline and self.connected:
            with self._lock:
                empty = not self._queue and not self._dirty
            if empty:
                break
            self._drain()
            if client.loop(LOOP_TIMEOUT) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        info = client.publish(self.availability_topic, "offline", qos=1, retain=True)
        while time.monotonic() < deadline and not info.is_published():
            if client.loop(LOOP_TIMEOUT) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        client.disconnect()
        client.loop(LOOP_TIMEOUT)


def encode(payload: Any) -> bytes | str:
    """JSON for dicts and lists, the text itself for strings."""
    if isinstance(payload, dict | list):
        return json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return str(payload)


def read_password(path: Path | None) -> str | None:
    """The broker password: the file's first line (never logged)."""
    if path is None:
        return None
    text = path.read_text(encoding="utf-8")
    return text.splitlines()[0] if text else ""


def password_file_warning(path: Path | None) -> str | None:
    """A warning when every user of the machine can read the password file."""
    try:
        mode = path.stat().st_mode if path is not None else 0
    except OSError:
        return None  # reported when connecting
    if mode & 0o004:
        return f"{path} is readable by every user; chmod 600 (or 640 with a group) it"
    return None


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _ssl_reason(exc: ssl.SSLError) -> str:
    verify = getattr(exc, "verify_message", None)
    if verify:
        return f"certificate verify failed: {verify}"
    return str(exc.reason or exc)
