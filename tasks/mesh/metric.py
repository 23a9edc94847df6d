"""Mesh-recovery errors in millimetres: MPJPE, PA-MPJPE and PVE, and the mmengine metric.

The functions take (N, J, 3) arrays or tensors in metres and return per-sample errors in mm of
the same kind. They do not align roots; :class:`MeshMetric` does, by its ``root_alignment``:

* ``pelvis`` (SPIN): subtract H36M joint 0, the pelvis of the H36M regressor;
* ``mid_hip`` (METRO, Mesh Graphormer): subtract the mean of the two hips (H36M joints 1 and 4).

Both then score the 14 LSP joints of the 17 H36M joints (SPIN's ``H36M_TO_J14``); PVE uses the
same root offset on the vertices, as METRO does.
"""
from __future__ import annotations

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

from tasks.common.monte_carlo import MC_PREFIX, MonteCarloMetric, monte_carlo_names

H36M_TO_J14 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
ROOT_JOINTS = {"pelvis": (0,), "mid_hip": (1, 4)}
SAMPLE_FIELDS = ("pred_joints", "gt_joints", "pred_vertices", "gt_vertices", "baseline_joints",
                 "mc_pred_joints", "mc_pred_vertices")  # the last two with Monte-Carlo evaluation


def _like(errors: torch.Tensor, reference):
    return errors if torch.is_tensor(reference) else errors.numpy()


def _pair(pred, gt) -> tuple[torch.Tensor, torch.Tensor]:
    pred = torch.as_tensor(pred, dtype=torch.float64)
    gt = torch.as_tensor(gt, dtype=torch.float64).to(pred.device)
    if pred.shape != gt.shape or pred.dim() != 3 or pred.shape[-1] != 3:
        raise ValueError(f"expected two (N, J, 3) inputs of one shape, got {tuple(pred.shape)} "
                         f"and {tuple(gt.shape)}")
    return pred, gt


def mpjpe(pred, gt):
    """Mean per-joint position error (mm) of each sample, without any alignment."""
    p, g = _pair(pred, gt)
    return _like(1000.0 * (p - g).norm(dim=-1).mean(dim=-1), pred)


def pve(pred_verts, gt_verts):
    """Per-vertex error (mm) of each sample, without any alignment."""
    return mpjpe(pred_verts, gt_verts)


def similarity_align(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``pred`` moved by the scale, rotation and translation that best fit it to ``gt``
    (least squares, per sample, batched). Reflections are excluded: the rotation's determinant
    is forced to +1 (Umeyama)."""
    mu_p, mu_g = pred.mean(dim=1, keepdim=True), gt.mean(dim=1, keepdim=True)
    x, y = pred - mu_p, gt - mu_g
    u, s, vh = torch.linalg.svd(x.transpose(1, 2) @ y)          # x^T y = U S V^T
    sign = torch.ones_like(s)
    sign[:, -1] = torch.sign(torch.linalg.det(u @ vh))
    sign[sign == 0] = 1.0
    rotation = (vh.transpose(1, 2) * sign[:, None, :]) @ u.transpose(1, 2)  # V D U^T
    scale = (s * sign).sum(dim=1) / x.pow(2).sum(dim=(1, 2)).clamp_min(1e-12)
    return scale[:, None, None] * x @ rotation.transpose(1, 2) + mu_g


def pa_mpjpe(pred, gt):
    """MPJPE (mm) after a per-sample similarity Procrustes alignment of ``pred`` to ``gt``."""
    p, g = _pair(pred, gt)
    return _like(1000.0 * (similarity_align(p, g) - g).norm(dim=-1).mean(dim=-1), pred)


def root_align(points: torch.Tensor, joints: torch.Tensor, convention: str) -> torch.Tensor:
    """``points`` (N, P, 3) minus the root of the H36M ``joints`` (N, 17, 3)."""
    if convention not in ROOT_JOINTS:
        raise ValueError(f"root_alignment must be one of {sorted(ROOT_JOINTS)}, got {convention!r}")
    return points - joints[:, list(ROOT_JOINTS[convention])].mean(dim=1, keepdim=True)


@METRICS.register_module()
class MeshMetric(MonteCarloMetric, BaseMetric):
    """MPJPE, PA-MPJPE and PVE (mm) of predicted meshes, and the PA-MPJPE of the mean-pose
    baseline on the same samples (``baseline_pa_mpjpe``; a model must beat it to have learnt).

    Each data sample carries ``pred_joints`` / ``gt_joints`` (17 H36M joints), ``pred_vertices``
    / ``gt_vertices`` and ``baseline_joints``, in metres; with Monte-Carlo evaluation also
    ``mc_pred_joints`` / ``mc_pred_vertices``, whose errors are reported as ``mc/...``.
    Per-sample errors are computed as the batches arrive, so only a few numbers per sample are
    kept.
    """

    default_prefix = "mesh"

    def __init__(self, root_alignment: str = "pelvis", joint_subset=H36M_TO_J14,
                 collect_device: str = "cpu", prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if root_alignment not in ROOT_JOINTS:
            raise ValueError(f"root_alignment must be one of {sorted(ROOT_JOINTS)}, "
                             f"got {root_alignment!r}")
        self.root_alignment = root_alignment
        self.joint_subset = list(joint_subset)

    def process(self, data_batch, data_samples) -> None:
        batch = {key: torch.stack([sample[key].detach().double().cpu() for sample in data_samples])
                 for key in SAMPLE_FIELDS if key in data_samples[0]}

        def joints(name):
            return root_align(batch[f"{name}_joints"], batch[f"{name}_joints"],
                              self.root_alignment)[:, self.joint_subset]

        def vertices(name):
            return root_align(batch[f"{name}_vertices"], batch[f"{name}_joints"],
                              self.root_alignment)

        gt_joints, gt_vertices = joints("gt"), vertices("gt")

        def prediction_errors(name):
            predicted = joints(name)
            return {"mpjpe": mpjpe(predicted, gt_joints),
                    "pa_mpjpe": pa_mpjpe(predicted, gt_joints),
                    "pve": pve(vertices(name), gt_vertices)}

        errors = prediction_errors("pred")
        errors.update(baseline_mpjpe=mpjpe(joints("baseline"), gt_joints),
                      baseline_pa_mpjpe=pa_mpjpe(joints("baseline"), gt_joints))
        if "mc_pred_joints" in batch:
            errors.update(monte_carlo_names(prediction_errors("mc_pred")))
        self.results.extend({key: float(value[i]) for key, value in errors.items()}
                            for i in range(len(data_samples)))

    def compute_metrics(self, results: list) -> dict:
        metrics = {key: float(np.mean([r[key] for r in results])) for key in results[0]}
        for name in ("pa_mpjpe", f"{MC_PREFIX}/pa_mpjpe"):
            if name in metrics:
                metrics[f"{name}_vs_baseline"] = metrics[name] / metrics["baseline_pa_mpjpe"]
        if not all(np.isfinite(v) for v in metrics.values()):
            raise FloatingPointError(f"non-finite mesh metrics: {metrics}")
        return metrics
