"""Write scikit-learn's digits as ImageNet-style class folders of PNG images.

    python -m tasks.classification.generate --out data/generated/classification [--size 32]

The folders hold the same fixed train/val split as ``DigitsDataset``; they exercise the real
``ImageFolderDataset`` path (and any ImageNet config, via ``data_root``) without a download. The
embedded configs read the digits from scikit-learn directly and need no generated files.
"""
from __future__ import annotations

import argparse
import io
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from tasks.common.embedded_data import prepare_embedded
from tasks.common.files import write_atomic

from .datasets import digits_split


def generate(out, size: int = 32, per_class: Optional[int] = None) -> Path:
    """Write ``out/{train,val}/<digit>/<index>.png`` (RGB, ``size`` px) into the empty directory
    ``out``; ``per_class`` limits the number of images per class and split (small stand-ins)."""
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
    root = prepare_embedded(args.out, partial(generate, size=args.size, per_class=args.per_class))
    print(f"class folders complete in {root}")


if __name__ == "__main__":
    main()
