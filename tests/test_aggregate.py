"""Aggregation of hand-made reports: statistics, paired intervals, verdicts, provenance, problems,
bad input, outputs and their figures."""
import csv
import json
import math
import runpy
import statistics as pystats
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from tasks.common import report as report_module
from tasks.common.files import DataFormatError, write_json_atomic
from tasks.common.render import (NOT_COMPARED, attention_stack, curve_figure, dot_figure,
                                 forest_figure, format_difference, format_mean_std, layer_figure,
                                 render_csv, tables)
from tasks.common.report import read_report
from tasks.common.statistics import (describe, kendalls_w, paired_difference, ranks_best_first,
                                     scaled_interval)
from tasks.common.summary import aggregate, collect, read_status, summarise
from tasks.common.variants import VARIANTS, finetune_counterpart, get_variant

REPO = Path(__file__).resolve().parents[1]
CLS_TOP1 = {  # variant -> per-seed top-1 (seeds 0, 1, 2)
    "none": [0.90, 0.92, 0.91],
    "attndrop": [0.91, 0.90, 0.93],
    "dropkey-dec": [0.93, 0.94, 0.935],
}
MESH_ERROR = {"none": [80.0, 82.0], "dropkey-dec": [75.0, 78.0]}  # lower is better
LAYER_RATIOS = {"none": [0.0] * 3, "attndrop": [0.1] * 3, "dropkey-dec": [0.1, 0.05, 0.0]}
MACHINE = {"cpu_model": "Intel(R) Xeon(R) CPU @ 2.20GHz", "torch_threads": 1,
           "torch_version": "2.14.1+cpu", "torch_cuda": None, "torch_git_version": "5c48869",
           "gpu": None}


def report(task, dataset, variant, seed, metrics, primary, higher_is_better=True):
    """A schema-2 report with the field set BenchReportHook.build_report writes."""
    try:
        core = get_variant(variant)  # with the ratio a -p<ratio> label carries
    except ValueError:
        core = VARIANTS["dropkey-dec"]  # custom labels: dropkey-dec's core
    return {
        "schema_version": 2, "mode": "train", "task": task,
        "config": f"configs/{task}/tiny_{variant}_embedded.py", "variant": variant,
        "method": core.method, "schedule": core.schedule, "base_drop_ratio": core.drop_ratio,
        "attention_layers": [{"name": f"blocks.{i}.attn", "method": core.method, "drop_ratio": r,
                              "entropy": 2.0 + 0.1 * i + seed * 0.01}
                             for i, r in enumerate(LAYER_RATIOS.get(variant,
                                                                    [core.drop_ratio] * 3))],
        "seed": seed, "dataset": dataset, "metrics": metrics, "primary_metric": primary,
        "higher_is_better": higher_is_better, "epochs": 2, "iterations": 20,
        "train_seconds": 1.5, "train_samples_per_second": 100.0,
        "curves": {"train/loss": {"step": [1, 2, 3], "value": [2.0, 1.5, 1.0 + seed]},
                   f"val/{primary}": {"step": [1, 2], "value": [0.5, metrics[primary]]}},
        "versions": {"torch": "2.14.1"}, "git_commit": "a11bf93", "machine": dict(MACHINE),
        "work_dir": "x", "created": "2025-01-01T00:00:00+0000",
    }


def as_version_1(report_v2):
    """The same report as schema version 1 wrote it: the label in ``method``, no ``variant``."""
    report_v1 = {key: value for key, value in report_v2.items()
                 if key not in ("variant", "machine")}
    report_v1.update(schema_version=1, method=report_v2["variant"])
    return report_v1


def write_suite(root, convert=lambda r: r):
    for variant, values in CLS_TOP1.items():
        for seed, top1 in enumerate(values):
            write_json_atomic(root / "classification" / variant / f"seed{seed}" / "report.json",
                              convert(report("classification", "digits", variant, seed,
                                             {"cls/top1": top1, "cls/nll": 1 - top1}, "cls/top1")))
    for variant, values in MESH_ERROR.items():
        for seed, error in enumerate(values):
            write_json_atomic(root / "mesh" / variant / f"seed{seed}" / "report.json",
                              convert(report("mesh", "synthetic", variant, seed,
                                             {"mesh/pa_mpjpe": error}, "mesh/pa_mpjpe", False)))
    return root


@pytest.fixture
def suite_dir(tmp_path):
    return write_suite(tmp_path / "suite")


def summary_of(*dirs, **options):
    return summarise(*collect(list(dirs)), dirs, **options)


def benchmark(summary, name):
    return next(b for b in summary["benchmarks"] if b["name"] == name)


# ------------------------------------------------------------------------------------ statistics

def test_describe_gives_mean_and_sample_std():
    cell = describe([0.93, 0.94, 0.935])
    assert cell["mean"] == pytest.approx(pystats.mean([0.93, 0.94, 0.935]))
    assert cell["std"] == pytest.approx(0.005)  # sqrt((0.005² + 0.005² + 0) / 2)
    assert cell["n"] == 3
    assert describe([0.9519]) == {"mean": 0.9519, "std": None, "n": 1}


def test_paired_interval_matches_hand_computation_and_scipy():
    # d = (0.02, 0.03, 0.04): mean 0.03, sd 0.01, t(0.975, 2) = 4.302652729911275
    diff = paired_difference({0: 0.92, 1: 0.93, 2: 0.94, 7: 1.0}, {0: 0.90, 1: 0.90, 2: 0.90})
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert diff["seeds"] == [0, 1, 2] and diff["n"] == 3
    assert diff["mean"] == pytest.approx(0.03)
    assert (diff["ci_low"], diff["ci_high"]) == pytest.approx((0.03 - half, 0.03 + half))
    assert diff["excludes_zero"]  # [0.0052, 0.0548]
    reference = stats.ttest_rel([0.92, 0.93, 0.94], [0.90, 0.90, 0.90]).confidence_interval(0.95)
    assert (diff["ci_low"], diff["ci_high"]) == pytest.approx((reference.low, reference.high))
    single = paired_difference({0: 1.0}, {0: 0.5})
    assert single["mean"] == 0.5 and single["ci_low"] is None and not single["excludes_zero"]
    assert paired_difference({0: 1.0}, {1: 0.5}) is None


def test_paired_interval_at_another_confidence_matches_scipy_t_interval():
    treated, baseline = {0: 1.0, 1: 3.0, 2: 2.0, 3: 6.0}, {0: 0.5, 1: 1.0, 2: 2.5, 3: 3.0}
    diffs = [treated[s] - baseline[s] for s in range(4)]  # 0.5, 2, -0.5, 3
    diff = paired_difference(treated, baseline, confidence=0.8)
    expected = stats.t.interval(0.8, 3, loc=np.mean(diffs), scale=stats.sem(diffs))
    assert (diff["ci_low"], diff["ci_high"]) == pytest.approx(expected)
    assert diff["excludes_zero"] == (expected[0] > 0)


