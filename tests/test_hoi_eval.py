"""HICO-DET evaluation: hand-computed cases, a loop reference, file validation and the CLI."""
import json
from collections import Counter

import numpy as np
import pytest

from tasks.common import DataFormatError
from tasks.hoi.evaluation import (box_iou_plus_one, hoi_map, match_image, top_hois,
                                  triplet_counts)
from tasks.hoi.hico import COCO_OBJECT_IDS, NUM_OBJECT_CLASSES, HoiImage, load_hoi_file

NUM_VERBS = 3
CUP, BALL = COCO_OBJECT_IDS.index(47), COCO_OBJECT_IDS.index(37)
ALL_VALID = np.ones((NUM_VERBS, NUM_OBJECT_CLASSES), dtype=bool)
HUMAN, OBJECT = [0, 0, 10, 10], [20, 0, 30, 10]


def gt_image(name, object_label, verbs, obj_box=OBJECT):
    return HoiImage(name, np.array([HUMAN, obj_box], float), np.array([0, object_label]),
                    np.array([[0, 1, v] for v in verbs], dtype=np.int64).reshape(-1, 3))


def pred_image(name, object_boxes, object_labels, hois):
    """hois: (object box index, verb, score); the human box is box 0."""
    boxes = np.array([HUMAN, *object_boxes], float)
    return HoiImage(name, boxes, np.array([0, *object_labels]),
                    np.array([[0, 1 + o, v] for o, v, _ in hois], dtype=np.int64).reshape(-1, 3),
                    np.array([s for _, _, s in hois], float))


def counts_of(images, times=20):
    """Training counts that make every triplet of ``images`` non-rare."""
    return Counter({k: times for k in triplet_counts(images, NUM_VERBS)})


def evaluate(gts, preds, train=None, **kwargs):
    return hoi_map(gts, preds, kwargs.pop("corr", ALL_VALID),
                   counts_of(gts) if train is None else train, **kwargs)


def test_perfect_predictions_score_one_in_both_modes():
    gts = [gt_image("a", CUP, [0, 1]), gt_image("b", BALL, [2])]
    preds = [pred_image("a", [OBJECT], [CUP], [(0, 0, 0.9), (0, 1, 0.8)]),
             pred_image("b", [OBJECT], [BALL], [(0, 2, 0.7)])]
    for mode in ("default", "ko"):
        result = evaluate(gts, preds, mode=mode)
        assert result["mAP_full"] == pytest.approx(1.0)
        assert result["mAP_non_rare"] == pytest.approx(1.0)
        assert result["num_triplets"] == 3 and result["mean_max_recall"] == 1.0


def test_iou_uses_the_plus_one_pixel_convention():
    gt = np.array([[0, 0, 10, 10]], float)
    # Continuous areas give 46 / 100 = 0.46; with +1 pixels it is 61.6 / 121 = 0.509.
    pred = np.array([[0, 0, 10, 4.6], [0, 0, 10, 10], [10, 0, 20, 10], [0, 0, 10, 10]], float)
    iou = box_iou_plus_one(gt, pred, np.array([0]), np.array([0, 0, 0, 1]))
    assert iou[0, 0] == pytest.approx(61.6 / 121) and iou[0, 1] == 1.0
    assert iou[0, 2] == 0.0  # boxes that only touch do not overlap (QPIC)
    assert iou[0, 3] == 0.0  # different classes


def test_shifted_object_box_below_iou_half_is_a_miss():
    gts = [gt_image("a", CUP, [0], obj_box=[20, 0, 29, 9])]
    # Shift by 4 px: (6 x 10) / (100 + 100 - 60) = 0.43; by 3 px: 70 / 130 = 0.54.
    miss = pred_image("a", [[24, 0, 33, 9]], [CUP], [(0, 0, 0.9)])
    hit = pred_image("a", [[23, 0, 32, 9]], [CUP], [(0, 0, 0.9)])
    assert evaluate(gts, [miss])["mAP_full"] == 0.0
    assert evaluate(gts, [hit])["mAP_full"] == pytest.approx(1.0)


