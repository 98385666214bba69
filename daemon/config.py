"""The daemon's YAML configuration: load, validate, resolve paths, report precise errors.

Every problem is reported with its key path (``cameras[1].source``), the YAML line and what
is allowed, and all problems are reported at once. Relative paths resolve against the
directory of the config file; ``builtin:`` names refer to data shipped with edgebnn. Only
PyYAML's node marks are used (no schema library), so Debian bookworm's PyYAML 6 suffices.
"""

from __future__ import annotations

import difflib
import glob
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from edgebnn.daemon import groups as group_files
from edgebnn.daemon.mqtt_config import MqttConfig, default_device, read_device, read_mqtt
from edgebnn.daemon.regions import RegionConfig
from edgebnn.daemon.viewconfig import WebConfig, read_regions, read_web

EX_CONFIG = 78  # sysexits.h: configuration error; the systemd unit does not restart on it

PACKAGE_DATA = Path(__file__).resolve().parent.parent / "data"
if not (PACKAGE_DATA / "categories.txt").exists():  # editable install: daemon/ beside src/
    PACKAGE_DATA = Path(__file__).resolve().parent.parent / "src" / "edgebnn" / "data"
SAMPLES_DIR = PACKAGE_DATA / "samples"

SOURCE_KINDS = ("auto", "v4l2", "file", "url", "images", "picamera2")
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
LOG_LEVELS = ("debug", "info", "warning", "error")
CAMERA_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class CameraConfig:
    """One camera: where frames come from and how hard to try."""

    name: str
    kind: str  # v4l2 | file | url | images | picamera2
    source: str | int  # device index, device path, file path, URL, directory or glob
    loop: bool = True
    realtime: bool = True
    max_fps: float | None = None
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    width: int | None = None
    height: int | None = None
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    failures_before_reconnect: int = 5
    full_frame: bool = True  # classify the whole frame (besides any regions)
    regions: tuple[RegionConfig, ...] = ()


@dataclass(frozen=True)
class CurveConfig:
    """CURVE encryption: our secret key file and the allowed clients' public keys."""

    server_secret_key: Path
    allowed_clients: Path | None  # None: any client that knows the server key


@dataclass(frozen=True)
class PublishConfig:
    """The ZeroMQ PUB socket."""

    endpoints: tuple[str, ...] = ("tcp://127.0.0.1:5556",)
    send_hwm: int = 20
    queue_size: int = 100
    curve: CurveConfig | None = None


@dataclass(frozen=True)
class MetricsConfig:
    """The optional Prometheus endpoint."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class WatchdogConfig:
    """When WATCHDOG=1 is sent to systemd."""

    max_frame_age: float = 10.0
    ping_while_cameras_offline: bool = True


@dataclass(frozen=True)
class Group:
    """A named set of class indices whose probabilities are summed."""

    name: str
    indices: tuple[int, ...]


@dataclass(frozen=True)
class DaemonConfig:
    """The whole validated configuration."""

    cameras: tuple[CameraConfig, ...]
    model: str = "random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A"
    fallback_model: str | None = None
    threads: int | None = None
    top_k: int = 5
    min_score: float = 0.0
    groups: tuple[Group, ...] = ()
    publish: PublishConfig = field(default_factory=PublishConfig)
    stats_interval: float = 60.0
    status_interval: float = 30.0
    log_level: str = "info"
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    web: WebConfig = field(default_factory=WebConfig)
    device: str = field(default_factory=default_device)  # in payloads, MQTT topics, HA ids
    mqtt: MqttConfig | None = None  # None: MQTT is off
    path: Path | None = None


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where it is and what is wrong."""

    key: str
    line: int | None
    message: str

    def format(self, filename: str | None = None) -> str:
        """``file:line: key: message``, leaving out what is unknown."""
        where = ":".join(x for x in (filename, str(self.line) if self.line else None) if x)
        parts = [p for p in (where, self.key) if p]
        return ": ".join([*parts, self.message])


