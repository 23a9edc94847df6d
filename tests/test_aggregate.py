"""Aggregation of hand-made reports: statistics, paired intervals, problems, bad input, outputs."""
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tasks.common.aggregate import (_difference, _mean_std, aggregate, collect, kendalls_w,
                                    paired_difference, summarise)
from tasks.common.files import DataFormatError, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
CLS_TOP1 = {  # method -> per-seed top-1 (seeds 0, 1, 2)
    "none": [0.90, 0.92, 0.91],
    "attndrop": [0.91, 0.90, 0.93],
    "dropkey-dec": [0.93, 0.94, 0.935],
}
MESH_ERROR = {"none": [80.0, 82.0], "dropkey-dec": [75.0, 78.0]}  # lower is better


def report(task, dataset, method, seed, metrics, primary, higher_is_better=True):
    """A report with the field set BenchReportHook.build_report writes."""
    ratios = {"none": [0.0] * 3, "attndrop": [0.1] * 3, "dropkey-dec": [0.1, 0.05, 0.0]}[method]
    return {
        "schema_version": 1, "mode": "train", "task": task,
        "config": f"configs/{task}/tiny_{method}_embedded.py", "method": method,
        "schedule": "linear_decrease" if method == "dropkey-dec" else "constant",
        "base_drop_ratio": max(ratios),
        "attention_layers": [{"name": f"blocks.{i}.attn", "method": method, "drop_ratio": r,
                              "entropy": 2.0 + 0.1 * i + seed * 0.01}
                             for i, r in enumerate(ratios)],
        "seed": seed, "dataset": dataset, "metrics": metrics, "primary_metric": primary,
        "higher_is_better": higher_is_better, "epochs": 2, "iterations": 20,
        "train_seconds": 1.5, "train_samples_per_second": 100.0,
        "curves": {"train/loss": {"step": [1, 2, 3], "value": [2.0, 1.5, 1.0 + seed]},
                   f"val/{primary}": {"step": [1, 2], "value": [0.5, metrics[primary]]}},
        "versions": {"torch": "2.14.1"}, "git_commit": "unknown", "work_dir": "x",
        "created": "2025-01-01T00:00:00+0000",
    }


@pytest.fixture
def suite_dir(tmp_path):
    root = tmp_path / "suite"
    for method, values in CLS_TOP1.items():
        for seed, top1 in enumerate(values):
            write_json_atomic(root / "classification" / method / f"seed{seed}" / "report.json",
                              report("classification", "digits", method, seed,
                                     {"cls/top1": top1, "cls/nll": 1 - top1}, "cls/top1"))
    for method, values in MESH_ERROR.items():
        for seed, error in enumerate(values):
            write_json_atomic(root / "mesh" / method / f"seed{seed}" / "report.json",
                              report("mesh", "synthetic", method, seed,
                                     {"mesh/pa_mpjpe": error}, "mesh/pa_mpjpe", False))
    return root


def summary_of(*dirs):
    return summarise(*collect(list(dirs)), dirs)


def benchmark(summary, name):
    return next(b for b in summary["benchmarks"] if b["name"] == name)


def test_means_and_sample_stds_with_sources(suite_dir):
    cls = benchmark(summary_of(suite_dir), "classification/digits")
    assert cls["methods"] == ["none", "attndrop", "dropkey-dec"]
    assert cls["metrics"] == ["cls/top1", "cls/nll"]
    for method, values in CLS_TOP1.items():
        cell = cls["stats"][method]["cls/top1"]
        mean = sum(values) / 3
        assert cell["mean"] == pytest.approx(mean)
        assert cell["std"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / 2))
        assert cell["n"] == 3 and cell["seeds"] == [0, 1, 2]
        assert cell["sources"] == [str(suite_dir / "classification" / method / f"seed{s}" /
                                       "report.json") for s in range(3)]


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
    assert cross["kendalls_w_methods"] == ["none", "dropkey-dec"] and cross["kendalls_w"] == 1.0


def test_kendalls_w_by_hand():
    assert kendalls_w(np.array([[1, 2, 3], [1, 2, 3]], dtype=float)) == pytest.approx(1.0)
    assert kendalls_w(np.array([[1, 2], [2, 1]], dtype=float)) == pytest.approx(0.0)
    # rank sums 3, 5, 4 -> S = 2; 12 S / (m^2 (n^3 - n)) = 24 / 96
    assert kendalls_w(np.array([[1, 2, 3], [2, 3, 1]], dtype=float)) == pytest.approx(0.25)
    assert kendalls_w(np.array([[1, 2, 3]], dtype=float)) is None


