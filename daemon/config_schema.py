"""The daemon's configuration as frozen dataclasses, and how a problem in it is reported.

What each key means is in ``config/edgebnn.yaml``; reading and checking YAML is
:mod:`edgebnn.daemon.config` and :mod:`edgebnn.daemon.config_checks`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from edgebnn.daemon.model_options import ModelOptions
from edgebnn.daemon.mqtt_config import MqttConfig, default_device
from edgebnn.daemon.regions import RegionConfig
from edgebnn.daemon.viewconfig import WebConfig

EX_CONFIG = 78  # sysexits.h: configuration error; the systemd unit does not restart on it


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
    model: str = "efficientnet-lite0"  # random weights only when a config names them
    fallback_model: str | None = None
    model_options: ModelOptions = field(default_factory=ModelOptions)
    threads: int | None = None
    bind_threads: bool = True  # frames wake the worker threads on cores of their own
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
