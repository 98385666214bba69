"""The daemon's YAML configuration: load it, keep each key's line, report precise errors.

Every problem is reported with its key path (``cameras[1].source``), the YAML line and what
is allowed, and all problems are reported at once. Relative paths resolve against the
directory of the config file; ``builtin:`` names refer to data shipped with edgebnn. Only
PyYAML's node marks are used (no schema library), so Debian bookworm's PyYAML 6 suffices.

The dataclasses are :mod:`.config_schema`, the checks :mod:`.config_checks` and
:mod:`.config_values`; their public names are re-exported here, the one module callers
import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from edgebnn.daemon.config_checks import Checker
from edgebnn.daemon.config_schema import (
    CAMERA_NAME,
    EX_CONFIG,
    IMAGE_SUFFIXES,
    LOG_LEVELS,
    SOURCE_KINDS,
    URL_SCHEMES,
    CameraConfig,
    ConfigError,
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
from edgebnn.daemon.config_values import endpoint_problem, is_builtin_model, is_loopback_endpoint

from edgebnn.package_data import PACKAGE_DATA, SAMPLES_DIR

__all__ = [
    "CAMERA_NAME",
    "EX_CONFIG",
    "IMAGE_SUFFIXES",
    "LOG_LEVELS",
    "PACKAGE_DATA",
    "SAMPLES_DIR",
    "SOURCE_KINDS",
    "URL_SCHEMES",
    "CameraConfig",
    "ConfigError",
    "ConfigIssue",
    "CurveConfig",
    "DaemonConfig",
    "Group",
    "MetricsConfig",
    "PublishConfig",
    "WatchdogConfig",
    "config_from_dict",
    "endpoint_problem",
    "is_builtin_model",
    "is_loopback_endpoint",
    "key_path",
    "load_config",
    "parse_config",
]


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
    reader = Checker(marks, base_dir, issues)
    config = None
    if not issues:
        config = reader.daemon(data)
    if reader.issues or config is None:
        raise ConfigError(reader.issues, filename)
    path = Path(filename).resolve() if filename else None
    return DaemonConfig(**{**config.__dict__, "path": path})


def config_from_dict(data: dict[str, Any], base_dir: Path) -> DaemonConfig:
    """Validate an already parsed mapping (used by `edgebnn demo` and tests)."""
    reader = Checker({}, base_dir, [])
    config = reader.daemon(data)
    if reader.issues or config is None:
        raise ConfigError(reader.issues)
    return config


# ---------------------------------------------------------------- YAML with line numbers


def _compose(text: str) -> tuple[Any, dict[Path_, int], list[ConfigIssue]]:
    """Parse YAML, returning data plus the line of every key and list item."""
    if "\t" in text:
        tab_line = text[: text.index("\t")].count("\n") + 1
        if text.splitlines()[tab_line - 1].lstrip(" ").startswith("\t"):
            return None, {}, [ConfigIssue("", tab_line, "tab used for indentation; use spaces")]
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line: int | None = mark.line + 1 if mark else None
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
            marks[path + (key,)] = line
            _walk(value_node, path + (key,), marks, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            marks[path + (index,)] = item.start_mark.line + 1
            _walk(item, path + (index,), marks, issues)
