"""COCO object detection with mmdet's DETR family; the embedded data are generated shapes."""
from .datasets import CheckedCocoDataset, check_coco_detection
from .metric import CheckedCocoMetric
from .model import DotProductEncoderDINO

__all__ = ["CheckedCocoDataset", "check_coco_detection", "CheckedCocoMetric",
           "DotProductEncoderDINO"]
