"""The numbers behind the aggregated results: per-variant statistics, paired intervals, ranks.

Pure functions of plain numbers; the aggregation (:mod:`tasks.common.summary`) decides what they
are applied to.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def describe(values: list[float]) -> dict:
    """Mean, sample standard deviation (ddof=1; None for one value) and n."""
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()),
            "std": float(array.std(ddof=1)) if len(array) > 1 else None, "n": len(array)}


def paired_difference(treated: dict, baseline: dict,
                      confidence: float = CONFIDENCE) -> Optional[dict]:
    """Mean of per-seed differences ``treated - baseline`` with a Student-t interval.

    Both arguments map seed -> value; only seeds in both count. The interval needs two pairs.
    """
    seeds = sorted(set(treated) & set(baseline))
    if not seeds:
        return None
    diffs = np.array([treated[s] - baseline[s] for s in seeds], dtype=float)
    mean, n = float(diffs.mean()), len(diffs)
    low = high = None
    if n > 1:
        half = stats.t.ppf((1 + confidence) / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n)
        low, high = mean - half, mean + half
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": n, "seeds": seeds,
            "excludes_zero": bool(low is not None and (low > 0 or high < 0))}


def scaled_interval(difference: Optional[dict], scale: float) -> dict:
    """The interval of a paired difference multiplied by ``scale``; a negative scale (used for
    lower-is-better metrics) swaps the ends. No interval gives None ends."""
    if not difference or difference["ci_low"] is None:
        return {"ci_low": None, "ci_high": None, "excludes_zero": False}
    low, high = sorted(scale * difference[end] for end in ("ci_low", "ci_high"))
    return {"ci_low": low, "ci_high": high, "excludes_zero": difference["excludes_zero"]}


def ranks_best_first(means, higher_is_better: bool) -> np.ndarray:
    """Average ranks of ``means`` (1 = best; ties share the mean of their ranks)."""
    means = np.asarray(means, dtype=float)
    return stats.rankdata(-means if higher_is_better else means)


def kendalls_w(ranks: np.ndarray) -> Optional[float]:
    """Kendall's coefficient of concordance of a (raters, items) table of average ranks,
    with the tie correction; 1 = every rater ranks the items identically, 0 = no agreement."""
    raters, items = ranks.shape
    if raters < 2 or items < 2:
        return None
    spread = ((ranks.sum(axis=0) - raters * (items + 1) / 2) ** 2).sum()
    ties = sum(float((counts ** 3 - counts).sum())
               for counts in (np.unique(row, return_counts=True)[1] for row in ranks))
    denominator = raters ** 2 * (items ** 3 - items) - raters * ties
    return float(12 * spread / denominator) if denominator > 0 else None
