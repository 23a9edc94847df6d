"""HOI detection on HICO-DET (QPIC/CDN format): dataset, QPIC model and HICO-DET mAP."""
from .datasets import HicoDetDataset
from .metric import HoiMetric
from .model import QPIC

__all__ = ["HicoDetDataset", "HoiMetric", "QPIC"]