def test_duplicate_prediction_is_a_false_positive():
    gts = [gt_image("a", CUP, [0]), gt_image("b", CUP, [0])]
    preds = [pred_image("a", [OBJECT, OBJECT], [CUP, CUP], [(0, 0, 0.9), (1, 0, 0.8)]),
             pred_image("b", [OBJECT], [CUP], [(0, 0, 0.7)])]
    _, tp = match_image(gts[0], preds[0])
    assert tp.tolist() == [True, False]
    # Ranked TP, FP, TP: recall .5 .5 1, precision 1 .5 .667 -> (6 x 1 + 5 x 2/3) / 11.
    assert evaluate(gts, preds)["mAP_full"] == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_each_ground_truth_is_claimed_by_the_best_scored_prediction_first():
    gts = [gt_image("a", CUP, [0])]
    preds = [pred_image("a", [OBJECT], [CUP], [(0, 0, 0.2), (0, 0, 0.9)])]
    order, tp = match_image(gts[0], preds[0])
    assert order.tolist() == [1, 0] and tp.tolist() == [True, False]


def test_wrong_verb_is_a_false_positive():
    gts = [gt_image("a", CUP, [0]), gt_image("b", CUP, [1])]
    preds = [pred_image("a", [OBJECT], [CUP], [(0, 1, 0.9)]),   # verb 1 where only verb 0 is
             pred_image("b", [OBJECT], [CUP], [(0, 1, 0.5)])]
    per_triplet = {}
    result = evaluate(gts, preds, per_triplet=per_triplet)
    # Verb 1: FP then TP -> precision 0 then .5 at recall 1 -> AP .5; verb 0: no hit -> 0.
    assert sorted(per_triplet.values()) == [0.0, pytest.approx(0.5)]
    assert result["mAP_full"] == pytest.approx(0.25)


def test_predictions_of_triplets_absent_from_the_ground_truth_are_ignored():
    gts = [gt_image("a", CUP, [0])]
    preds = [pred_image("a", [OBJECT], [CUP], [(0, 2, 0.99), (0, 0, 0.5)])]
    assert evaluate(gts, preds)["mAP_full"] == pytest.approx(1.0)


def test_known_object_ignores_images_without_the_object():
    gts = [gt_image("a", CUP, [0]), gt_image("b", BALL, [1])]
    preds = [pred_image("a", [OBJECT], [CUP], [(0, 0, 0.5)]),
             # image b has no cup: its confident "cup" HOI is a FP by default, ignored in KO
             pred_image("b", [OBJECT, [40, 0, 50, 10]], [BALL, CUP], [(0, 1, 0.8), (1, 0, 0.9)])]
    default, ko = evaluate(gts, preds), evaluate(gts, preds, mode="ko")
    assert default["mAP_full"] == pytest.approx((0.5 + 1.0) / 2)
    assert ko["mAP_full"] == pytest.approx(1.0)


def test_rare_and_non_rare_split_at_ten_training_instances():
    gts = [gt_image("a", CUP, [0]), gt_image("b", BALL, [1])]
    preds = [pred_image("a", [OBJECT], [CUP], [(0, 0, 0.9)]), pred_image("b", [], [], [])]
    cup_key, ball_key = sorted(triplet_counts(gts, NUM_VERBS), key=lambda k: k % NUM_VERBS)
    rare = evaluate(gts, preds, train=Counter({cup_key: 9, ball_key: 10}))
    assert (rare["mAP_rare"], rare["mAP_non_rare"], rare["num_rare_triplets"]) == (
        pytest.approx(1.0), 0.0, 1)
    flipped = evaluate(gts, preds, train=Counter({cup_key: 10, ball_key: 9}))
    assert (flipped["mAP_rare"], flipped["mAP_non_rare"]) == (0.0, pytest.approx(1.0))
    assert rare["mAP_full"] == flipped["mAP_full"] == pytest.approx(0.5)
    unseen = evaluate(gts, preds, train=Counter())  # zero training instances are rare too
    assert unseen["num_rare_triplets"] == 2 and np.isnan(unseen["mAP_non_rare"])


