"""An HTTP MJPEG camera for the tests, on a real loopback socket, that can misbehave.

Modes (switch any time with `server.mode = ...`; new connections follow the new mode):
  "serve"             multipart/x-mixed-replace JPEG frames at `fps`
  "hang_handshake"    accept the connection, read the request, never answer
  "hang_after_headers" answer with the HTTP headers, then send nothing
  "stop_frames"       send `frames_before_stop` frames, then nothing (connection kept open;
                      streams already running stop too)
Stalled connections stay open until the server is closed or the client leaves.
"""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np

BOUNDARY = b"edgebnnframe"


def jpeg(index: int, size: tuple[int, int] = (160, 120)) -> bytes:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:, :, 1] = (index * 37) % 256
    image[: size[1] // 2, :, 2] = 200
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


class MjpegServer:
    def __init__(self, mode: str = "serve", fps: float = 15.0, frames_before_stop: int = 30):
        self.mode = mode
        self.fps = fps
        self.frames_before_stop = frames_before_stop
        self.connections = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self._closed = threading.Event()
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._frames = [jpeg(i) for i in range(8)]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._clients.append(client)
                self.connections += 1
            threading.Thread(target=self._serve, args=(client, self.mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        try:
            client.settimeout(5.0)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = client.recv(4096)
                if not chunk:
                    return
                request += chunk
            if mode == "hang_handshake":
                self._closed.wait()
                return
            client.sendall(
                b"HTTP/1.0 200 OK\r\nCache-Control: no-cache\r\nConnection: close\r\n"
                b"Content-Type: multipart/x-mixed-replace; boundary=" + BOUNDARY + b"\r\n\r\n"
            )
            if mode == "hang_after_headers":
                self._closed.wait()
                return
            sent = 0
            while not self._closed.is_set():
                if "stop_frames" in (mode, self.mode) and sent >= self.frames_before_stop:
                    self._closed.wait()
                    return
                data = self._frames[sent % len(self._frames)]
                client.sendall(
                    b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                    b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n"
                )
                sent += 1
                time.sleep(1.0 / self.fps)
        except OSError:
            pass
        finally:
            client.close()

    def drop_clients(self) -> None:
        """Close every open connection (a server that recovers restarts its streams)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.drop_clients()
