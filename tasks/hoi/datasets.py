"""HICO-DET as an mmdet dataset: boxes go through mmdet's transforms, HOIs ride in the metainfo.

Each data info holds mmdet ``instances`` (every annotated box, none ignored, so mmdet's flip and
resize keep their order) and ``hoi_triplets``, an (m, 3) array of (subject index, object index,
verb label) into those instances. ``PackDetInputs(meta_keys=(..., 'hoi_triplets'))`` carries it
to the model.
"""
from __future__ import annotations

import os.path as osp

from mmdet.datasets import BaseDetDataset, CocoDataset
from mmdet.registry import DATASETS

from tasks.common.embedded_data import prepare_embedded
from tasks.common.files import check_setting, read_image_size

from .hico import load_hoi_file


@DATASETS.register_module()
class HicoDetDataset(BaseDetDataset):
    """HICO-DET in the QPIC/CDN format (see :mod:`tasks.hoi.hico`), validated on load: the
    annotations and every image header, so a broken file stops the run before training.

    Args:
        num_verbs: verb ids must lie in 1..num_verbs (117 for HICO-DET).
        generate_if_missing: ``data_root`` holds the synthetic data set of
            :mod:`tasks.hoi.generate` (the embedded benchmark); write it there first unless it
            is complete.
    """

    METAINFO = {"classes": CocoDataset.METAINFO["classes"]}

    def __init__(self, *args, num_verbs: int = 117, generate_if_missing: bool = False,
                 **kwargs):
        self.num_verbs = check_setting("dataset.num_verbs", num_verbs, integer=True, minimum=1)
        self.generate_if_missing = generate_if_missing
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> list[dict]:
        if self.generate_if_missing:
            from . import generate  # here, so ``python -m tasks.hoi.generate`` runs clean
            prepare_embedded(self.data_root, generate.generate)
        images = load_hoi_file(self.ann_file, self.num_verbs, image_dir=self.data_prefix["img"])
        for index, image in enumerate(images):
            read_image_size(osp.join(self.data_prefix["img"], image.file_name), self.ann_file,
                            f"[{index}].file_name")
        return [{
            "img_path": osp.join(self.data_prefix["img"], image.file_name),
            "img_id": index,
            "file_name": image.file_name,
            "instances": [{"bbox": box.tolist(), "bbox_label": int(label), "ignore_flag": 0}
                          for box, label in zip(image.boxes, image.labels)],
            "hoi_triplets": image.hois,
        } for index, image in enumerate(images)]
