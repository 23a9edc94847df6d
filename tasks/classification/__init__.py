"""Image classification: timm ViT-family models with DropKey, digits and ImageNet-style data."""
from .datasets import DigitsDataset, ImageFolderDataset
from .metric import ClassificationMetric
from .model import TimmClassifier

__all__ = ["DigitsDataset", "ImageFolderDataset", "ClassificationMetric", "TimmClassifier"]
