"""A timm ViT-family classifier as an mmengine model. DropKey is injected by the config's
``DropKeyHook``; Monte-Carlo evaluation (:mod:`tasks.common.monte_carlo`) averages the class
probabilities of its stochastic passes."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from tasks.common.monte_carlo import MonteCarloModel


@MODELS.register_module()
class TimmClassifier(MonteCarloModel, BaseModel):
    """``timm.create_model(model_name, **model_kwargs)`` with cross-entropy training.

    ``model_kwargs`` adapt the architecture to small inputs (``img_size``, ``patch_size``,
    ``in_chans``, ``depth``, ...). ``mixup`` takes timm ``Mixup`` arguments (ImageNet recipes).
    """

    def __init__(self, model_name: str, num_classes: int, label_smoothing: float = 0.0,
                 mixup: Optional[dict] = None, data_preprocessor=None, init_cfg=None,
                 **model_kwargs):
        import timm
        from timm.data import Mixup

        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = timm.create_model(model_name, pretrained=False, num_classes=num_classes,
                                          **model_kwargs)
        self.label_smoothing = label_smoothing
        self.mixup = Mixup(**mixup, label_smoothing=label_smoothing, num_classes=num_classes) \
            if mixup else None

    def forward(self, inputs: torch.Tensor, label: Optional[torch.Tensor] = None,
                mode: str = "tensor"):
        if mode == "loss":
            if self.mixup is not None:
                inputs, soft_target = self.mixup(inputs, label)
                logits = self.backbone(inputs)
                return {"loss": torch.sum(-soft_target * logits.log_softmax(-1), dim=-1).mean()}
            logits = self.backbone(inputs)
            return {"loss": F.cross_entropy(logits, label, label_smoothing=self.label_smoothing)}
        logits = self.backbone(inputs)
        if mode == "tensor":
            return logits
        if mode == "predict":
            samples = [{"probs": p, "label": int(t)}
                       for p, t in zip(logits.float().softmax(dim=-1), label)]
            averaged = self.monte_carlo(
                lambda: {"probs": self.backbone(inputs).float().softmax(dim=-1)})
            if averaged is not None:
                for sample, probs in zip(samples, averaged["probs"]):
                    sample["mc_probs"] = probs
            return samples
        raise ValueError(f"unknown mode {mode!r}")
