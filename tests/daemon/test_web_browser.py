"""The web view in a real headless browser (Debian's Chromium through Selenium) against a
real `edgebnn run` process, and the load of twenty watchers on the daemon.

Set EDGEBNN_SCREENSHOTS=DIR to keep screenshots of the pages (docs/web*.png come from it).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser_support import (
    Watcher,
    WebDaemon,
    chromium,
    corner_frames,
    get,
    quit_chromium,
)
from daemon_support import MODEL, Recorder, write_video

pytestmark = pytest.mark.browser


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def kitchen(tmp_path: Path):
    """EfficientNet-Lite0 on two cameras: a moving video, and a kitchen frame with the
    espresso photo in its top-right corner, watched by a region there."""
    video = write_video(tmp_path / "clip.avi", frames=60, size=(320, 240))
    frames = corner_frames(tmp_path / "kitchen")
    cameras = (
        f"  - {{name: clip, source: {video}, max_fps: 3}}\n"
        f"  - name: kitchen\n    source: {frames}\n    max_fps: 2\n"
        "    regions: [{name: cup, box: [640, 0, 320, 213]}]\n"
    )
    daemon = WebDaemon(tmp_path, "efficientnet-lite0", cameras)
    try:
        daemon.wait_healthy(timeout=900)  # a cold Numba cache compiles EfficientNet first
        yield daemon
    finally:
        daemon.stop()


def test_the_page_shows_live_cameras_images_and_labels(kitchen: WebDaemon) -> None:
    driver = chromium()
    try:
        driver.get(kitchen.base + "/")
        names = wait_until(
            lambda: [e.text.split("\n")[0] for e in driver.find_elements("css selector", "h2")],
            30,
            "camera cards",
        )
        assert [n.split()[0] for n in names] == ["clip", "kitchen"]
        images = {
            card.get_attribute("data-camera"): card.find_element("css selector", "img")
            for card in driver.find_elements("css selector", ".camera")
        }
        for img in images.values():  # a decoded JPEG is shown for every camera
            wait_until(
                lambda i=img: driver.execute_script(
                    "return arguments[0].complete && arguments[0].naturalWidth", i
                ),
                30,
                "an image",
            )
        first = images["clip"].screenshot_as_png
        wait_until(
            lambda: images["clip"].screenshot_as_png != first, 30, "the clip's image to change"
        )

        def unit_text(camera: str, region: str) -> str:
            return driver.find_element(
                "css selector", f'.camera[data-camera="{camera}"] .unit[data-region="{region}"]'
            ).text

        before = {key: unit_text(*key) for key in (("clip", ""), ("kitchen", "cup"))}
        for key, text in before.items():  # predictions arrive, then keep arriving
            wait_until(
                lambda k=key, t=text: unit_text(*k) != t and "#" in unit_text(*k), 60, str(key)
            )
        cup = unit_text("kitchen", "cup")
        assert "region cup" in cup and cup.split("\n")[1] == "espresso", cup
        assert "dog" in cup and "cat" in cup  # group scores
        if os.environ.get("EDGEBNN_SCREENSHOTS"):
            folder = Path(os.environ["EDGEBNN_SCREENSHOTS"])
            time.sleep(1.0)
            driver.save_screenshot(str(folder / "web.png"))
        driver.get(kitchen.base + "/status")
        rows = wait_until(
            lambda: [r.text for r in driver.find_elements("css selector", "#rows tr")],
            30,
            "status rows",
        )
        assert [r.split()[0] for r in rows] == ["clip", "kitchen", "cup"]
        facts = driver.find_element("css selector", "#daemon").text
        assert "efficientnet-lite0" in facts and "MB" in facts and "CPU temperature" in facts
        if os.environ.get("EDGEBNN_SCREENSHOTS"):
            time.sleep(2.5)  # one refresh: the fps column has two samples
            driver.save_screenshot(str(Path(os.environ["EDGEBNN_SCREENSHOTS"]) / "web-status.png"))
    finally:
        quit_chromium(driver)


def test_the_api_returns_json_jpeg_events_and_401(kitchen: WebDaemon) -> None:
    base = kitchen.base
    status, kind, body = get(f"{base}/api/cameras")
    assert status == 200 and kind == "application/json"
    cameras = {c["name"]: c for c in json.loads(body)}
    assert set(cameras) == {"clip", "kitchen"}
    cup = cameras["kitchen"]["regions"][0]
    assert cup["name"] == "cup" and cup["box"] == [640, 0, 320, 213]
    assert cup["units"] == "pixels"
    wait_until(
        lambda: json.loads(get(f"{base}/api/cameras/kitchen")[2])["regions"][0]["latest"],
        60,
        "a prediction of the cup region",
    )
    latest = json.loads(get(f"{base}/api/cameras/kitchen")[2])["regions"][0]["latest"]
    assert latest["region"] == "cup" and latest["top"][0]["label"] == "espresso"
    status, kind, plain = get(f"{base}/api/cameras/kitchen/snapshot.jpg")
    assert status == 200 and kind == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (720, 960, 3)
    _, _, annotated = get(f"{base}/api/cameras/kitchen/snapshot.jpg?annotate=1")
    drawn = cv2.imdecode(np.frombuffer(annotated, np.uint8), cv2.IMREAD_COLOR)
    difference = np.abs(drawn.astype(int) - image.astype(int)).max(axis=2) > 60
    ys, xs = np.nonzero(difference)  # the box outline and its name tag, nothing else
    assert xs.min() >= 636 and ys.max() <= 216 and difference.sum() > 500
    status, kind, body = get(f"{base}/api/status")
    stats = json.loads(body)
    assert stats["model"]["name"] == "efficientnet-lite0"
    assert "cup" in stats["cameras"]["kitchen"]["regions"]
    for path in ("/", "/api/cameras", "/api/cameras/clip/snapshot.jpg", "/api/events"):
        assert get(base + path, auth=False)[0] == 401
        assert get(base + path, password="wrong")[0] == 401
    assert get(f"{base}/healthz", auth=False)[0] == 200


def test_twenty_watchers_leave_the_prediction_rate_and_memory_alone(tmp_path: Path) -> None:
    """20 HTTP watchers (SSE stream + a snapshot per camera at the page's rate, as a tab
    does) plus 3 real Chromium pages for 15 s, against 15 s with nobody watching."""
    video = write_video(tmp_path / "clip.avi", frames=60, size=(640, 480))
    frames = corner_frames(tmp_path / "kitchen")
    cameras = (
        f"  - {{name: clip, source: {video}, max_fps: 8}}\n"
        f"  - name: kitchen\n    source: {frames}\n    max_fps: 4\n"
        "    regions: [{name: cup, box: [640, 0, 320, 213]}]\n"
    )
    daemon = WebDaemon(tmp_path, MODEL, cameras, max_fps=2.0)
    recorder = Recorder(daemon.endpoint, (b"predictions/",))
    drivers = []
    stop = threading.Event()
    try:
        daemon.wait_healthy(timeout=300)
        time.sleep(5)  # warm-in: RSS settles

        def window(seconds: float) -> tuple[float, float]:
            """(predictions per second, median RSS) over `seconds`."""
            start_count, start = len(recorder.messages), time.monotonic()
            samples = []
            while time.monotonic() - start < seconds:
                samples.append(daemon.rss_bytes())
                time.sleep(1.0)
            rate = (len(recorder.messages) - start_count) / (time.monotonic() - start)
            return rate, statistics.median(samples)

        idle_rate, idle_rss = window(15)
        watchers = [Watcher(daemon.base, ["clip", "kitchen"], 2.0, stop) for _ in range(20)]
        for watcher in watchers:
            watcher.start()
        for _ in range(3):
            driver = chromium()
            driver.get(daemon.base + "/")
            drivers.append(driver)
        time.sleep(5)
        watched_rate, watched_rss = window(15)
        stop.set()
        for watcher in watchers:
            watcher.join(10)
        print(
            f"idle: {idle_rate:.2f} predictions/s, RSS {idle_rss / 2**20:.1f} MB; "
            f"watched: {watched_rate:.2f} predictions/s, RSS {watched_rss / 2**20:.1f} MB; "
            f"per watcher {statistics.mean(w.events for w in watchers):.0f} events, "
            f"{statistics.mean(w.jpegs for w in watchers):.0f} JPEGs; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        assert idle_rate > 5  # 8 + 2x4 predictions/s configured
        assert watched_rate >= 0.9 * idle_rate
        assert watched_rss <= 1.1 * idle_rss
        for watcher in watchers:  # the watchers really watched
            assert not watcher.errors, watcher.errors[:3]
            assert watcher.events >= 0.5 * idle_rate * 15 and watcher.jpegs >= 20
        for driver in drivers:
            text = driver.find_element("id", "live").text
            assert text.startswith("live") and int(text.split()[2]) > 50, text
        assert get(f"{daemon.base}/healthz", auth=False)[0] == 200
    finally:
        stop.set()
        for driver in drivers:
            quit_chromium(driver)
        recorder.close()
        daemon.stop()
