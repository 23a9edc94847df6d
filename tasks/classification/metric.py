"""Top-1, top-5, negative log-likelihood and expected calibration error, also of the
Monte-Carlo average of the class probabilities when the model gives one."""
from __future__ import annotations

import math

import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

from tasks.common.monte_carlo import MonteCarloMetric, monte_carlo_names


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, num_bins: int = 15) -> dict:
    """Metrics of (N, C) class probabilities against (N,) labels.

    ECE uses ``num_bins`` equal-width confidence bins: sum over bins of
    (bin size / N) * |accuracy - mean confidence|.
    """
    labels = labels.long()
    topk = probs.topk(min(5, probs.shape[1]), dim=1).indices
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).float()
    bins = (confidence * num_bins).ceil().clamp(1, num_bins).long() - 1
    ece = 0.0
    for b in range(num_bins):
        members = bins == b
        if members.any():
            ece += members.float().mean().item() * abs(
                correct[members].mean().item() - confidence[members].mean().item())
    true_prob = probs.gather(1, labels[:, None]).squeeze(1)
    return {
        "top1": correct.mean().item(),
        "top5": (topk == labels[:, None]).any(dim=1).float().mean().item(),
        "nll": -true_prob.clamp_min(torch.finfo(probs.dtype).tiny).log().mean().item(),
        "ece": ece,
    }


@METRICS.register_module()
class ClassificationMetric(MonteCarloMetric, BaseMetric):
    """Collects class probabilities per batch; ``compute_metrics`` reduces them once. Samples
    with ``mc_probs`` (Monte-Carlo evaluation) give the same metrics of those as ``mc/...``."""

    default_prefix = "cls"

    def __init__(self, num_bins: int = 15, collect_device: str = "cpu", prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_bins = num_bins

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:
            averaged = sample.get("mc_probs")
            self.results.append((sample["probs"].float().cpu(), int(sample["label"]),
                                 None if averaged is None else averaged.float().cpu()))

    def compute_metrics(self, results: list) -> dict:
        labels = torch.tensor([r[1] for r in results])
        metrics = classification_metrics(torch.stack([r[0] for r in results]), labels,
                                         self.num_bins)
        if results[0][2] is not None:
            metrics.update(monte_carlo_names(classification_metrics(
                torch.stack([r[2] for r in results]), labels, self.num_bins)))
        assert all(math.isfinite(v) for v in metrics.values())
        return metrics
