"""COCO-format detection data that is checked before training instead of silently filtered.

mmdet's ``CocoDataset`` drops boxes outside the image, boxes of non-positive size and unknown
categories without a word, and a missing image only fails inside a data-loader worker much later.
``CheckedCocoDataset`` validates the annotation file first and raises a ``DataFormatError`` that
names the file and the offending field, so bad data stops a run before any training.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from tasks.common.embedded_data import prepare_embedded
from tasks.common.files import DataFormatError, load_json, read_image_size

BOX_TOLERANCE = 1.0  # pixels a box may overhang the image (rounding in real annotations)
REQUIRED = {
    "images": {"id": int, "file_name": str, "width": int, "height": int},
    "annotations": {"id": int, "image_id": int, "category_id": int, "bbox": list,
                    "area": (int, float), "iscrowd": int},
    "categories": {"id": int, "name": str},
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_coco_detection(path, data, image_dir: Optional[str] = None) -> None:
    """Raise ``DataFormatError(path, field, problem)`` unless ``data`` is a valid COCO detection
    annotation dict; with ``image_dir``, every listed image must be there, with a readable
    header stating the width and height of its entry (boxes are checked against those)."""
    if not isinstance(data, dict):
        raise DataFormatError(path, "<root>", "expected a JSON object")
    for section, fields in REQUIRED.items():
        entries = data.get(section)
        if not isinstance(entries, list):
            raise DataFormatError(path, section, "missing or not a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise DataFormatError(path, f"{section}[{i}]", "expected an object")
            for field, kind in fields.items():
                value = entry.get(field)
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise DataFormatError(path, f"{section}[{i}].{field}",
                                          "missing" if value is None else
                                          f"has type {type(value).__name__}")
    categories = {c["id"] for c in data["categories"]}
    images = {}
    for i, image in enumerate(data["images"]):
        if image["id"] in images:
            raise DataFormatError(path, f"images[{i}].id", f"duplicate image id {image['id']}")
        if image["width"] <= 0 or image["height"] <= 0:
            raise DataFormatError(path, f"images[{i}].width/height", "must be positive")
        if image_dir is not None:
            size = read_image_size(Path(image_dir) / image["file_name"], path,
                                   f"images[{i}].file_name")
            if size != (image["width"], image["height"]):
                raise DataFormatError(path, f"images[{i}].width/height",
                                      f"{image['width']}x{image['height']}, but the image "
                                      f"{image['file_name']} is {size[0]}x{size[1]}")
        images[image["id"]] = image
    annotation_ids = set()
    for i, ann in enumerate(data["annotations"]):
        field = f"annotations[{i}]"
        if ann["id"] in annotation_ids:
            raise DataFormatError(path, f"{field}.id", f"duplicate annotation id {ann['id']}")
        annotation_ids.add(ann["id"])
        image = images.get(ann["image_id"])
        if image is None:
            raise DataFormatError(path, f"{field}.image_id", f"unknown image id {ann['image_id']}")
        if ann["category_id"] not in categories:
            raise DataFormatError(path, f"{field}.category_id",
                                  f"unknown category id {ann['category_id']} "
                                  f"(categories: {sorted(categories)})")
        if not _is_number(ann["area"]) or ann["area"] < 0:
            raise DataFormatError(path, f"{field}.area", f"expected a finite number >= 0, "
                                  f"got {ann['area']!r}")
        if ann["iscrowd"] not in (0, 1):
            raise DataFormatError(path, f"{field}.iscrowd", f"expected 0 or 1, got "
                                  f"{ann['iscrowd']!r}")
        box = ann["bbox"]
        if len(box) != 4 or not all(_is_number(v) for v in box):
            raise DataFormatError(path, f"{field}.bbox",
                                  f"expected [x, y, w, h] numbers, got {box}")
        x, y, w, h = box
        if w <= 0 or h <= 0:
            raise DataFormatError(path, f"{field}.bbox", f"non-positive size in {box}")
        if (x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > image["width"] + BOX_TOLERANCE
                or y + h > image["height"] + BOX_TOLERANCE):
            raise DataFormatError(path, f"{field}.bbox", f"{box} lies outside image "
                                  f"{ann['image_id']} ({image['width']}x{image['height']})")


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """``CocoDataset`` that validates its annotation file and images before loading them.

    Args:
        generate_if_missing: ``data_root`` holds the embedded data set of
            :mod:`tasks.detection.generate`; write it there first unless it is complete.
    """

    def __init__(self, *args, generate_if_missing: bool = False, **kwargs):
        self.generate_if_missing = generate_if_missing
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> list:
        if self.generate_if_missing:
            from . import generate  # here, so ``python -m tasks.detection.generate`` runs clean
            prepare_embedded(self.data_root, generate.generate)
        data = load_json(self.ann_file, "annotations file")
        check_coco_detection(self.ann_file, data, self.data_prefix.get("img"))
        names = {c["name"] for c in data["categories"]}
        missing = [c for c in self.metainfo["classes"] if c not in names]
        if missing:
            raise DataFormatError(self.ann_file, "categories",
                                  f"lacks the configured classes {missing}")
        del data  # COCO's train file is ~450 MB; do not hold two parsed copies
        return super().load_data_list()
