"""HICO-DET mAP as an mmengine metric (Default and Known-Object; Full, Rare, Non-rare)."""
from __future__ import annotations

import os.path as osp
from typing import Optional

from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric

from tasks.common.files import check_setting

from .evaluation import MAX_HOIS, hoi_map, queries_to_hoi_image, top_hois, triplet_counts
from .hico import load_correspondence, load_hoi_file


@METRICS.register_module()
class HoiMetric(BaseMetric):
    """Collects each image's top HOIs; ``compute_metrics`` evaluates them against ``ann_file``.

    Ground truth comes from the annotation file in original pixels (not from the transformed
    data samples), restricted to the images that were evaluated. The correspondence mask and
    both annotation files are read and checked against each other when the metric is built
    (after the data sets, which may generate them), so a bad file stops a run before training
    rather than at its first evaluation. Keys: ``{default,ko}_{full,rare,non_rare}`` and
    ``default_mean_max_recall``.
    """

    default_prefix = "hoi"

    def __init__(self, data_root: str, ann_file: str = "annotations/test_hico.json",
                 train_ann_file: str = "annotations/trainval_hico.json",
                 corr_file: str = "annotations/corre_hico.npy", max_hois: int = MAX_HOIS,
                 collect_device: str = "cpu", prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file = osp.join(data_root, ann_file)
        self.corr_file = osp.join(data_root, corr_file)
        self.max_hois = check_setting("val_evaluator.max_hois", max_hois, integer=True,
                                      minimum=1)
        self.correspondence = load_correspondence(self.corr_file)
        num_verbs = self.correspondence.shape[0]
        self.ground_truth = load_hoi_file(self.ann_file, num_verbs,
                                          correspondence_file=self.corr_file)
        train_images = load_hoi_file(osp.join(data_root, train_ann_file), num_verbs,
                                     correspondence_file=self.corr_file)
        self.train_counts = triplet_counts(train_images, num_verbs)

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:  # the evaluator hands over data samples as dicts
            pred = {key: value.cpu().numpy() for key, value in sample["pred_instances"].items()}
            candidates = queries_to_hoi_image(
                sample["file_name"], pred["sub_bboxes"], pred["obj_bboxes"],
                pred["obj_labels"], pred["verb_scores"])
            self.results.append(top_hois(candidates, self.correspondence, self.max_hois))

    def compute_metrics(self, results: list) -> dict:
        preds = {pred.file_name: pred for pred in results}
        gts = [gt for gt in self.ground_truth if gt.file_name in preds]
        metrics = {}
        for mode in ("default", "ko"):
            scores = hoi_map(gts, [preds[gt.file_name] for gt in gts], self.correspondence,
                             self.train_counts, mode=mode, max_hois=self.max_hois)
            metrics.update({f"{mode}_full": scores["mAP_full"], f"{mode}_rare": scores["mAP_rare"],
                            f"{mode}_non_rare": scores["mAP_non_rare"]})
            if mode == "default":
                metrics["default_mean_max_recall"] = scores["mean_max_recall"]
        return metrics
