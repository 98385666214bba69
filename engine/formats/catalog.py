"""The ELL gallery catalog shipped with the package: list, filter and resolve model names.

``catalog.json`` has one entry per gallery file (158): name, file, path in ELL-models, URL,
sha256, size, whether it is still on ELL-models' master, and for most the ILSVRC2012
top-1/top-5 and Raspberry Pi seconds per frame. A name may appear twice (a current and an
archived copy). The seed model's original name resolves to its renamed file (spec 1.1):
``d_I256x256x3NCMNBMNBMNBMNBMNBMNC1A`` -> ``d_I256x256x3CMBMBMBMBMBMC1AS``.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebnn.engine.errors import ModelError

from edgebnn import package_data

_NAME = re.compile(
    r"^(?P<prefix>[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*?)_I(?P<size>\d+)x(?P<cols>\d+)x3(?P<arch>[A-Z0-9]+)"
    r"(?P<suffix>_v\d+)?$"
)


@dataclass(frozen=True)
class Entry:
    """One gallery file."""

    name: str
    file: str
    path_in_repo: str
    url: str
    sha256: str
    size: int
    present_on_master: bool
    top1: float | None = None
    top5: float | None = None
    secs_per_frame_pi3: float | None = None
    input_size: int | None = None

    @property
    def series(self) -> str:
        """``d``, ``dr``, ``v``, ... for the CNTK-trained models; ``other`` for the named ones."""
        m = _NAME.match(self.name)
        return m.group("prefix").split("_")[0] if m else "other"


def load_catalog(path: str | Path | None = None) -> list[Entry]:
    """The packaged catalog, or the JSON list at ``path`` (same fields)."""
    try:
        if path is None:
            text = package_data.read_text("catalog.json")
        else:
            text = Path(path).read_text("utf-8")
        raw = json.loads(text)
        return [_entry(item) for item in raw]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelError(
            f"cannot read the model catalog ({exc})", path=str(path or "catalog.json")
        ) from None


def _entry(item: dict[str, Any]) -> Entry:
    shape = item.get("input_shape")
    size = int(shape[0]) if shape else None
    m = _NAME.match(item["name"])
    if size is None and m:
        size = int(m.group("size"))
    pi3 = item.get("secs_per_frame_pi3", item.get("secs_per_frame_pi3_64"))
    return Entry(
        name=str(item["name"]),
        file=str(item["file"]),
        path_in_repo=str(item["path_in_repo"]),
        url=str(item["url"]),
        sha256=str(item["sha256"]).lower(),
        size=int(item["size"]),
        present_on_master=bool(item["present_on_master"]),
        top1=item.get("ilsvrc2012_top1"),
        top5=item.get("ilsvrc2012_top5"),
        secs_per_frame_pi3=pi3,
        input_size=size,
    )


def select(entries: list[Entry], series: str | None = None, input_size: int | None = None,
           include_archived: bool = False) -> list[Entry]:  # fmt: skip
    """Entries of a series and input size; one per name (the current copy) unless archived."""
    chosen = [
        e for e in entries
        if (series is None or e.series == series) and (input_size is None or e.input_size == input_size)
    ]  # fmt: skip
    if include_archived:
        return chosen
    best: dict[str, Entry] = {}
    for e in chosen:
        if e.name not in best or (e.present_on_master and not best[e.name].present_on_master):
            best[e.name] = e
    return [e for e in best.values() if e.present_on_master]


def renamed(name: str) -> str | None:
    """ELL-models' 2017-10-16 rename: batch-norm ``N`` letters dropped, ``S`` appended."""
    m = _NAME.match(name)
    if not m or m.group("suffix"):
        return None
    arch = m.group("arch").replace("N", "")
    arch = arch if arch.endswith("S") else arch + "S"
    new = f"{m.group('prefix')}_I{m.group('size')}x{m.group('cols')}x3{arch}"
    return new if new != name else None


def resolve(name: str, entries: list[Entry] | None = None) -> tuple[Entry, str | None]:
    """The entry to fetch for ``name`` and, when it was renamed, a note saying so."""
    entries = load_catalog() if entries is None else entries
    name = re.sub(r"\.ell(\.zip)?$", "", name.strip())
    matches = [e for e in entries if e.name == name]
    current = [e for e in matches if e.present_on_master]
    if current:
        return current[0], None
    new = renamed(name)
    if new:
        moved = [e for e in entries if e.name == new and e.present_on_master]
        if moved:
            return moved[0], f"{name} was renamed {new} in ELL-models; fetching {moved[0].file}"
    if matches:
        raise ModelError(f"{name} is no longer on ELL-models' master branch (archived) and has no "
                         "current replacement", field="name")  # fmt: skip
    close = difflib.get_close_matches(name, sorted({e.name for e in entries}), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `edgebnn models list`"
    raise ModelError(f"unknown model {name!r}{hint}", field="name")
