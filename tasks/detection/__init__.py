"""COCO object detection with mmdet's DETR family; the embedded data are generated shapes."""
from .datasets import CheckedCocoDataset, check_coco_detection
from .generate import CATEGORIES, generate_split
from .model import DotProductEncoderDINO

__all__ = ["CheckedCocoDataset", "check_coco_detection", "CATEGORIES", "generate_split",
           "DotProductEncoderDINO"]