def test_scaled_interval_swaps_the_ends_for_a_negative_scale():
    difference = {"ci_low": -6.0, "ci_high": -2.0, "excludes_zero": True}
    assert scaled_interval(difference, -0.5) == {"ci_low": 1.0, "ci_high": 3.0,
                                                  "excludes_zero": True}
    assert scaled_interval(difference, 2.0)["ci_low"] == -12.0
    assert scaled_interval({"ci_low": None}, 2.0)["ci_low"] is None


def test_ranks_best_first_average_ties_in_both_directions():
    assert list(ranks_best_first([0.90, 0.95, 0.90], higher_is_better=True)) == [2.5, 1.0, 2.5]
    assert list(ranks_best_first([0.90, 0.95, 0.90], higher_is_better=False)) == [1.5, 3.0, 1.5]


def test_kendalls_w_by_hand():
    assert kendalls_w(np.array([[1, 2, 3], [1, 2, 3]], dtype=float)) == pytest.approx(1.0)
    assert kendalls_w(np.array([[1, 2], [2, 1]], dtype=float)) == pytest.approx(0.0)
    # rank sums 3, 5, 4 -> S = 2; 12 S / (m^2 (n^3 - n)) = 24 / 96
    assert kendalls_w(np.array([[1, 2, 3], [2, 3, 1]], dtype=float)) == pytest.approx(0.25)
    # with a tie: rank sums 2, 4.5, 5.5 -> S = 6.5; T = 2^3 - 2 = 6;
    # W = 12 S / (m^2 (n^3 - n) - m T) = 78 / (96 - 12)
    assert kendalls_w(np.array([[1, 2.5, 2.5], [1, 2, 3]])) == pytest.approx(78 / 84)
    assert kendalls_w(np.array([[1, 2, 3]], dtype=float)) is None


# ------------------------------------------------------------------------------------- summaries

def test_means_and_sample_stds_with_sources_in_registry_order(suite_dir):
    cls = benchmark(summary_of(suite_dir), "classification/digits")
    assert cls["variants"] == ["none", "attndrop", "dropkey-dec"]  # registry, not alphabetical
    assert cls["metrics"] == ["cls/top1", "cls/nll"]
    for variant, values in CLS_TOP1.items():
        cell = cls["stats"][variant]["cls/top1"]
        assert cell["mean"] == pytest.approx(pystats.mean(values))
        assert cell["std"] == pytest.approx(pystats.stdev(values))
        assert cell["n"] == 3 and cell["seeds"] == [0, 1, 2]
        assert cell["sources"] == [str(suite_dir / "classification" / variant / f"seed{s}" /
                                       "report.json") for s in range(3)]


def test_a_label_outside_the_registry_sorts_after_the_known_ones(suite_dir):
    custom = report("mesh", "synthetic", "dropkey-dec", 0, {"mesh/pa_mpjpe": 70.0},
                    "mesh/pa_mpjpe", False)
    custom["variant"] = "aaa-ratio0.2"
    write_json_atomic(suite_dir / "mesh" / "aaa-ratio0.2" / "seed0" / "report.json", custom)
    mesh = benchmark(summary_of(suite_dir), "mesh/synthetic")
    assert mesh["variants"] == ["none", "dropkey-dec", "aaa-ratio0.2"]


def test_differences_from_both_baselines_are_paired_by_seed(suite_dir):
    summary = summary_of(suite_dir)
    cls = benchmark(summary, "classification/digits")
    vs_none = cls["differences"]["none"]["dropkey-dec"]["cls/top1"]
    expected = stats.ttest_rel(CLS_TOP1["dropkey-dec"], CLS_TOP1["none"]).confidence_interval()
    assert vs_none["mean"] == pytest.approx(np.mean(np.subtract(CLS_TOP1["dropkey-dec"],
                                                                CLS_TOP1["none"])))
    assert (vs_none["ci_low"], vs_none["ci_high"]) == pytest.approx((expected.low, expected.high))
    assert vs_none["excludes_zero"] == (expected.low > 0 or expected.high < 0)
    vs_attndrop = cls["differences"]["attndrop"]["none"]["cls/top1"]
    assert vs_attndrop["mean"] == pytest.approx(np.mean(np.subtract(CLS_TOP1["none"],
                                                                    CLS_TOP1["attndrop"])))
    assert not vs_attndrop["excludes_zero"]  # differences -0.01, +0.02, -0.02 straddle 0
    assert len(vs_none["sources"]) == 6
    assert "attndrop" not in benchmark(summary, "mesh/synthetic")["differences"]


def test_cross_task_views_respect_lower_is_better(suite_dir):
    cross = summary_of(suite_dir)["cross_task"]
    mesh_gain = cross["relative_to_none_percent"]["dropkey-dec"]["mesh/synthetic"]
    assert mesh_gain["percent"] == pytest.approx(100 * (81.0 - 76.5) / 81.0)  # lower error: gain
    # Paired differences -5, -4 mm: t-interval -4.5 ± 12.706 * 0.5, in % of 81 mm, sign flipped.
    half = stats.t.ppf(0.975, 1) * 0.5
    assert (mesh_gain["ci_low"], mesh_gain["ci_high"]) == pytest.approx(
        (100 * (4.5 - half) / 81.0, 100 * (4.5 + half) / 81.0))
    assert not mesh_gain["excludes_zero"]
    cls_gain = cross["relative_to_none_percent"]["dropkey-dec"]["classification/digits"]["percent"]
    assert cls_gain == pytest.approx(100 * (0.935 - 0.91) / 0.91)
    ranking = cross["ranking"]
    assert ranking["dropkey-dec"]["ranks"] == {"classification/digits": 1.0, "mesh/synthetic": 1.0}
    assert ranking["dropkey-dec"]["consistent"] and ranking["dropkey-dec"]["better_than_none"] == 2
    assert ranking["none"]["ranks"] == {"classification/digits": 3.0, "mesh/synthetic": 2.0}
    assert not ranking["none"]["consistent"]
    assert cross["kendalls_w_variants"] == ["none", "dropkey-dec"] and cross["kendalls_w"] == 1.0


def test_version_1_reports_give_the_same_tables_as_version_2(tmp_path):
    as_v2 = summary_of(write_suite(tmp_path / "v2" / "suite"))
    as_v1 = summary_of(write_suite(tmp_path / "v1" / "suite", as_version_1))

    def results(summary):  # everything but provenance, which version 1 did not record
        return [table for table in tables(summary) if not table["title"].endswith("provenance")]
    assert results(as_v1) == results(as_v2)
    assert benchmark(as_v1, "mesh/synthetic")["provenance"]["machines"] == {"unknown": 4}

    def without_sources(text):
        return [row[:-1] for row in csv.reader(text.splitlines())]
    assert without_sources(render_csv(as_v1)) == without_sources(render_csv(as_v2))
    assert as_v1["cross_task"]["variants"] == ["none", "attndrop", "dropkey-dec"]


