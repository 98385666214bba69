"""Category groups: named sets of ImageNet class indices whose probabilities are summed.

ELL's "dogs vs cats" tutorial idea: 1000 classes are too fine for most uses, so a group
such as ``dog`` (118 breeds) gets one score, the sum of its class probabilities.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")


def parse_tokens(text: str) -> list[int]:
    """Indices from '281', '151-268' (inclusive) or several separated by commas or spaces."""
    indices: list[int] = []
    for token in re.split(r"[,\s]+", text.strip()):
        if not token:
            continue
        match = _TOKEN.match(token)
        if not match:
            raise ValueError(f"not a class index or range: {token!r}")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        if high < low:
            raise ValueError(f"range goes backwards: {token!r}")
        indices.extend(range(low, high + 1))
    return indices


def read_indices(path: Path) -> list[int]:
    """Indices listed in a text file (one or more per line, '#' starts a comment)."""
    indices: list[int] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        content = line.split("#", 1)[0]
        try:
            indices.extend(parse_tokens(content))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return indices


def deduplicate(name: str, indices: Iterable[int]) -> tuple[int, ...]:
    """Sorted unique indices; repeated ones are logged at debug level (ELL's dog list has one)."""
    seen: set[int] = set()
    repeated: list[int] = []
    for index in indices:
        if index in seen:
            repeated.append(index)
        seen.add(index)
    if repeated:
        log.debug("group %s: ignoring repeated class indices %s", name, sorted(set(repeated)))
    return tuple(sorted(seen))


class GroupScorer:
    """Sums class probabilities per group; built once per (groups, model) pair."""

    def __init__(self, groups: Sequence[tuple[str, Sequence[int]]], num_classes: int) -> None:
        for name, indices in groups:
            bad = [i for i in indices if i >= num_classes]
            if bad:
                raise ValueError(
                    f"group {name!r}: class indices {bad[:5]} are beyond the model's "
                    f"{num_classes} classes"
                )
        self.names = [name for name, _ in groups]
        self._indices = [np.asarray(indices, dtype=np.intp) for _, indices in groups]

    def scores(self, probabilities: np.ndarray) -> dict[str, float]:
        """{group name: summed probability}."""
        return {
            name: float(probabilities[idx].sum(dtype=np.float64))
            for name, idx in zip(self.names, self._indices, strict=True)
        }
