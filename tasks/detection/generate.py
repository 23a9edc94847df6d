"""Write the embedded detection dataset: COCO-format shapes on cluttered backgrounds.

    python -m tasks.detection.generate --out data/generated/detection

Each split is ``OUT/<split>/NNNNN.png`` plus ``OUT/annotations/instances_<split>.json``. Images
hold 1-6 circles, squares and triangles of several scales, with random colours and rotations,
over a noisy gradient with distractor lines and dots; later shapes may hide part of earlier ones
(every object keeps at least ``MIN_VISIBLE`` of its pixels). Boxes and areas are those of the
visible pixels, as in COCO. Everything is drawn from a fixed seed per split, so the files are the
same on every machine. The command prepares ``OUT`` as a dataset with ``generate_if_missing``
does (:func:`tasks.common.embedded_data.prepare_embedded`): a complete set is left as it is.
"""
from __future__ import annotations

import argparse
import io
import math
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tasks.common.embedded_data import is_complete, prepare_embedded
from tasks.common.files import write_atomic, write_json_atomic

CATEGORIES = ({"id": 1, "name": "circle", "supercategory": "shape"},
              {"id": 2, "name": "square", "supercategory": "shape"},
              {"id": 3, "name": "triangle", "supercategory": "shape"})
SPLIT_SIZES = {"train": 600, "val": 150}
IMAGE_SIZE = 128
SPLIT_SEEDS = {"train": 0, "val": 1}
MAX_OBJECTS = 6
MIN_VISIBLE = 0.5          # fraction of an object's pixels that occluders must leave visible
MIN_SIDE, MAX_SIDE = 0.1, 0.8   # object extent as a fraction of the image side (log-uniform)
PLACEMENT_TRIES = 20


def annotation_path(root, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{split}.json"


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted two-colour gradient with thin lines and dots that are not objects."""
    start, end = rng.uniform(40, 170, (2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    image = Image.fromarray((start + (end - start) * ramp[..., None]).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 9)):
        points = [tuple(p) for p in rng.uniform(0, size, (2, 2))]
        draw.line(points, fill=tuple(rng.integers(0, 256, 3).tolist()),
                  width=int(rng.integers(1, 3)))
    for _ in range(rng.integers(5, 16)):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(0.5, 2.0)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.integers(0, 256, 3).tolist()))
    return np.asarray(image)


def _shape_mask(rng: np.random.Generator, category: str, size: int) -> np.ndarray:
    """Boolean mask of one shape with a random scale, position and rotation."""
    side = size * math.exp(rng.uniform(math.log(MIN_SIDE), math.log(MAX_SIDE)))
    cx, cy = rng.uniform(side / 2, size - side / 2, 2)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if category == "circle":
        r = side / 2
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        corners = 4 if category == "square" else 3
        radius = side / 2 * (math.sqrt(2) if corners == 4 else 2 / math.sqrt(3)) * 0.85
        turn = rng.uniform(0, 2 * math.pi)
        draw.polygon([(cx + radius * math.cos(turn + 2 * math.pi * i / corners),
                       cy + radius * math.sin(turn + 2 * math.pi * i / corners))
                      for i in range(corners)], fill=1)
    return np.asarray(canvas, dtype=bool)


def _saturated_colour(rng: np.random.Generator) -> np.ndarray:
    channels = rng.uniform(0, 90, 3)
    channels[rng.integers(3)] = rng.uniform(180, 255)
    return channels


def draw_image(rng: np.random.Generator, size: int):
    """One image (H, W, 3 uint8) and its objects as (category index, visible mask) pairs."""
    image = _background(rng, size).astype(np.float32)
    owner = np.full((size, size), -1)
    masks, categories = [], []
    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        category = int(rng.integers(len(CATEGORIES)))
        for _ in range(PLACEMENT_TRIES):
            mask = _shape_mask(rng, CATEGORIES[category]["name"], size)
            if not mask.any():
                continue
            trial = np.where(mask, len(masks), owner)
            if all((trial == j).sum() >= MIN_VISIBLE * m.sum() for j, m in enumerate(masks)):
                owner = trial
                masks.append(mask)
                categories.append(category)
                image[mask] = _saturated_colour(rng)
                break
    image += rng.normal(0, 6, image.shape)
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    return pixels, [(c, owner == j) for j, c in enumerate(categories)]


def generate_split(root, split: str, num_images: int | None = None, image_size: int = IMAGE_SIZE,
                   seed: int = 0) -> Path:
    """Write one split and return its annotation file."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
    root = Path(root)
    num_images = SPLIT_SIZES[split] if num_images is None else num_images
    rng = np.random.default_rng([seed, SPLIT_SEEDS[split]])
    images, annotations = [], []
    for index in range(num_images):
        pixels, objects = draw_image(rng, image_size)
        file_name = f"{index:05d}.png"
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        write_atomic(root / split / file_name, buffer.getvalue())
        images.append({"id": index + 1, "file_name": file_name, "width": image_size,
                       "height": image_size})
        for category, visible in objects:
            ys, xs = np.nonzero(visible)
            x0, y0 = int(xs.min()), int(ys.min())
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1,
                "category_id": CATEGORIES[category]["id"],
                "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
                "area": int(visible.sum()), "iscrowd": 0})
    path = annotation_path(root, split)
    write_json_atomic(path, {
        "info": {"description": "DropKey Bench generated shapes", "version": "1.0",
                 "year": 2026},
        "licenses": [], "images": images, "annotations": annotations,
        "categories": [dict(c) for c in CATEGORIES]})
    return path


def generate(out, num_train: int = SPLIT_SIZES["train"], num_val: int = SPLIT_SIZES["val"],
             image_size: int = IMAGE_SIZE, seed: int = 0) -> Path:
    """Write the whole data set (both splits) into the directory ``out`` and return it."""
    for split, count in (("train", num_train), ("val", num_val)):
        generate_split(out, split, count, image_size, seed)
    return Path(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/generated/detection")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="image side in pixels")
    parser.add_argument("--num-train", type=int, default=SPLIT_SIZES["train"])
    parser.add_argument("--num-val", type=int, default=SPLIT_SIZES["val"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if is_complete(args.out):
        parser.exit(message=f"{args.out} holds a complete data set; remove it to regenerate\n")
    root = prepare_embedded(args.out, partial(generate, num_train=args.num_train,
                                              num_val=args.num_val, image_size=args.image_size,
                                              seed=args.seed))
    for split in SPLIT_SEEDS:
        print(annotation_path(root, split))


if __name__ == "__main__":
    main()
