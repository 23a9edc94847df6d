"""The numbers of the verdicts: power, minimum detectable difference, seeds needed, TOST, Holm and
the verdict rules, each checked against scipy or statsmodels or by hand."""
import math

import numpy as np
import pytest
from scipy import integrate, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from tasks.common.statistics import (BETTER, INCONCLUSIVE, UNDERPOWERED, WORSE,
                                     equivalence_p_value, holm, minimum_detectable_difference,
                                     paired_difference, paired_t_power, seeds_needed, verdict)


def power_by_integration(standardized_effect, n, alpha=0.05):
    """Two-sided paired t-test power as an integral over the chi-square of the SD estimate:
    reject when |Z + δ√n| > c·S, S² ~ χ²(n-1)/(n-1)."""
    df, shift = n - 1, standardized_effect * math.sqrt(n)
    critical = stats.t.isf(alpha / 2, df)

    def rejected(v):
        scale = critical * math.sqrt(v / df)
        tails = stats.norm.sf(scale - shift) + stats.norm.cdf(-scale - shift)
        return tails * stats.chi2.pdf(v, df)
    return integrate.quad(rejected, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("effect, n", [(0.3, 3), (1.0, 5), (0.5, 20), (2.0, 4)])
def test_power_matches_statsmodels(effect, n):
    assert paired_t_power(effect, n) == pytest.approx(
        TTestPower().power(effect, n, 0.05, alternative="two-sided"), rel=1e-6)


@pytest.mark.parametrize("effect", [8.0, 12.0, 16.0])
def test_power_at_two_pairs_stays_finite_where_statsmodels_does_not(effect):
    assert paired_t_power(effect, 2) == pytest.approx(power_by_integration(effect, 2), abs=1e-6)


@pytest.mark.parametrize("n", [3, 5, 10, 30])
def test_minimum_detectable_difference_matches_statsmodels(n):
    sd = 0.004
    expected = TTestPower().solve_power(effect_size=None, nobs=n, alpha=0.05, power=0.8) * sd
    mdd = minimum_detectable_difference(sd, n)
    assert mdd == pytest.approx(expected, rel=1e-4)
    assert TTestPower().power(mdd / sd, n, 0.05) == pytest.approx(0.8, abs=1e-6)


def test_minimum_detectable_difference_edges():
    # 2 pairs: 11.5499 SDs (statsmodels' solve_power: 11.549889...); power there is 0.8
    assert minimum_detectable_difference(2.0, 2) == pytest.approx(2 * 11.54989, rel=1e-5)
    assert power_by_integration(11.54989, 2) == pytest.approx(0.8, abs=1e-5)
    assert minimum_detectable_difference(None, 1) is None
    assert minimum_detectable_difference(0.0, 4) == 0.0


@pytest.mark.parametrize("effect, expected", [(0.5, 34), (1.0, 10), (3.0, 4), (0.1, 787)])
def test_seeds_needed_is_the_first_count_with_enough_power(effect, expected):
    sd = 2.0
    needed = seeds_needed(effect * sd, sd)
    assert needed == expected == math.ceil(TTestPower().solve_power(effect, None, 0.05, 0.8))
    assert TTestPower().power(effect, needed, 0.05) >= 0.8 > TTestPower().power(
        effect, needed - 1, 0.05)


def test_seeds_needed_edges():
    # 20 SDs: statsmodels' solver stops at its lower bound 2, where the power is only 0.67
    assert power_by_integration(10.0, 2) < 0.8 <= power_by_integration(10.0, 3)
    assert seeds_needed(10.0, 1.0) == 3
    assert seeds_needed(50.0, 1.0) == 2
    assert seeds_needed(1.0, None) is None and seeds_needed(0.0, 1.0) is None
    assert seeds_needed(1e-6, 1.0) is None  # beyond MAX_SEEDS
    assert seeds_needed(0.5, 0.0) == 2


def test_paired_p_value_and_sd_match_scipy():
    treated, baseline = [0.92, 0.95, 0.91, 0.93], [0.90, 0.91, 0.92, 0.90]
    diff = paired_difference(dict(enumerate(treated)), dict(enumerate(baseline)))
    assert diff["p_value"] == pytest.approx(stats.ttest_rel(treated, baseline).pvalue)
    assert diff["sd"] == pytest.approx(np.std(np.subtract(treated, baseline), ddof=1))
    assert diff["baseline_mean"] == pytest.approx(0.9075)
    constant = paired_difference({0: 1.5, 1: 2.5}, {0: 1.0, 1: 2.0})
    assert constant["sd"] == 0 and constant["p_value"] == 0.0
    assert paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})["p_value"] == 1.0
    assert paired_difference({0: 1.0}, {0: 0.5})["p_value"] is None


def test_equivalence_p_value_is_the_larger_one_sided_p():
    treated = np.array([80.2, 81.0, 79.5, 80.8, 80.1])
    baseline = np.array([80.0, 80.5, 80.0, 80.2, 80.3])
    diffs, margin = treated - baseline, 0.8
    lower = stats.ttest_1samp(diffs, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(diffs, margin, alternative="less").pvalue
    p = equivalence_p_value(list(diffs), margin)
    assert p == pytest.approx(max(lower, upper))
    assert p == pytest.approx(ttost_paired(treated, baseline, -margin, margin)[0])
    assert equivalence_p_value([0.1, 0.1], 0.5) == 0.0
    assert equivalence_p_value([0.6, 0.6], 0.5) == 1.0
    assert equivalence_p_value([0.1], 0.5) is None


def test_holm_by_hand_and_against_statsmodels():
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1: 0.04, 0.09, 0.08 -> 0.09 (monotone), 0.5
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    p_values = [0.2, 0.001, 0.049, 0.012, 0.03]
    assert holm(p_values) == pytest.approx(list(multipletests(p_values, method="holm")[1]))
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


@pytest.mark.parametrize("mean, adjusted_p, equivalence_p, mdd, higher_is_better, expected", [
    (+0.3, 0.01, 0.9, 0.2, True, BETTER),
    (+0.3, 0.01, 0.9, 0.2, False, WORSE),   # a larger error is worse
    (-0.3, 0.01, 0.9, 0.2, False, BETTER),
    (-0.3, 0.04, 0.9, 0.9, True, WORSE),     # shown even though underpowered for the effect
    (0.05, 0.6, 0.01, 0.9, True, "equivalent within ±1 %"),  # equivalence needs no MDD <= effect
    (0.05, 0.6, 0.2, 0.6, True, UNDERPOWERED),
    (0.05, None, None, None, True, UNDERPOWERED),  # fewer than 2 pairs
    (0.4, 0.2, 0.2, 0.4, True, INCONCLUSIVE),
    (0.4, 0.05, 0.05, 0.5, True, INCONCLUSIVE),  # both at alpha exactly: neither shown
])
def test_verdict_rules(mean, adjusted_p, equivalence_p, mdd, higher_is_better, expected):
    assert verdict(mean, adjusted_p, equivalence_p, mdd, effect=0.5, effect_percent=1.0,
                   higher_is_better=higher_is_better) == expected
