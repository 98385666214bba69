"""The live web view and its small HTTP API (standard library `http.server`, one thread
per connection, nothing to install on a Pi).

    GET /                                   the cameras: live image, top labels, groups
    GET /status                             model, fps, inference ms, skipped, RSS, temperature
    GET /api/cameras                        JSON: every camera, its status and regions,
                                            the latest prediction of the frame and each region
    GET /api/cameras/<name>                 JSON: one camera
    GET /api/cameras/<name>/snapshot.jpg    the latest frame (?annotate=1 draws the regions,
                                            ?width=N scales it down)
    GET /api/status                         JSON: the stats/ payload, rates since the last call
    GET /api/events                         server-sent events: prediction, status, stats
    GET /healthz                            200 {"status": "ok"} while predictions flow, else 503

HTTP Basic authentication when a password file is configured (every path but /healthz).
Nothing here runs on the inference thread: it only hands over references (newest frame,
message copies); JPEG encoding and JSON happen in the request threads.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from edgebnn.daemon.events import EventHub
from edgebnn.daemon.snapshots import NoFrame, Snapshots
from edgebnn.daemon.viewconfig import WebConfig, is_loopback_host

log = logging.getLogger(__name__)

PAGES = Path(__file__).resolve().parent / "webui"
KEEPALIVE_S = 15.0  # SSE comment line when nothing else was sent
SSE_MIN_INTERVAL_S = 0.1  # a client's events are batched: at most 10 writes a second
MAX_EVENT_CLIENTS = 64  # more SSE clients get 503
SOCKET_TIMEOUT_S = 60.0  # idle keep-alive connections and stuck writes end after this


@dataclass
class DaemonView:
    """What the web view reads from the daemon (callables, so reloads show at once)."""

    cameras: Callable[[], Sequence[Any]]  # CameraConfig-like: name, regions, full_frame
    camera_stats: Callable[[str], dict[str, Any] | None]  # CameraStats.snapshot()
    stats: Callable[[], dict[str, Any]]  # the stats/ payload
    latest_frame: Callable[[str], Any]  # newest Frame of a camera or None
    healthy: Callable[[], tuple[bool, str]]


class WebServer:
    """Serves the page and the API on host:port from its own threads."""

    def __init__(
        self,
        host: str,
        port: int,
        view: DaemonView,
        hub: EventHub,
        *,
        password: str | None = None,
        username: str = "edgebnn",
        max_fps: float = 2.0,
    ) -> None:
        self.view = view
        self.hub = hub
        self.max_fps = max_fps
        self.snapshots = Snapshots(view.latest_frame, self._regions, max_fps)
        self._credentials = (
            None if password is None else (username.encode(), password.encode("utf-8"))
        )
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="web", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.hub.close()
        self.snapshots.close()
        self._server.shutdown()
        self._server.server_close()

    # -- used by the handler

    def authorised(self, header: str | None) -> bool:
        """Constant-time check of an `Authorization: Basic ...` header."""
        if self._credentials is None:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        expected_user, expected_password = self._credentials
        same_user = hmac.compare_digest(user, expected_user)
        return hmac.compare_digest(password, expected_password) and same_user

    def _regions(self, camera: str) -> Sequence[Any] | None:
        for cam in self.view.cameras():
            if cam.name == camera:
                return tuple(cam.regions)
        return None

    def camera_json(self, cam: Any) -> dict[str, Any]:
        status = self.view.camera_stats(cam.name) or {}
        regions = [
            {
                "name": r.name,
                "box": list(r.box),
                "units": "pixels" if r.pixels else "fractions",
                "latest": self.hub.latest(cam.name, r.name),
            }
            for r in cam.regions
        ]
        return {
            "name": cam.name,
            "state": status.get("state"),
            "reason": status.get("reason"),
            "full_frame": bool(cam.full_frame or not cam.regions),
            "latest": self.hub.latest(cam.name, None),
            "regions": regions,
        }

    def cameras_json(self) -> list[dict[str, Any]]:
        return [self.camera_json(cam) for cam in self.view.cameras()]


def _handler_class(web: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        server_web = web

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a page's image polls reuse one connection
    server_version = "edgebnn"
    timeout = SOCKET_TIMEOUT_S
    server_web: WebServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s: %s", self.client_address[0], format % args)

    def do_GET(self) -> None:
        web = self.server_web
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        if path == "/healthz":
            healthy, reason = web.view.healthy()
            self.send_json(
                {"status": "ok" if healthy else "unhealthy", "reason": reason},
                200 if healthy else 503,
            )
            return
        if not web.authorised(self.headers.get("Authorization")):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="edgebnn", charset="UTF-8"')
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "13")
            self.end_headers()
            self.wfile.write(b"unauthorised\n")
            return
        if path in ("/", "/index.html"):
            self.send_page("index.html")
        elif path == "/status":
            self.send_page("status.html")
        elif path == "/api/cameras":
            self.send_json(web.cameras_json())
        elif path == "/api/status":
            self.send_json(web.view.stats())
        elif path == "/api/events":
            self.send_events()
        elif path.startswith("/api/cameras/"):
            self.send_camera(path[len("/api/cameras/") :], query)
        else:
            self.send_error_json(404, f"no such path: {path}")

    def do_HEAD(self) -> None:
        self.send_error_json(405, "use GET")

    # -- responses

    def send_body(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, value: Any, status: int = 200) -> None:
        body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        self.send_body(status, "application/json", body)

    def send_error_json(self, status: int, message: str) -> None:
        self.send_json({"error": message}, status)

    def send_page(self, name: str) -> None:
        text = (PAGES / name).read_text(encoding="utf-8")
        text = text.replace("{{MAX_FPS}}", f"{self.server_web.max_fps:g}")
        self.send_body(200, "text/html; charset=utf-8", text.encode())

    def send_camera(self, rest: str, query: dict[str, list[str]]) -> None:
        web = self.server_web
        name, _, leaf = rest.partition("/")
        cam = next((c for c in web.view.cameras() if c.name == name), None)
        if cam is None:
            self.send_error_json(404, f"no camera named {name!r}")
        elif leaf == "":
            self.send_json(web.camera_json(cam))
        elif leaf == "snapshot.jpg":
            annotate = query.get("annotate", ["0"])[-1] not in ("0", "false", "")
            try:
                width = int(query.get("width", ["0"])[-1])
            except ValueError:
                self.send_error_json(400, "width must be a whole number of pixels")
                return
            try:
                data = web.snapshots.jpeg(name, annotate, width or None)
            except NoFrame as exc:
                self.send_error_json(503, str(exc))
                return
            self.send_body(200, "image/jpeg", data)
        else:
            self.send_error_json(404, f"no such path: /api/cameras/{rest}")

    def send_events(self) -> None:
        """The prediction stream, until the client goes away or the daemon stops."""
        hub = self.server_web.hub
        if hub.clients >= MAX_EVENT_CLIENTS:
            self.send_error_json(503, "too many event clients")
            return
        cursor = hub.attach()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(b"retry: 2000\n\n" + b"".join(e.encode() for e in hub.current()))
            self.wfile.flush()
            stopping = self.server_web._stopping
            while not stopping.is_set():
                events, cursor, missed = hub.wait(cursor, KEEPALIVE_S)
                if stopping.is_set():
                    break
                chunk = b"".join(e.encode() for e in events)
                if missed:
                    chunk = f": skipped {missed} events\n\n".encode() + chunk
                self.wfile.write(chunk or b": keepalive\n\n")
                self.wfile.flush()
                stopping.wait(SSE_MIN_INTERVAL_S)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass  # the browser went away
        finally:
            hub.detach()


def read_password(path: Path) -> str:
    """The password in a file (one line; the trailing newline is not part of it)."""
    text = path.read_text(encoding="utf-8")
    password = text.rstrip("\r\n")
    if not password:
        raise ValueError(f"{path} is empty")
    return password


def serve(config: WebConfig, view: DaemonView, hub: EventHub) -> WebServer:
    """Start the web view of a WebConfig (OSError when the port cannot be bound, ValueError
    or OSError when the password file cannot be read); warns when it is open to the
    network without a password."""
    password = read_password(config.password_file) if config.password_file else None
    server = WebServer(
        config.host,
        config.port,
        view,
        hub,
        password=password,
        username=config.username,
        max_fps=config.max_fps,
    )
    server.start()
    host, port = server.address
    log.info(
        "web view on http://%s:%d/ (%s)",
        host,
        port,
        "password required" if password else "no password",
    )
    if password is None and not is_loopback_host(config.host):
        log.warning(
            "the web view on %s has no password: anyone on the network can watch the cameras; "
            "set web.password_file",
            config.host,
        )
    return server