def test_failed_unfinished_and_missing_runs_are_listed(suite_dir):
    (suite_dir / "classification" / "attndrop" / "seed2" / "report.json").unlink()
    write_json_atomic(suite_dir / "detection" / "none" / "seed0" / "run_status.json", {
        "task": "detection", "variant": "none", "seed": 0, "status": "failed",
        "reason": "tools/train.py exited with code 1", "error_tail": "Traceback: boom"})
    write_json_atomic(suite_dir / "hoi" / "none" / "seed0" / "run_status.json",  # older suite
                      {"task": "hoi", "method": "none", "seed": 0, "status": "pending"})
    write_json_atomic(suite_dir / "classification" / "none" / "seed0" / "run_status.json",
                      {"task": "classification", "variant": "none", "seed": 0, "status": "ok"})
    summary = summary_of(suite_dir)
    problems = {(p["task"], p["variant"], p["seed"]): p for p in summary["problems"]}
    assert set(problems) == {("classification", "attndrop", 2), ("detection", "none", 0),
                             ("hoi", "none", 0)}
    assert problems[("classification", "attndrop", 2)]["status"] == "missing"
    assert problems[("detection", "none", 0)]["reason"] == "tools/train.py exited with code 1"
    assert problems[("hoi", "none", 0)]["status"] == "pending"
    cls = benchmark(summary, "classification/digits")
    assert cls["stats"]["attndrop"]["cls/top1"]["n"] == 2
    assert cls["differences"]["attndrop"]["dropkey-dec"]["cls/top1"]["seeds"] == [0, 1]


def run_aggregate_tool(*args):
    """``tools/aggregate.py ARGS`` in this process; returns its exit code (0 when it returns)."""
    argv = sys.argv
    sys.argv = ["tools/aggregate.py", *map(str, args)]
    try:
        runpy.run_path(str(REPO / "tools" / "aggregate.py"), run_name="__main__")
    except SystemExit as exit_:
        return exit_.code
    finally:
        sys.argv = argv
    return 0


def edited(change):
    """A corruption that loads the report, applies ``change`` to it and writes it back."""
    def corrupt(path):
        report = json.loads(path.read_text())
        change(report)
        path.write_text(json.dumps(report))  # json.dumps writes bare NaN / Infinity
    return corrupt


@pytest.mark.parametrize("corrupt, field", [
    (lambda path: path.write_text('{"task": "classification",'), "malformed JSON"),
    (lambda path: path.write_text(json.dumps({
        k: v for k, v in json.loads(path.read_text()).items() if k != "metrics"})), "metrics"),
    (edited(lambda r: r["metrics"].update({"mesh/pa_mpjpe": float("nan")})),
     "metrics.mesh/pa_mpjpe: nan is not a finite number"),
    (edited(lambda r: r["metrics"].update({"mesh/pve": float("inf")})),
     "metrics.mesh/pve: inf is not a finite number"),
    (edited(lambda r: r.update(curves={"train/loss": {"step": [1, 2], "value": [0.5]}})),
     "curves.train/loss: 2 steps but 1 values"),
    (edited(lambda r: r.update(curves={"train/loss": {"step": [1], "value": ["low"]}})),
     "curves.train/loss.value: holds a value that is not a number"),
    (edited(lambda r: r.update(curves=[1, 2])), "curves: is not an object"),
    (edited(lambda r: r["attention_layers"].append(
        {"name": "x", "method": "dropkey", "drop_ratio": "0.1"})),
     r"attention_layers\[\d+\].drop_ratio: '0.1' is not a ratio"),
    (edited(lambda r: r.update(base_drop_ratio=1.5)), "base_drop_ratio: is not a ratio"),
])
def test_malformed_report_names_the_file_and_writes_nothing(suite_dir, tmp_path, capsys,
                                                            corrupt, field):
    bad = suite_dir / "mesh" / "none" / "seed1" / "report.json"
    corrupt(bad)
    with pytest.raises(DataFormatError, match=field) as info:
        aggregate([suite_dir], tmp_path / "out")
    assert info.value.path == str(bad)
    assert run_aggregate_tool(suite_dir, "--out", tmp_path / "out") == 2
    assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("status, field, problem", [
    ({"task": "hoi", "variant": "none", "seed": 0, "status": "done"}, "status",
     "'done' is not one of"),
    ({"task": "hoi", "seed": 0, "status": "ok"}, "variant", "missing"),
    ({"task": "hoi", "variant": "none", "seed": "0", "status": "ok"}, "seed", "not a int"),
])
def test_malformed_run_status_names_the_file_and_field(suite_dir, status, field, problem):
    bad = suite_dir / "hoi" / "none" / "seed0" / "run_status.json"
    write_json_atomic(bad, status)
    with pytest.raises(DataFormatError, match=problem) as info:
        collect([suite_dir])
    assert info.value.path == str(bad) and info.value.field == field


def test_status_of_an_older_suite_reads_method_as_the_variant(tmp_path):
    path = tmp_path / "run_status.json"
    write_json_atomic(path, {"task": "hoi", "method": "dropkey-dec", "seed": 1,
                             "status": "failed"})
    assert read_status(path)["variant"] == "dropkey-dec"


def test_duplicate_seed_is_an_error(suite_dir, tmp_path):
    copy = tmp_path / "other" / "report.json"
    copy.parent.mkdir()
    copy.write_text((suite_dir / "mesh" / "none" / "seed1" / "report.json").read_text())
    with pytest.raises(DataFormatError, match="also reported by"):
        summary_of(suite_dir, tmp_path / "other")


# -------------------------------------------------------------------------------------- verdicts

UNIT_NORMAL = np.array([-1.6, -1.0, -0.6, -0.3, 0.0, 0.1, 0.4, 0.7, 1.0, 1.3])
UNIT_NORMAL = (UNIT_NORMAL - UNIT_NORMAL.mean()) / UNIT_NORMAL.std(ddof=1)  # mean 0, SD 1
VERDICT_CASES = {  # variant -> (mean, SD) of its differences from none, whose mean is 100
    "dropkey-const": (3.0, 0.5),     # better
    "dropkey-dec": (-3.0, 0.5),      # worse
    "dropkey-inc": (0.1, 0.5),       # equivalent: 90 % interval 0.1 ± 0.29 inside ±1
    "dropkey-block": (0.2, 3.0),     # underpowered: MDD 2.99 > 1
    "custom-middle": (0.56, 0.9),    # inconclusive: MDD 0.90 <= 1, p 0.08, TOST p 0.08
}
EXPECTED_VERDICTS = {"dropkey-const": "better", "dropkey-dec": "worse",
                     "dropkey-inc": "equivalent within ±1 %",
                     "dropkey-block": "not shown: underpowered", "custom-middle": "inconclusive"}


