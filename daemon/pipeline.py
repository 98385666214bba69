"""The single inference thread: takes the newest frame of each camera in turn, classifies
it (the whole frame and each region, in the order regions.Scheduler gives), and hands the
prediction message to the publisher.

Numba's parallel kernels must be driven from one thread, so this thread is the only one
that ever calls the model (warm-up included); a new model from a reload is warmed up
here too, between two frames, before the old one is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from edgebnn.daemon.frames import Frame, FrameBoard
from edgebnn.daemon.groups import GroupScorer
from edgebnn.daemon.publish import SCHEMA, prediction_topic
from edgebnn.daemon.regions import CameraPlan, Scheduler, Unit
from edgebnn.daemon.stats import CameraStats
from edgebnn.kernels.placement import set_enabled as set_placement
from edgebnn.kernels.threads import set_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """Everything inference needs, swapped as one unit on reload."""

    net: Any  # edgebnn.Network
    scorer: GroupScorer
    top_k: int
    min_score: float
    threads: int | None
    region_scorers: dict[tuple[str, str], GroupScorer] = field(default_factory=dict)
    #: Why the configured model is not the one running (``fallback_model`` took over), or
    #: None; every message then says ``model_fallback: true``.
    fallback_reason: str | None = None
    #: Frames wake the worker threads on cores of their own (:mod:`edgebnn.kernels.placement`).
    bind_threads: bool = True

    def scorer_for(self, unit: Unit) -> GroupScorer:
        """The region's own groups where it has them, else the daemon's."""
        camera, region = unit.key
        if region is None:
            return self.scorer
        return self.region_scorers.get((camera, region), self.scorer)


class Pipeline:
    """Owns the inference thread."""

    def __init__(
        self,
        board: FrameBoard,
        publish: Callable[[bytes, dict[str, Any]], bool],
        camera_stats: Callable[[str], CameraStats | None],
        max_frames: int | None = None,
        report: Callable[[Any], None] | None = None,
    ) -> None:
        self.board = board
        self.report = report  # hears the warm-up's compile progress
        self.publish = publish
        self.camera_stats = camera_stats
        self.max_frames = max_frames
        self.published = 0
        self.warm = threading.Event()  # the first model is compiled and ready
        self.done = threading.Event()  # max_frames reached
        self.error: BaseException | None = None
        self.warmup_seconds: float | None = None
        self.last_published_at: float | None = None  # time.monotonic()
        self.busy_since: float | None = None  # time.monotonic() while a frame is in flight
        self.model_lock = threading.Lock()  # held while the model runs
        self._seq: dict[tuple[str, str | None], int] = {}
        self.scheduler = Scheduler(board, on_skip=self._skipped)
        self._runtime: Runtime | None = None
        self._pending: tuple[Runtime, Future[float]] | None = None
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    @property
    def runtime(self) -> Runtime | None:
        return self._runtime

    def start(self, runtime: Runtime) -> None:
        """Start the thread; it warms the model up, then sets `warm`."""
        self._pending = (runtime, Future())
        self._thread.start()

    def swap(self, runtime: Runtime) -> Future[float]:
        """Install a new runtime between two frames; the future gives warm-up seconds."""
        future: Future[float] = Future()
        with self._pending_lock:
            self._pending = (runtime, future)
        return future

    def configure(self, cameras: list[CameraPlan]) -> None:
        """Set the cameras' regions (at start and on reload)."""
        for plan in cameras:
            stats = self.camera_stats(plan.name)
            if stats is not None:
                with stats.lock:
                    for region in plan.regions:
                        stats.region(region.name)
                    for name in set(stats.regions) - {r.name for r in plan.regions}:
                        del stats.regions[name]
        self.scheduler.configure(cameras)

    def pending(self) -> int:
        """How many (camera, region) units have a frame waiting for inference."""
        return self.scheduler.pending()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end (a frame in flight finishes or is abandoned)."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread

    def _run(self) -> None:
        try:
            self._install_pending()
        except Exception as exc:  # the daemon reports it and exits
            log.debug("warm-up failed", exc_info=True)
            self.error = exc
            self.warm.set()
            return
        self.warm.set()
        try:
            self._serve()
        finally:
            self.scheduler.close()  # every held frame goes back to its capture process

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._pending is not None:
                try:
                    self._install_pending()
                except Exception:  # the future carries it to the reload; the old model stays
                    log.debug("new model rejected", exc_info=True)
            choice = self.scheduler.next(timeout=0.1)
            if choice is None:
                continue
            frame, unit, first = choice
            try:
                if self._stop.is_set():
                    return
                self._process(frame, unit, first)
            finally:
                self.scheduler.finished(frame)  # its shared memory may go back after
            if self.max_frames is not None and self.published >= self.max_frames:
                self.done.set()
                return

    def _install_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        runtime, future = pending
        try:
            current = self._runtime
            seconds = 0.0
            if current is None or runtime.threads != current.threads:
                set_threads(runtime.threads)  # per thread in Numba
            if current is None or runtime.bind_threads != current.bind_threads:
                set_placement(runtime.bind_threads)
            if current is None or runtime.net is not current.net:
                seconds = float(runtime.net.warmup(report=self.report))
                self.warmup_seconds = seconds
        except BaseException as exc:
            future.set_exception(exc)
            raise
        self._runtime = runtime
        future.set_result(seconds)

    def _skipped(self, camera: str, region: str | None, unclassified: bool) -> None:
        stats = self.camera_stats(camera)
        if stats is None:
            return
        with stats.lock:
            if unclassified:
                stats.skipped += 1
                stats.skipped_held += 1
            elif region is not None:
                stats.region(region).missed += 1

    def _process(self, frame: Frame, unit: Unit, first: bool) -> None:
        runtime = self._runtime
        assert runtime is not None
        stats = self.camera_stats(frame.camera)
        self.busy_since = time.monotonic()
        try:
            image = frame.image if unit.region is None else unit.region.crop(frame.image)
            with self.model_lock:
                start = time.perf_counter()
                probabilities = runtime.net.predict(image)
                inference_ms = (time.perf_counter() - start) * 1000.0
        except ValueError as exc:
            if stats is not None:
                stats.add(failed=1)
            where = "" if unit.region is None else f" region {unit.region.name}"
            log.debug("camera %s%s: model rejected a frame: %s", frame.camera, where, exc)
            return
        except Exception:
            if stats is not None:
                stats.add(failed=1)
            log.exception("camera %s: inference failed", frame.camera)
            return
        finally:
            self.busy_since = None
        payload = self.message(frame, unit, runtime, probabilities, inference_ms)
        self.publish(prediction_topic(*unit.key), payload)
        self.published += 1
        self.last_published_at = time.monotonic()
        if stats is not None:
            with stats.lock:
                stats.processed += int(first)
                stats.inference_ms.append(inference_ms)
                if unit.region is not None:
                    region = stats.region(unit.region.name)
                    region.processed += 1
                    region.inference_ms.append(inference_ms)

    def message(
        self,
        frame: Frame,
        unit: Unit,
        runtime: Runtime,
        probabilities: np.ndarray,
        inference_ms: float,
    ) -> dict[str, Any]:
        """The predictions/<camera>/[<region>/] payload (see SCHEMA; published_at is set on
        sending); a region's payload also has `region` and its `box` in pixels."""
        labels = runtime.net.labels
        k = min(runtime.top_k, probabilities.shape[0])
        best = np.argpartition(-probabilities, k - 1)[:k]
        best = best[np.argsort(-probabilities[best], kind="stable")]
        top = [
            {"index": int(i), "label": labels[i], "score": round(float(probabilities[i]), 6)}
            for i in best
            if probabilities[i] >= runtime.min_score
        ]
        seq = self._seq.get(unit.key, 0) + 1
        self._seq[unit.key] = seq
        where: dict[str, Any] = {}
        if unit.region is not None:
            height, width = frame.image.shape[:2]
            where = {"region": unit.region.name, "box": list(unit.region.pixel_box(width, height))}
        return {
            "schema": SCHEMA,
            "camera": frame.camera,
            **where,
            "seq": seq,
            "captured_at": round(frame.captured_at, 6),
            "published_at": None,
            "inference_ms": round(inference_ms, 3),
            "model": runtime.net.name,
            "model_fallback": runtime.fallback_reason is not None,
            "top": top,
            "groups": {
                k: round(v, 6) for k, v in runtime.scorer_for(unit).scores(probabilities).items()
            },
        }
