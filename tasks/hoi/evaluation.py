"""HICO-DET mAP with the conventions of the Python evaluator of QPIC and CDN.

Those conventions make the numbers comparable to published HICO-DET results:

* each image keeps its top ``max_hois`` (100) HOIs after the verb x object mask zeroes the
  scores of invalid combinations (masked HOIs can still fill the 100 slots, as in QPIC);
* box IoU with the +1 pixel convention (``(x2 - x1 + 1) * (y2 - y1 + 1)``); boxes of different
  classes and boxes that only touch have IoU 0;
* a prediction matches a ground-truth HOI with the same verb whose subject and object boxes
  both have IoU >= 0.5; among those it takes the one with the largest min(subject IoU, object
  IoU) (the first on ties). Predictions claim in score order: the first to take a ground truth
  is a true positive, later ones taking the same ground truth are false positives;
* predictions are grouped by triplet (subject class, object class, verb); triplets that do not
  occur in the evaluated ground truth are ignored; AP is 11-point interpolated VOC AP;
* Full averages over every ground-truth triplet, Rare over those with fewer than 10 training
  instances, Non-rare over the others.

Known-Object mode (the second HICO-DET setting) counts, for each triplet, only the images whose
ground truth has an HOI with that triplet's object class. Per image the matching is vectorised
with numpy; predictions of all images are reduced per triplet at the end.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional, Sequence

import numpy as np

from .hico import NUM_OBJECT_CLASSES, PERSON_LABEL, HoiImage

IOU_THRESHOLD = 0.5
MAX_HOIS = 100
RARE_THRESHOLD = 10
MODES = ("default", "ko")


def box_iou_plus_one(boxes1: np.ndarray, boxes2: np.ndarray, labels1: np.ndarray,
                     labels2: np.ndarray) -> np.ndarray:
    """(n, k) IoU with the +1 pixel convention; 0 across classes and for touching boxes."""
    x1 = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
    y1 = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
    x2 = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
    y2 = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
    inter = (x2 - x1 + 1) * (y2 - y1 + 1)
    area1 = (boxes1[:, 2] - boxes1[:, 0] + 1) * (boxes1[:, 3] - boxes1[:, 1] + 1)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + 1) * (boxes2[:, 3] - boxes2[:, 1] + 1)
    overlapping = (x1 < x2) & (y1 < y2) & (labels1[:, None] == labels2[None, :])
    iou = inter / (area1[:, None] + area2[None, :] - inter)
    return np.where(overlapping, iou, 0.0)


def top_hois(pred: HoiImage, correspondence: np.ndarray, max_hois: int = MAX_HOIS) -> HoiImage:
    """Mask the scores of invalid verb x object HOIs to 0 and keep the ``max_hois`` best."""
    object_labels = pred.labels[pred.hois[:, 1]]
    scores = pred.scores * correspondence[pred.hois[:, 2], object_labels]
    # Same result as a stable descending sort cut at max_hois, but sorts only the contenders.
    contenders = np.arange(len(scores))
    if len(scores) > max_hois:
        cut = np.partition(scores, len(scores) - max_hois)[len(scores) - max_hois]
        contenders = np.flatnonzero(scores >= cut)
    keep = contenders[np.argsort(-scores[contenders], kind="stable")[:max_hois]]
    return HoiImage(pred.file_name, pred.boxes, pred.labels, pred.hois[keep], scores[keep])


def triplet_keys(image: HoiImage, num_verbs: int) -> np.ndarray:
    """One integer per HOI for its (subject class, object class, verb) triplet."""
    subject = image.labels[image.hois[:, 0]]
    obj = image.labels[image.hois[:, 1]]
    return (subject * NUM_OBJECT_CLASSES + obj) * num_verbs + image.hois[:, 2]


def match_image(gt: HoiImage, pred: HoiImage,
                iou_threshold: float = IOU_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """True-positive flags of ``pred``'s HOIs against ``gt``: (score order, flags in that order)."""
    order = np.argsort(-pred.scores, kind="stable")
    hois = pred.hois[order]
    true_positive = np.zeros(len(hois), dtype=bool)
    if len(hois) == 0 or len(gt.hois) == 0:
        return order, true_positive
    iou = box_iou_plus_one(gt.boxes, pred.boxes, gt.labels, pred.labels)  # (gt boxes, pred boxes)
    subject_iou = iou[gt.hois[None, :, 0], hois[:, None, 0]]             # (pred HOIs, gt HOIs)
    object_iou = iou[gt.hois[None, :, 1], hois[:, None, 1]]
    candidate = ((subject_iou >= iou_threshold) & (object_iou >= iou_threshold)
                 & (hois[:, None, 2] == gt.hois[None, :, 2]))
    overlap = np.where(candidate, np.minimum(subject_iou, object_iou), 0.0)
    matched = candidate.any(axis=1)
    chosen = overlap.argmax(axis=1)
    # The first (highest-scored) prediction to choose a ground truth claims it.
    claims = np.flatnonzero(matched)
    _, first = np.unique(chosen[claims], return_index=True)
    true_positive[claims[first]] = True
    return order, true_positive