def test_top_hois_applies_the_verb_object_mask_before_cutting():
    corr = ALL_VALID.copy()
    corr[2, CUP] = False
    pred = pred_image("a", [OBJECT], [CUP], [(0, 2, 0.9), (0, 0, 0.5), (0, 1, 0.1)])
    kept = top_hois(pred, corr, max_hois=1)
    assert kept.hois.tolist() == [[0, 1, 0]] and kept.scores.tolist() == [0.5]
    gts = [gt_image("a", CUP, [0])]
    assert evaluate(gts, [pred], corr=corr, max_hois=1)["mAP_full"] == pytest.approx(1.0)


def reference_map(gts, preds, train_counts):
    """A plain-loop reading of the QPIC evaluator's rules (Default mode), for cross-checking."""
    records, gt_count = {}, Counter()
    for gt in gts:
        for s, o, v in gt.hois:
            gt_count[(gt.labels[s], gt.labels[o], v)] += 1
    for gt, pred in zip(gts, preds):
        pred = top_hois(pred, ALL_VALID)
        taken = set()
        for h in sorted(range(len(pred.hois)), key=lambda i: -pred.scores[i]):
            s, o, v = pred.hois[h]
            triplet = (pred.labels[s], pred.labels[o], v)
            best, best_overlap = None, 0.0
            for g, (gs, go, gv) in enumerate(gt.hois):
                iou_s = box_iou_plus_one(gt.boxes[[gs]], pred.boxes[[s]], gt.labels[[gs]],
                                         pred.labels[[s]])[0, 0]
                iou_o = box_iou_plus_one(gt.boxes[[go]], pred.boxes[[o]], gt.labels[[go]],
                                         pred.labels[[o]])[0, 0]
                if gv == v and iou_s >= 0.5 and iou_o >= 0.5 and min(iou_s, iou_o) > best_overlap:
                    best, best_overlap = g, min(iou_s, iou_o)
            if triplet not in gt_count:
                continue
            hit = best is not None and best not in taken
            if hit:
                taken.add(best)
            records.setdefault(triplet, []).append((pred.scores[h], hit))
    aps = []
    for triplet, n in gt_count.items():
        ranked = sorted(records.get(triplet, []), key=lambda r: -r[0])
        tp = np.cumsum([hit for _, hit in ranked])
        rec, prec = tp / n, tp / np.arange(1, len(ranked) + 1)
        aps.append(sum(prec[rec >= t].max() if (rec >= t).any() else 0
                       for t in np.arange(0, 1.1, 0.1)) / 11)
    return np.mean(aps)


def test_vectorised_evaluator_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for i in range(30):
        n = int(rng.integers(1, 4))
        corner = rng.integers(0, 60, (2 * n, 2))
        boxes = np.concatenate([corner, corner + rng.integers(8, 20, (2 * n, 2))], 1).astype(float)
        labels = np.array([0, CUP] * n if i % 2 else [0, BALL] * n)
        hois = np.array([[2 * k, 2 * k + 1, int(rng.integers(NUM_VERBS))] for k in range(n)])
        gts.append(HoiImage(str(i), boxes, labels, hois))
        jitter = boxes + rng.normal(0, 2.5, boxes.shape)
        m = int(rng.integers(0, 12))
        pred_hois = np.stack([rng.integers(0, n, m) * 2, rng.integers(0, n, m) * 2 + 1,
                              rng.integers(0, NUM_VERBS, m)], axis=1)
        preds.append(HoiImage(str(i), jitter, labels, pred_hois, rng.random(m)))
    result = evaluate(gts, preds)
    assert 0.05 < result["mAP_full"] < 0.95
    assert result["mAP_full"] == pytest.approx(reference_map(gts, preds, None))


