"""HICO-DET mAP as an mmengine metric (Default and Known-Object; Full, Rare, Non-rare)."""
from __future__ import annotations

import os.path as osp
from typing import Optional

from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric

from .evaluation import MAX_HOIS, hoi_map, queries_to_hoi_image, top_hois, triplet_counts
from .hico import load_correspondence, load_hoi_file


@METRICS.register_module()
class HoiMetric(BaseMetric):
    """Collects each image's top HOIs; ``compute_metrics`` evaluates them against ``ann_file``.

    Ground truth comes from the annotation file in original pixels (not from the transformed
    data samples), restricted to the images that were evaluated. Keys:
    ``{default,ko}_{full,rare,non_rare}`` and ``default_mean_max_recall``.
    """

    default_prefix = "hoi"

    def __init__(self, data_root: str, ann_file: str = "annotations/test_hico.json",
                 train_ann_file: str = "annotations/trainval_hico.json",
                 corr_file: str = "annotations/corre_hico.npy", max_hois: int = MAX_HOIS,
                 collect_device: str = "cpu", prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file = osp.join(data_root, ann_file)
        self.train_ann_file = osp.join(data_root, train_ann_file)
        self.corr_file = osp.join(data_root, corr_file)
        self.max_hois = max_hois
        self._correspondence = None

    @property
    def correspondence(self):
        if self._correspondence is None:  # read lazily: the dataset may generate the file
            self._correspondence = load_correspondence(self.corr_file)
        return self._correspondence

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:  # the evaluator hands over data samples as dicts
            pred = {key: value.cpu().numpy() for key, value in sample["pred_instances"].items()}
            candidates = queries_to_hoi_image(
                sample["file_name"], pred["sub_bboxes"], pred["obj_bboxes"],
                pred["obj_labels"], pred["verb_scores"])
            self.results.append(top_hois(candidates, self.correspondence, self.max_hois))

    def compute_metrics(self, results: list) -> dict:
        num_verbs = self.correspondence.shape[0]
        preds = {pred.file_name: pred for pred in results}
        gts = [gt for gt in load_hoi_file(self.ann_file, num_verbs) if gt.file_name in preds]
        train_counts = triplet_counts(load_hoi_file(self.train_ann_file, num_verbs), num_verbs)
        metrics = {}
        for mode in ("default", "ko"):
            scores = hoi_map(gts, [preds[gt.file_name] for gt in gts], self.correspondence,
                             train_counts, mode=mode, max_hois=self.max_hois)
            metrics.update({f"{mode}_full": scores["mAP_full"], f"{mode}_rare": scores["mAP_rare"],
                            f"{mode}_non_rare": scores["mAP_non_rare"]})
            if mode == "default":
                metrics["default_mean_max_recall"] = scores["mean_max_recall"]
        return metrics
