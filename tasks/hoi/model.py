"""QPIC (Tamura et al., CVPR 2021) on mmdet parts: a DETR whose queries are interactions.

Backbone (any mmdet backbone) -> 1x1 projection -> ``DetrTransformerEncoder`` over the image
tokens with sine positions -> ``DetrTransformerDecoder`` over learned HOI queries. Each query
predicts a human box, an object box, an object class (plus "no interaction") and multi-label
verbs. Training matches queries to ground-truth (human, object) pairs with the Hungarian
algorithm on QPIC's cost: class + verb + max(human, object) box L1 + max(human, object) GIoU,
and applies the same terms as losses at every decoder layer. DropKey reaches the encoder and
decoder self-attention through ``dropkey_scope`` (module names ``encoder.*`` / ``decoder.*``).
Optionally (``with_reference_points``) box centres are offsets from learned per-query points.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.layers import (DetrTransformerDecoder, DetrTransformerEncoder, MLP,
                                 SinePositionalEncoding)
from mmdet.models.losses.gaussian_focal_loss import gaussian_focal_loss
from mmdet.models.task_modules.assigners import BBoxL1Cost, ClassificationCost, IoUCost
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps, bbox_xyxy_to_cxcywh,
                                   get_box_tensor)
from mmengine.model import BaseModel
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor

HEAD_KEYS = ("obj_logits", "verb_logits", "sub_boxes", "obj_boxes")


def verb_match_cost(verb_prob: Tensor, verb_target: Tensor) -> Tensor:
    """QPIC's verb cost: minus the mean of the recall of the target verbs and of the
    true-negative rate of the others, (queries, pairs)."""
    target = verb_target.t()
    positive = verb_prob @ target / (target.sum(0, keepdim=True) + 1e-4)
    negative = (1 - verb_prob) @ (1 - target) / ((1 - target).sum(0, keepdim=True) + 1e-4)
    return -(positive + negative) / 2


@MODELS.register_module()
class QPIC(BaseModel):
    """QPIC HOI detector.

    Args:
        backbone: mmdet backbone config; its last output feeds the transformer.
        in_channels: channels of that output.
        encoder, decoder: ``DetrTransformerEncoder`` / ``DetrTransformerDecoder`` arguments
            (the decoder must return intermediate layers, which get auxiliary losses).
        positional_encoding: ``SinePositionalEncoding`` arguments (num_feats = embed_dims / 2).
        num_queries: HOI queries per image.
        num_obj_classes, num_verbs: output sizes (80 COCO classes and 117 verbs for HICO-DET).
        match_weights, loss_weights: weights of the ``cls``, ``verb``, ``bbox`` (L1) and
            ``giou`` terms in the matching cost and in the loss.
        eos_coef: weight of the "no interaction" class in the object-class loss.
        with_reference_points: predict both box centres as offsets from a per-query reference
            point (a linear map of the query embedding, as in Deformable DETR) instead of from
            scratch. Off in QPIC; it makes the small embedded model converge in minutes.
    """

    def __init__(self, backbone: dict, in_channels: int, encoder: dict, decoder: dict,
                 positional_encoding: dict, num_queries: int = 100, num_obj_classes: int = 80,
                 num_verbs: int = 117,
                 match_weights: dict = dict(cls=1.0, verb=1.0, bbox=2.5, giou=1.0),
                 loss_weights: dict = dict(cls=1.0, verb=1.0, bbox=2.5, giou=1.0),
                 eos_coef: float = 0.1, with_reference_points: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.encoder = DetrTransformerEncoder(**encoder)
        self.decoder = DetrTransformerDecoder(**decoder)
        self.positional_encoding = SinePositionalEncoding(**positional_encoding)
        dims = self.encoder.embed_dims
        self.input_proj = nn.Conv2d(in_channels, dims, kernel_size=1)
        self.query_embedding = nn.Embedding(num_queries, dims)
        self.obj_class_head = nn.Linear(dims, num_obj_classes + 1)
        self.verb_head = nn.Linear(dims, num_verbs)
        self.sub_box_head = MLP(dims, dims, 4, 3)
        self.obj_box_head = MLP(dims, dims, 4, 3)
        self.reference_points = nn.Linear(dims, 2) if with_reference_points else None
        self.num_obj_classes, self.num_verbs = num_obj_classes, num_verbs
        self.match_weights, self.loss_weights = dict(match_weights), dict(loss_weights)
        self.class_cost = ClassificationCost(weight=self.match_weights["cls"])
        self.l1_cost = BBoxL1Cost(weight=self.match_weights["bbox"], box_format="xywh")
        self.giou_cost = IoUCost(iou_mode="giou", weight=self.match_weights["giou"])
        class_weight = torch.ones(num_obj_classes + 1)
        class_weight[-1] = eos_coef
        self.register_buffer("class_weight", class_weight, persistent=False)

    def init_weights(self) -> None:
        super().init_weights()
        for coder in (self.encoder, self.decoder):
            for param in coder.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)
        if self.reference_points is not None:
            nn.init.xavier_uniform_(self.reference_points.weight)
            nn.init.zeros_(self.reference_points.bias)

    # ------------------------------------------------------------------ forward
    def _forward_heads(self, inputs: Tensor, data_samples: list) -> dict:
        """Per decoder layer outputs, each (layers, batch, queries, ...); boxes are normalised
        cx, cy, w, h relative to each image's unpadded size, as in DETR."""
        feat = self.backbone(inputs)[-1]
        batch, _, height, width = inputs.shape
        mask = feat.new_ones((batch, height, width))
        for i, sample in enumerate(data_samples):
            img_h, img_w = sample.img_shape
            mask[i, :img_h, :img_w] = 0
        mask = F.interpolate(mask[:, None], size=feat.shape[-2:]).to(torch.bool)[:, 0]
        pos = self.positional_encoding(mask).flatten(2).transpose(1, 2)
        tokens = self.input_proj(feat).flatten(2).transpose(1, 2)
        mask = mask.flatten(1)
        memory = self.encoder(query=tokens, query_pos=pos, key_padding_mask=mask)
        query_pos = self.query_embedding.weight[None].expand(batch, -1, -1)
        hidden = self.decoder(query=torch.zeros_like(query_pos), key=memory, value=memory,
                              query_pos=query_pos, key_pos=pos, key_padding_mask=mask)
        sub_boxes, obj_boxes = self.sub_box_head(hidden), self.obj_box_head(hidden)
        if self.reference_points is not None:
            centre = F.pad(self.reference_points(query_pos), (0, 2))  # (x, y) logits
            sub_boxes, obj_boxes = sub_boxes + centre, obj_boxes + centre
        return {"obj_logits": self.obj_class_head(hidden), "verb_logits": self.verb_head(hidden),
                "sub_boxes": sub_boxes.sigmoid(), "obj_boxes": obj_boxes.sigmoid()}

    def forward(self, inputs: Tensor, data_samples: Optional[list] = None, mode: str = "tensor"):
        outputs = self._forward_heads(inputs, data_samples)
        if mode == "tensor":
            return outputs
        if mode == "loss":
            return self.loss(outputs, data_samples)
        if mode == "predict":
            return self.predict(outputs, data_samples)
        raise ValueError(f"unknown mode {mode!r}")

    # ------------------------------------------------------------------ training
    def _targets(self, sample: DetDataSample) -> dict:
        """Ground-truth (human, object) pairs of one image with multi-hot verbs; boxes as
        normalised cx, cy, w, h."""
        boxes = get_box_tensor(sample.gt_instances.bboxes)
        labels = sample.gt_instances.labels
        triplets = torch.as_tensor(sample.hoi_triplets, device=boxes.device).view(-1, 3).long()
        pairs, pair_of_hoi = torch.unique(triplets[:, :2], dim=0, return_inverse=True)
        verbs = boxes.new_zeros((len(pairs), self.num_verbs))
        verbs[pair_of_hoi, triplets[:, 2]] = 1
        img_h, img_w = sample.img_shape
        factor = boxes.new_tensor([img_w, img_h, img_w, img_h])
        return {"obj_labels": labels[pairs[:, 1]], "verbs": verbs,
                "sub_boxes": bbox_xyxy_to_cxcywh(boxes[pairs[:, 0]] / factor),
                "obj_boxes": bbox_xyxy_to_cxcywh(boxes[pairs[:, 1]] / factor)}

    @torch.no_grad()
    def _match(self, out: dict, target: dict) -> tuple[Tensor, Tensor]:
        """Hungarian matching of one image's queries to its pairs: (query idx, pair idx)."""
        if len(target["verbs"]) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=out["obj_logits"].device)
            return empty, empty
        unit = {"img_shape": (1, 1)}  # boxes are already normalised

        def boxes(cxcywh):
            return InstanceData(bboxes=bbox_cxcywh_to_xyxy(cxcywh))

        cost = self.class_cost(InstanceData(scores=out["obj_logits"]),
                               InstanceData(labels=target["obj_labels"]))
        cost = cost + self.match_weights["verb"] * verb_match_cost(
            out["verb_logits"].sigmoid(), target["verbs"])
        for term in (self.l1_cost, self.giou_cost):
            cost = cost + torch.maximum(
                term(boxes(out["sub_boxes"]), boxes(target["sub_boxes"]), unit),
                term(boxes(out["obj_boxes"]), boxes(target["obj_boxes"]), unit))
        queries, pairs = linear_sum_assignment(cost.cpu().numpy())
        device = cost.device
        return torch.as_tensor(queries, device=device), torch.as_tensor(pairs, device=device)

    def _layer_losses(self, out: dict, targets: list[dict]) -> dict:
        """QPIC's losses of one decoder layer, (batch, queries, ...) outputs."""
        batch, num_queries = out["obj_logits"].shape[:2]
        obj_target = out["obj_logits"].new_full((batch, num_queries), self.num_obj_classes,
                                                dtype=torch.long)
        verb_target = torch.zeros_like(out["verb_logits"])
        matched = {key: [] for key in ("sub_pred", "obj_pred", "sub_gt", "obj_gt")}
        for i, target in enumerate(targets):
            queries, pairs = self._match({k: v[i] for k, v in out.items()}, target)
            obj_target[i, queries] = target["obj_labels"][pairs]
            verb_target[i, queries] = target["verbs"][pairs]
            matched["sub_pred"].append(out["sub_boxes"][i, queries])
            matched["obj_pred"].append(out["obj_boxes"][i, queries])
            matched["sub_gt"].append(target["sub_boxes"][pairs])
            matched["obj_gt"].append(target["obj_boxes"][pairs])
        matched = {key: torch.cat(value) for key, value in matched.items()}
        num_pairs = max(len(matched["sub_gt"]), 1)

        loss_cls = F.cross_entropy(out["obj_logits"].flatten(0, 1), obj_target.flatten(),
                                   weight=self.class_weight)
        verb_prob = out["verb_logits"].sigmoid().clamp(1e-4, 1 - 1e-4)
        loss_verb = gaussian_focal_loss(verb_prob, verb_target, reduction="mean",
                                        avg_factor=max(int(verb_target.sum()), 1))
        loss_bbox = loss_giou = 0.0
        for part in ("sub", "obj"):
            pred, gt = matched[f"{part}_pred"], matched[f"{part}_gt"]
            loss_bbox = loss_bbox + F.l1_loss(pred, gt, reduction="sum") / num_pairs
            giou = bbox_overlaps(bbox_cxcywh_to_xyxy(pred), bbox_cxcywh_to_xyxy(gt),
                                 mode="giou", is_aligned=True)
            loss_giou = loss_giou + (1 - giou).sum() / num_pairs
        w = self.loss_weights
        return {"loss_obj_cls": w["cls"] * loss_cls, "loss_verb": w["verb"] * loss_verb,
                "loss_bbox": w["bbox"] * loss_bbox, "loss_giou": w["giou"] * loss_giou}

    def loss(self, outputs: dict, data_samples: list) -> dict:
        """Losses of the last decoder layer, plus the sum of the earlier layers' as ``loss_aux``."""
        targets = [self._targets(sample) for sample in data_samples]
        num_layers = outputs["obj_logits"].shape[0]
        losses = self._layer_losses({k: v[-1] for k, v in outputs.items()}, targets)
        if num_layers > 1:
            losses["loss_aux"] = sum(
                sum(self._layer_losses({k: v[layer] for k, v in outputs.items()}, targets).values())
                for layer in range(num_layers - 1))
        return losses

    # ------------------------------------------------------------------ inference
    def predict(self, outputs: dict, data_samples: list) -> list[DetDataSample]:
        """QPIC's post-processing: per query the object class and score, verb scores =
        verb probability x object score, and boxes in original image pixels."""
        obj_prob = outputs["obj_logits"][-1].softmax(-1)[..., :-1]
        obj_scores, obj_labels = obj_prob.max(-1)
        verb_scores = outputs["verb_logits"][-1].sigmoid() * obj_scores[..., None]
        results = []
        for i, sample in enumerate(data_samples):
            img_h, img_w = sample.img_shape
            scale_w, scale_h = sample.metainfo.get("scale_factor", (1.0, 1.0))
            factor = obj_prob.new_tensor([img_w / scale_w, img_h / scale_h] * 2)
            ori_h, ori_w = sample.ori_shape

            def to_pixels(boxes):
                boxes = bbox_cxcywh_to_xyxy(boxes) * factor
                return torch.stack([boxes[:, 0].clamp(0, ori_w), boxes[:, 1].clamp(0, ori_h),
                                    boxes[:, 2].clamp(0, ori_w), boxes[:, 3].clamp(0, ori_h)], 1)

            result = DetDataSample(metainfo=sample.metainfo)
            result.pred_instances = InstanceData(
                sub_bboxes=to_pixels(outputs["sub_boxes"][-1, i]),
                obj_bboxes=to_pixels(outputs["obj_boxes"][-1, i]),
                obj_labels=obj_labels[i], obj_scores=obj_scores[i], verb_scores=verb_scores[i])
            results.append(result)
        return results