# ------------------------------------------------------------------------ files and the CLI
def write_case(tmp_path, gt_entries=None, pred_entries=None):
    gt_entries = gt_entries or [
        {"file_name": "a.jpg", "annotations": [{"bbox": HUMAN, "category_id": 1},
                                               {"bbox": OBJECT, "category_id": 47}],
         "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 2}]}]
    pred_entries = pred_entries or [
        {"file_name": "a.jpg", "predictions": [{"bbox": HUMAN, "category_id": 1},
                                               {"bbox": OBJECT, "category_id": 47}],
         "hoi_prediction": [{"subject_id": 0, "object_id": 1, "category_id": 2, "score": 0.7}]}]
    paths = {name: tmp_path / f"{name}.json" for name in ("gt", "train", "pred")}
    paths["gt"].write_text(json.dumps(gt_entries))
    paths["train"].write_text(json.dumps(gt_entries))
    paths["pred"].write_text(json.dumps(pred_entries))
    paths["corr"] = tmp_path / "corre_hico.npy"
    np.save(paths["corr"], ALL_VALID)
    return paths


def cli_args(paths, *extra):
    return ["--gt", paths["gt"], "--train", paths["train"], "--corr", paths["corr"],
            "--pred", paths["pred"], *extra]


@pytest.mark.slow
def test_eval_cli_prints_and_writes_metrics(run_tool, tmp_path):
    paths = write_case(tmp_path)
    out = tmp_path / "metrics.json"
    result = run_tool("eval_hoi.py", *cli_args(paths, "--mode", "ko", "--out", out))
    assert result.returncode == 0, result.stderr
    assert "Known-Object" in result.stdout and "Full 1.0000" in result.stdout
    metrics = json.loads(out.read_text())
    assert metrics["mode"] == "ko" and metrics["mAP_full"] == pytest.approx(1.0)
    assert {"mAP_full", "mAP_rare", "mAP_non_rare"} <= set(metrics)


@pytest.mark.slow
def test_eval_cli_rejects_bad_predictions_without_writing(run_tool, tmp_path):
    paths = write_case(tmp_path, pred_entries=[
        {"file_name": "a.jpg", "predictions": [{"bbox": HUMAN, "category_id": 1}],
         "hoi_prediction": [{"subject_id": 0, "object_id": 7, "category_id": 2, "score": 1}]}])
    out = tmp_path / "metrics.json"
    result = run_tool("eval_hoi.py", *cli_args(paths, "--out", out))
    assert result.returncode == 2
    assert "pred.json: [0].hoi_prediction[0].object_id: index 7 out of range" in result.stderr
    assert not out.exists()


def entry(**changes):
    base = {"file_name": "x.jpg",
            "annotations": [{"bbox": [0, 0, 5, 5], "category_id": 1},
                            {"bbox": [6, 0, 9, 5], "category_id": 47}],
            "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 1}]}
    base.update(changes)
    return base


@pytest.mark.parametrize("bad, field, message", [
    (entry(hoi_annotation=[{"subject_id": 0, "object_id": 1, "category_id": 1},
                           {"subject_id": 0, "object_id": 7, "category_id": 1}]),
     r"\[1\].hoi_annotation\[1\].object_id", "index 7 out of range"),
    (entry(annotations=[{"bbox": [0, 0, 5, 5], "category_id": 1},
                        {"bbox": [9, 0, 6, 5], "category_id": 47}]),
     r"\[1\].annotations\[1\].bbox", "invalid box"),
    (entry(annotations=[{"bbox": [0, 0, 5, 5], "category_id": 1},
                        {"bbox": [6, 0, 9, 5], "category_id": 12}]),
     r"\[1\].annotations\[1\].category_id", "unknown object id 12"),
    (entry(hoi_annotation=[{"subject_id": 0, "object_id": 1, "category_id": 4}]),
     r"\[1\].hoi_annotation\[0\].category_id", r"unknown verb id 4 \(expected 1..3\)"),
    (entry(file_name="missing.jpg"), r"\[1\].file_name", "image not found"),
])
def test_annotation_errors_name_the_file_and_entry(tmp_path, bad, field, message):
    (tmp_path / "x.jpg").write_bytes(b"")
    path = tmp_path / "test_hico.json"
    path.write_text(json.dumps([entry(), bad]))
    with pytest.raises(DataFormatError, match=f"test_hico.json: {field}: {message}"):
        load_hoi_file(path, NUM_VERBS, image_dir=str(tmp_path))
