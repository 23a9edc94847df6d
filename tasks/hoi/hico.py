"""The HICO-DET annotation format used by QPIC, CDN and GEN-VLKT: loading and validation.

A file is a JSON list with one entry per image::

    {"file_name": "HICO_test2015_00000001.jpg",
     "annotations": [{"bbox": [x1, y1, x2, y2], "category_id": 1}, ...],      # COCO 91-id space
     "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 88}]}  # verb ids 1..V

Predictions use the same layout with ``predictions`` / ``hoi_prediction`` and a ``score`` per
HOI. ``corre_hico.npy`` is a (verbs, 80) verb x object validity mask; its object axis follows
COCO's 80 used category ids in increasing order (``COCO_OBJECT_IDS``). Every loaded image is
turned into :class:`HoiImage` with contiguous labels: object label = index in
``COCO_OBJECT_IDS`` (person = 0) and verb label = verb id - 1.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from tasks.common.files import DataFormatError, load_arrays, load_json, numeric_array

#: COCO's 80 used category ids (1..90 without the 10 unused ones), in label order.
UNUSED_COCO_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_OBJECT_IDS = tuple(i for i in range(1, 91) if i not in UNUSED_COCO_IDS)
NUM_OBJECT_CLASSES = len(COCO_OBJECT_IDS)
PERSON_LABEL = 0
_LABEL_OF_ID = {coco_id: label for label, coco_id in enumerate(COCO_OBJECT_IDS)}

GT_KEYS = ("annotations", "hoi_annotation")
PRED_KEYS = ("predictions", "hoi_prediction")


@dataclass
class HoiImage:
    """One image's boxes and HOIs. ``hois`` rows are (subject index, object index, verb label);
    ``scores`` is set for predictions only."""

    file_name: str
    boxes: np.ndarray                 # (n, 4) float64, x1 y1 x2 y2 in pixels
    labels: np.ndarray                # (n,) int64 object labels
    hois: np.ndarray                  # (m, 3) int64
    scores: Optional[np.ndarray] = None  # (m,) float64


def _index(path, where: str, value, size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataFormatError(path, where, f"expected an integer box index, got {value!r}")
    if not 0 <= value < size:
        raise DataFormatError(path, where, f"index {value} out of range ({size} boxes)")
    return value


def _parse_image(path, i: int, entry, num_verbs: int, keys: tuple[str, str], scored: bool,
                 image_dir: Optional[str], verbs_of: str) -> HoiImage:
    box_key, hoi_key = keys
    if not isinstance(entry, dict):
        raise DataFormatError(path, f"[{i}]", "expected an object")
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise DataFormatError(path, f"[{i}].file_name", "missing or not a string")
    if image_dir is not None and not os.path.isfile(os.path.join(image_dir, file_name)):
        raise DataFormatError(path, f"[{i}].file_name",
                              f"image not found: {os.path.join(image_dir, file_name)}")
    for key in keys:
        if not isinstance(entry.get(key), list):
            raise DataFormatError(path, f"[{i}].{key}", "missing or not a list")

    boxes, labels = [], []
    for j, box in enumerate(entry[box_key]):
        where = f"[{i}].{box_key}[{j}]"
        bbox = box.get("bbox") if isinstance(box, dict) else None
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in bbox)
                or bbox[2] < bbox[0] or bbox[3] < bbox[1]):
            raise DataFormatError(path, f"{where}.bbox", f"invalid box {bbox!r}: needs 4 finite "
                                  "numbers [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
        category = box.get("category_id")
        if not isinstance(category, int) or isinstance(category, bool) \
                or category not in _LABEL_OF_ID:
            raise DataFormatError(path, f"{where}.category_id",
                                  f"unknown object id {category!r} (not a used COCO category id)")
        boxes.append(bbox)
        labels.append(_LABEL_OF_ID[category])

    hois, scores = [], []
    for j, hoi in enumerate(entry[hoi_key]):
        where = f"[{i}].{hoi_key}[{j}]"
        if not isinstance(hoi, dict):
            raise DataFormatError(path, where, "expected an object")
        subject = _index(path, f"{where}.subject_id", hoi.get("subject_id"), len(boxes))
        obj = _index(path, f"{where}.object_id", hoi.get("object_id"), len(boxes))
        verb = hoi.get("category_id")
        if isinstance(verb, bool) or not isinstance(verb, int) or not 1 <= verb <= num_verbs:
            raise DataFormatError(path, f"{where}.category_id",
                                  f"unknown verb id {verb!r} (expected 1..{num_verbs}{verbs_of})")
        hois.append((subject, obj, verb - 1))
        if scored:
            score = hoi.get("score")
            if isinstance(score, bool) or not isinstance(score, (int, float)) \
                    or not math.isfinite(score):
                raise DataFormatError(path, f"{where}.score", f"expected a finite number, "
                                      f"got {score!r}")
            scores.append(score)

    return HoiImage(
        file_name=file_name,
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        hois=np.asarray(hois, dtype=np.int64).reshape(-1, 3),
        scores=np.asarray(scores, dtype=np.float64) if scored else None)


def load_hoi_file(path, num_verbs: int, predictions: bool = False,
                  image_dir: Optional[str] = None,
                  correspondence_file: Optional[str] = None) -> list[HoiImage]:
    """Load and validate an annotation file (or, with ``predictions``, a prediction file).

    ``image_dir``: check that every ``file_name`` exists there. ``correspondence_file``: the
    file ``num_verbs`` comes from, named when a verb id exceeds it. Errors name the file and
    the entry, e.g. ``test_hico.json: [12].hoi_annotation[3].object_id: index 7 out of range``.
    """
    entries = load_json(path, "annotations")
    if not isinstance(entries, list):
        raise DataFormatError(path, "<root>", "expected a list with one entry per image")
    keys = PRED_KEYS if predictions else GT_KEYS
    verbs_of = f", the verbs of {correspondence_file}" if correspondence_file else ""
    return [_parse_image(path, i, entry, num_verbs, keys, predictions, image_dir, verbs_of)
            for i, entry in enumerate(entries)]


def load_correspondence(path) -> np.ndarray:
    """The (verbs, 80) boolean verb x object validity mask of ``corre_hico.npy`` (0 / 1)."""
    mask = numeric_array(load_arrays(path, "correspondence", npz=False)[""], path,
                         "correspondence", shape=(None, NUM_OBJECT_CLASSES))
    if mask.shape[0] < 1:
        raise DataFormatError(path, "correspondence", "has no verbs")
    if not np.isin(mask, (0, 1)).all():
        raise DataFormatError(path, "correspondence", "values must be 0 or 1")
    return mask.astype(bool)