def verdict_values():
    values = {"none": np.full(10, 100.0)}
    values.update({variant: 100.0 + mean + sd * UNIT_NORMAL
                   for variant, (mean, sd) in VERDICT_CASES.items()})
    return values


def write_verdict_suite(root):
    """Ten seeds of five variants around none (top-1 in %), and a lower-is-better benchmark."""
    for variant, values in verdict_values().items():
        for seed, value in enumerate(values):
            write_json_atomic(root / "cls" / variant / f"seed{seed}" / "report.json",
                              report("classification", "digits", variant, seed,
                                     {"cls/top1": float(value)}, "cls/top1"))
    for variant, values in {"none": [80.0, 82.0, 81.0], "dropkey-dec": [70.0, 72.5, 71.0]}.items():
        for seed, value in enumerate(values):
            write_json_atomic(root / "mesh" / variant / f"seed{seed}" / "report.json",
                              report("mesh", "synthetic", variant, seed, {"mesh/pa_mpjpe": value},
                                     "mesh/pa_mpjpe", False))
    return root


def test_each_verdict_with_its_numbers_from_scipy_and_statsmodels(tmp_path):
    summary = summary_of(write_verdict_suite(tmp_path / "suite"))
    cls = benchmark(summary, "classification/digits")["differences"]["none"]
    mesh = benchmark(summary, "mesh/synthetic")["differences"]["none"]["dropkey-dec"]
    mesh = mesh["mesh/pa_mpjpe"]
    values = verdict_values()
    family = {variant: stats.ttest_rel(values[variant], values["none"]).pvalue
              for variant in VERDICT_CASES}
    family["mesh"] = stats.ttest_rel([70.0, 72.5, 71.0], [80.0, 82.0, 81.0]).pvalue
    holm = dict(zip(family, multipletests(list(family.values()), method="holm")[1]))
    assert summary["comparisons"]["size"] == 6
    for variant, (mean, sd) in VERDICT_CASES.items():
        cell = cls[variant]["cls/top1"]
        assert cell["verdict"] == EXPECTED_VERDICTS[variant], variant
        assert cell["effect"] == pytest.approx(1.0)  # 1 % of none's mean, 100
        assert cell["p_value"] == pytest.approx(family[variant])
        assert cell["p_holm"] == pytest.approx(holm[variant])
        assert cell["sd"] == pytest.approx(sd)
        assert cell["mdd"] == pytest.approx(
            TTestPower().solve_power(None, 10, 0.05, 0.8) * sd, rel=1e-4)
        assert cell["seeds_needed"] == math.ceil(TTestPower().solve_power(1.0 / sd, None, 0.05,
                                                                          0.8))
        assert cell["p_equivalence"] == pytest.approx(
            ttost_paired(values[variant], values["none"], -1.0, 1.0)[0])
    # lower error is better; the only test of this benchmark, Holm-adjusted with the others
    assert mesh["verdict"] == "better" and mesh["p_holm"] == pytest.approx(holm["mesh"])
    markdown = "\n".join(str(row) for table in tables(summary) for row in table["rows"])
    for words in EXPECTED_VERDICTS.values():
        assert words in markdown


def test_the_effect_of_interest_moves_the_verdicts(tmp_path):
    suite = write_verdict_suite(tmp_path / "suite")
    wide = benchmark(summary_of(suite, effect_percent=5), "classification/digits")
    cell = wide["differences"]["none"]["dropkey-block"]["cls/top1"]
    assert cell["effect"] == pytest.approx(5.0)
    assert cell["seeds_needed"] == math.ceil(TTestPower().solve_power(5.0 / 3.0, None, 0.05, 0.8))
    assert cell["verdict"] == "equivalent within ±5 %"  # 0.2 ± 1.74 (90 %) lies inside ±5


@pytest.mark.parametrize("effect", ["0", "-1", "nan", "inf"])
def test_an_effect_that_is_not_positive_is_an_error_naming_the_field(suite_dir, tmp_path, capsys,
                                                                      effect):
    out = tmp_path / "out"
    assert run_aggregate_tool(suite_dir, "--out", out, "--effect", effect) == 2
    assert "--effect" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(DataFormatError) as info:
        aggregate([suite_dir], out, effect_percent=float(effect))
    assert info.value.field == "--effect"


# ------------------------------------------------------------------------------------ provenance