def voc_ap_11_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """11-point interpolated AP, with the thresholds ``np.arange(0, 1.1, 0.1)`` as in QPIC."""
    ap = 0.0
    for threshold in np.arange(0.0, 1.1, 0.1):
        reached = recall >= threshold
        ap += (precision[reached].max() if reached.any() else 0.0) / 11.0
    return ap


def triplet_counts(images: Iterable[HoiImage], num_verbs: int) -> Counter:
    """How many HOIs of each triplet key ``images`` hold (training counts define Rare)."""
    counts: Counter = Counter()
    for image in images:
        counts.update(triplet_keys(image, num_verbs).tolist())
    return counts


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")


def hoi_map(gts: Sequence[HoiImage], preds: Sequence[HoiImage], correspondence: np.ndarray,
            train_counts: Counter, mode: str = "default", max_hois: int = MAX_HOIS,
            iou_threshold: float = IOU_THRESHOLD, rare_threshold: int = RARE_THRESHOLD,
            per_triplet: Optional[dict] = None) -> dict:
    """mAP over ``gts`` (Full, Rare, Non-rare) of ``preds`` (aligned with ``gts``).

    ``preds`` hold every candidate HOI with its score; ``top_hois`` is applied here.
    ``train_counts`` (from :func:`triplet_counts` on the training set) split Rare from Non-rare.
    ``per_triplet``, if given, is filled with ``{triplet key: AP}``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if len(gts) != len(preds):
        raise ValueError(f"{len(preds)} prediction entries for {len(gts)} ground-truth images")
    num_verbs = correspondence.shape[0]
    gt_counts = triplet_counts(gts, num_verbs)
    gt_triplets = np.array(sorted(gt_counts), dtype=np.int64)

    keys, scores, true_positive = [], [], []
    for gt, pred in zip(gts, preds):
        pred = top_hois(pred, correspondence, max_hois)
        order, tp = match_image(gt, pred, iou_threshold)
        image_keys = triplet_keys(pred, num_verbs)[order]
        keep = np.isin(image_keys, gt_triplets)
        if mode == "ko":
            gt_objects = np.unique(gt.labels[gt.hois[:, 1]])
            keep &= np.isin(image_keys // num_verbs % NUM_OBJECT_CLASSES, gt_objects)
        keys.append(image_keys[keep])
        scores.append(pred.scores[order][keep])
        true_positive.append(tp[keep])
    keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    true_positive = np.concatenate(true_positive) if true_positive else np.zeros(0, bool)

    # Group by triplet, highest score first within each triplet.
    order = np.lexsort((-scores, keys))
    keys, true_positive = keys[order], true_positive[order]
    starts = np.searchsorted(keys, gt_triplets, side="left")
    ends = np.searchsorted(keys, gt_triplets, side="right")

    full, rare, non_rare, max_recall = [], [], [], []
    for triplet, start, end in zip(gt_triplets.tolist(), starts, ends):
        tp = np.cumsum(true_positive[start:end])
        recall = tp / gt_counts[triplet]
        precision = tp / np.arange(1, end - start + 1)
        ap = voc_ap_11_point(recall, precision) if end > start else 0.0
        full.append(ap)
        max_recall.append(recall.max() if end > start else 0.0)
        (rare if train_counts.get(triplet, 0) < rare_threshold else non_rare).append(ap)
        if per_triplet is not None:
            per_triplet[triplet] = ap
    return {"mAP_full": _mean(full), "mAP_rare": _mean(rare), "mAP_non_rare": _mean(non_rare),
            "mean_max_recall": _mean(max_recall), "num_triplets": len(full),
            "num_rare_triplets": len(rare)}


def queries_to_hoi_image(file_name: str, subject_boxes: np.ndarray, object_boxes: np.ndarray,
                         object_labels: np.ndarray, verb_scores: np.ndarray) -> HoiImage:
    """QPIC-style query outputs as candidate HOIs: query i has subject box i, object box N + i
    and one HOI per verb, scored ``verb_scores[i, v]`` (verb probability x object score)."""
    num_queries, num_verbs = verb_scores.shape
    query = np.repeat(np.arange(num_queries), num_verbs)
    verb = np.tile(np.arange(num_verbs), num_queries)
    return HoiImage(
        file_name=file_name,
        boxes=np.concatenate([subject_boxes, object_boxes]).astype(np.float64),
        labels=np.concatenate([np.full(num_queries, PERSON_LABEL), object_labels]).astype(np.int64),
        hois=np.stack([query, query + num_queries, verb], axis=1).astype(np.int64),
        scores=verb_scores.reshape(-1).astype(np.float64))