def test_failed_unfinished_and_missing_runs_are_listed(suite_dir):
    (suite_dir / "classification" / "attndrop" / "seed2" / "report.json").unlink()
    write_json_atomic(suite_dir / "detection" / "none" / "seed0" / "run_status.json", {
        "task": "detection", "method": "none", "seed": 0, "status": "failed",
        "reason": "tools/train.py exited with code 1", "error_tail": "Traceback: boom"})
    write_json_atomic(suite_dir / "hoi" / "none" / "seed0" / "run_status.json",
                      {"task": "hoi", "method": "none", "seed": 0, "status": "pending"})
    write_json_atomic(suite_dir / "classification" / "none" / "seed0" / "run_status.json",
                      {"task": "classification", "method": "none", "seed": 0, "status": "ok"})
    summary = summary_of(suite_dir)
    problems = {(p["task"], p["method"], p["seed"]): p for p in summary["problems"]}
    assert set(problems) == {("classification", "attndrop", 2), ("detection", "none", 0),
                             ("hoi", "none", 0)}
    assert problems[("classification", "attndrop", 2)]["status"] == "missing"
    assert problems[("detection", "none", 0)]["reason"] == "tools/train.py exited with code 1"
    assert problems[("hoi", "none", 0)]["status"] == "pending"
    cls = benchmark(summary, "classification/digits")
    assert cls["stats"]["attndrop"]["cls/top1"]["n"] == 2
    assert cls["differences"]["attndrop"]["dropkey-dec"]["cls/top1"]["seeds"] == [0, 1]


@pytest.mark.parametrize("corrupt, field", [
    (lambda path: path.write_text('{"task": "classification",'), "malformed JSON"),
    (lambda path: path.write_text(json.dumps({
        k: v for k, v in json.loads(path.read_text()).items() if k != "metrics"})), "metrics"),
])
def test_malformed_report_names_the_file_and_writes_nothing(suite_dir, tmp_path, corrupt, field):
    bad = suite_dir / "mesh" / "none" / "seed1" / "report.json"
    corrupt(bad)
    with pytest.raises(DataFormatError, match=field) as info:
        aggregate([suite_dir], tmp_path / "out")
    assert info.value.path == str(bad)
    result = subprocess.run([sys.executable, "tools/aggregate.py", str(suite_dir), "--out",
                             str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and str(bad) in result.stderr
    assert not (tmp_path / "out").exists()


def test_malformed_run_status_names_the_file(suite_dir):
    bad = suite_dir / "hoi" / "none" / "seed0" / "run_status.json"
    write_json_atomic(bad, {"task": "hoi", "method": "none", "seed": 0, "status": "done"})
    with pytest.raises(DataFormatError, match="'done' is not one of") as info:
        collect([suite_dir])
    assert info.value.path == str(bad) and info.value.field == "status"


def test_duplicate_seed_is_an_error(suite_dir, tmp_path):
    copy = tmp_path / "other" / "report.json"
    copy.parent.mkdir()
    copy.write_text((suite_dir / "mesh" / "none" / "seed1" / "report.json").read_text())
    with pytest.raises(DataFormatError, match="also reported by"):
        summary_of(suite_dir, tmp_path / "other")


def test_outputs_in_every_format(suite_dir, tmp_path):
    write_json_atomic(suite_dir / "detection" / "none" / "seed0" / "run_status.json", {
        "task": "detection", "method": "none", "seed": 0, "status": "failed",
        "reason": "no config matches configs/detection/*_none_embedded.py"})
    paths = aggregate([suite_dir], tmp_path / "out")
    assert {p.name for p in paths.values()} == {"summary.md", "summary.html", "summary.csv",
                                                "summary.json"}
    markdown = paths["md"].read_text()
    assert "| dropkey-dec | 3 | 0.9350 ± 0.0050 | 0.0650 ± 0.0050 |" in markdown
    assert "no config matches configs/detection/*_none_embedded.py" in markdown
    assert "cls/top1 ↑" in markdown and "mesh/pa_mpjpe ↓" in markdown
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 3 * 2 + 2  # classification: 3 methods x 2 metrics; mesh: 2 x 1
    row = next(r for r in rows if r["method"] == "dropkey-dec" and r["metric"] == "mesh/pa_mpjpe")
    assert float(row["mean"]) == pytest.approx(76.5) and row["diff_vs_attndrop"] == ""
    assert float(row["diff_vs_none"]) == pytest.approx(-4.5)
    assert row["sources"].count("report.json") == 2
    html = paths["html"].read_text()
    # per benchmark: bars, schedules, entropy, curves
    assert html.count("<img src='data:image/png;base64,") == 2 * 4
    assert json.loads(paths["json"].read_text())["problems"][0]["task"] == "detection"


def test_numbers_are_rounded_to_their_uncertainty():
    assert _mean_std(dict(mean=0.95, std=0.004811)) == "0.9500 ± 0.0048"
    assert _mean_std(dict(mean=87.834, std=2.31)) == "87.8 ± 2.3"
    assert _mean_std(dict(mean=0.9519, std=None)) == "0.9519"  # one seed: no std
    assert _difference(dict(mean=-0.001852, ci_low=-0.01239, ci_high=0.008689,
                            excludes_zero=False)) == "-0.002 [-0.012, +0.009]"
    assert _difference(dict(mean=-4.5, ci_low=-6.1, ci_high=-2.9,
                            excludes_zero=True)) == "-4.5 [-6.1, -2.9] *"
    assert _difference(dict(mean=0.5, ci_low=None, ci_high=None, excludes_zero=False)) == "+0.5"
