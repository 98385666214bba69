"""The config's ``preprocessing`` and ``labels``: what a model file may not carry.

A ``.tflite`` file holds neither its labels nor its image preprocessing (ELL files hold
some); the config sets them::

    model: quicknet.tflite
    preprocessing:            # every key optional; defaults are the model's own
      channel_order: rgb      # rgb | bgr
      mean: [123.675, 116.28, 103.53]
      std: [58.395, 57.12, 57.375]    # or scale: 0.0078125 (x * scale, one value or three)
      resize: crop            # crop: centre square crop; stretch: the whole frame
      crop_fraction: 0.875    # of the short side (crop) or of each side (stretch)
    labels: imagenet.txt      # one label per line, in output order
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgebnn.engine.errors import ModelError
from edgebnn.engine.network import Preprocessing

PREPROCESSING_KEYS = ("channel_order", "mean", "std", "scale", "resize", "crop_fraction")


@dataclass(frozen=True)
class ModelOptions:
    """Overrides applied to the loaded model: preprocessing fields and a label list."""

    preprocessing: tuple[tuple[str, Any], ...] = ()
    labels: tuple[str, ...] | None = None
    labels_path: str | None = None

    def apply(self, net: Any) -> Any:
        """Set the model's preprocessing and labels (ModelError if the labels do not fit)."""
        if self.preprocessing:
            merged = {**net.preprocessing.to_dict(), **dict(self.preprocessing)}
            if "scale" in merged and "std" in dict(self.preprocessing):
                merged.pop("scale")
            net.preprocessing = Preprocessing.from_dict(merged)
        if self.labels is not None:
            outputs = len(net.labels)
            if len(self.labels) != outputs:
                raise ModelError(f"has {len(self.labels)} labels, the model {outputs} outputs",
                                 path=self.labels_path, field="labels")  # fmt: skip
            net.labels = list(self.labels)
        return net


def _triple(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def read_model_options(reader: Any, top: dict[str, Any]) -> ModelOptions:
    """Check ``preprocessing`` and ``labels`` with the config reader; report issues on it."""
    raw = reader.section(("preprocessing",), top.get("preprocessing"), PREPROCESSING_KEYS)
    fields: dict[str, Any] = {}
    for key in ("mean", "std"):
        if key in raw:
            if _triple(raw[key]) and (key == "mean" or all(v > 0 for v in raw[key])):
                fields[key] = [float(v) for v in raw[key]]
            else:
                reader.error(("preprocessing", key), "must be a list of 3 numbers (std > 0)")
    if "scale" in raw:
        scale = raw["scale"]
        ok = _triple(scale) or (isinstance(scale, (int, float)) and not isinstance(scale, bool))
        values = scale if isinstance(scale, list) else [scale]
        if ok and all(v > 0 for v in values):
            fields["scale"] = scale
        else:
            reader.error(("preprocessing", "scale"), "must be a number > 0 or a list of 3")
    if "scale" in fields and "std" in fields:
        reader.error(("preprocessing", "scale"), "give std or scale, not both")
    if "channel_order" in raw:
        order = raw["channel_order"]
        if order in ("rgb", "bgr"):
            fields["channel_order"] = order
        else:
            reader.error(("preprocessing", "channel_order"), "must be 'rgb' or 'bgr'")
    if "resize" in raw:
        if raw["resize"] in ("crop", "stretch"):
            fields["resize"] = raw["resize"]
        else:
            reader.error(("preprocessing", "resize"), "must be 'crop' or 'stretch'")
    if "crop_fraction" in raw:
        value = raw["crop_fraction"]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1:
            fields["crop_fraction"] = float(value)
        else:
            reader.error(("preprocessing", "crop_fraction"), "must be a number in (0, 1]")
    options = ModelOptions(preprocessing=tuple(sorted(fields.items(), key=lambda kv: kv[0])))
    spec = top.get("labels")
    if spec is None:
        return options
    if not isinstance(spec, str):
        reader.error(("labels",), "must be the path of a text file, one label per line")
        return options
    path = reader.base_dir / Path(spec).expanduser()
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reader.error(("labels",), f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
        return options
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        reader.error(("labels",), f"{path} has no labels")
        return options
    return replace(options, labels=tuple(line.strip() for line in lines), labels_path=str(path))
