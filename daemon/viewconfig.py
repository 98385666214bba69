"""The config sections of the web view (`web:`) and of a camera's `regions:`.

Read with the config reader's own helpers, so problems carry the same line numbers and key
paths as the rest of the file.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgebnn.daemon.regions import RegionConfig, box_problem

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
REGION_KEYS = ("name", "box", "groups")
WEB_KEYS = ("enabled", "host", "port", "username", "password_file", "max_fps")


@dataclass(frozen=True)
class WebConfig:
    """The optional web view (off when the section is absent)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    username: str = "edgebnn"
    password_file: Path | None = None
    max_fps: float = 2.0  # images per second per camera at most


class Reader(Protocol):
    """What is used of the config reader."""

    base_dir: Path
    issues: list[Any]

    def error(self, path: tuple[str | int, ...], message: str) -> None: ...

    def section(
        self, path: tuple[str | int, ...], value: Any, allowed: tuple[str, ...]
    ) -> dict[str, Any]: ...

    def value(
        self,
        path: tuple[str | int, ...],
        mapping: dict[str, Any],
        kind: str,
        default: Any = ...,
        check: Any = None,
    ) -> Any: ...

    def groups(self, raw: Any, path: tuple[str | int, ...] = ...) -> tuple[Any, ...]: ...


def read_web(reader: Reader, raw: Any) -> WebConfig:
    """The `web:` section; present (even empty) means on unless `enabled: false`."""
    if raw is None:
        return WebConfig()
    path: tuple[str | int, ...] = ("web",)
    if raw == {} or raw is True:
        return WebConfig(enabled=True)
    section = reader.section(path, raw, WEB_KEYS)
    password = reader.value((*path, "password_file"), section, "str", None)
    password_file = reader.base_dir / Path(password).expanduser() if password else None
    if password_file is not None and not password_file.is_file():
        reader.error((*path, "password_file"), f"file not found: {password_file}")
    elif password_file is not None:
        try:
            if not password_file.read_text(encoding="utf-8").strip("\r\n"):
                reader.error((*path, "password_file"), f"{password_file} is empty")
        except (OSError, UnicodeDecodeError) as exc:
            reader.error((*path, "password_file"), f"cannot read {password_file}: {exc}")
    return WebConfig(
        enabled=reader.value((*path, "enabled"), section, "bool", True),
        host=reader.value((*path, "host"), section, "str", "127.0.0.1"),
        port=reader.value(
            (*path, "port"),
            section,
            "int",
            8080,
            lambda v: None if 0 <= v <= 65535 else "must be between 0 and 65535",
        ),
        username=reader.value(
            (*path, "username"),
            section,
            "str",
            "edgebnn",
            lambda v: None if ":" not in v else "must not contain ':'",
        ),
        password_file=password_file,
        max_fps=reader.value(
            (*path, "max_fps"),
            section,
            "number",
            2.0,
            lambda v: None if 0 < v <= 30 else "must be > 0 and <= 30",
        ),
    )


def read_regions(
    reader: Reader,
    path: tuple[str | int, ...],
    raw: Any,
    width: int | None,
    height: int | None,
) -> tuple[RegionConfig, ...]:
    """A camera's `regions:` list: unique names, boxes inside the frame where the frame
    size is configured, optional groups of their own."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        reader.error(path, f"must be a list of {{name, box: [x, y, w, h]}}; got {raw!r}"[:120])
        return ()
    regions: list[RegionConfig] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        rpath = (*path, index)
        section = reader.section(rpath, item, REGION_KEYS)
        if not isinstance(item, dict):
            if item is None:
                reader.error(rpath, "empty region; needs name and box")
            continue
        start = len(reader.issues)
        name = reader.value(
            (*rpath, "name"),
            section,
            "str",
            check=lambda v: (
                None
                if NAME.match(v)
                else "use 1-64 letters, digits, '_', '-' or '.' (a topic level)"
            ),
        )
        if name is not None and name in names:
            reader.error((*rpath, "name"), f"duplicate region name {name!r}")
        names.add(name)
        box = section.get("box")
        if box is None:
            reader.error((*rpath, "box"), "required: [x, y, width, height] in fractions or pixels")
            continue
        problem, pixels = box_problem(box, width, height)
        if problem:
            reader.error((*rpath, "box"), f"{problem}; got {box!r}")
        groups = None
        if "groups" in section:
            groups = tuple(
                (g.name, g.indices) for g in reader.groups(section["groups"], (*rpath, "groups"))
            )
        if len(reader.issues) == start:
            x, y, w, h = (float(v) for v in box)  # four numbers: box_problem checked
            regions.append(RegionConfig(name, (x, y, w, h), pixels, groups))
    return tuple(regions)


def is_loopback_host(host: str) -> bool:
    """True for a host name or address reachable only from this machine."""
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
