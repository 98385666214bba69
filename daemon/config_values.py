"""Checks of single config values: ZeroMQ endpoints, model names, ranges.

Each check returns why a value is wrong (a short phrase the config error quotes), or None.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

#: A key that is not in the YAML at all (None is a key present but empty).
MISSING = object()

#: How a kind of scalar is named in error messages.
KINDS = {
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


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def at_least(low: int) -> Callable[[int], str | None]:
    return lambda value: None if value >= low else f"must be >= {low}"


def between(low: float, high: float) -> Callable[[float], str | None]:
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


def one_of(options: tuple[str, ...]) -> Callable[[str], str | None]:
    return lambda value: None if value in options else f"must be one of {', '.join(options)}"
