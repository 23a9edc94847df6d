"""The numbers behind the aggregated results: per-variant statistics, paired intervals, power,
verdicts, ranks.

Pure functions of plain numbers; the aggregation (:mod:`tasks.common.summary`) decides what they
are applied to. Every test here is the paired t-test on per-seed differences (two-sided at
``ALPHA`` unless said otherwise).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW

CONFIDENCE = 0.95
ALPHA = 0.05  # two-sided, the complement of CONFIDENCE (written out: 1 - 0.95 is not 0.05)
POWER = 0.8
DEFAULT_EFFECT_PERCENT = 1.0
BETTER, WORSE, UNDERPOWERED, INCONCLUSIVE = (
    "better", "worse", "not shown: underpowered", "inconclusive")
MAX_SEEDS = 10 ** 9  # seeds_needed gives up beyond this


def describe(values: list[float]) -> dict:
    """Mean, sample standard deviation (ddof=1; None for one value) and n."""
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()),
            "std": float(array.std(ddof=1)) if len(array) > 1 else None, "n": len(array)}


def paired_difference(treated: dict, baseline: dict,
                      confidence: float = CONFIDENCE) -> Optional[dict]:
    """Mean of per-seed differences ``treated - baseline`` with a Student-t interval, the SD of
    the differences and the two-sided p-value of the paired t-test against 0.

    Both arguments map seed -> value; only seeds in both count. The interval, SD and p-value
    need two pairs. Constant differences (SD 0) give p = 1 when they are 0 and p = 0 otherwise,
    the limits of the t-test.
    """
    seeds = sorted(set(treated) & set(baseline))
    if not seeds:
        return None
    diffs = np.array([treated[s] - baseline[s] for s in seeds], dtype=float)
    mean, n = float(diffs.mean()), len(diffs)
    low = high = sd = p_value = None
    if n > 1:
        sd = float(diffs.std(ddof=1))
        half = stats.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
        p_value = (float(stats.ttest_1samp(diffs, 0.0).pvalue) if sd > 0
                   else 1.0 if mean == 0 else 0.0)
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": n, "seeds": seeds,
            "differences": diffs.tolist(), "sd": sd, "p_value": p_value,
            "baseline_mean": float(np.mean([baseline[s] for s in seeds])),
            "excludes_zero": bool(low is not None and (low > 0 or high < 0))}


def paired_t_power(standardized_effect: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at ``alpha`` over ``n`` pairs against a true mean
    difference of ``standardized_effect`` SDs of the differences (noncentral t).

    Both tails as survival functions: the lower tail P(T < -c) is P(T' > c) with the sign of the
    noncentrality flipped, which stays finite where the noncentral t's cdf does not (e.g.
    statsmodels' TTestPower gives NaN at 2 pairs for large effects).
    """
    df, noncentrality = n - 1, standardized_effect * math.sqrt(n)
    critical = stats.t.isf(alpha / 2, df)
    return float(stats.nct.sf(critical, df, noncentrality)
                 + stats.nct.sf(critical, df, -noncentrality))


def minimum_detectable_difference(sd: Optional[float], n: int, alpha: float = ALPHA,
                                  power: float = POWER) -> Optional[float]:
    """The smallest true mean difference that a two-sided paired t-test at ``alpha`` over ``n``
    pairs detects with probability ``power``, for differences of standard deviation ``sd``.
    None with fewer than two pairs (no SD: nothing is detectable)."""
    if sd is None or n < 2:
        return None
    if sd == 0:
        return 0.0
    high = 1.0
    while paired_t_power(high, n, alpha) < power:
        high *= 2
    standardized = optimize.brentq(lambda size: paired_t_power(size, n, alpha) - power,
                                   0.0, high, xtol=1e-12)
    return float(standardized * sd)


def seeds_needed(effect: float, sd: Optional[float], alpha: float = ALPHA,
                 power: float = POWER) -> Optional[int]:
    """The fewest pairs (at least 2) at which a two-sided paired t-test at ``alpha`` detects a
    true mean difference ``effect`` with probability ``power``, for differences of standard
    deviation ``sd``. None without an SD, for a zero effect, or beyond MAX_SEEDS."""
    if sd is None or effect <= 0:
        return None
    if sd == 0:
        return 2

    def enough(n):
        return paired_t_power(effect / sd, n, alpha) >= power
    high = 2
    while not enough(high):
        if high > MAX_SEEDS:
            return None
        high *= 2
    low = max(2, high // 2)  # the answer lies in [low, high]; enough(high) holds
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle + 1, high)
    return high


def equivalence_p_value(differences: list[float], margin: float) -> Optional[float]:
    """p-value of the two one-sided paired t-tests (TOST) that the true mean difference lies
    within ``(-margin, +margin)``: the larger of the two one-sided p-values. None with fewer
    than two pairs; constant differences give 0 inside the margin and 1 outside."""
    diffs = np.asarray(differences, dtype=float)
    if len(diffs) < 2:
        return None
    if diffs.std(ddof=1) == 0:
        return 0.0 if abs(diffs.mean()) < margin else 1.0
    return float(DescrStatsW(diffs).ttost_mean(-margin, margin)[0])


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (same order)."""
    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, method="holm")[1]]


def verdict(mean: float, adjusted_p: Optional[float], equivalence_p: Optional[float],
            mdd: Optional[float], effect: float, effect_percent: float, higher_is_better: bool,
            alpha: float = ALPHA) -> str:
    """The plain-words verdict on a paired comparison, first that applies:

    - *better* / *worse*: the Holm-adjusted p-value is below ``alpha`` (direction from the mean
      difference and ``higher_is_better``);
    - *equivalent within ±effect*: the TOST p-value is below ``alpha`` (the 90 % interval lies
      inside ±``effect``);
    - *not shown: underpowered*: the minimum detectable difference exceeds ``effect`` (or there
      is no SD: fewer than two pairs), so a true effect of that size could well be missed;
    - *inconclusive*: the comparison had the power, yet neither a difference nor equivalence is
      shown (the mean difference lies between 0 and about ``effect``).
    """
    if adjusted_p is not None and adjusted_p < alpha:
        return BETTER if (mean > 0) == higher_is_better else WORSE
    if equivalence_p is not None and equivalence_p < alpha:
        return f"equivalent within ±{effect_percent:g} %"
    if mdd is None or mdd > effect:
        return UNDERPOWERED
    return INCONCLUSIVE


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