class ConfigError(Exception):
    """An invalid configuration, with every problem found."""

    def __init__(self, issues: list[ConfigIssue], filename: str | None = None) -> None:
        self.issues = issues
        self.filename = filename
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One printable line per problem."""
        return [issue.format(self.filename) for issue in self.issues]


Path_ = tuple[str | int, ...]


def key_path(path: Path_) -> str:
    """('cameras', 1, 'source') -> 'cameras[1].source'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def load_config(path: str | Path) -> DaemonConfig:
    """Read and validate a config file; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue("", None, f"cannot read: {exc.strerror}")], str(path)
        ) from exc
    return parse_config(text, base_dir=path.resolve().parent, filename=str(path))


def parse_config(text: str, base_dir: Path, filename: str | None = None) -> DaemonConfig:
    """Validate YAML text; relative paths resolve against ``base_dir``."""
    data, marks, issues = _compose(text)
    reader = _Reader(marks, base_dir, issues)
    config = None
    if not issues:
        config = reader.daemon(data)
    if reader.issues or config is None:
        raise ConfigError(reader.issues, filename)
    path = Path(filename).resolve() if filename else None
    return DaemonConfig(**{**config.__dict__, "path": path})


def config_from_dict(data: dict[str, Any], base_dir: Path) -> DaemonConfig:
    """Validate an already parsed mapping (used by `edgebnn demo` and tests)."""
    reader = _Reader({}, base_dir, [])
    config = reader.daemon(data)
    if reader.issues or config is None:
        raise ConfigError(reader.issues)
    return config


# ---------------------------------------------------------------- YAML with line numbers


def _compose(text: str) -> tuple[Any, dict[Path_, int], list[ConfigIssue]]:
    """Parse YAML, returning data plus the line of every key and list item."""
    if "\t" in text:
        line = text[: text.index("\t")].count("\n") + 1
        if text.splitlines()[line - 1].lstrip(" ").startswith("\t"):
            return None, {}, [ConfigIssue("", line, "tab used for indentation; use spaces")]
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        return None, {}, [ConfigIssue("", line, f"not valid YAML: {exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return None, {}, [ConfigIssue("", None, f"not valid YAML: {exc}")]
    marks: dict[Path_, int] = {}
    issues: list[ConfigIssue] = []
    if node is not None:
        marks[()] = node.start_mark.line + 1
        _walk(node, (), marks, issues)
    return data, marks, issues


def _walk(node: yaml.Node, path: Path_, marks: dict[Path_, int], issues: list[ConfigIssue]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in seen:
                issues.append(ConfigIssue(key_path((*path, key)), line, "duplicate key"))
            seen.add(key)
            marks[(*path, key)] = line
            _walk(value_node, (*path, key), marks, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            marks[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), marks, issues)


# ---------------------------------------------------------------- validation


_MISSING = object()


class _Reader:
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
            self.error(
                path, f"must be a mapping with keys {', '.join(allowed)}; got {_show(value)}"
            )
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
        mapping: dict[str, Any],
        kind: str,
        default: Any = _MISSING,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """One scalar of a given kind ('bool', 'int', 'number', 'str'), optional or required."""
        key = path[-1]
        raw = mapping.get(key, _MISSING)
        if raw is _MISSING or (raw is None and default is not _MISSING):
            if default is _MISSING:
                self.error(path, f"required ({_KINDS[kind]})")
                return None
            return default
        ok = {
            "bool": isinstance(raw, bool),
            "int": isinstance(raw, int) and not isinstance(raw, bool),
            "number": isinstance(raw, int | float) and not isinstance(raw, bool),
            "str": isinstance(raw, str) and raw != "",
        }[kind]
        if not ok:
            self.error(path, f"must be {_KINDS[kind]}; got {_show(raw)}")
            return default if default is not _MISSING else None
        if check is not None:
            problem = check(raw)
            if problem:
                self.error(path, f"{problem}; got {_show(raw)}")
                return default if default is not _MISSING else None
        return float(raw) if kind == "number" else raw

    # -- sections

    def daemon(self, data: Any) -> DaemonConfig | None:
        top = self.section(
            (),
            data if data is not None else {},
            (
                "model",
                "fallback_model",
                "threads",
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
        threads = self.value(("threads",), top, "int", None, _at_least(1))
        pred = self.section(("predictions",), top.get("predictions"), ("top_k", "min_score"))
        top_k = self.value(("predictions", "top_k"), pred, "int", 5, _between(1, 100))
        min_score = self.value(("predictions", "min_score"), pred, "number", 0.0, _between(0, 1))
        groups = self.groups(top.get("groups"))
        cameras = self.cameras(top.get("cameras", _MISSING))
        publish = self.publish(top.get("publish"))
        stats = self.section(("stats",), top.get("stats"), ("interval", "status_interval"))
        stats_interval = self.value(("stats", "interval"), stats, "number", 60.0, _positive)
        status_interval = self.value(("stats", "status_interval"), stats, "number", 30.0, _positive)
        logs = self.section(("logging",), top.get("logging"), ("level",))
        level = self.value(("logging", "level"), logs, "str", "info", _one_of(LOG_LEVELS))
        metrics = self.metrics(top.get("metrics"))
        wd = self.section(
            ("watchdog",), top.get("watchdog"), ("max_frame_age", "ping_while_cameras_offline")
        )
        watchdog = WatchdogConfig(
            self.value(("watchdog", "max_frame_age"), wd, "number", 10.0, _positive),
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
            threads=threads,
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
        spec = self.value(path, top, "str", _MISSING if required else None)
        if spec is None:
            return None
        if is_builtin_model(spec):
            return spec
        resolved = self.base_dir / Path(spec).expanduser()
        if not resolved.is_file():
            self.error(
                path,
                f"model file not found: {resolved}; allowed: a model file "
                "(.ell, .ell.zip, .ebnn) or a builtin name such as "
                "'efficientnet-lite0' or 'random:d_I64x64x3...'",
            )
            return None
        return str(resolved)

    def groups(self, raw: Any, where: Path_ = ("groups",)) -> tuple[Group, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, dict):
            self.error(where, f"must be a mapping of group name to classes; got {_show(raw)}")
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
                self.error((*path, key), f"must be a file name; got {_show(target)}")
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
        self.error(path, f"must be {allowed}; got {_show(item)}")
        return []

    def cameras(self, raw: Any) -> tuple[CameraConfig, ...]:
        if raw is _MISSING or raw is None:
            self.error(("cameras",), "required: a list of cameras, each with name and source")
            return ()
        if not isinstance(raw, list) or not raw:
            self.error(("cameras",), f"must be a non-empty list of cameras; got {_show(raw)}")
            return ()
        cameras = []
        names: set[str] = set()
        for index, item in enumerate(raw):
            camera = self.camera(("cameras", index), item)
            if camera is None:
                continue
            if camera.name in names:
                self.error(("cameras", index, "name"), f"duplicate camera name {camera.name!r}")
            names.add(camera.name)
            cameras.append(camera)
        return tuple(cameras)

    def camera(self, path: Path_, raw: Any) -> CameraConfig | None:
        keys = (
            "name",
            "source",
            "kind",
            "loop",
            "realtime",
            "max_fps",
            "open_timeout",
            "read_timeout",
            "width",
            "height",
            "backoff",
            "failures_before_reconnect",
            "full_frame",
            "regions",
        )
        cam = self.section(path, raw, keys)
        if not cam and not isinstance(raw, dict):
            if raw is None:
                self.error(path, "empty camera; needs name and source")
            return None
        start = len(self.issues)
        name = self.value(
            (*path, "name"),
            cam,
            "str",
            check=lambda v: (
                None
                if CAMERA_NAME.match(v)
                else "use 1-64 letters, digits, '_', '-' or '.' (it is part of topics)"
            ),
        )
        kind = self.value((*path, "kind"), cam, "str", "auto", _one_of(SOURCE_KINDS))
        source = self.source((*path, "source"), cam.get("source", _MISSING), kind)
        backoff = self.section((*path, "backoff"), cam.get("backoff"), ("initial", "max"))
        initial = self.value((*path, "backoff", "initial"), backoff, "number", 1.0, _positive)
        maximum = self.value((*path, "backoff", "max"), backoff, "number", 60.0, _positive)
        if initial and maximum and maximum < initial:
            self.error((*path, "backoff", "max"), f"must be >= backoff.initial ({initial})")
        width = self.value((*path, "width"), cam, "int", None, _at_least(1))
        height = self.value((*path, "height"), cam, "int", None, _at_least(1))
        regions = read_regions(self, (*path, "regions"), cam.get("regions"), width, height)
        full_frame = self.value((*path, "full_frame"), cam, "bool", True)
        if not full_frame and not regions and "regions" not in cam:
            self.error(
                (*path, "full_frame"), "false needs regions: the camera would classify nothing"
            )
        camera = CameraConfig(
            name=name,
            kind=source[0] if source else "file",
            source=source[1] if source else "",
            loop=self.value((*path, "loop"), cam, "bool", True),
            realtime=self.value((*path, "realtime"), cam, "bool", True),
            max_fps=self.value((*path, "max_fps"), cam, "number", None, _positive),
            open_timeout=self.value((*path, "open_timeout"), cam, "number", 10.0, _positive),
            read_timeout=self.value((*path, "read_timeout"), cam, "number", 5.0, _positive),
            width=width,
            height=height,
            backoff_initial=initial,
            backoff_max=maximum,
            failures_before_reconnect=self.value(
                (*path, "failures_before_reconnect"), cam, "int", 5, _at_least(1)
            ),
            full_frame=full_frame,
            regions=regions,
        )
        return camera if len(self.issues) == start else None

    def source(self, path: Path_, raw: Any, kind: str | None) -> tuple[str, str | int] | None:
        allowed = (
            "allowed: a V4L2 index (0) or device (/dev/video0), a video file, an "
            "rtsp://, http:// URL, an image directory or glob, 'picamera2[:N]' or "
            "'builtin:samples'"
        )
        if raw is _MISSING or raw is None:
            self.error(path, f"required; {allowed}")
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | str) or raw == "":
            self.error(path, f"must be a number or a string; got {_show(raw)}; {allowed}")
            return None
        kind = kind or "auto"
        if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
            if kind not in ("auto", "v4l2", "picamera2"):
                self.error(path, f"a number is a device index, not a {kind} source")
                return None
            index = int(raw)
            return ("picamera2" if kind == "picamera2" else "v4l2", index)
        text = raw
        if text == "builtin:samples":
            return ("images", str(SAMPLES_DIR))
        if text.startswith("picamera2") or kind == "picamera2":
            match = re.fullmatch(r"picamera2(?::(\d+))?", text)
            if not match:
                self.error(path, "picamera2 sources are written 'picamera2' or 'picamera2:N'")
                return None
            return ("picamera2", int(match.group(1) or 0))
        if "://" in text or kind == "url":
            scheme = text.split("://", 1)[0].lower()
            if scheme not in URL_SCHEMES or text.endswith("://"):
                self.error(path, f"unsupported URL; allowed schemes: {', '.join(URL_SCHEMES)}")
                return None
            return ("url", text)
        if text.startswith("/dev/") or kind == "v4l2":
            return ("v4l2", text)
        resolved = self.base_dir / Path(text).expanduser()
        if glob.has_magic(text):
            if not resolved.parent.is_dir():
                self.error(path, f"directory of the image pattern not found: {resolved.parent}")
                return None
            return ("images", str(resolved))
        if kind in ("auto", "images") and resolved.is_dir():
            return ("images", str(resolved))
        if not resolved.exists():
            self.error(path, f"file not found: {resolved}; {allowed}")
            return None
        if kind == "images" or (kind == "auto" and resolved.suffix.lower() in IMAGE_SUFFIXES):
            return ("images", str(resolved))
        return ("file", str(resolved))

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
                f"such as tcp://127.0.0.1:5556; got {_show(endpoints)}",
            )
            endpoints = []
        for i, endpoint in enumerate(endpoints):
            problem = endpoint_problem(endpoint)
            if problem:
                self.error((*path, "endpoints", i), f"{problem}; got {_show(endpoint)}")
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
            send_hwm=self.value((*path, "send_hwm"), pub, "int", 20, _between(1, 10000)),
            queue_size=self.value((*path, "queue_size"), pub, "int", 100, _between(1, 100000)),
            curve=curve,
        )

    def metrics(self, raw: Any) -> MetricsConfig:
        path: Path_ = ("metrics",)
        section = self.section(path, raw, ("enabled", "host", "port"))
        enabled = self.value((*path, "enabled"), section, "bool", False)
        host = self.value((*path, "host"), section, "str", "127.0.0.1")
        port = self.value((*path, "port"), section, "int", 9464, _between(0, 65535))
        if enabled:
            try:
                import prometheus_client  # noqa: F401
            except ImportError:
                self.error(
                    (*path, "enabled"), "needs prometheus-client (pip install 'edgebnn[metrics]')"
                )
        return MetricsConfig(enabled, host, port)


# ---------------------------------------------------------------- helpers


_KINDS = {
    "bool": "true or false",
    "int": "an integer",
    "number": "a number",
    "str": "a non-empty string",
}


def is_builtin_model(spec: str) -> bool:
    """Names handed to edgebnn.load as they are (not file paths)."""
    return spec.startswith("random:") or ("/" not in spec and "." not in spec)


def endpoint_problem(endpoint: Any) -> str | None:
    """Why a string is not a bindable ZeroMQ endpoint, or None."""
    if not isinstance(endpoint, str):
        return "must be a string such as tcp://127.0.0.1:5556"
    if endpoint.startswith(("ipc://", "inproc://")) and len(endpoint.split("://", 1)[1]) > 0:
        return None
    match = re.fullmatch(r"tcp://(\[[^\]]+\]|[^:\[\]]+):(\d+|\*)", endpoint)
    if not match:
        return "must be tcp://HOST:PORT, ipc://PATH or inproc://NAME"
    if match.group(2) != "*" and not 0 < int(match.group(2)) < 65536:
        return "port must be 1-65535"
    return None


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for endpoints reachable only from this machine."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name or a host name


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def _at_least(low: int) -> Callable[[int], str | None]:
    return lambda value: None if value >= low else f"must be >= {low}"


def _between(low: float, high: float) -> Callable[[float], str | None]:
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


def _one_of(options: tuple[str, ...]) -> Callable[[str], str | None]:
    return lambda value: None if value in options else f"must be one of {', '.join(options)}"
