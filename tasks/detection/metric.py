"""COCO box AP (mmdet's ``CocoMetric``) on an annotation file that is checked first.

``CocoMetric`` hands ``ann_file`` to pycocotools when the evaluator is built, and a missing file
or a bad field fails there with an error far from its cause. ``CheckedCocoMetric`` validates the
file as :class:`~tasks.detection.datasets.CheckedCocoDataset` does, so the error is a
``DataFormatError`` that names the file and the field. Its keys are ``CocoMetric``'s
(``coco/bbox_mAP``, ...).
"""
from __future__ import annotations

from typing import Optional

from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS

from tasks.common.files import load_json

from .datasets import check_coco_detection


@METRICS.register_module()
class CheckedCocoMetric(CocoMetric):
    """``CocoMetric`` whose ``ann_file`` must be a valid COCO detection annotation file."""

    def __init__(self, ann_file: Optional[str] = None, **kwargs):
        if ann_file is not None:
            check_coco_detection(ann_file, load_json(ann_file, "annotations file"))
        super().__init__(ann_file=ann_file, **kwargs)
