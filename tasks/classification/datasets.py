"""Classification datasets. Items are ``{"inputs": (C, H, W) float tensor, "label": int}``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from tasks.common.files import DataFormatError, check_setting, read_image_size

DIGITS_VAL_EVERY = 5  # sample i of scikit-learn's digits is in the val split when i % 5 == 0


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 real 8x8 digit images, split by index: every 5th sample (360) is
    validation, the other 1437 are training. Pixel values are scaled from 0..16 to 0..1."""
    from sklearn.datasets import load_digits

    if split not in ("train", "val"):
        raise DataFormatError("<config>", "dataset.split",
                              f"digits split must be 'train' or 'val', got {split!r}")
    digits = load_digits()
    index = np.arange(len(digits.target))
    chosen = index % DIGITS_VAL_EVERY == 0 if split == "val" else index % DIGITS_VAL_EVERY != 0
    return digits.images[chosen].astype(np.float32) / 16.0, digits.target[chosen].astype(np.int64)


@DATASETS.register_module()
class DigitsDataset(Dataset):
    """scikit-learn's digits as (1, 8, 8) images normalised to [-1, 1].

    Training items are shifted by up to ``max_shift`` pixels (zero padding), a cheap augmentation
    that keeps the digit on the grid.
    """

    METAINFO = {"classes": tuple(str(d) for d in range(10))}

    def __init__(self, split: str = "train", max_shift: int = 1):
        check_setting("dataset.max_shift", max_shift, integer=True, minimum=0)
        images, labels = digits_split(split)
        self.images = torch.from_numpy(images * 2.0 - 1.0).unsqueeze(1)
        self.labels = labels.tolist()
        self.max_shift = max_shift if split == "train" else 0
        self.metainfo = dict(self.METAINFO)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        if self.max_shift:
            s = self.max_shift
            dy, dx = torch.randint(-s, s + 1, (2,)).tolist()
            image = F.pad(image, (s, s, s, s), value=-1.0)
            image = image[:, s + dy:s + dy + 8, s + dx:s + dx + 8]
        return {"inputs": image, "label": self.labels[index]}


@DATASETS.register_module()
class ImageFolderDataset(Dataset):
    """ImageNet-style class folders: ``data_root/<split>/<class>/<image>``.

    Training uses timm's ImageNet augmentation (random resized crop, flip, optional RandAugment
    and random erasing); evaluation resizes and centre-crops. Checked when built: every image
    header must be readable, and a split other than ``train`` must have the class folders of
    ``data_root/train`` (labels are folder indices, so a missing folder would shift them).
    """

    def __init__(self, data_root: str, split: str = "train", image_size: int = 224,
                 auto_augment=None, re_prob: float = 0.0, interpolation: str = "bicubic",
                 crop_pct: float = 0.875):
        from timm.data import create_transform
        from torchvision.datasets import ImageFolder

        check_setting("dataset.image_size", image_size, integer=True, minimum=1)
        root = Path(data_root) / split
        if not root.is_dir():
            raise DataFormatError(root, "data_root", "class-folder directory not found")
        is_train = split == "train"
        transform = create_transform(image_size, is_training=is_train, auto_augment=auto_augment,
                                     re_prob=re_prob if is_train else 0.0,
                                     interpolation=interpolation, crop_pct=crop_pct)
        try:
            self.folder = ImageFolder(str(root), transform=transform)
        except (FileNotFoundError, RuntimeError) as err:
            raise DataFormatError(root, "class folders", str(err)) from None
        if not is_train:
            check_same_classes(root, self.folder.classes, Path(data_root) / "train")
        for path, _ in self.folder.samples:
            read_image_size(path, root, "image")
        self.metainfo = {"classes": tuple(self.folder.classes)}

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> dict:
        path, _ = self.folder.samples[index]
        try:
            image, label = self.folder[index]
        except OSError as err:  # a body that is corrupt behind a readable header
            raise DataFormatError(path, "image", f"cannot be read: {err}") from None
        return {"inputs": image, "label": label}


def check_same_classes(root: Path, classes, train_root: Path) -> None:
    """The class folders of ``root`` must be those of ``train_root`` (when it exists)."""
    if not train_root.is_dir():
        return
    train_classes = sorted(entry.name for entry in train_root.iterdir() if entry.is_dir())
    missing = sorted(set(train_classes) - set(classes))
    extra = sorted(set(classes) - set(train_classes))
    if missing or extra:
        raise DataFormatError(root, "class folders", f"differ from those of {train_root}: "
                              f"missing {missing[:5]}, extra {extra[:5]} (labels would shift)")
