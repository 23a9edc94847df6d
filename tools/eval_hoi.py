"""Evaluate any HOI detector's predictions with HICO-DET mAP (QPIC/CDN conventions).

    python tools/eval_hoi.py --gt test_hico.json --train trainval_hico.json \
        --corr corre_hico.npy --pred PRED.json [--mode default|ko] [--out METRICS.json]

PRED.json is a list aligned with the ground-truth list, one entry per image:
``{file_name, predictions: [{bbox, category_id}], hoi_prediction: [{subject_id, object_id,
category_id, score}]}``, with COCO object ids and verb ids 1..V as in the ground truth. Each
image's HOIs are masked by the verb x object mask and cut to the best 100 before matching.
"""
import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.common.cli import run_cli  # noqa: E402
from tasks.common.files import DataFormatError, write_json_atomic  # noqa: E402
from tasks.hoi.evaluation import MAX_HOIS, MODES, hoi_map, triplet_counts  # noqa: E402
from tasks.hoi.hico import load_correspondence, load_hoi_file  # noqa: E402


#: averages over a group of triplets; a group can be empty, and then its average is None (null)
AVERAGES = ("mAP_full", "mAP_rare", "mAP_non_rare", "mean_max_recall")


def evaluate_files(gt, train, corr, pred, mode: str = "default",
                   max_hois: int = MAX_HOIS) -> dict:
    """Metrics of ``pred`` against ``gt``; Rare = fewer than 10 instances in ``train``. An
    average over no triplet is None, so the JSON holds null, never a bare NaN."""
    correspondence = load_correspondence(corr)
    num_verbs = correspondence.shape[0]
    gts = load_hoi_file(gt, num_verbs, correspondence_file=corr)
    preds = load_hoi_file(pred, num_verbs, predictions=True, correspondence_file=corr)
    if len(preds) != len(gts):
        raise DataFormatError(pred, "<root>", f"{len(preds)} entries, but the ground truth "
                              f"{gt} has {len(gts)}")
    for i, (g, p) in enumerate(zip(gts, preds)):
        if g.file_name != p.file_name:
            raise DataFormatError(pred, f"[{i}].file_name",
                                  f"{p.file_name!r} does not match the ground truth's "
                                  f"{g.file_name!r}")
    counts = triplet_counts(load_hoi_file(train, num_verbs, correspondence_file=corr), num_verbs)
    scores = hoi_map(gts, preds, correspondence, counts, mode=mode, max_hois=max_hois)
    averages = {key: None if math.isnan(scores[key]) else scores[key] for key in AVERAGES}
    return {"mode": mode, **averages, "num_images": len(gts),
            "num_triplets": scores["num_triplets"],
            "num_rare_triplets": scores["num_rare_triplets"]}


def _shown(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", required=True, help="ground truth, e.g. test_hico.json")
    parser.add_argument("--train", required=True,
                        help="training annotations (their triplet counts define Rare)")
    parser.add_argument("--corr", required=True, help="verb x object mask, corre_hico.npy")
    parser.add_argument("--pred", required=True, help="predictions aligned with --gt")
    parser.add_argument("--mode", choices=MODES, default="default",
                        help="default, or ko (Known-Object)")
    parser.add_argument("--out", help="also write the metrics to this JSON file")
    args = parser.parse_args()
    metrics = evaluate_files(args.gt, args.train, args.corr, args.pred, args.mode)
    title = "Known-Object" if args.mode == "ko" else "Default"
    print(f"HICO-DET mAP ({title}, {metrics['num_images']} images): "
          f"Full {_shown(metrics['mAP_full'])}  Rare {_shown(metrics['mAP_rare'])}  "
          f"Non-rare {_shown(metrics['mAP_non_rare'])}")
    empty = [key for key in AVERAGES if metrics[key] is None]
    if empty:
        print(f"note: {', '.join(empty)}: no triplet to average over (e.g. every ground-truth "
              "triplet is rare), so null in the JSON")
    print(json.dumps(metrics, allow_nan=False))
    if args.out:
        write_json_atomic(args.out, metrics)


if __name__ == "__main__":
    run_cli(main)
