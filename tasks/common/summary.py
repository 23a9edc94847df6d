"""Aggregate run reports into per-benchmark and cross-task results.

Runs are grouped into benchmarks (task, dataset) and, within one, by variant label
(:mod:`tasks.common.variants`), paired across variants by seed. Every number in the summary
carries the report files it came from (``sources``). Runs that produced no report (failed or
unfinished per the suite's ``run_status.json``, or seeds that other variants of the same
benchmark have) are listed under ``problems``, never dropped.

``aggregate(dirs, out_dir)`` is the entry point of ``tools/aggregate.py`` and
``tools/run_suite.py``; :mod:`tasks.common.render` writes the files.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import DataFormatError, load_json
from .render import write_outputs
from .report import REPORT_NAME, read_report
from .statistics import (CONFIDENCE, describe, kendalls_w, paired_difference, ranks_best_first,
                         scaled_interval)
from .suite import RUN_STATES, STATUS_NAME
from .variants import BASELINES, variant_order


@dataclass(frozen=True)
class Run:
    path: Path
    report: dict

    @property
    def benchmark(self) -> str:
        return f"{self.report['task']}/{self.report['dataset']}"

    @property
    def variant(self) -> str:
        return self.report["variant"]


# --------------------------------------------------------------------------------------- reading

def read_status(path: Path) -> dict:
    """A suite's ``run_status.json``, validated. Status files of suites that predate the variant
    vocabulary name the label ``method``; it is read as ``variant``."""
    status = load_json(path, "run status")
    if not isinstance(status, dict):
        raise DataFormatError(path, "<root>", "expected a JSON object")
    if "variant" not in status and "method" in status:
        status = {**status, "variant": status["method"]}
    fields = {"task": str, "variant": str, "seed": int, "status": str}
    for name, kind in fields.items():
        if not isinstance(status.get(name), kind) or isinstance(status[name], bool):
            raise DataFormatError(path, name, f"missing or not a {kind.__name__}")
    if status["status"] not in RUN_STATES:
        raise DataFormatError(path, "status", f"{status['status']!r} is not one of {RUN_STATES}")
    return status


def collect(dirs) -> tuple[list[Run], list[tuple[Path, dict]]]:
    """Every report (validated) and every suite run status under ``dirs``."""
    for directory in dirs:
        if not Path(directory).is_dir():
            raise DataFormatError(directory, "directory", "not found")

    def find(name):
        unique = {}
        for directory in dirs:
            for path in sorted(Path(directory).rglob(name)):
                unique.setdefault(path.resolve(), path)
        return list(unique.values())

    runs = []
    for path in find(REPORT_NAME):
        report = read_report(path)
        if report["seed"] is None:
            raise DataFormatError(path, "seed", "is null; the aggregation pairs runs by seed")
        runs.append(Run(path, report))
    statuses = [(path, read_status(path)) for path in find(STATUS_NAME)]
    if not runs and not statuses:
        raise DataFormatError(dirs[0], REPORT_NAME, f"no {REPORT_NAME} or {STATUS_NAME} found")
    return runs, statuses


# ------------------------------------------------------------------------------------- summaries

def _benchmark(name: str, runs: list[Run]) -> dict:
    first = runs[0]
    by_variant = defaultdict(dict)  # variant -> seed -> Run
    for run in runs:
        for field in ("primary_metric", "higher_is_better"):
            if run.report[field] != first.report[field]:
                raise DataFormatError(run.path, field, f"is {run.report[field]!r} but {first.path} "
                                      f"(same task and dataset) has {first.report[field]!r}")
        seed = run.report["seed"]
        if seed in by_variant[run.variant]:
            raise DataFormatError(run.path, "seed", f"{name} {run.variant} seed {seed} is also "
                                  f"reported by {by_variant[run.variant][seed].path}")
        by_variant[run.variant][seed] = run
    primary = first.report["primary_metric"]
    variants = sorted(by_variant, key=variant_order)
    metric_names = {key for run in runs for key in run.report["metrics"]}
    metrics = [primary] + sorted(metric_names - {primary})

    def values(variant, metric):
        return {seed: run.report["metrics"][metric]
                for seed, run in sorted(by_variant[variant].items())
                if metric in run.report["metrics"]}

    def sources(variant, seeds):
        return [str(by_variant[variant][seed].path) for seed in seeds]

    table = {}
    for variant in variants:
        table[variant] = {}
        for metric in metrics:
            per_seed = values(variant, metric)
            if per_seed:
                table[variant][metric] = {**describe(list(per_seed.values())),
                                          "seeds": list(per_seed),
                                          "values": list(per_seed.values()),
                                          "sources": sources(variant, per_seed)}
    differences = {}
    for baseline in BASELINES:
        if baseline not in by_variant:
            continue
        differences[baseline] = {}
        for variant in variants:
            if variant == baseline:
                continue
            differences[baseline][variant] = {}
            for metric in metrics:
                diff = paired_difference(values(variant, metric), values(baseline, metric))
                if diff is not None:
                    diff["sources"] = (sources(variant, diff["seeds"])
                                       + sources(baseline, diff["seeds"]))
                    differences[baseline][variant][metric] = diff
    return {
        "name": name, "task": first.report["task"], "dataset": first.report["dataset"],
        "primary_metric": primary, "higher_is_better": first.report["higher_is_better"],
        "variants": variants, "metrics": metrics,
        "seeds": sorted({seed for seeds in by_variant.values() for seed in seeds}),
        "stats": table, "differences": differences,
        "runs": {variant: {str(seed): str(run.path) for seed, run in sorted(seeds.items())}
                 for variant, seeds in by_variant.items()},
    }


def _problems(benchmarks: list[dict], runs: list[Run], statuses) -> list[dict]:
    reported_dirs = {run.path.resolve().parent for run in runs}
    problems, known = [], set()
    for path, status in statuses:
        if path.resolve().parent in reported_dirs:
            continue
        reason = status.get("reason") or (
            "status ok but no report.json" if status["status"] == "ok"
            else "not finished (suite interrupted, or still running)")
        problems.append({"task": status["task"], "variant": status["variant"],
                         "seed": status["seed"], "status": status["status"], "reason": reason,
                         "error_tail": status.get("error_tail", ""), "source": str(path)})
        known.add((status["task"], status["variant"], status["seed"]))
    for bench in benchmarks:
        for variant in bench["variants"]:
            for seed in bench["seeds"]:
                key = (bench["task"], variant, seed)
                if str(seed) not in bench["runs"][variant] and key not in known:
                    problems.append({"task": bench["task"], "variant": variant, "seed": seed,
                                     "status": "missing", "source": None, "error_tail": "",
                                     "reason": f"no report, while other variants of "
                                               f"{bench['name']} have this seed"})
    return sorted(problems, key=lambda p: (p["task"], variant_order(p["variant"]), p["seed"]))


def _cross_task(benchmarks: list[dict]) -> dict:
    variants = sorted({v for b in benchmarks for v in b["variants"]}, key=variant_order)
    primary = {v: {b["name"]: b["stats"][v][b["primary_metric"]] for b in benchmarks
                   if b["primary_metric"] in b["stats"].get(v, {})} for v in variants}
    relative = {}
    for variant in variants:
        relative[variant] = {}
        for bench in benchmarks:
            cell = primary[variant].get(bench["name"])
            base = primary.get("none", {}).get(bench["name"])
            if cell is None or base is None or base["mean"] == 0:
                continue
            # percent of none's mean, signed so that positive is better
            scale = (100 if bench["higher_is_better"] else -100) / abs(base["mean"])
            relative[variant][bench["name"]] = {
                "percent": scale * (cell["mean"] - base["mean"]),
                **scaled_interval(bench["differences"].get("none", {}).get(variant, {})
                                  .get(bench["primary_metric"]), scale),
                "sources": cell["sources"] + base["sources"]}

    def rank(bench, candidates):
        return ranks_best_first([primary[v][bench["name"]]["mean"] for v in candidates],
                                bench["higher_is_better"])

    ranks = {v: {} for v in variants}
    for bench in benchmarks:
        present = [v for v in variants if bench["name"] in primary[v]]
        for variant, value in zip(present, rank(bench, present)):
            ranks[variant][bench["name"]] = float(value)
    shared = [v for v in variants if len(ranks[v]) == len(benchmarks)]
    ranking = {}
    for variant in variants:
        values = list(ranks[variant].values())
        gains = [cell["percent"] for cell in relative[variant].values()]
        ranking[variant] = {
            "ranks": ranks[variant], "mean_rank": float(np.mean(values)) if values else None,
            "rank_spread": max(values) - min(values) if values else None,
            "consistent": len(values) > 1 and max(values) == min(values),
            "better_than_none": sum(g > 0 for g in gains) if variant != "none" else None,
            "compared_with_none": len(gains) if variant != "none" else None}
    concordance = kendalls_w(np.array([rank(b, shared) for b in benchmarks])) if shared else None
    return {"variants": variants, "primary": primary, "relative_to_none_percent": relative,
            "ranking": ranking, "kendalls_w": concordance, "kendalls_w_variants": shared}


def summarise(runs: list[Run], statuses: list[tuple[Path, dict]], inputs) -> dict:
    """The whole result as JSON-ready data: benchmarks, cross-task views and problems."""
    grouped = defaultdict(list)
    for run in runs:
        grouped[run.benchmark].append(run)
    benchmarks = [_benchmark(name, grouped[name]) for name in sorted(grouped)]
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "inputs": [str(d) for d in inputs],
            "confidence": CONFIDENCE, "num_reports": len(runs), "benchmarks": benchmarks,
            "cross_task": _cross_task(benchmarks),
            "problems": _problems(benchmarks, runs, statuses)}


# ---------------------------------------------------------------------------------------- entry

def aggregate(dirs, out_dir) -> dict:
    """Summarise the reports under ``dirs`` and write OUT_DIR/summary.{md,html,csv,json}.

    Returns {format: path}. Every file is written atomically; nothing is written on bad input.
    """
    dirs = [Path(d) for d in dirs]
    runs, statuses = collect(dirs)
    summary = summarise(runs, statuses, dirs)
    return write_outputs(summary, {str(run.path): run.report for run in runs}, out_dir)
