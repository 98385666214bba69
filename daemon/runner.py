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
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import zmq
from edgebnn.daemon.capture import CameraProcess
from edgebnn.daemon.config import (
    EX_CONFIG,
    ConfigError,
    DaemonConfig,
    is_loopback_endpoint,
    load_config,
)
from edgebnn.daemon.events import EventHub
from edgebnn.daemon.frames import FrameBoard, FrameSource
from edgebnn.daemon.groups import GroupScorer
from edgebnn.daemon.logs import set_level, under_systemd
from edgebnn.daemon.mqtt import MqttSetupError
from edgebnn.daemon.mqtt_bridge import MqttBridge
from edgebnn.daemon.pipeline import Pipeline, Runtime
from edgebnn.daemon.publish import (
    STATS_TOPIC,
    CurveUnavailable,
    Publisher,
    PublishError,
    status_topic,
)
from edgebnn.daemon.regions import CameraPlan
from edgebnn.daemon.reports import Reports
from edgebnn.daemon.sdnotify import Notifier
from edgebnn.daemon.stats import (
    OFFLINE,
    ONLINE,
    CameraStats,
    RateMeter,
)
from edgebnn.engine.host import fix_mmap_threshold
from edgebnn.engine.progress import ProgressBar, ProgressLog
from edgebnn.engine.warmup import WarmupProgress

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
        self.workers: dict[str, CameraProcess] = {}
        self.publisher: Publisher | None = None
        self.mqtt: MqttBridge | None = None
        self.pipeline: Pipeline | None = None
        self.metrics: Any = None
        self.web: Any = None  # web.WebServer when the web view is on
        self.hub: EventHub | None = None
        self.started_at = time.time()
        self.ready = threading.Event()  # set once READY=1 has been sent
        self.ready_at = 0.0
        self.reloads = 0  # applied reloads
        self.rejected_reloads = 0
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        self.reports = Reports(self.stats, self.started_at)
        self._web_rates = RateMeter()

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
            runtime = self._runtime(config, None)
        except (edgebnn.ModelError, ValueError) as exc:
            log.error("cannot use the configured model: %s", exc)
            self.notifier.status(f"cannot use the configured model: {exc}")
            return EX_CONFIG
        try:
            self.publisher = self._start_publisher(config)
        except CurveUnavailable as exc:
            log.error("%s", exc)
            return EX_CONFIG
        except PublishError as exc:
            log.error("%s", exc)
            return EX_ERROR
        if config.mqtt is not None:
            try:
                self._start_mqtt(config, runtime.net.name)
            except MqttSetupError as exc:
                log.error("%s", exc)
                return EX_CONFIG
        if config.metrics.enabled:
            try:
                self._start_metrics(config)
            except OSError as exc:
                log.error(
                    "cannot serve metrics on %s:%s: %s",
                    config.metrics.host,
                    config.metrics.port,
                    exc,
                )
                return EX_ERROR
        self.pipeline = Pipeline(
            self.board, self._publish, self.stats.get, self.max_frames, self._compile_reporter()
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
            self._start_camera(camera)
        self.pipeline.configure(camera_plans(config))
        if config.web.enabled:
            try:
                self._start_web(config)
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
        for worker in self.workers.values():
            worker.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        for name, worker in self.workers.items():
            worker.join(max(0.0, deadline - time.monotonic() - 0.5))
            stats = self.stats[name]
            stats.set_state(OFFLINE, "daemon stopping")
            self._publish_status(name)
        if self.pipeline is not None and not self.pipeline.join(
            max(0.05, deadline - time.monotonic() - 0.3)
        ):
            log.info("dropping the frame in flight")
        if self.mqtt is not None:
            self.mqtt.stop()  # `offline` on the availability topic, then disconnect
        if self.publisher is not None:
            self.publisher.stop(timeout=max(0.05, deadline - time.monotonic()))
        if self.metrics is not None:
            self.metrics.stop()
        if self.web is not None:
            self.web.stop()
        if self._own_context:
            self.context.term()  # waits at most CLOSE_LINGER_MS for the last messages
        self.notifier.close()

    def _compile_reporter(self) -> Callable[[WarmupProgress], None]:
        """Compile progress: a bar on a terminal, else a log line every few seconds (the
        journal under systemd); `systemctl status` shows the same line."""
        shown = (
            ProgressBar(sys.stderr)
            if sys.stderr.isatty() and not under_systemd()
            else ProgressLog(log)
        )

        def report(progress: WarmupProgress) -> None:
            shown(progress)
            self.notifier.status(progress.line())

        report.interval = shown.interval  # type: ignore[attr-defined]
        return report

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
        runtime = self._runtime(new, self.pipeline.runtime)
        if new.publish != old.publish:
            self._restart_publisher(new)
        elif self.publisher is not None:
            self.publisher.reload_clients()
        if new.metrics != old.metrics:
            if self.metrics is not None:
                self.metrics.stop()
                self.metrics = None
            if new.metrics.enabled:
                self._start_metrics(new)
        current = self.pipeline.runtime
        if not (
            runtime.net is current.net
            and runtime.scorer is current.scorer
            and runtime.region_scorers is current.region_scorers
            and (runtime.top_k, runtime.min_score, runtime.threads)
            == (current.top_k, current.min_score, current.threads)
        ):
            future = self.pipeline.swap(runtime)
            while True:
                try:
                    future.result(timeout=STARTUP_EXTENSION / 3)
                    break
                except FutureTimeout:
                    self.notifier.extend_timeout(STARTUP_EXTENSION)
        set_level(new.log_level)
        old_cameras = {c.name: c for c in old.cameras}
        new_cameras = {c.name: c for c in new.cameras}
        for name, camera in old_cameras.items():
            if new_cameras.get(name) != camera:
                self._stop_camera(name, removed=name not in new_cameras)
        for name, camera in new_cameras.items():
            if old_cameras.get(name) != camera:
                self._start_camera(camera)
        self.pipeline.configure(camera_plans(new))
        if new.web != old.web:
            if self.web is not None:
                self.web.stop()
                self.web = None
            if new.web.enabled:
                self._start_web(new)
        self.config = new
        self._apply_mqtt(old, new, runtime.net.name)

    def _runtime(self, config: DaemonConfig, current: Runtime | None) -> Runtime:
        """The runtime for a config, reusing the current model when it did not change."""
        if current is not None and (
            config.model,
            config.fallback_model,
            config.model_options,
        ) == (self.config.model, self.config.fallback_model, self.config.model_options):
            net, reason = current.net, current.fallback_reason
        else:
            loaded, reason = load_model(config.model, config.fallback_model)
            net = config.model_options.apply(loaded)
        groups = [(g.name, g.indices) for g in config.groups]
        if current is not None and net is current.net and config.groups == self.config.groups:
            scorer = current.scorer
        else:
            scorer = GroupScorer(groups, len(net.labels))
        region_groups = own_region_groups(config)
        if (
            current is not None
            and net is current.net
            and region_groups == own_region_groups(self.config)
        ):
            region_scorers = current.region_scorers
        else:
            region_scorers = {
                key: GroupScorer(spec, len(net.labels)) for key, spec in region_groups.items()
            }
        return Runtime(
            net, scorer, config.top_k, config.min_score, config.threads, region_scorers, reason
        )

    # -- parts

    def _start_publisher(self, config: DaemonConfig) -> Publisher:
        publisher = Publisher(config.publish, self.context)
        publisher.start()
        return publisher

    def _restart_publisher(self, new: DaemonConfig) -> None:
        old = self.publisher
        if old is not None:
            old.stop()
        try:
            self.publisher = self._start_publisher(new)
        except PublishError:
            if old is not None:  # put the old socket back before rejecting
                self.publisher = self._start_publisher(self.config)
            raise

    def _start_mqtt(self, config: DaemonConfig, model_name: str) -> None:
        self.mqtt = MqttBridge(config, model_name)
        self.mqtt.start()
        assert config.mqtt is not None
        log.info(
            "MQTT to %s:%d under %s%s",
            config.mqtt.host,
            config.mqtt.port,
            config.mqtt.prefix(config.device),
            " (TLS)" if config.mqtt.tls else "",
        )

    def _apply_mqtt(self, old: DaemonConfig, new: DaemonConfig, model_name: str) -> None:
        """Start, stop or reconfigure MQTT after a reload."""
        if new.mqtt is None:
            if self.mqtt is not None:
                self.mqtt.stop()
                self.mqtt = None
        elif self.mqtt is None:
            self._start_mqtt(new, model_name)
        else:
            self.mqtt.reconfigure(new, model_name)

    def _start_metrics(self, config: DaemonConfig) -> None:
        from edgebnn.daemon.metrics import MetricsServer

        self.metrics = MetricsServer(config.metrics.host, config.metrics.port, self.snapshot)
        self.metrics.start()
        log.info("Prometheus metrics on http://%s:%d/metrics", *self.metrics.address)
        if not is_loopback_endpoint(f"tcp://{config.metrics.host}:1"):
            log.warning(
                "metrics are served unauthenticated on %s: anyone on the network can read them",
                config.metrics.host,
            )

    def _start_web(self, config: DaemonConfig) -> None:
        from edgebnn.daemon.web import DaemonView, serve

        self.hub = self.hub or EventHub()
        for name in list(self.stats):
            self._publish_status(name)  # so the page starts with every camera's state
        view = DaemonView(
            cameras=lambda: self.config.cameras,
            camera_stats=lambda name: s.snapshot() if (s := self.stats.get(name)) else None,
            stats=lambda: self.snapshot(self._web_rates),
            latest_frame=self.latest_frame,
            healthy=self.health,
        )
        self.web = serve(config.web, view, self.hub)

    def _start_camera(self, camera: Any) -> None:
        stats = self.stats.get(camera.name)
        if stats is None:
            stats = self.stats[camera.name] = CameraStats(camera.name)
        source = FrameSource(camera.name)
        self.board.add(source)
        worker = CameraProcess(camera, source, stats, self._publish_status)
        self.workers[camera.name] = worker
        worker.start()

    def _stop_camera(self, name: str, removed: bool) -> None:
        worker = self.workers.pop(name)
        worker.stop()
        self.board.remove(name)
        worker.join(0.5)
        if removed:
            self.stats[name].set_state(OFFLINE, "removed from the configuration")
            self._publish_status(name)
            del self.stats[name]
            if self.hub is not None:
                self.hub.forget(name)
            if self.web is not None:
                self.web.snapshots.forget(name)

    # -- messages (what they say is :class:`Reports`' job)

    def _publish(self, topic: bytes, payload: dict[str, Any]) -> bool:
        """Every message goes out here: ZeroMQ, the web view's hub and MQTT (none waits)."""
        payload["device"] = self.config.device
        if self.hub is not None:
            self.hub.offer(topic, payload)
        if self.mqtt is not None:
            self.mqtt.forward(topic, payload)
        publisher = self.publisher
        return publisher.publish(topic, payload) if publisher is not None else False

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
        dropped = self.publisher.dropped if self.publisher else 0
        mqtt = self.mqtt.snapshot() if self.mqtt is not None else None
        snapshot = self.reports.snapshot(net, dropped, rates, mqtt)
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


def camera_plans(config: DaemonConfig) -> list[CameraPlan]:
    """What the inference thread classifies of each camera."""
    return [CameraPlan(c.name, c.full_frame, c.regions) for c in config.cameras]


def own_region_groups(config: DaemonConfig) -> dict[tuple[str, str], Any]:
    """{(camera, region): groups} for the regions that have groups of their own."""
    return {
        (c.name, r.name): r.groups
        for c in config.cameras
        for r in c.regions
        if r.groups is not None
    }


def load_model(spec: str, fallback: str | None) -> tuple[Any, str | None]:
    """(edgebnn.load(spec), None), or (the fallback model, why) when the configured model
    cannot be loaded and the config names a ``fallback_model``."""
    try:
        return edgebnn.load(spec), None
    except edgebnn.ModelError as exc:
        if not fallback:
            raise
        reason = f"model {spec} is not available ({exc})"
        log.warning("%s; running the fallback model %s instead", reason, fallback)
        if fallback.startswith("random:"):
            log.warning("the fallback model has random weights: its labels are meaningless")
        return edgebnn.load(fallback), reason


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
