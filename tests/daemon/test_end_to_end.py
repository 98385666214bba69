"""The whole daemon in-process, observed through a real SUB socket on 127.0.0.1."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_support import MODEL, OTHER_MODEL, make_config
from edgebnn.daemon.config import PACKAGE_DATA, ConfigError
from edgebnn.daemon.groups import read_indices
from edgebnn.daemon.mqtt_config import default_device
from edgebnn.daemon.stats import ONLINE, RECONNECTING

import edgebnn

PREDICTION_KEYS = {
    "schema",
    "device",
    "camera",
    "seq",
    "captured_at",
    "published_at",
    "inference_ms",
    "model",
    "model_fallback",
    "top",
    "groups",
}


def check_prediction(p: dict, camera: str, top_k: int, groups: set[str]) -> None:
    assert set(p) == PREDICTION_KEYS
    assert p["schema"] == 2 and p["camera"] == camera
    assert p["device"] == default_device()  # the host name: make_config sets no device
    assert isinstance(p["seq"], int) and p["seq"] >= 1
    assert 0 < p["captured_at"] <= p["published_at"] <= time.time() + 1
    assert p["inference_ms"] > 0
    assert p["model"] == MODEL.split(":", 1)[1] or p["model"] == MODEL
    assert p["model_fallback"] is False
    assert 1 <= len(p["top"]) <= top_k
    scores = [t["score"] for t in p["top"]]
    assert scores == sorted(scores, reverse=True)
    for t in p["top"]:
        assert set(t) == {"index", "label", "score"}
        assert 0 <= t["index"] < 1000 and isinstance(t["label"], str) and 0 <= t["score"] <= 1
    assert set(p["groups"]) == groups


def test_predictions_from_a_video_and_an_image_folder(
    tmp_path, video, image_dir, start_daemon, recorder
) -> None:
    config = make_config(
        tmp_path,
        [
            {"name": "clip", "source": str(video), "realtime": False, "max_fps": 40},
            {"name": "stills", "source": str(image_dir), "max_fps": 40},
        ],
        predictions={"top_k": 3},
    )
    endpoint = config.publish.endpoints[0]
    rec = recorder(endpoint)
    running = start_daemon(config)
    running.wait_ready()
    assert rec.wait_for(
        lambda r: (
            len(r.of("predictions/clip/")) >= 5
            and len(r.of("predictions/stills/")) >= 5
            and any(
                all(s["cameras"][c]["processed"] >= 1 for c in ("clip", "stills"))
                for s in r.of("stats/")
            )
        )
    )
    assert running.stop() == 0
    for camera in ("clip", "stills"):  # the last messages: the cameras went offline
        assert rec.wait_for(lambda r, c=camera: r.of(f"status/{c}/")[-1]["state"] == "offline")

    for camera in ("clip", "stills"):
        preds = rec.of(f"predictions/{camera}/")
        for p in preds:
            check_prediction(p, camera, 3, {"dog", "cat", "low"})
        seqs = [p["seq"] for p in preds]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        statuses = rec.of(f"status/{camera}/")
        assert any(s["state"] == ONLINE for s in statuses)
        assert statuses[-1]["state"] == "offline" and statuses[-1]["reason"] == "daemon stopping"

    # The folder holds one photo: recompute every number from the engine itself.
    net = edgebnn.load(MODEL)
    probs = net.predict(cv2.imread(str(image_dir / "chelsea.jpg")))
    dogs = sorted(set(read_indices(PACKAGE_DATA / "groups" / "dogs.txt")))
    cats = sorted(set(read_indices(PACKAGE_DATA / "groups" / "cats.txt")))
    expected_groups = {
        "dog": float(probs[dogs].sum()),
        "cat": float(probs[cats].sum()),
        "low": float(probs[:100].sum()),
    }
    best = np.argsort(-probs)[:3]
    for p in rec.of("predictions/stills/"):
        assert [t["index"] for t in p["top"]] == [int(i) for i in best]
        assert [t["label"] for t in p["top"]] == [net.labels[i] for i in best]
        for t in p["top"]:
            assert t["score"] == pytest.approx(float(probs[t["index"]]), abs=1e-5)
        for name, value in expected_groups.items():
            assert p["groups"][name] == pytest.approx(value, abs=1e-5)

    stats = rec.of("stats/")[-1]
    assert stats["schema"] == 2 and stats["version"] == edgebnn.__version__
    assert stats["device"] == default_device() and stats["mqtt"] is None
    assert stats["model"]["name"] == net.name
    assert stats["rss_bytes"] > 10 * 2**20 and stats["uptime_s"] > 0
    for camera in ("clip", "stills"):
        cam = stats["cameras"][camera]
        assert cam["processed"] >= 1 and cam["captured"] >= cam["processed"]
        assert cam["inference_ms_p50"] > 0 and cam["inference_ms_p95"] >= cam["inference_ms_p50"]
        assert {"fps", "capture_fps", "skipped", "failed", "reconnects", "state"} <= set(cam)


def test_camera_loss_and_recovery_leave_other_cameras_alone(
    tmp_path, video, image_dir, start_daemon, recorder
) -> None:
    config = make_config(
        tmp_path,
        [
            {
                "name": "clip",
                "source": str(video),
                "realtime": False,
                "max_fps": 30,
                "backoff": {"initial": 0.05, "max": 0.2},
            },
            {"name": "stills", "source": str(image_dir), "max_fps": 30},
        ],
    )
    rec = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    running.wait_ready()
    assert rec.wait_for(lambda r: len(r.of("predictions/clip/")) >= 3)
    away = video.with_name("away.avi")
    video.rename(away)
    assert rec.wait_for(
        lambda r: any(
            s["state"] == RECONNECTING and "cannot open" in s["reason"]
            for s in r.of("status/clip/")
        )
    )
    stills_before = len(rec.of("predictions/stills/"))
    assert rec.wait_for(lambda r: len(r.of("predictions/stills/")) >= stills_before + 5)
    clip_count = len(rec.of("predictions/clip/"))
    away.rename(video)
    assert rec.wait_for(lambda r: len(r.of("predictions/clip/")) >= clip_count + 3)
    states = [s["state"] for s in rec.of("status/clip/")]
    assert states.index(RECONNECTING) < len(states) - 1 - states[::-1].index(ONLINE)
    seqs = [p["seq"] for p in rec.of("predictions/clip/")]
    assert seqs == sorted(set(seqs))  # one sequence across the loss
    assert running.daemon.stats["clip"].reconnects >= 1
    assert running.daemon.stats["stills"].reconnects == 0
    assert running.stop() == 0


def test_reload_changes_cameras_without_restarting_the_others(
    tmp_path, video, image_dir, start_daemon, recorder
) -> None:
    cameras = [
        {"name": "stills", "source": str(image_dir), "max_fps": 30},
        {"name": "clip", "source": str(video), "realtime": False, "max_fps": 30},
    ]
    config = make_config(tmp_path, cameras)
    rec = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    running.wait_ready()
    daemon = running.daemon
    assert rec.wait_for(lambda r: len(r.of("predictions/stills/")) >= 2)
    stills_worker = daemon.workers["stills"]
    old_net = daemon.pipeline.runtime.net

    # Remove 'clip', add 'clip2', change top_k: 'stills' keeps its thread.
    new = make_config(
        tmp_path,
        [cameras[0], {**cameras[1], "name": "clip2"}],
        publish={"endpoints": list(config.publish.endpoints)},
        predictions={"top_k": 2},
    )
    assert daemon.reload(new)
    assert daemon.workers["stills"] is stills_worker
    assert set(daemon.workers) == {"stills", "clip2"}
    assert daemon.pipeline.runtime.net is old_net
    assert rec.wait_for(lambda r: len(r.of("predictions/clip2/")) >= 2)
    assert any(s["reason"] == "removed from the configuration" for s in rec.of("status/clip/"))
    assert rec.wait_for(lambda r: len(r.of("predictions/stills/")[-1]["top"]) == 2)

    # A model change: the new model is loaded and warmed before the old one goes.
    other = make_config(
        tmp_path,
        [cameras[0]],
        model=OTHER_MODEL,
        publish={"endpoints": list(config.publish.endpoints)},
    )
    assert daemon.reload(other)
    assert daemon.pipeline.runtime.net is not old_net
    assert daemon.pipeline.runtime.net.input_shape == (32, 32, 3)
    assert rec.wait_for(lambda r: r.of("predictions/stills/")[-1]["model"] != old_net.name)
    seqs = [p["seq"] for p in rec.of("predictions/stills/")]
    assert seqs == sorted(set(seqs))
    assert running.stop() == 0


def test_invalid_reload_keeps_the_running_config(
    tmp_path, image_dir, start_daemon, recorder, caplog
) -> None:
    path = tmp_path / "edgebnn.yaml"
    endpoint = make_config(tmp_path, [{"name": "a", "source": "0"}]).publish.endpoints[0]
    path.write_text(
        f"model: {MODEL}\ncameras:\n  - name: stills\n    source: {image_dir}\n"
        f"    max_fps: 20\npublish: {{endpoints: ['{endpoint}']}}\n"
    )
    from edgebnn.daemon.config import load_config

    rec = recorder(endpoint)
    running = start_daemon(load_config(path))
    running.wait_ready()
    assert rec.wait_for(lambda r: len(r.of("predictions/stills/")) >= 2)
    before = running.daemon.config
    good = path.read_text()
    path.write_text(good.replace("    max_fps: 20\n", "    max_fps: 20\n    colour: blue\n"))
    assert running.daemon.reload() is False
    assert running.daemon.config is before
    assert "cameras[0].colour: unknown key" in caplog.text
    assert ":6: " in caplog.text  # the YAML line of the bad key
    count = len(rec.of("predictions/stills/"))
    assert rec.wait_for(lambda r: len(r.of("predictions/stills/")) >= count + 3)
    # Group indices beyond the model are refused at reload as well.
    path.write_text(good + "groups: {x: [5000]}\n")
    assert running.daemon.reload() is False
    assert "beyond the model" in caplog.text
    assert running.stop() == 0


def test_a_subscriber_that_never_reads_cannot_grow_memory(tmp_path, recorder) -> None:
    """Publish far more than fits: the queue stays bounded, sends never block, and what a
    stalled peer can hold is limited by the high-water marks, not by what was sent."""
    import zmq
    from edgebnn.daemon.config import PublishConfig
    from edgebnn.daemon.publish import Publisher
    from edgebnn.engine.host import rss_bytes

    endpoint = make_config(tmp_path, [{"name": "a", "source": "0"}]).publish.endpoints[0]
    context = zmq.Context()
    publisher = Publisher(PublishConfig(endpoints=(endpoint,), send_hwm=5, queue_size=50), context)
    publisher.start()
    stalled = context.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 5)
    stalled.setsockopt(zmq.RCVBUF, 65536)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.connect(endpoint)
    time.sleep(0.3)  # let the subscription reach the publisher
    blob = "x" * 20_000
    rss_before = rss_bytes()
    total = 5000  # 100 MB if anything kept them all
    max_queued = 0
    for i in range(total):
        publisher.publish(b"predictions/a/", {"seq": i, "blob": blob})
        max_queued = max(max_queued, publisher.queued())
    deadline = time.monotonic() + 20
    while publisher.sent + publisher.dropped < total and time.monotonic() < deadline:
        time.sleep(0.01)
    assert publisher.sent + publisher.dropped == total  # the sender thread never blocked
    assert max_queued <= 50
    growth = rss_bytes() - rss_before
    received = 0
    while stalled.poll(200):
        stalled.recv_multipart()
        received += 1
    assert received < total / 5, received  # the rest were dropped for this peer
    assert growth < 40 * 2**20, growth
    publisher.stop()
    stalled.close(linger=0)
    context.term()


def test_prometheus_metrics(tmp_path, image_dir, start_daemon, recorder) -> None:
    config = make_config(
        tmp_path,
        [
            {
                "name": "stills",
                "source": str(image_dir),
                "max_fps": 30,
                "regions": [{"name": "top", "box": [0, 0, 1, 0.5]}],
            }
        ],
        metrics={"enabled": True, "port": 0},
    )
    rec = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    running.wait_ready()
    assert rec.wait_for(lambda r: len(r.of("predictions/stills/top/")) >= 3)
    host, port = running.daemon.metrics.address
    assert host == "127.0.0.1"
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'edgebnn_camera_online{camera="stills"} 1.0' in body
    processed = [
        line
        for line in body.splitlines()
        if line.startswith('edgebnn_frames_processed_total{camera="stills"}')
    ]
    assert processed and float(processed[0].split()[-1]) >= 3
    assert 'edgebnn_inference_seconds{camera="stills",quantile="0.5"}' in body
    assert "edgebnn_resident_memory_bytes" in body
    region = [
        line
        for line in body.splitlines()
        if line.startswith('edgebnn_region_frames_processed_total{camera="stills",region="top"}')
    ]
    assert region and float(region[0].split()[-1]) >= 3
    assert 'edgebnn_region_frames_skipped_total{camera="stills",region="top"}' in body
    assert running.stop() == 0


def test_group_beyond_model_classes_is_a_config_exit(tmp_path, image_dir, start_daemon) -> None:
    config = make_config(
        tmp_path, [{"name": "s", "source": str(image_dir)}], groups={"huge": [1000]}
    )
    running = start_daemon(config)
    running.thread.join(60)
    assert running.code == 78


def test_missing_builtin_model_is_a_config_exit(tmp_path, image_dir, start_daemon) -> None:
    config = make_config(tmp_path, [{"name": "s", "source": str(image_dir)}], model="no-such-model")
    running = start_daemon(config)
    running.thread.join(60)
    assert running.code == 78


def test_fallback_model_is_loud_everywhere(
    tmp_path, image_dir, start_daemon, recorder, caplog
) -> None:
    config = make_config(
        tmp_path,
        [{"name": "s", "source": str(image_dir), "max_fps": 20}],
        model="no-such-model",
        fallback_model=MODEL,
    )
    rec = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    running.wait_ready()
    assert rec.wait_for(
        lambda r: len(r.of("predictions/")) >= 2 and len(r.of("stats/")) >= 1, timeout=30
    )
    assert all(p["model_fallback"] is True for p in rec.of("predictions/"))
    assert all(s["model_fallback"] is True for s in rec.of("stats/"))
    status = running.daemon._status_line()
    assert status.startswith("MODEL FALLBACK to d_I64x64x3") and "no-such-model" in status
    assert "labels are meaningless" in caplog.text
    assert "MODEL FALLBACK: predictions come from" in caplog.text
    assert running.stop() == 0


def test_config_error_object_for_dict_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        make_config(tmp_path, [{"name": "x"}])


def test_a_source_stuck_in_a_read_is_replaced(
    tmp_path, image_dir, video, start_daemon, recorder
) -> None:
    """A FIFO without a writer blocks cv2.imread for ever, as a hung device read does: the
    daemon reports the camera, kills its capture process, starts a fresh one, and the
    others carry on."""
    import os

    stuck = tmp_path / "stuck"
    stuck.mkdir()
    (stuck / "a.jpg").write_bytes((image_dir / "chelsea.jpg").read_bytes())
    fifo = stuck / "b.jpg"
    os.mkfifo(fifo)
    config = make_config(
        tmp_path,
        [
            {
                "name": "stuck",
                "source": str(stuck),
                "read_timeout": 0.3,
                "max_fps": 50,
                "backoff": {"initial": 0.1, "max": 0.3},
            },
            {"name": "clip", "source": str(video), "max_fps": 30},
        ],
    )
    rec = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    try:
        running.wait_ready()
        assert rec.wait_for(lambda r: any("stuck" in s["reason"] for s in r.of("status/stuck/")))
        worker = running.daemon.workers["stuck"]
        first = worker.pid
        # The replacement process reads a.jpg again (a fresh frame), then blocks again.
        assert rec.wait_for(lambda r: len(r.of("predictions/stuck/")) >= 2)
        assert rec.wait_for(lambda r: worker.restarts >= 1 and worker.pid not in (None, first))
        assert running.daemon.stats["stuck"].reconnects >= 1
        clip_count = len(rec.of("predictions/clip/"))
        assert rec.wait_for(lambda r: len(r.of("predictions/clip/")) >= clip_count + 5)
        assert running.stop() == 0
    finally:
        for _ in range(50):  # release the readers still blocked on the FIFO
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                break
            os.close(fd)


def test_reload_moves_the_publisher_to_a_new_endpoint(
    tmp_path, image_dir, start_daemon, recorder
) -> None:
    cameras = [{"name": "stills", "source": str(image_dir), "max_fps": 30}]
    config = make_config(tmp_path, cameras)
    running = start_daemon(config)
    running.wait_ready()
    moved = make_config(tmp_path, cameras)
    assert moved.publish.endpoints != config.publish.endpoints
    old = recorder(config.publish.endpoints[0])
    assert old.wait_for(lambda r: len(r.of("predictions/")) >= 2)
    assert running.daemon.reload(moved)
    new = recorder(moved.publish.endpoints[0])
    assert new.wait_for(lambda r: len(r.of("predictions/stills/")) >= 3)
    seqs = [p["seq"] for p in old.of("predictions/") + new.of("predictions/")]
    assert seqs == sorted(set(seqs))  # one camera, one sequence, across the move
    assert running.stop() == 0
