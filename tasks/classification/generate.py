"""Write scikit-learn's digits as ImageNet-style class folders of PNG images.

    python -m tasks.classification.generate --out data/generated/classification [--size 32]

The folders hold the same fixed train/val split as ``DigitsDataset``; they exercise the real
``ImageFolderDataset`` path (and any ImageNet config, via ``data_root``) without a download.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from tasks.common.files import write_atomic

from .datasets import digits_split


def write_digit_folders(out: str, size: int = 32, per_class: Optional[int] = None) -> Path:
    """Write ``out/{train,val}/<digit>/<index>.png`` (RGB, ``size`` px); ``per_class`` limits
    the number of images per class and split (for small stand-ins)."""
    root = Path(out)
    for split in ("train", "val"):
        images, labels = digits_split(split)
        counts: dict[int, int] = {}
        for index, (image, label) in enumerate(zip(images, labels)):
            label = int(label)
            if per_class is not None and counts.get(label, 0) >= per_class:
                continue
            counts[label] = counts.get(label, 0) + 1
            pixels = (image * 255).round().astype(np.uint8)
            picture = Image.fromarray(pixels).resize((size, size), Image.NEAREST).convert("RGB")
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            write_atomic(root / split / str(label) / f"{index:04d}.png", buffer.getvalue())
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/generated/classification")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--per-class", type=int, default=None)
    args = parser.parse_args()
    print(write_digit_folders(args.out, args.size, args.per_class))


if __name__ == "__main__":
    main()
