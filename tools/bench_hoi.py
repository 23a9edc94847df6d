"""Time the HICO-DET evaluator at HICO-DET scale (9,658 test images, 100 queries x 117 verbs).

    python tools/bench_hoi.py [--images 9658] [--queries 100] [--verbs 117] [--seed 0]

Random ground truth (1-4 pairs per image, 600 triplets' worth of classes) and noisy copies of
it as QPIC-style query outputs; reports seconds for the top-100 selection and for the mAP
(Default and Known-Object).
"""
import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.hoi.evaluation import hoi_map, queries_to_hoi_image, top_hois  # noqa: E402
from tasks.hoi.hico import NUM_OBJECT_CLASSES, HoiImage  # noqa: E402


def synthetic_case(rng, num_images: int, num_queries: int, num_verbs: int):
    gts, preds = [], []
    for i in range(num_images):
        pairs = int(rng.integers(1, 5))
        corner = rng.uniform(0, 500, (2 * pairs, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(20, 200, (2 * pairs, 2))], 1)
        labels = np.zeros(2 * pairs, np.int64)
        labels[1::2] = rng.integers(1, NUM_OBJECT_CLASSES, pairs)
        verbs = rng.integers(0, num_verbs, pairs)
        hois = np.stack([np.arange(0, 2 * pairs, 2), np.arange(1, 2 * pairs, 2), verbs], 1)
        gts.append(HoiImage(f"{i}.jpg", boxes, labels, hois))
        pick = rng.integers(0, pairs, num_queries)
        noise = rng.normal(0, 8, (2, num_queries, 4))
        verb_scores = rng.random((num_queries, num_verbs)) ** 4
        verb_scores[np.arange(num_queries), verbs[pick]] += 0.5
        preds.append(queries_to_hoi_image(f"{i}.jpg", boxes[2 * pick] + noise[0],
                                          boxes[2 * pick + 1] + noise[1], labels[2 * pick + 1],
                                          verb_scores))
    return gts, preds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=9658)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--verbs", type=int, default=117)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    gts, candidates = synthetic_case(rng, args.images, args.queries, args.verbs)
    correspondence = np.ones((args.verbs, NUM_OBJECT_CLASSES), dtype=bool)
    start = time.perf_counter()
    preds = [top_hois(c, correspondence) for c in candidates]
    selected = time.perf_counter()
    train_counts = Counter()
    for mode in ("default", "ko"):
        started = time.perf_counter()
        scores = hoi_map(gts, preds, correspondence, train_counts, mode=mode)
        print(f"{mode}: mAP {scores['mAP_full']:.4f} over {scores['num_triplets']} triplets "
              f"in {time.perf_counter() - started:.2f} s")
    print(f"top-100 selection of {args.queries * args.verbs} candidates x {args.images} images: "
          f"{selected - start:.2f} s")


if __name__ == "__main__":
    main()
