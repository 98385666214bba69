"""What the inference thread runs for a config: the model (or its fallback), the group
scorers and what it classifies of each camera; unchanged parts are reused on a reload."""

from __future__ import annotations

import logging
from typing import Any

from edgebnn.daemon.config import DaemonConfig
from edgebnn.daemon.groups import GroupScorer
from edgebnn.daemon.pipeline import Runtime
from edgebnn.daemon.regions import CameraPlan

import edgebnn

log = logging.getLogger(__name__)


def build_runtime(config: DaemonConfig, current: Runtime | None, running: DaemonConfig) -> Runtime:
    """The runtime for ``config``; ``current`` (built from ``running``, the config in
    force) lends its model and scorers where ``config`` did not change them."""
    if current is not None and (config.model, config.fallback_model, config.model_options) == (
        running.model,
        running.fallback_model,
        running.model_options,
    ):
        net, reason = current.net, current.fallback_reason
    else:
        loaded, reason = load_model(config.model, config.fallback_model)
        net = config.model_options.apply(loaded)
    groups = [(g.name, g.indices) for g in config.groups]
    if current is not None and net is current.net and config.groups == running.groups:
        scorer = current.scorer
    else:
        scorer = GroupScorer(groups, len(net.labels))
    region_groups = own_region_groups(config)
    if current is not None and net is current.net and region_groups == own_region_groups(running):
        region_scorers = current.region_scorers
    else:
        region_scorers = {
            key: GroupScorer(spec, len(net.labels)) for key, spec in region_groups.items()
        }
    return Runtime(
        net,
        scorer,
        config.top_k,
        config.min_score,
        config.threads,
        region_scorers,
        reason,
        config.bind_threads,
    )


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
