"""The daemon: wires config, cameras, the inference thread and the publisher together,
and runs the main loop (signals, reload, stats, status, systemd notifications).

Signal handlers only set flags; all the work happens in the main loop.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import zmq
from edgebnn.daemon.camera_set import CameraSet
from edgebnn.daemon.capture import CameraProcess
from edgebnn.daemon.compile_report import compile_reporter
from edgebnn.daemon.config import (
    EX_CONFIG,
    ConfigError,
    DaemonConfig,
    load_config,
)
from edgebnn.daemon.events import EventHub
from edgebnn.daemon.frames import FrameBoard
from edgebnn.daemon.logs import set_level
from edgebnn.daemon.model_runtime import build_runtime, camera_plans
from edgebnn.daemon.mqtt import MqttSetupError
from edgebnn.daemon.mqtt_bridge import MqttBridge
from edgebnn.daemon.outlets import Outlets
from edgebnn.daemon.pipeline import Pipeline
from edgebnn.daemon.publish import STATS_TOPIC, CurveUnavailable, PublishError, status_topic
from edgebnn.daemon.reports import Reports
from edgebnn.daemon.sdnotify import Notifier
from edgebnn.daemon.servers import Servers
from edgebnn.daemon.stats import (
    ONLINE,
    CameraStats,
    RateMeter,
)
from edgebnn.daemon.web import DaemonView, WebServer
from edgebnn.engine.host import fix_mmap_threshold

import edgebnn

log = logging.getLogger(__name__)

EX_OK, EX_ERROR = 0, 1
STARTUP_EXTENSION = 30.0  # seconds asked of systemd at a time while compiling


class Daemon:
    """One running daemon. `run()` blocks until stopped and returns the exit code."""

    def __init__(
        self,
        config: DaemonConfig,
        *,
        notifier: Notifier | None = None,
        max_frames: int | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier(environ={})
        self.max_frames = max_frames
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.board = FrameBoard()
        self.stats: dict[str, CameraStats] = {}
        self.outlets = Outlets(self.context)
        self.pipeline: Pipeline | None = None
        self.started_at = time.time()
        self.ready = threading.Event()  # set once READY=1 has been sent
        self.ready_at = 0.0
        self.reloads = 0  # applied reloads
        self.rejected_reloads = 0
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        self.reports = Reports(self.stats, self.started_at)
        self.cameras = CameraSet(self.board, self.stats, self._publish_status)
        self._web_rates = RateMeter()
        view = DaemonView(
            cameras=lambda: self.config.cameras,
            camera_stats=lambda name: s.snapshot() if (s := self.stats.get(name)) else None,
            stats=lambda: self.snapshot(self._web_rates),
            latest_frame=self.latest_frame,
            healthy=self.health,
        )
        self.servers = Servers(self.snapshot, view, self._web_hub)

    @property
    def workers(self) -> dict[str, CameraProcess]:
        """The capture process of each running camera."""
        return self.cameras.workers

    @property
    def metrics(self) -> Any:
        """The Prometheus endpoint (metrics.MetricsServer), or None."""
        return self.servers.metrics

    @property
    def web(self) -> WebServer | None:
        """The web view's server, or None."""
        return self.servers.web

    @property
    def mqtt(self) -> MqttBridge | None:
        """The MQTT bridge, or None."""
        return self.outlets.mqtt

    @property
    def hub(self) -> EventHub | None:
        """The web view's event hub, or None."""
        return self.outlets.hub

    # -- control, from any thread or a signal handler

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        self._reload.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads (main thread only)."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    # -- life cycle

    def run(self) -> int:
        """Start everything, loop until stopped, shut down; returns the exit code."""
        try:
            code = self._start()
            if code is None:
                self._loop()
                code = EX_OK
            return code
        finally:
            self._shutdown()

    def _start(self) -> int | None:
        config = self.config
        set_level(config.log_level)
        fix_mmap_threshold()  # before the capture and inference threads start (steady RSS)
        self.notifier.status("loading model")
        try:
            runtime = build_runtime(config, None, config)
        except (edgebnn.ModelError, ValueError) as exc:
            log.error("cannot use the configured model: %s", exc)
            self.notifier.status(f"cannot use the configured model: {exc}")
            return EX_CONFIG
        try:
            self.outlets.start_publisher(config)
        except CurveUnavailable as exc:
            log.error("%s", exc)
            return EX_CONFIG
        except PublishError as exc:
            log.error("%s", exc)
            return EX_ERROR
        if config.mqtt is not None:
            try:
                self.outlets.start_mqtt(config, runtime.net.name)
            except MqttSetupError as exc:
                log.error("%s", exc)
                return EX_CONFIG
        if config.metrics.enabled:
            try:
                self.servers.start_metrics(config)
            except OSError as exc:
                log.error(
                    "cannot serve metrics on %s:%s: %s",
                    config.metrics.host,
                    config.metrics.port,
                    exc,
                )
                return EX_ERROR
        self.pipeline = Pipeline(
            self.board,
            self._publish,
            self.stats.get,
            self.max_frames,
            compile_reporter(self.notifier, log),
        )
        self.notifier.extend_timeout(STARTUP_EXTENSION)
        self.notifier.status(f"compiling kernels for {runtime.net.name}")
        self.pipeline.start(runtime)
        extended_at = time.monotonic()
        while not self.pipeline.warm.wait(0.2):
            if self._stop.is_set():
                log.info("stopped while the model was warming up")
                return EX_OK
            if time.monotonic() - extended_at > STARTUP_EXTENSION / 3:
                extended_at = time.monotonic()
                self.notifier.extend_timeout(STARTUP_EXTENSION)
        if self.pipeline.error is not None:
            log.error("model warm-up failed: %s", self.pipeline.error)
            return EX_CONFIG if isinstance(self.pipeline.error, ValueError) else EX_ERROR
        log.info(
            "model %s ready (%d classes, warm-up %.2f s)",
            runtime.net.name,
            len(runtime.net.labels),
            self.pipeline.warmup_seconds or 0.0,
        )
        for camera in config.cameras:
            self.cameras.start(camera)
        self.pipeline.configure(camera_plans(config))
        if config.web.enabled:
            try:
                self.servers.start_web(config)
            except (OSError, ValueError) as exc:
                log.error(
                    "cannot serve the web view on %s:%s: %s", config.web.host, config.web.port, exc
                )
                return EX_ERROR
        self.ready_at = time.monotonic()
        self.notifier.ready(status=self._status_line())
        self.ready.set()
        return None

    def _loop(self) -> None:
        assert self.pipeline is not None
        now = time.monotonic()
        next_stats = now + self.config.stats_interval
        next_status = now + self.config.status_interval
        next_status_line = now + 5.0
        watchdog_every = self.notifier.watchdog_interval
        next_watchdog = now
        while True:
            timeout = (
                min(
                    next_stats,
                    next_status,
                    next_status_line,
                    next_watchdog if watchdog_every else float("inf"),
                )
                - time.monotonic()
            )
            self._wake.wait(max(0.0, min(timeout, 0.5)))
            self._wake.clear()
            if self._stop.is_set() or self.pipeline.done.is_set():
                return
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            now = time.monotonic()
            if watchdog_every and now >= next_watchdog:
                next_watchdog = now + watchdog_every
                if self.frames_flowing():
                    self.notifier.watchdog()
            if now >= next_status:
                next_status = now + self.config.status_interval
                for name in list(self.stats):
                    self._publish_status(name)
            if now >= next_status_line:
                next_status_line = now + 5.0
                self.notifier.status(self._status_line())
            if now >= next_stats:
                next_stats = now + self.config.stats_interval
                self._publish_stats()

    def _shutdown(self) -> None:
        self.notifier.stopping()
        deadline = time.monotonic() + 1.5
        self.cameras.signal_stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        self.cameras.join_all(deadline - 0.5)
        if self.pipeline is not None and not self.pipeline.join(
            max(0.05, deadline - time.monotonic() - 0.3)
        ):
            log.info("dropping the frame in flight")
        self.outlets.stop(max(0.05, deadline - time.monotonic()))
        self.servers.stop()
        if self._own_context:
            self.context.term()  # waits at most CLOSE_LINGER_MS for the last messages
        self.notifier.close()

    # -- reload

    def reload(self, config: DaemonConfig | None = None) -> bool:
        """Re-read the config (or use `config`) and apply it; False if rejected."""
        self.notifier.reloading()
        try:
            if config is None:
                if self.config.path is None:
                    log.warning("reload ignored: the daemon was not started from a config file")
                    return False
                config = load_config(self.config.path)
            self._apply(config)
        except ConfigError as exc:
            self.rejected_reloads += 1
            log.error("reload rejected, the running configuration stays:")
            for line in exc.lines():
                log.error("  %s", line)
            return False
        except (edgebnn.ModelError, ValueError, PublishError, OSError) as exc:
            self.rejected_reloads += 1
            log.error("reload rejected, the running configuration stays: %s", exc)
            return False
        except Exception:  # e.g. a compiler error while warming a new model up
            self.rejected_reloads += 1
            log.exception("reload rejected, the running configuration stays")
            return False
        finally:
            self.notifier.ready(status=self._status_line())
        self.reloads += 1
        log.info("configuration reloaded")
        return True

    def _apply(self, new: DaemonConfig) -> None:
        assert self.pipeline is not None and self.pipeline.runtime is not None
        old = self.config
        runtime = build_runtime(new, self.pipeline.runtime, old)
        if new.publish != old.publish:
            self.outlets.restart_publisher(new, old)
        elif self.outlets.publisher is not None:
            self.outlets.publisher.reload_clients()
        self.servers.apply(old, new)  # a port that cannot be bound rejects the reload here
        current = self.pipeline.runtime
        if not (
            runtime.net is current.net
            and runtime.scorer is current.scorer
            and runtime.region_scorers is current.region_scorers
            and (runtime.top_k, runtime.min_score, runtime.threads, runtime.bind_threads)
            == (current.top_k, current.min_score, current.threads, current.bind_threads)
        ):
            future = self.pipeline.swap(runtime)
            while True:
                try:
                    future.result(timeout=STARTUP_EXTENSION / 3)
                    break
                except FutureTimeout:
                    self.notifier.extend_timeout(STARTUP_EXTENSION)
        set_level(new.log_level)
        for name in self.cameras.reconfigure(old.cameras, new.cameras):
            if self.hub is not None:
                self.hub.forget(name)
            self.servers.forget_camera(name)
        self.pipeline.configure(camera_plans(new))
        self.config = new
        self.outlets.apply_mqtt(new, runtime.net.name)

    def _web_hub(self) -> EventHub:
        """The hub the web view reads, made when it first starts; every camera's state is
        published to it so the page starts complete."""
        self.outlets.hub = self.outlets.hub or EventHub()
        for name in list(self.stats):
            self._publish_status(name)
        return self.outlets.hub

    # -- messages (what they say is :class:`Reports`' job)

    def _publish(self, topic: bytes, payload: dict[str, Any]) -> bool:
        """Every message goes out here (:class:`Outlets`), marked with the device name."""
        return self.outlets.publish(self.config.device, topic, payload)

    def _publish_status(self, camera: str) -> None:
        payload = self.reports.status(camera)
        if payload is not None:
            self._publish(status_topic(camera), payload)

    def _publish_stats(self) -> None:
        snapshot = self.snapshot(self.reports.stats_rates)
        self._publish(STATS_TOPIC, snapshot)
        log.info("%s", self.reports.stats_line(snapshot))
        reason = self._fallback_reason()
        if reason is not None:
            log.warning(
                "MODEL FALLBACK: predictions come from %s: %s", snapshot["model"]["name"], reason
            )

    def snapshot(self, rates: RateMeter | None = None) -> dict[str, Any]:
        """The stats/ payload (also the source of the Prometheus metrics)."""
        runtime = self.pipeline.runtime if self.pipeline is not None else None
        net = runtime.net if runtime is not None else None
        mqtt = self.mqtt.snapshot() if self.mqtt is not None else None
        snapshot = self.reports.snapshot(net, self.outlets.dropped, rates, mqtt)
        snapshot["model_fallback"] = self._fallback_reason() is not None
        return snapshot

    def _fallback_reason(self) -> str | None:
        """Why the configured model is not the one running, or None."""
        runtime = self.pipeline.runtime if self.pipeline is not None else None
        return runtime.fallback_reason if runtime is not None else None

    def _status_line(self) -> str:
        """STATUS= text for `systemctl status` (it starts with MODEL FALLBACK while the
        config's fallback_model runs)."""
        line = self.reports.status_line()
        reason = self._fallback_reason()
        if reason is not None:
            assert self.pipeline is not None and self.pipeline.runtime is not None
            line = f"MODEL FALLBACK to {self.pipeline.runtime.net.name}: {reason}; {line}"
        return line

    # -- health

    def frames_flowing(self) -> bool:
        """Whether WATCHDOG=1 is deserved: a prediction was published recently, or (if
        configured) every camera is offline and nothing waits for inference."""
        assert self.pipeline is not None
        now = time.monotonic()
        last = max(self.pipeline.last_published_at or 0.0, self.ready_at)
        if now - last <= self.config.watchdog.max_frame_age:
            return True
        if self.config.watchdog.ping_while_cameras_offline:
            idle = self.pipeline.busy_since is None and self.pipeline.pending() == 0
            return idle and not any(s.state == ONLINE for s in self.stats.values())
        return False

    def latest_frame(self, camera: str) -> Any:
        """Hold a camera's newest frame (a frames.Frame to release), or None."""
        source = self.board.get(camera)
        return source.latest() if source is not None else None

    def health(self) -> tuple[bool, str]:
        """For /healthz: ready and predictions published within watchdog.max_frame_age."""
        if not self.ready.is_set() or self.pipeline is None:
            return False, "starting"
        if self.frames_flowing():
            return True, "predictions flowing"
        age = time.monotonic() - max(self.pipeline.last_published_at or 0.0, self.ready_at)
        return False, f"no prediction for {age:.0f} s"


def run_config_file(path: str | Path, max_frames: int | None = None) -> int:
    """`edgebnn run`: load the config, run the daemon under signal control."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in exc.lines():
            log.error("%s", line)
        return EX_CONFIG
    daemon = Daemon(config, notifier=Notifier(), max_frames=max_frames)
    daemon.install_signal_handlers()
    code = daemon.run()
    # Everything is released (capture processes reaped, sockets closed): exit now. The
    # interpreter's own teardown of Numba, LLVM and OpenCV took 1.3-1.7 s on a loaded
    # 2-core machine, and a frame (or a warm-up) may still be in a Numba kernel; neither
    # may break the 2 s stop promise.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
