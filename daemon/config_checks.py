"""Checks of the daemon's configuration, section by section, with defaults filled in.

:class:`Checker` walks parsed YAML and builds the dataclasses of
:mod:`edgebnn.daemon.config_schema`, collecting every problem (with the key path and, from
the YAML, its line) instead of stopping at the first.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgebnn.daemon import groups as group_files
from edgebnn.daemon.camera_config import read_cameras
from edgebnn.daemon.config_schema import (
    CAMERA_NAME,
    LOG_LEVELS,
    ConfigIssue,
    CurveConfig,
    DaemonConfig,
    Group,
    MetricsConfig,
    Path_,
    PublishConfig,
    WatchdogConfig,
    key_path,
)
from edgebnn.daemon.config_values import (
    KINDS,
    MISSING,
    at_least,
    between,
    endpoint_problem,
    is_builtin_model,
    one_of,
    positive,
    show,
)
from edgebnn.daemon.model_options import read_model_options
from edgebnn.daemon.mqtt_config import read_device, read_mqtt
from edgebnn.daemon.viewconfig import read_web

from edgebnn.package_data import PACKAGE_DATA


class Checker:
    """Checks one section at a time, collecting issues instead of stopping at the first."""

    def __init__(self, marks: dict[Path_, int], base_dir: Path, issues: list[ConfigIssue]):
        self.marks = marks
        self.base_dir = base_dir
        self.issues = issues

    def error(self, path: Path_, message: str) -> None:
        line = None
        for n in range(len(path), -1, -1):
            line = self.marks.get(path[:n])
            if line is not None:
                break
        self.issues.append(ConfigIssue(key_path(path), line, message))

    def section(self, path: Path_, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
        """A mapping with only known keys (unknown ones are reported with a suggestion)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping with keys {', '.join(allowed)}; got {show(value)}")
            return {}
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.error((*path, str(key)), f"unknown key{hint}; allowed: {', '.join(allowed)}")
        return value

    def value(
        self,
        path: Path_,
        mapping: dict[Any, Any],
        kind: str,
        default: Any = MISSING,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """One scalar of a given kind ('bool', 'int', 'number', 'str'), optional or required."""
        key = path[-1]
        raw = mapping.get(key, MISSING)
        if raw is MISSING or (raw is None and default is not MISSING):
            if default is MISSING:
                self.error(path, f"required ({KINDS[kind]})")
                return None
            return default
        ok = {
            "bool": isinstance(raw, bool),
            "int": isinstance(raw, int) and not isinstance(raw, bool),
            "number": isinstance(raw, int | float) and not isinstance(raw, bool),
            "str": isinstance(raw, str) and raw != "",
        }[kind]
        if not ok:
            self.error(path, f"must be {KINDS[kind]}; got {show(raw)}")
            return default if default is not MISSING else None
        if check is not None:
            problem = check(raw)
            if problem:
                self.error(path, f"{problem}; got {show(raw)}")
                return default if default is not MISSING else None
        return float(raw) if kind == "number" else raw

    # -- sections

    def daemon(self, data: Any) -> DaemonConfig | None:
        top = self.section(
            (),
            data if data is not None else {},
            (
                "model",
                "fallback_model",
                "preprocessing",
                "labels",
                "threads",
                "bind_threads",
                "predictions",
                "groups",
                "cameras",
                "publish",
                "stats",
                "logging",
                "metrics",
                "watchdog",
                "web",
                "device",
                "mqtt",
            ),
        )
        if data is not None and not isinstance(data, dict):
            return None
        model = self.model(("model",), top, required=False) or DaemonConfig.model
        fallback = self.model(("fallback_model",), top, required=False)
        model_options = read_model_options(self, top)
        threads = self.value(("threads",), top, "int", None, at_least(1))
        bind_threads = self.value(("bind_threads",), top, "bool", True)
        pred = self.section(("predictions",), top.get("predictions"), ("top_k", "min_score"))
        top_k = self.value(("predictions", "top_k"), pred, "int", 5, between(1, 100))
        min_score = self.value(("predictions", "min_score"), pred, "number", 0.0, between(0, 1))
        groups = self.groups(top.get("groups"))
        cameras = read_cameras(self, top.get("cameras", MISSING))
        publish = self.publish(top.get("publish"))
        stats = self.section(("stats",), top.get("stats"), ("interval", "status_interval"))
        stats_interval = self.value(("stats", "interval"), stats, "number", 60.0, positive)
        status_interval = self.value(("stats", "status_interval"), stats, "number", 30.0, positive)
        logs = self.section(("logging",), top.get("logging"), ("level",))
        level = self.value(("logging", "level"), logs, "str", "info", one_of(LOG_LEVELS))
        metrics = self.metrics(top.get("metrics"))
        wd = self.section(
            ("watchdog",), top.get("watchdog"), ("max_frame_age", "ping_while_cameras_offline")
        )
        watchdog = WatchdogConfig(
            self.value(("watchdog", "max_frame_age"), wd, "number", 10.0, positive),
            self.value(("watchdog", "ping_while_cameras_offline"), wd, "bool", True),
        )
        web = read_web(self, top.get("web"))
        device = read_device(self, top)
        group_names = {g.name: None for g in groups}  # the daemon's, then regions' own
        for camera in cameras:
            for region in camera.regions:
                group_names.update(dict.fromkeys(name for name, _ in region.groups or ()))
        mqtt = read_mqtt(self, top, [c.name for c in cameras], list(group_names))
        if self.issues:
            return None
        return DaemonConfig(
            device=device,
            mqtt=mqtt,
            cameras=cameras,
            model=model,
            fallback_model=fallback,
            model_options=model_options,
            threads=threads,
            bind_threads=bind_threads,
            top_k=top_k,
            min_score=min_score,
            groups=groups,
            publish=publish,
            stats_interval=stats_interval,
            status_interval=status_interval,
            log_level=level,
            metrics=metrics,
            watchdog=watchdog,
            web=web,
        )

    def model(self, path: Path_, top: dict[str, Any], required: bool) -> str | None:
        spec = self.value(path, top, "str", MISSING if required else None)
        if spec is None:
            return None
        if is_builtin_model(spec):
            return spec
        resolved = self.base_dir / Path(spec).expanduser()
        if not resolved.is_file():
            self.error(
                path,
                f"model file not found: {resolved}; allowed: a model file "
                "(.ell, .ell.zip, .ebnn, .tflite) or a builtin name such as "
                "'efficientnet-lite0' or 'random:d_I64x64x3...'",
            )
            return None
        return str(resolved)

    def groups(self, raw: Any, where: Path_ = ("groups",)) -> tuple[Group, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, dict):
            self.error(where, f"must be a mapping of group name to classes; got {show(raw)}")
            return ()
        result = []
        for name, spec in raw.items():
            path: Path_ = (*where, str(name))
            if not isinstance(name, str) or not CAMERA_NAME.match(name):
                self.error(path, "group names use letters, digits, '_', '-' and '.'")
                continue
            items = spec if isinstance(spec, list) else [spec]
            indices: list[int] = []
            for i, item in enumerate(items):
                item_path = (*path, i) if isinstance(spec, list) else path
                indices.extend(self.group_item(item_path, item))
            if not indices and not any(
                issue.key.startswith(key_path(path)) for issue in self.issues
            ):
                self.error(path, "group has no class indices")
            result.append(Group(name, group_files.deduplicate(name, indices)))
        return tuple(result)

    def group_item(self, path: Path_, item: Any) -> list[int]:
        allowed = "a class index (281), a range ('151-268'), {file: PATH} or {builtin: dogs|cats}"
        if isinstance(item, int) and not isinstance(item, bool):
            if item < 0:
                self.error(path, f"class index must be >= 0; got {item}")
                return []
            return [item]
        if isinstance(item, str):
            try:
                return group_files.parse_tokens(item)
            except ValueError as exc:
                self.error(path, f"{exc}; allowed: {allowed}")
                return []
        if isinstance(item, dict) and len(item) == 1 and ("file" in item or "builtin" in item):
            key = next(iter(item))
            target = item[key]
            if not isinstance(target, str) or not target:
                self.error((*path, key), f"must be a file name; got {show(target)}")
                return []
            file = (
                PACKAGE_DATA / "groups" / f"{target}.txt"
                if key == "builtin"
                else self.base_dir / Path(target).expanduser()
            )
            try:
                return group_files.read_indices(file)
            except (OSError, ValueError) as exc:
                detail = exc.strerror if isinstance(exc, OSError) else str(exc)
                self.error((*path, key), f"cannot read class indices from {file}: {detail}")
                return []
        self.error(path, f"must be {allowed}; got {show(item)}")
        return []

    def publish(self, raw: Any) -> PublishConfig:
        path: Path_ = ("publish",)
        pub = self.section(path, raw, ("endpoints", "send_hwm", "queue_size", "curve"))
        endpoints = pub.get("endpoints", list(PublishConfig.endpoints))
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not isinstance(endpoints, list) or not endpoints:
            self.error(
                (*path, "endpoints"),
                "must be a non-empty list of ZeroMQ endpoints "
                f"such as tcp://127.0.0.1:5556; got {show(endpoints)}",
            )
            endpoints = []
        for i, endpoint in enumerate(endpoints):
            problem = endpoint_problem(endpoint)
            if problem:
                self.error((*path, "endpoints", i), f"{problem}; got {show(endpoint)}")
        curve = None
        raw_curve = pub.get("curve")
        if raw_curve is not None:
            cpath = (*path, "curve")
            section = self.section(cpath, raw_curve, ("server_secret_key", "allowed_clients"))
            key = self.value((*cpath, "server_secret_key"), section, "str")
            clients = self.value((*cpath, "allowed_clients"), section, "str", None)
            key_file = self.base_dir / Path(key).expanduser() if key else None
            if key_file is not None and not key_file.is_file():
                self.error(
                    (*cpath, "server_secret_key"),
                    f"file not found: {key_file} (create one with `edgebnn keys generate DIR`)",
                )
            clients_dir = self.base_dir / Path(clients).expanduser() if clients else None
            if clients_dir is not None and not clients_dir.is_dir():
                self.error(
                    (*cpath, "allowed_clients"),
                    f"directory of client public keys (*.key) not found: {clients_dir}",
                )
            if key_file is not None:
                curve = CurveConfig(key_file, clients_dir)
        return PublishConfig(
            endpoints=tuple(e for e in endpoints if isinstance(e, str)),
            send_hwm=self.value((*path, "send_hwm"), pub, "int", 20, between(1, 10000)),
            queue_size=self.value((*path, "queue_size"), pub, "int", 100, between(1, 100000)),
            curve=curve,
        )

    def metrics(self, raw: Any) -> MetricsConfig:
        path: Path_ = ("metrics",)
        section = self.section(path, raw, ("enabled", "host", "port"))
        enabled = self.value((*path, "enabled"), section, "bool", False)
        host = self.value((*path, "host"), section, "str", "127.0.0.1")
        port = self.value((*path, "port"), section, "int", 9464, between(0, 65535))
        if enabled:
            try:
                import prometheus_client  # noqa: F401
            except ImportError:
                self.error(
                    (*path, "enabled"), "needs prometheus-client (pip install 'edgebnn[metrics]')"
                )
        return MetricsConfig(enabled, host, port)
