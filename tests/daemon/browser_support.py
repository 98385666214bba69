"""Helpers for the web view's browser tests: a real `edgebnn run` process with the web view
on, headless Debian Chromium through Selenium, and HTTP clients that watch like a page."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
from daemon_support import EDGEBNN, free_endpoint, subprocess_env
from edgebnn.daemon.config import SAMPLES_DIR

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)
USER, PASSWORD = "edgebnn", "watch the birds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def corner_frames(folder: Path) -> Path:
    """A 960x720 frame: the astronaut photo, the espresso photo pasted into the top right."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = cv2.resize(cv2.imread(str(SAMPLES_DIR / "astronaut.jpg")), (960, 720))
    frame[:213, 640:960] = cv2.imread(str(SAMPLES_DIR / "coffee.jpg"))
    cv2.imwrite(str(folder / "kitchen.png"), frame)
    return folder


class WebDaemon:
    """`edgebnn run` with the web view on a free loopback port and a password file."""

    def __init__(self, tmp_path: Path, model: str, cameras: str, max_fps: float = 2.0) -> None:
        self.endpoint = free_endpoint()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        (tmp_path / "web.password").write_text(PASSWORD + "\n")
        config = tmp_path / "edgebnn.yaml"
        config.write_text(
            f"model: {model}\n"
            "groups: {dog: {builtin: dogs}, cat: {builtin: cats}}\n"
            f"cameras:\n{cameras}"
            f"publish: {{endpoints: ['{self.endpoint}']}}\n"
            "stats: {interval: 2}\n"
            f"web: {{port: {self.port}, password_file: web.password, max_fps: {max_fps}}}\n"
        )
        self.log = open(tmp_path / "daemon.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [*EDGEBNN, "run", "--config", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
        )
        self.log_path = tmp_path / "daemon.log"

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if get(f"{self.base}/healthz", auth=False)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("daemon not healthy in time:\n" + self.log_path.read_text())

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kb) * 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def auth_header(password: str = PASSWORD, user: str = USER) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get(url: str, auth: bool = True, password: str = PASSWORD) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", auth_header(password))
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def chromium(authorised: bool = True) -> Any:
    """A headless Chromium with a fresh profile; sends the password on every request."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "the browser tests need Debian's chromium and chromium-driver (apt install them)"
    )
    profile = tempfile.mkdtemp(prefix="edgebnn-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.profile_dir = profile
    if authorised:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": auth_header()}}
        )
    return driver


def quit_chromium(driver: Any) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


class Watcher(threading.Thread):
    """What one browser tab does, in a thread: follows /api/events and fetches each
    camera's annotated snapshot as fast as the page would (max_fps)."""

    def __init__(self, base: str, cameras: list[str], max_fps: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.base, self.cameras, self.max_fps, self.stop_event = base, cameras, max_fps, stop
        self.events = 0
        self.jpegs = 0
        self.errors: list[str] = []
        self._sse = threading.Thread(target=self._follow_events, daemon=True)

    def run(self) -> None:
        self._sse.start()
        host, port = self.base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=20)  # keep-alive, as a tab
        while not self.stop_event.is_set():
            started = time.monotonic()
            for camera in self.cameras:
                try:
                    conn.request(
                        "GET",
                        f"/api/cameras/{camera}/snapshot.jpg?annotate=1&width=640",
                        headers={"Authorization": auth_header()},
                    )
                    response = conn.getresponse()
                    body = response.read()
                    if response.status == 200 and body[:2] == b"\xff\xd8":
                        self.jpegs += 1
                    else:
                        self.errors.append(f"snapshot {response.status}")
                except (OSError, http.client.HTTPException) as exc:
                    self.errors.append(repr(exc))
                    conn.close()
            self.stop_event.wait(max(0.0, 1.0 / self.max_fps - (time.monotonic() - started)))
        conn.close()
        self._sse.join(5)

    def _follow_events(self) -> None:
        host, port = self.base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=20)
        conn.request("GET", "/api/events", headers={"Authorization": auth_header()})
        response = conn.getresponse()
        try:
            while not self.stop_event.is_set():
                line = response.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    json.loads(line[6:])
                    self.events += 1
        except (OSError, ValueError) as exc:
            self.errors.append(repr(exc))
        finally:
            response.close()
            conn.close()
