"""The Network: an ordered list of ELL layers, checked once, planned once, run many times."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from edgebnn.engine.errors import ShapeError
from edgebnn.engine.host import release_free_memory
from edgebnn.engine.layers import InputLayer, Layer, Shape

from edgebnn import package_data


class Prediction(NamedTuple):
    """One ranked class: its index, its label and its probability."""

    index: int  # type: ignore[assignment]  # the class index; shadows tuple.index on purpose
    label: str
    probability: float


@dataclass(frozen=True)
class Preprocessing:
    """How a camera frame (BGR uint8, any size) becomes the model's float input.

    ``resize="crop"``: centre square crop (``crop_fraction`` of the short side), then
    ``cv2.resize`` bilinear to the input size; ``resize="stretch"``: the whole frame (or its
    centre ``crop_fraction``) resized to the input size, aspect ratio not kept. Then the
    channel order, then ``(x - mean) / std`` per channel in the model's channel order. The
    defaults are ELL's gallery models (spec section 7): B,G,R, 0..255.
    """

    channel_order: str = "bgr"
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)  # per channel, in channel_order
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    crop_fraction: float = 1.0
    resize: str = "crop"

    def __post_init__(self) -> None:
        if self.channel_order not in ("bgr", "rgb"):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {self.channel_order!r}")
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if self.resize not in ("crop", "stretch"):
            raise ValueError(f"resize must be 'crop' or 'stretch', got {self.resize!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s > 0 for s in self.std):
            raise ValueError(f"mean and std need 3 values, std > 0; got {self.mean}, {self.std}")

    def to_dict(self) -> dict:
        return {
            "channel_order": self.channel_order,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_fraction": self.crop_fraction,
            "resize": self.resize,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """From a mapping; ``scale`` (x · scale) may stand for ``std`` (1 / scale)."""
        std = d.get("std", (1, 1, 1))
        if "scale" in d:
            scale = d["scale"]
            scales = [scale] * 3 if isinstance(scale, (int, float)) else list(scale)
            std = [1.0 / float(v) for v in scales]
        return cls(
            channel_order=str(d.get("channel_order", "bgr")),
            mean=tuple(float(v) for v in d.get("mean", (0, 0, 0))),
            std=tuple(float(v) for v in std),
            crop_fraction=float(d.get("crop_fraction", 1.0)),
            resize=str(d.get("resize", "crop")),
        )

    def apply(self, image: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """The model input (rows, cols, 3) float32 for an OpenCV frame."""
        import cv2

        image = as_bgr_frame(image)
        h, w = image.shape[:2]
        if self.resize == "stretch":
            ch, cw = max(1, int(h * self.crop_fraction)), max(1, int(w * self.crop_fraction))
        else:
            ch = cw = max(1, int(min(h, w) * self.crop_fraction))
        top, left = int((h - ch) / 2), int((w - cw) / 2)
        crop = image[top : top + ch, left : left + cw]
        resized = cv2.resize(crop, (cols, rows), interpolation=cv2.INTER_LINEAR)
        if self.channel_order == "rgb":
            resized = resized[:, :, ::-1]
        x = resized.astype(np.float32)
        if self.mean != (0.0, 0.0, 0.0):
            x -= np.asarray(self.mean, np.float32)
        if self.std != (1.0, 1.0, 1.0):
            x /= np.asarray(self.std, np.float32)
        return x


def as_bgr_frame(image: np.ndarray) -> np.ndarray:
    """Check an OpenCV frame and return it as HxWx3 uint8 (grey and BGRA are converted)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(  # noqa: TRY004 - one exception type for every bad frame
            f"a frame must be a numpy array, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a frame must be HxWx3 (or HxW, HxWx4), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"a frame must not be empty, got shape {image.shape}")
    return image


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ILSVRC2012 class names of ELL's gallery (index = class)."""
    text = package_data.read_text("categories.txt")
    return tuple(text.split("\n"))


def labels_sha256(labels: list[str]) -> str:
    """A short identity of a label list, stored in native model headers."""
    return hashlib.sha256("\n".join(labels).encode("utf-8")).hexdigest()


@dataclass(eq=False)
class Network:
    """A network of ELL layers with its labels and preprocessing.

    ``layers`` run in order; node 0 is ``input_layer`` and node i + 1 is ``layers[i]``; a
    layer reads the previous node unless its ``inputs`` name others (residual adds).
    """

    input_layer: InputLayer
    layers: list[Layer]
    labels: list[str] | None = None
    name: str = "network"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    source_sha256: str | None = None
    metadata: dict = field(default_factory=dict)
    #: Max-pool ring value override: None = ELL's documented -FLT_MAX; 0.0 = 2017 ELL (spec 6.2).
    maxpool_ring_value: float | None = None

    def __post_init__(self) -> None:
        self.layers = list(self.layers)
        self.node_inputs, self.node_input_shapes = self._check_shapes()
        if self.labels is None:
            n = int(np.prod(self.output_shape))
            self.labels = list(imagenet_labels()) if n == 1000 else [f"class {i}" for i in range(n)]
        self.labels = list(self.labels)
        self._plan = None

    # -- structure -----------------------------------------------------------------
    def _check_shapes(self) -> tuple[list[tuple[int, ...]], list[Shape]]:
        """Producers and input shapes of every node; ShapeError names the first bad layer."""
        nodes: list[Layer] = [self.input_layer, *self.layers]
        inputs: list[tuple[int, ...]] = [()]
        shapes: list[Shape] = [self.input_layer.input_shape]
        for i, layer in enumerate(self.layers):
            node = i + 1
            producers = layer.inputs if layer.inputs is not None else (node - 1,)
            try:
                for p in producers:
                    if not 0 <= p < node:
                        raise ShapeError(f"input node {p} is not an earlier node")
                first = nodes[producers[0]]
                shape = first.output_shape
                for p in producers[1:]:
                    if nodes[p].output_shape != shape:
                        raise ShapeError(
                            f"inputs have different shapes: {shape} and {nodes[p].output_shape}"
                        )
                layer.check_input(shape)
            except ShapeError as exc:
                raise ShapeError(exc.reason, layer=i, layer_type=type(layer).__name__) from None
            inputs.append(tuple(producers))
            shapes.append(shape)
        return inputs, shapes

    @property
    def input_shape(self) -> Shape:
        """The model input (rows, columns, channels), without padding."""
        return self.input_layer.input_shape

    @property
    def output_shape(self) -> Shape:
        last = self.layers[-1] if self.layers else self.input_layer
        return last.output_shape

    def parameter_count(self) -> int:
        return sum(
            layer.parameter_count(shape)
            for layer, shape in zip(self.layers, self.node_input_shapes[1:], strict=True)
        )

    def summary(self) -> str:
        """The architecture listing, one line per layer, like ELL's gallery pages."""
        lines = [f"{self.name}: input {'x'.join(map(str, self.input_shape))}"]
        for i, (layer, shape) in enumerate(
            zip(self.layers, self.node_input_shapes[1:], strict=True)
        ):
            lines.append(f"  {i:3d} {layer.describe(shape)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    # -- running -------------------------------------------------------------------
    @property
    def plan(self):
        """The compiled execution plan (built on first use)."""
        if self._plan is None:
            from edgebnn.engine.plan import Plan  # here: Numba loads with the first plan

            self._plan = Plan(self)
        return self._plan

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run on a preprocessed float32 input of ``input_shape``; returns the output
        flattened in (row, column, channel) order, as ELL's ``Predict`` does (a copy)."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape != self.input_shape:
            if x.size == int(np.prod(self.input_shape)) and x.ndim == 1:
                x = x.reshape(self.input_shape)
            else:
                raise ValueError(f"input must have shape {self.input_shape}, got {x.shape}")
        return self.plan.run(x).reshape(-1).copy()

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """The model input for an OpenCV BGR uint8 frame of any size."""
        rows, cols, _ = self.input_shape
        return self.preprocessing.apply(image, rows, cols)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Class scores (probabilities for the gallery models) for an OpenCV frame."""
        return self.forward(self.preprocess(image))

    def classify(self, image: np.ndarray, top_k: int = 5) -> list[Prediction]:
        """The ``top_k`` best classes for an OpenCV frame, best first."""
        return self.top(self.predict(image), top_k)

    def top(self, scores: np.ndarray, top_k: int = 5) -> list[Prediction]:
        """Rank ``scores`` (ties keep the lower index first)."""
        order = np.argsort(-scores, kind="stable")[: max(0, top_k)]
        labels = self.labels or []
        return [Prediction(int(i), labels[i], float(scores[i])) for i in order]

    def warmup(self, report=None, interval: float = 5.0, workers: int | None = None) -> float:
        """Compile every kernel the plan calls (from the Numba cache when warm) and run it
        once; returns seconds. ``report`` hears the progress at least every ``interval`` s;
        ``workers``: compile processes for what the cache lacks (None: one per core)."""
        from edgebnn.engine.warmup import warm_up  # here: it loads Numba

        seconds = warm_up(self.plan, self.name, report, interval, workers)
        release_free_memory()  # the compiler's freed memory goes back to the OS
        return seconds