def rewrite(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    write_json_atomic(path, data)


def test_seeds_across_commits_are_paired_only_when_allowed(suite_dir):
    cls_dir = suite_dir / "classification"
    rewrite(cls_dir / "dropkey-dec" / "seed2" / "report.json", git_commit="b0b0b0b")
    rewrite(cls_dir / "none" / "seed0" / "report.json", git_commit="a11bf93+dirty")
    summary = summary_of(suite_dir)
    cls = benchmark(summary, "classification/digits")
    assert cls["differences"]["none"]["dropkey-dec"]["cls/top1"]["seeds"] == [1]
    assert cls["differences"]["attndrop"]["dropkey-dec"]["cls/top1"]["seeds"] == [0, 1]
    assert cls["differences"]["attndrop"]["none"]["cls/top1"]["seeds"] == [1, 2]
    prov = cls["provenance"]
    assert prov["mixed_commits"] and not prov["mixed_machines"] and prov["dirty"] == 1
    assert prov["commits"] == {"a11bf93": 7, "b0b0b0b": 1, "a11bf93+dirty": 1}
    pairs = {(p["variant"], p["baseline"], p["seed"]) for p in prov["cross_commit_pairs"]}
    assert pairs == {("attndrop", "none", 0), ("dropkey-dec", "none", 0),
                     ("dropkey-dec", "none", 2), ("dropkey-dec", "attndrop", 2)}  # once each
    warning = next(w for w in summary["warnings"] if "commits" in w)
    assert warning.startswith("classification/digits: reports from 3 commits")
    assert "4 seed pairs across commits not compared" in warning and "--allow-mixed" in warning
    assert not any(w.startswith("mesh/") for w in summary["warnings"])

    mixed = benchmark(summary_of(suite_dir, allow_mixed=True), "classification/digits")
    cell = mixed["differences"]["none"]["dropkey-dec"]["cls/top1"]
    assert cell["seeds"] == [0, 1, 2] and cell["cross_commit_seeds"] == [0, 2]
    assert mixed["provenance"]["cross_commit_paired"]


def test_a_variant_whose_seeds_all_ran_at_another_commit_is_listed_as_not_compared(suite_dir):
    for seed in (0, 1):
        rewrite(suite_dir / "mesh" / "dropkey-dec" / f"seed{seed}" / "report.json",
                git_commit="7e97604")
    summary = summary_of(suite_dir)
    mesh = benchmark(summary, "mesh/synthetic")
    assert mesh["differences"]["none"]["dropkey-dec"] == {}
    verdicts = next(t for t in tables(summary) if t["title"].startswith("mesh/synthetic: verdicts"))
    assert verdicts["rows"] == [["dropkey-dec", "none", "0"] + ["–"] * 7 + [NOT_COMPARED]]
    forest = forest_figure(mesh, {"none": "C0", "dropkey-dec": "C1"}, 1.0).axes[0]
    assert [text.get_text() for text in forest.texts] == [NOT_COMPARED]


def test_mixed_or_unrecorded_machines_are_flagged_but_paired(suite_dir, tmp_path, capsys):
    mesh_dir = suite_dir / "mesh"
    rewrite(mesh_dir / "none" / "seed1" / "report.json", machine={**MACHINE, "torch_threads": 2})
    older = json.loads((mesh_dir / "dropkey-dec" / "seed1" / "report.json").read_text())
    del older["machine"]  # a report written before the field existed
    write_json_atomic(mesh_dir / "dropkey-dec" / "seed1" / "report.json", older)
    summary = summary_of(suite_dir)
    mesh = benchmark(summary, "mesh/synthetic")
    assert mesh["provenance"]["mixed_machines"] and mesh["provenance"]["unknown_machine"] == 1
    assert set(mesh["provenance"]["machines"]) == {
        "Intel(R) Xeon(R) CPU @ 2.20GHz; 1 thread; torch 2.14.1+cpu (5c48869)",
        "Intel(R) Xeon(R) CPU @ 2.20GHz; 2 threads; torch 2.14.1+cpu (5c48869)", "unknown"}
    assert mesh["differences"]["none"]["dropkey-dec"]["mesh/pa_mpjpe"]["seeds"] == [0, 1]
    assert any(w.startswith("mesh/synthetic: reports from 3 machines") for w in summary["warnings"])
    assert run_aggregate_tool(suite_dir, "--out", tmp_path / "out") == 0
    paths = [Path(p) for p in capsys.readouterr().out.split()]
    markdown = next(p for p in paths if p.suffix == ".md").read_text()
    assert "## Provenance warnings" in markdown and "mixed machines" in markdown
    assert "Provenance warnings" in next(p for p in paths if p.suffix == ".html").read_text()


@pytest.mark.parametrize("machine, field", [
    ("Xeon", "machine"),
    ({**MACHINE, "torch_threads": "1"}, "machine.torch_threads"),
    ({key: value for key, value in MACHINE.items() if key != "gpu"}, "machine.gpu"),
])
def test_a_malformed_machine_record_names_the_field(suite_dir, machine, field):
    path = suite_dir / "mesh" / "none" / "seed0" / "report.json"
    rewrite(path, machine=machine)
    with pytest.raises(DataFormatError) as info:
        read_report(path)
    assert info.value.field == field and info.value.path == str(path)


def test_machine_records_the_cpu_model_and_torch_threads(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                       "model name\t: Test CPU 9000 @ 3.00GHz\nprocessor\t: 1\n")
    monkeypatch.setattr(report_module, "CPUINFO", str(cpuinfo))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        record = report_module.machine()
    finally:
        torch.set_num_threads(threads)
    assert record["cpu_model"] == "Test CPU 9000 @ 3.00GHz" and record["torch_threads"] == 1
    assert set(record) == set(report_module.MACHINE_FIELDS)
    monkeypatch.setattr(report_module, "CPUINFO", str(tmp_path / "absent"))
    assert report_module.cpu_model()  # platform's name of the processor instead


# --------------------------------------------------------------------------------------- outputs

def test_outputs_in_every_format(suite_dir, tmp_path, capsys):
    write_json_atomic(suite_dir / "detection" / "none" / "seed0" / "run_status.json", {
        "task": "detection", "variant": "none", "seed": 0, "status": "failed",
        "reason": "no config matches configs/detection/*_none_embedded.py"})
    assert run_aggregate_tool(suite_dir, "--out", tmp_path / "out") == 0
    paths = {path.suffix[1:]: path for path in map(Path, capsys.readouterr().out.split())}
    assert {p.name for p in paths.values()} == {"summary.md", "summary.html", "summary.csv",
                                                "summary.json"}
    markdown = paths["md"].read_text()
    assert "| dropkey-dec | 3 | 0.9350 ± 0.0050 | 0.0650 ± 0.0050 |" in markdown
    assert "| variant | n | cls/top1 ↑ | cls/nll |" in markdown
    assert "no config matches configs/detection/*_none_embedded.py" in markdown
    assert "cls/top1 ↑" in markdown and "mesh/pa_mpjpe ↓" in markdown
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 3 * 2 + 2  # classification: 3 variants x 2 metrics; mesh: 2 x 1
    row = next(r for r in rows if r["variant"] == "dropkey-dec" and r["metric"] == "mesh/pa_mpjpe")
    assert float(row["mean"]) == pytest.approx(76.5) and row["diff_vs_attndrop"] == ""
    assert float(row["diff_vs_none"]) == pytest.approx(-4.5)
    assert row["sources"].count("report.json") == 2
    assert row["verdict_vs_none"] == "not shown: underpowered"
    # differences -5, -4 mm: SD 0.5 √2; MDD at 2 pairs 11.55 SDs; 1 % of 81 mm is 0.81 mm
    sd = math.sqrt(0.5)
    assert float(row["mdd_vs_none"]) == pytest.approx(
        TTestPower().solve_power(None, 2, 0.05, 0.8) * sd, rel=1e-5)
    assert int(row["seeds_needed_vs_none"]) == math.ceil(
        TTestPower().solve_power(0.81 / sd, None, 0.05, 0.8)) == 9
    secondary = next(r for r in rows if r["variant"] == "dropkey-dec" and r["metric"] == "cls/nll")
    assert secondary["diff_vs_none"] and secondary["verdict_vs_none"] == ""
    html = paths["html"].read_text()
    # per benchmark: forest, dots, schedules, entropy, curves; the forest opens each section
    assert html.count("<img src='data:image/png;base64,") == 2 * 5
    for name in ("classification/digits", "mesh/synthetic"):
        section = html.split(f"<h2>{name}</h2>")[1]
        assert section.index("paired differences from none") < section.index("<figcaption>")
        assert section.index("<figure>") < section.index("<table>")
    assert html.count("<div class='scroll'><table>") == html.count("<table>") > 0
    assert json.loads(paths["json"].read_text())["problems"][0]["task"] == "detection"


def test_numbers_are_rounded_to_their_uncertainty():
    assert format_mean_std(dict(mean=0.95, std=0.004811)) == "0.9500 ± 0.0048"
    assert format_mean_std(dict(mean=87.834, std=2.31)) == "87.8 ± 2.3"
    assert format_mean_std(dict(mean=0.9519, std=None)) == "0.9519"  # one seed: no std
    assert format_difference(dict(mean=-0.001852, ci_low=-0.01239, ci_high=0.008689,
                                  excludes_zero=False)) == "-0.002 [-0.012, +0.009]"
    assert format_difference(dict(mean=-4.5, ci_low=-6.1, ci_high=-2.9,
                                  excludes_zero=True)) == "-4.5 [-6.1, -2.9] *"
    assert format_difference(dict(mean=0.5, ci_low=None, ci_high=None,
                                  excludes_zero=False)) == "+0.5"


# --------------------------------------------------------------------------------------- figures

def test_attention_stacks_keep_encoder_decoder_and_sub_modules_apart():
    assert attention_stack("blocks.3.attn") == ("blocks.*.attn", 3)
    assert attention_stack("encoder.layers.0.self_attn.attn") == (
        "encoder.layers.*.self_attn.attn", 0)
    assert attention_stack("decoder.layers.2.cross_attn.attn") == (
        "decoder.layers.*.cross_attn.attn", 2)
    assert attention_stack("decoder.layers.11") == ("decoder.layers.*", 11)
    assert attention_stack("attn") == ("attn", 0)


def encoder_decoder_reports():
    layers = ([{"name": f"encoder.layers.{i}.self_attn.attn", "method": "dropkey",
                "drop_ratio": 0.1 - 0.05 * i} for i in range(3)]
              + [{"name": "encoder.layers.0.deformable", "method": "untouched", "drop_ratio": 0.0}]
              + [{"name": f"decoder.layers.{i}.{kind}.attn", "method": "dropkey",
                  "drop_ratio": 0.1 - 0.1 * i} for i in range(2)
                 for kind in ("self_attn", "cross_attn")])
    return {"dropkey-dec": [{"attention_layers": layers}]}


def test_schedules_are_drawn_per_attention_stack():
    bench = {"variants": ["dropkey-dec"]}
    fig = layer_figure(bench, encoder_decoder_reports(), {"dropkey-dec": "red"}, "drop_ratio",
                       "drop ratio")
    panels = {ax.get_title(): ax.get_lines()[0] for ax in fig.axes}
    assert set(panels) == {"encoder.layers.*.self_attn.attn", "decoder.layers.*.self_attn.attn",
                           "decoder.layers.*.cross_attn.attn"}
    encoder = panels["encoder.layers.*.self_attn.attn"]
    assert list(encoder.get_xdata()) == [0, 1, 2]  # the untouched module is left out
    assert list(encoder.get_ydata()) == pytest.approx([0.1, 0.05, 0.0])
    assert list(panels["decoder.layers.*.cross_attn.attn"].get_ydata()) == pytest.approx([0.1, 0.0])
    assert layer_figure(bench, encoder_decoder_reports(), {}, "entropy", "entropy") is None


def test_a_curve_with_one_point_is_a_marker():
    bench = {"primary_metric": "cls/top1"}
    reports = {"none": [{"curves": {"train/loss": {"step": [1, 2], "value": [2.0, 1.0]},
                                    "val/cls/top1": {"step": [20], "value": [0.9]}}}]}
    loss, top1 = (ax.get_lines()[0] for ax in curve_figure(bench, reports, {"none": "k"}).axes)
    assert top1.get_marker() == "o" and list(top1.get_ydata()) == [0.9]
    assert loss.get_marker() in (None, "None", "")


def test_primary_metric_is_a_dot_plot_and_the_forest_shows_the_intervals(suite_dir):
    cls = benchmark(summary_of(suite_dir), "classification/digits")
    colors = {v: f"C{i}" for i, v in enumerate(cls["variants"])}
    dots = dot_figure(cls, colors).axes[0]
    assert not dots.patches  # no bars, so no axis that must start at zero
    seeds = [list(line.get_ydata()) for line in dots.get_lines() if line.get_marker() == "o"]
    assert seeds == [pytest.approx(CLS_TOP1[v]) for v in cls["variants"]]

    forest = forest_figure(cls, colors, 1.0).axes[0]
    assert [t.get_text() for t in forest.get_yticklabels()] == ["attndrop", "dropkey-dec"]
    intervals = [segment for collection in forest.collections
                 if isinstance(collection, LineCollection) for segment in collection.get_segments()]
    for row, variant in enumerate(["attndrop", "dropkey-dec"]):
        cell = cls["differences"]["none"][variant]["cls/top1"]
        assert any(np.allclose(segment, [[cell["ci_low"], row], [cell["ci_high"], row]])
                   for segment in intervals), variant
        assert cell["verdict"] in [text.get_text() for text in forest.texts]
    assert to_rgba(colors["dropkey-dec"]) in [to_rgba(line.get_color())
                                              for line in forest.get_lines()]


# ---------------------------------------------------------- ratio sweep and inference alignment

SWEEP_TOP1 = {  # variant -> top-1 of seeds 0, 1, 2
    "none": [0.90, 0.92, 0.91],
    "attndrop": [0.91, 0.90, 0.93],
    "dropkey-const-p0.1": [0.92, 0.93, 0.91],
    "dropkey-const-p0.3": [0.90, 0.91, 0.89],
    "dropkey-dec-p0.1": [0.93, 0.94, 0.935],
    "dropkey-dec-p0.2": [0.94, 0.95, 0.93],
    "dropkey-dec-p0.3": [0.92, 0.93, 0.95],
    "dropkey-inc-p0.2": [0.88, 0.90, 0.91],
    "dropkey-dec-ft-p0.3": [0.93, 0.95, 0.955],
}
SWEEP_MC_TOP1 = {  # Monte-Carlo evaluation of the same runs
    "none": SWEEP_TOP1["none"],  # nothing stochastic: the same numbers
    "dropkey-dec-p0.1": [0.935, 0.942, 0.94],
    "dropkey-dec-p0.3": [0.925, 0.936, 0.951],
}
MESH_ALIGNMENT = {  # variant -> (PA-MPJPE of seeds 0..3, Monte-Carlo PA-MPJPE or None)
    "dropkey-dec": ([75.0, 78.0, 76.0, 79.0], [74.0, 77.0, 75.5, 78.0]),
    "dropkey-dec-ft": ([74.0, 77.5, 74.0], None),
}


def write_alignment_suite(root):
    """Classification: a ratio sweep with baselines, Monte-Carlo metrics for three variants and a
    fine-tune tail at ratio 0.3; mesh (lower is better): dropkey-dec with Monte-Carlo metrics and
    four seeds, dropkey-dec-ft with three."""
    for variant, values in SWEEP_TOP1.items():
        for seed, top1 in enumerate(values):
            metrics = {"cls/top1": top1}
            data = report("classification", "digits", variant, seed, metrics, "cls/top1")
            if variant in SWEEP_MC_TOP1:
                metrics["mc/cls/top1"] = SWEEP_MC_TOP1[variant][seed]
                data["monte_carlo"] = {"samples": 8}
            write_json_atomic(root / "classification" / variant / f"seed{seed}" / "report.json",
                              data)
    for variant, (errors, mc_errors) in MESH_ALIGNMENT.items():
        for seed, error in enumerate(errors):
            metrics = {"mesh/pa_mpjpe": error}
            data = report("mesh", "synthetic", variant, seed, metrics, "mesh/pa_mpjpe", False)
            if mc_errors:
                metrics["mc/mesh/pa_mpjpe"] = mc_errors[seed]
                data["monte_carlo"] = {"samples": 4}
            write_json_atomic(root / "mesh" / variant / f"seed{seed}" / "report.json", data)
    return root


@pytest.fixture
def alignment_dir(tmp_path):
    return write_alignment_suite(tmp_path / "ablation")


def test_ratio_labels_sort_by_schedule_then_ratio_and_get_verdicts(alignment_dir):
    summary = summary_of(alignment_dir)
    cls = benchmark(summary, "classification/digits")
    assert cls["variants"] == ["none", "attndrop", "dropkey-const-p0.1", "dropkey-const-p0.3",
                               "dropkey-dec-p0.1", "dropkey-dec-p0.2", "dropkey-dec-p0.3",
                               "dropkey-inc-p0.2", "dropkey-dec-ft-p0.3"]
    for baseline in ("none", "attndrop"):
        cell = cls["differences"][baseline]["dropkey-dec-p0.2"]["cls/top1"]
        expected = stats.ttest_rel(SWEEP_TOP1["dropkey-dec-p0.2"], SWEEP_TOP1[baseline])
        assert cell["p_value"] == pytest.approx(expected.pvalue)
        assert cell["verdict"]
    verdicts = next(t for t in tables(summary)
                    if t["title"] == "classification/digits: verdicts on cls/top1 ↑")
    assert [row[:2] for row in verdicts["rows"][:3]] == [
        ["attndrop", "none"], ["dropkey-const-p0.1", "none"], ["dropkey-const-p0.3", "none"]]


def test_ratio_sweep_tabulates_schedule_by_ratio(alignment_dir):
    summary = summary_of(alignment_dir)
    sweep = benchmark(summary, "classification/digits")["ratio_sweep"]
    assert sweep["ratios"] == [0.1, 0.2, 0.3]
    assert [(row["variant"], row["schedule"]) for row in sweep["rows"]] == [
        ("dropkey-const", "constant"), ("dropkey-dec", "linear_decrease"),
        ("dropkey-inc", "linear_increase"), ("dropkey-dec-ft", "linear_decrease")]
    cells = {row["variant"]: row["cells"] for row in sweep["rows"]}
    assert cells["dropkey-const"][1] is None and cells["dropkey-inc"][0] is None
    for base, row in cells.items():
        for ratio, cell in zip(sweep["ratios"], row):
            if cell is None:
                continue
            values = SWEEP_TOP1[f"{base}-p{ratio:g}"]
            assert cell["variant"] == f"{base}-p{ratio:g}"
            assert cell["mean"] == pytest.approx(np.mean(values))
            assert cell["std"] == pytest.approx(np.std(values, ddof=1))
            assert cell["n"] == 3
    assert not sweep["mismatched"] and not summary["warnings"]
    table = next(t for t in tables(summary) if "ratio sweep" in t["title"])
    assert table["header"] == ["variant (schedule)", "p = 0.1", "p = 0.2", "p = 0.3"]
    # std of 0.94, 0.95, 0.93 is 0.00999... in floating point: four decimals
    assert table["rows"][1] == ["dropkey-dec (linear_decrease)", "0.9350 ± 0.0050 (n=3)",
                                "0.9400 ± 0.0100 (n=3)", "0.933 ± 0.015 (n=3)"]
    assert table["rows"][0][2] == "–"
    assert benchmark(summary, "mesh/synthetic")["ratio_sweep"] is None  # no ratio labels


def test_monte_carlo_minus_deterministic_pairs_each_run_with_itself(alignment_dir):
    summary = summary_of(alignment_dir)
    cls = benchmark(summary, "classification/digits")["inference_alignment"]["monte_carlo"]
    assert list(cls) == ["none", "dropkey-dec-p0.1", "dropkey-dec-p0.3"]
    for variant in ("dropkey-dec-p0.1", "dropkey-dec-p0.3"):
        entry = cls[variant]
        assert entry["metric"] == "mc/cls/top1" and entry["samples"] == [8]
        mc, det = SWEEP_MC_TOP1[variant], SWEEP_TOP1[variant]
        expected = stats.ttest_rel(mc, det)
        interval = expected.confidence_interval(0.95)
        cell = entry["difference"]
        assert cell["mean"] == pytest.approx(np.mean(np.subtract(mc, det)))
        assert (cell["ci_low"], cell["ci_high"]) == pytest.approx((interval.low, interval.high))
        assert cell["p_value"] == pytest.approx(expected.pvalue)
        assert cell["n"] == 3 and cell["seeds"] == [0, 1, 2]
        assert cell["sources"] == [str(alignment_dir / "classification" / variant / f"seed{s}" /
                                       "report.json") for s in range(3)]
    # none's two evaluations agree exactly: difference 0, equivalent (TOST p 0), p 1
    assert cls["none"]["difference"]["mean"] == 0.0
    assert cls["none"]["difference"]["verdict"] == "equivalent within ±1 %"
    mesh = benchmark(summary, "mesh/synthetic")["inference_alignment"]["monte_carlo"]
    deterministic, monte_carlo = MESH_ALIGNMENT["dropkey-dec"]
    differences = np.subtract(monte_carlo, deterministic)  # -1, -1, -0.5, -1
    assert mesh["dropkey-dec"]["samples"] == [4]
    assert mesh["dropkey-dec"]["difference"]["mean"] == pytest.approx(differences.mean())
    assert mesh["dropkey-dec"]["difference"]["p_value"] == pytest.approx(
        stats.ttest_1samp(differences, 0).pvalue)


def test_a_fine_tune_tail_is_compared_with_the_same_variant_and_ratio_by_seed(alignment_dir):
    assert finetune_counterpart("dropkey-dec-ft") == "dropkey-dec"
    assert finetune_counterpart("dropkey-dec-ft-p0.3") == "dropkey-dec-p0.3"
    assert finetune_counterpart("dropkey-dec") is None and finetune_counterpart("custom") is None
    summary = summary_of(alignment_dir)
    cls = benchmark(summary, "classification/digits")["inference_alignment"]["finetune"]
    assert list(cls) == ["dropkey-dec-ft-p0.3"]
    assert cls["dropkey-dec-ft-p0.3"]["counterpart"] == "dropkey-dec-p0.3"
    cell = cls["dropkey-dec-ft-p0.3"]["difference"]
    expected = stats.ttest_rel(SWEEP_TOP1["dropkey-dec-ft-p0.3"], SWEEP_TOP1["dropkey-dec-p0.3"])
    assert cell["p_value"] == pytest.approx(expected.pvalue)
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(tuple(expected.confidence_interval()))
    mesh = benchmark(summary, "mesh/synthetic")["inference_alignment"]["finetune"]
    cell = mesh["dropkey-dec-ft"]["difference"]
    ft, dec = MESH_ALIGNMENT["dropkey-dec-ft"][0], MESH_ALIGNMENT["dropkey-dec"][0][:3]
    assert cell["seeds"] == [0, 1, 2]  # seed 3 has no fine-tuned run
    assert cell["mean"] == pytest.approx(np.mean(np.subtract(ft, dec)))
    assert cell["p_value"] == pytest.approx(stats.ttest_rel(ft, dec).pvalue)


def test_alignment_comparisons_join_the_holm_family(alignment_dir):
    summary = summary_of(alignment_dir)
    cls = benchmark(summary, "classification/digits")
    family = {}  # every test with its p-value, each pair of variants once
    for baseline, by_variant in cls["differences"].items():
        for variant, cells in by_variant.items():
            family.setdefault(frozenset((variant, baseline)), cells["cls/top1"]["p_value"])
    mc = cls["inference_alignment"]["monte_carlo"]
    family.update({("mc", v): entry["difference"]["p_value"] for v, entry in mc.items()})
    finetune = cls["inference_alignment"]["finetune"]["dropkey-dec-ft-p0.3"]["difference"]
    family["ft"] = finetune["p_value"]
    mesh = benchmark(summary, "mesh/synthetic")["inference_alignment"]
    family["mesh mc"] = mesh["monte_carlo"]["dropkey-dec"]["difference"]["p_value"]
    family["mesh ft"] = mesh["finetune"]["dropkey-dec-ft"]["difference"]["p_value"]
    # 8 variants vs none, 7 more vs attndrop, 3 Monte-Carlo, 1 fine-tune; mesh: 2
    assert summary["comparisons"]["size"] == len(family) == 8 + 7 + 3 + 1 + 2
    adjusted = dict(zip(family, multipletests(list(family.values()), method="holm")[1]))
    assert finetune["p_holm"] == pytest.approx(adjusted["ft"])
    assert mc["dropkey-dec-p0.3"]["difference"]["p_holm"] == pytest.approx(
        adjusted[("mc", "dropkey-dec-p0.3")])
    table = next(t for t in tables(summary)
                 if t["title"] == "classification/digits: inference alignment on cls/top1 ↑")
    assert [row[:2] for row in table["rows"]] == [
        ["none", "Monte-Carlo ×8 − deterministic"],
        ["dropkey-dec-p0.1", "Monte-Carlo ×8 − deterministic"],
        ["dropkey-dec-p0.3", "Monte-Carlo ×8 − deterministic"],
        ["dropkey-dec-ft-p0.3", "− dropkey-dec-p0.3"]]
    assert table["rows"][3][2:4] == ["3", format_difference(finetune)]
    assert table["rows"][3][-1] == finetune["verdict"]


@pytest.mark.parametrize("monte_carlo", [None, {"samples": 0}, {"samples": "8"}, 8])
def test_monte_carlo_metrics_without_their_sample_count_are_an_error(alignment_dir, monte_carlo):
    path = alignment_dir / "mesh" / "dropkey-dec" / "seed2" / "report.json"
    rewrite(path, monte_carlo=monte_carlo)
    with pytest.raises(DataFormatError) as info:
        summary_of(alignment_dir)
    assert info.value.path == str(path) and info.value.field == "monte_carlo"


def test_a_run_at_another_ratio_than_its_label_is_flagged(alignment_dir):
    rewrite(alignment_dir / "classification" / "dropkey-dec-p0.2" / "seed1" / "report.json",
            base_drop_ratio=0.25)
    summary = summary_of(alignment_dir)
    sweep = benchmark(summary, "classification/digits")["ratio_sweep"]
    assert [(m["variant"], m["seed"]) for m in sweep["mismatched"]] == [("dropkey-dec-p0.2", 1)]
    assert summary["warnings"] == [
        "classification/digits: 1 run trained at another base ratio than its label carries "
        "(its config overrides dropkey.drop_ratio): dropkey-dec-p0.2 seed 1 at 0.25."]


def test_two_labels_carrying_the_same_ratio_are_an_error(alignment_dir):
    source = alignment_dir / "classification" / "dropkey-dec-p0.3" / "seed0" / "report.json"
    copy = alignment_dir / "classification" / "dropkey-dec-p0.30" / "seed0" / "report.json"
    data = json.loads(source.read_text())
    data["variant"] = "dropkey-dec-p0.30"
    write_json_atomic(copy, data)
    with pytest.raises(DataFormatError, match="carry the same ratio"):
        summary_of(alignment_dir)


def test_sweep_and_alignment_in_every_output(alignment_dir, tmp_path):
    paths = aggregate([alignment_dir], tmp_path / "out")
    markdown = paths["md"].read_text()
    assert "## classification/digits: ratio sweep, cls/top1 ↑ (mean ± std, n)" in markdown
    assert "| dropkey-dec (linear_decrease) | 0.9350 ± 0.0050 (n=3) |" in markdown
    assert "## mesh/synthetic: inference alignment on mesh/pa_mpjpe ↓" in markdown
    assert "| dropkey-dec-ft | − dropkey-dec | 3 |" in markdown
    html = paths["html"].read_text()
    caption = "ratio sweep, cls/top1 mean ± std over seeds by base ratio"
    assert html.count(caption) == 2  # the figure's alt text and caption
    assert "<h3>mesh/synthetic: inference alignment on mesh/pa_mpjpe ↓</h3>" in html
    summary = json.loads(paths["json"].read_text())
    cls = benchmark(summary, "classification/digits")
    assert cls["ratio_sweep"]["rows"][1]["cells"][0]["variant"] == "dropkey-dec-p0.1"
    assert cls["inference_alignment"]["monte_carlo"]["dropkey-dec-p0.1"]["samples"] == [8]
