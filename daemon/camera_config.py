"""The ``cameras:`` section: each camera's name, source (device, file, URL, image folder,
Picamera2), timeouts, backoff and regions, checked the way :mod:`.config_checks` checks
the rest (every problem with its key path, defaults filled in)."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

from edgebnn.daemon.config_schema import (
    CAMERA_NAME,
    IMAGE_SUFFIXES,
    SOURCE_KINDS,
    URL_SCHEMES,
    CameraConfig,
    Path_,
)
from edgebnn.daemon.config_values import MISSING, at_least, one_of, positive, show
from edgebnn.daemon.viewconfig import Reader, read_regions

from edgebnn.package_data import SAMPLES_DIR


def read_cameras(reader: Reader, raw: Any) -> tuple[CameraConfig, ...]:
    """The ``cameras:`` list: at least one, names unique."""
    if raw is MISSING or raw is None:
        reader.error(("cameras",), "required: a list of cameras, each with name and source")
        return ()
    if not isinstance(raw, list) or not raw:
        reader.error(("cameras",), f"must be a non-empty list of cameras; got {show(raw)}")
        return ()
    cameras = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        camera = read_camera(reader, ("cameras", index), item)
        if camera is None:
            continue
        if camera.name in names:
            reader.error(("cameras", index, "name"), f"duplicate camera name {camera.name!r}")
        names.add(camera.name)
        cameras.append(camera)
    return tuple(cameras)


def read_camera(reader: Reader, path: Path_, raw: Any) -> CameraConfig | None:
    """One camera, or None when it has errors (they are in ``reader.issues``)."""
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
    cam = reader.section(path, raw, keys)
    if not cam and not isinstance(raw, dict):
        if raw is None:
            reader.error(path, "empty camera; needs name and source")
        return None
    start = len(reader.issues)
    name = reader.value(
        (*path, "name"),
        cam,
        "str",
        check=lambda v: (
            None
            if CAMERA_NAME.match(v)
            else "use 1-64 letters, digits, '_', '-' or '.' (it is part of topics)"
        ),
    )
    kind = reader.value((*path, "kind"), cam, "str", "auto", one_of(SOURCE_KINDS))
    source = read_source(reader, (*path, "source"), cam.get("source", MISSING), kind)
    backoff = reader.section((*path, "backoff"), cam.get("backoff"), ("initial", "max"))
    initial = reader.value((*path, "backoff", "initial"), backoff, "number", 1.0, positive)
    maximum = reader.value((*path, "backoff", "max"), backoff, "number", 60.0, positive)
    if initial and maximum and maximum < initial:
        reader.error((*path, "backoff", "max"), f"must be >= backoff.initial ({initial})")
    width = reader.value((*path, "width"), cam, "int", None, at_least(1))
    height = reader.value((*path, "height"), cam, "int", None, at_least(1))
    regions = read_regions(reader, (*path, "regions"), cam.get("regions"), width, height)
    full_frame = reader.value((*path, "full_frame"), cam, "bool", True)
    if not full_frame and not regions and "regions" not in cam:
        reader.error(
            (*path, "full_frame"), "false needs regions: the camera would classify nothing"
        )
    camera = CameraConfig(
        name=name,
        kind=source[0] if source else "file",
        source=source[1] if source else "",
        loop=reader.value((*path, "loop"), cam, "bool", True),
        realtime=reader.value((*path, "realtime"), cam, "bool", True),
        max_fps=reader.value((*path, "max_fps"), cam, "number", None, positive),
        open_timeout=reader.value((*path, "open_timeout"), cam, "number", 10.0, positive),
        read_timeout=reader.value((*path, "read_timeout"), cam, "number", 5.0, positive),
        width=width,
        height=height,
        backoff_initial=initial,
        backoff_max=maximum,
        failures_before_reconnect=reader.value(
            (*path, "failures_before_reconnect"), cam, "int", 5, at_least(1)
        ),
        full_frame=full_frame,
        regions=regions,
    )
    return camera if len(reader.issues) == start else None


def read_source(
    reader: Reader, path: Path_, raw: Any, kind: str | None
) -> tuple[str, str | int] | None:
    """(kind, device index or path or URL) of a camera's ``source``, or None."""
    allowed = (
        "allowed: a V4L2 index (0) or device (/dev/video0), a video file, an "
        "rtsp://, http:// URL, an image directory or glob, 'picamera2[:N]' or "
        "'builtin:samples'"
    )
    if raw is MISSING or raw is None:
        reader.error(path, f"required; {allowed}")
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str) or raw == "":
        reader.error(path, f"must be a number or a string; got {show(raw)}; {allowed}")
        return None
    kind = kind or "auto"
    if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
        if kind not in ("auto", "v4l2", "picamera2"):
            reader.error(path, f"a number is a device index, not a {kind} source")
            return None
        index = int(raw)
        return ("picamera2" if kind == "picamera2" else "v4l2", index)
    text = raw
    if text == "builtin:samples":
        return ("images", str(SAMPLES_DIR))
    if text.startswith("picamera2") or kind == "picamera2":
        match = re.fullmatch(r"picamera2(?::(\d+))?", text)
        if not match:
            reader.error(path, "picamera2 sources are written 'picamera2' or 'picamera2:N'")
            return None
        return ("picamera2", int(match.group(1) or 0))
    if "://" in text or kind == "url":
        scheme = text.split("://", 1)[0].lower()
        if scheme not in URL_SCHEMES or text.endswith("://"):
            reader.error(path, f"unsupported URL; allowed schemes: {', '.join(URL_SCHEMES)}")
            return None
        return ("url", text)
    if text.startswith("/dev/") or kind == "v4l2":
        return ("v4l2", text)
    resolved = reader.base_dir / Path(text).expanduser()
    if glob.has_magic(text):
        if not resolved.parent.is_dir():
            reader.error(path, f"directory of the image pattern not found: {resolved.parent}")
            return None
        return ("images", str(resolved))
    if kind in ("auto", "images") and resolved.is_dir():
        return ("images", str(resolved))
    if not resolved.exists():
        reader.error(path, f"file not found: {resolved}; {allowed}")
        return None
    if kind == "images" or (kind == "auto" and resolved.suffix.lower() in IMAGE_SUFFIXES):
        return ("images", str(resolved))
    return ("file", str(resolved))
