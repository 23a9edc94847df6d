"""Aggregate run reports into per-benchmark and cross-task results.

Runs are grouped into benchmarks (task, dataset) and, within one, by variant label
(:mod:`tasks.common.variants`), paired across variants by seed. Every number in the summary
carries the report files it came from (``sources``). Runs that produced no report (failed or
unfinished per the suite's ``run_status.json``, or seeds that other variants of the same
benchmark have) are listed under ``problems``, never dropped.

Each comparison of a variant with a baseline on the primary metric gets its power (minimum
detectable difference, seeds needed for the effect of interest), a Holm-adjusted p-value over
every such comparison in the report, and a verdict (:func:`tasks.common.statistics.verdict`).

Two views follow the paper's ablations. The ratio sweep tabulates the labels that carry their
ratio (``dropkey-dec-p0.3``) by base label and ratio. The inference alignment compares, on the
primary metric, a run's Monte-Carlo evaluation (metrics ``mc/<key>``, report field
``monte_carlo``) with its deterministic one, each run paired with itself, and a fine-tune-tail
variant (``dropkey-dec-ft``) with the same variant trained without the tail, paired by seed.
Both comparisons join the family of verdicts.

Provenance: a benchmark whose reports come from more than one commit or machine is flagged
(``warnings``). Two runs of one seed at different commits are not paired unless
``allow_mixed``: the same seed at another commit is another experiment, not a repeat. Reports
that predate the ``machine`` field count as machine ``unknown``.

``aggregate(dirs, out_dir)`` is the entry point of ``tools/aggregate.py`` and
``tools/run_suite.py``; :mod:`tasks.common.render` writes the files.
"""
from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .files import DataFormatError, load_json
from .monte_carlo import MC_PREFIX
from .render import write_outputs
from .report import REPORT_NAME, read_report
from .statistics import (ALPHA, CONFIDENCE, DEFAULT_EFFECT_PERCENT, POWER, describe,
                         equivalence_p_value, holm, kendalls_w, minimum_detectable_difference,
                         paired_difference, ranks_best_first, scaled_interval, seeds_needed,
                         verdict)
from .suite import RUN_STATES, STATUS_NAME
from .variants import (BASELINES, VARIANTS, finetune_counterpart, split_label,
                       variant_order)

UNKNOWN = "unknown"
ALLOW_MIXED_HINT = ("rerun the benchmark at one commit to compare its variants, or run "
                    "tools/aggregate.py with --allow-mixed to pair them anyway")


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

    @property
    def commit(self) -> str:
        return self.report["git_commit"]

    @property
    def machine(self) -> str:
        """What the run ran on, in one line; ``unknown`` for reports without ``machine``."""
        machine = self.report.get("machine")
        if not machine:
            return UNKNOWN
        threads = machine["torch_threads"]
        build = machine["torch_version"]
        if machine["torch_git_version"]:
            build += f" ({machine['torch_git_version'][:7]})"
        gpu = f"; GPU {machine['gpu']}" if machine["gpu"] else ""
        return (f"{machine['cpu_model']}; {threads} thread{'s' if threads != 1 else ''}; "
                f"torch {build}{gpu}")


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

def check_effect(effect_percent) -> float:
    """The effect of interest (percent of the baseline mean) if it is a positive number."""
    if (not isinstance(effect_percent, (int, float)) or isinstance(effect_percent, bool)
            or not math.isfinite(effect_percent) or effect_percent <= 0):
        raise DataFormatError("aggregation options", "--effect", f"{effect_percent!r} is not a "
                              "positive number (percent of the baseline mean, e.g. 1)")
    return float(effect_percent)


def _provenance(by_variant: dict, cross_commit: list[dict], allow_mixed: bool) -> dict:
    """The commits and machines of a benchmark's runs, and whether they are mixed."""
    runs = [run for seeds in by_variant.values() for run in seeds.values()]
    commits, machines = Counter(run.commit for run in runs), Counter(run.machine for run in runs)
    groups = defaultdict(lambda: defaultdict(list))  # (commit, machine) -> variant -> seeds
    for variant in sorted(by_variant, key=variant_order):
        for seed, run in sorted(by_variant[variant].items()):
            groups[(run.commit, run.machine)][variant].append(seed)
    return {
        "commits": dict(commits), "machines": dict(machines),
        "mixed_commits": len(commits) > 1, "mixed_machines": len(machines) > 1,
        "dirty": sum(n for commit, n in commits.items() if commit.endswith("+dirty")),
        "unknown_machine": machines.get(UNKNOWN, 0),
        "groups": [{"commit": commit, "machine": machine, "runs": dict(runs)}
                   for (commit, machine), runs in sorted(groups.items())],
        "cross_commit_pairs": cross_commit, "cross_commit_paired": allow_mixed,
    }


def _benchmark(name: str, runs: list[Run], allow_mixed: bool) -> dict:
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

    def values(variant, metric, seeds=None):
        return {seed: run.report["metrics"][metric]
                for seed, run in sorted(by_variant[variant].items())
                if metric in run.report["metrics"] and (seeds is None or seed in seeds)}

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
    cross_commit = []

    def compare(variant, baseline, compared_metrics, mirrored=False) -> dict:
        """{metric: paired difference variant − baseline}; seed pairs across commits are left
        out unless ``allow_mixed`` and recorded (once: not for a ``mirrored`` comparison)."""
        shared = sorted(set(by_variant[variant]) & set(by_variant[baseline]))
        across = [seed for seed in shared
                  if by_variant[variant][seed].commit != by_variant[baseline][seed].commit]
        if not mirrored:
            cross_commit.extend({"variant": variant, "baseline": baseline, "seed": seed,
                                 "commits": [by_variant[variant][seed].commit,
                                             by_variant[baseline][seed].commit]}
                                for seed in across)
        paired = shared if allow_mixed else [seed for seed in shared if seed not in across]
        cells = {}
        for metric in compared_metrics:
            diff = paired_difference(values(variant, metric, paired),
                                     values(baseline, metric, paired))
            if diff is not None:
                diff["sources"] = sources(variant, diff["seeds"]) + sources(baseline, diff["seeds"])
                diff["cross_commit_seeds"] = [s for s in across if s in diff["seeds"]]
                cells[metric] = diff
        return cells

    differences = {}
    for baseline in BASELINES:
        if baseline in by_variant:
            differences[baseline] = {
                variant: compare(variant, baseline, metrics, mirrored=variant in differences)
                for variant in variants if variant != baseline}
    finetune = {}
    for variant in variants:
        counterpart = finetune_counterpart(variant)
        if counterpart in by_variant:
            finetune[variant] = {"counterpart": counterpart, "difference":
                                 compare(variant, counterpart, [primary]).get(primary)}
    return {
        "name": name, "task": first.report["task"], "dataset": first.report["dataset"],
        "primary_metric": primary, "higher_is_better": first.report["higher_is_better"],
        "variants": variants, "metrics": metrics,
        "seeds": sorted({seed for seeds in by_variant.values() for seed in seeds}),
        "stats": table, "differences": differences,
        "ratio_sweep": _ratio_sweep(by_variant, table, primary),
        "inference_alignment": {"monte_carlo": _monte_carlo(by_variant, primary),
                                "finetune": finetune},
        "provenance": _provenance(by_variant, cross_commit, allow_mixed),
        "runs": {variant: {str(seed): str(run.path) for seed, run in sorted(seeds.items())}
                 for variant, seeds in by_variant.items()},
    }


def _ratio_sweep(by_variant: dict, table: dict, primary: str) -> Optional[dict]:
    """The primary metric of the labels carrying their ratio: one row per base label, one
    column per ratio (cells None where nothing ran); None without such labels.

    A run whose report trained at another base ratio than its label carries (a config that
    overrides ``dropkey.drop_ratio``) is listed in ``mismatched``.
    """
    carrying = {label: split for label in by_variant
                if (split := split_label(label))[1] is not None}
    if not carrying:
        return None
    ratios = sorted({ratio for _, ratio in carrying.values()})
    bases = sorted({base for base, _ in carrying.values()}, key=variant_order)
    rows = {base: [None] * len(ratios) for base in bases}
    mismatched = []
    for label in sorted(carrying, key=variant_order):
        base, ratio = carrying[label]
        column = ratios.index(ratio)
        if rows[base][column] is not None:
            run = next(iter(by_variant[label].values()))
            raise DataFormatError(run.path, "variant", f"{label!r} and "
                                  f"{rows[base][column]['variant']!r} carry the same ratio")
        rows[base][column] = {"variant": label, **table[label][primary]}
        mismatched += [{"variant": label, "seed": seed, "source": str(run.path),
                        "base_drop_ratio": run.report["base_drop_ratio"]}
                       for seed, run in sorted(by_variant[label].items())
                       if run.report.get("base_drop_ratio", ratio) != ratio]
    return {"ratios": ratios, "rows": [{"variant": base, "schedule": VARIANTS[base].schedule,
                                        "cells": rows[base]} for base in bases],
            "mismatched": mismatched}


def _monte_carlo_samples(run: Run) -> int:
    """K of a run with Monte-Carlo metrics (``read_report`` checked the field's form)."""
    record = run.report.get("monte_carlo")
    if record is None:
        raise DataFormatError(run.path, "monte_carlo", f"is missing or null, but metrics hold "
                              f"{MC_PREFIX}/ keys (the number of passes they averaged)")
    return record["samples"]


def _monte_carlo(by_variant: dict, primary: str) -> dict:
    """Per variant whose runs evaluated Monte-Carlo too: the primary metric's difference
    Monte-Carlo − deterministic, each run paired with itself (same weights, same data)."""
    key, out = f"{MC_PREFIX}/{primary}", {}
    for variant in sorted(by_variant, key=variant_order):
        runs = {seed: run for seed, run in sorted(by_variant[variant].items())
                if key in run.report["metrics"]}
        if not runs:
            continue
        diff = paired_difference({seed: run.report["metrics"][key] for seed, run in runs.items()},
                                 {seed: run.report["metrics"][primary]
                                  for seed, run in runs.items()})
        diff["sources"] = [str(run.path) for run in runs.values()]
        out[variant] = {"metric": key, "difference": diff,
                        "samples": sorted({_monte_carlo_samples(run) for run in runs.values()})}
    return out


def _primary_comparisons(bench: dict) -> Iterator[tuple[object, dict]]:
    """(identity of the test, cell) of every paired comparison of a benchmark's primary metric;
    a test compared both ways (``none`` vs ``attndrop`` and back) has one identity."""
    primary = bench["primary_metric"]
    for baseline, by_variant in bench["differences"].items():
        for variant, cells in by_variant.items():
            if primary in cells:
                yield frozenset((variant, baseline)), cells[primary]
    alignment = bench["inference_alignment"]
    for variant, entry in alignment["monte_carlo"].items():
        yield ("monte_carlo", variant), entry["difference"]
    for variant, entry in alignment["finetune"].items():
        if entry["difference"] is not None:
            yield frozenset((variant, entry["counterpart"])), entry["difference"]


def _assess(benchmarks: list[dict], effect_percent: float) -> dict:
    """Power, Holm-adjusted p-value and verdict of every primary-metric comparison, in place.

    The family is every comparison in the report with a p-value (with the baselines and of the
    inference alignment, :func:`_primary_comparisons`), each pair of variants once (``none`` vs
    ``attndrop`` and ``attndrop`` vs ``none`` are one test). Returns the family's size with the
    effect, alpha and power every verdict used.
    """
    family = defaultdict(list)  # (benchmark, test identity) -> cells of that test
    for bench in benchmarks:
        for test, cell in _primary_comparisons(bench):
            effect = effect_percent / 100 * abs(cell["baseline_mean"])
            cell.update(
                effect=effect,
                mdd=minimum_detectable_difference(cell["sd"], cell["n"]),
                seeds_needed=seeds_needed(effect, cell["sd"]),
                p_equivalence=equivalence_p_value(cell["differences"], effect),
                p_holm=None)
            if cell["p_value"] is not None:
                family[(bench["name"], test)].append(cell)
    tests = list(family.values())
    for cells, adjusted in zip(tests, holm([cells[0]["p_value"] for cells in tests])):
        for cell in cells:
            cell["p_holm"] = adjusted
    for bench in benchmarks:
        for _, cell in _primary_comparisons(bench):
            cell["verdict"] = verdict(cell["mean"], cell["p_holm"], cell["p_equivalence"],
                                      cell["mdd"], cell["effect"], effect_percent,
                                      bench["higher_is_better"])
    return {"size": len(tests), "effect_percent": effect_percent, "alpha": ALPHA,
            "power": POWER}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _warnings(benchmarks: list[dict]) -> list[str]:
    """One line per benchmark whose provenance limits its comparisons, saying what to do."""
    out = []
    for bench in benchmarks:
        prov = bench["provenance"]
        if prov["mixed_commits"]:
            commits = ", ".join(f"{c} ×{n}" for c, n in sorted(prov["commits"].items()))
            pairs = len(prov["cross_commit_pairs"])
            action = (f"{_count(pairs, 'seed pair')} across commits paired anyway "
                      "(--allow-mixed)" if prov["cross_commit_paired"] else
                      f"{_count(pairs, 'seed pair')} across commits not compared; "
                      f"{ALLOW_MIXED_HINT}")
            out.append(f"{bench['name']}: reports from {len(prov['commits'])} commits "
                       f"({commits}); {action}.")
        if prov["mixed_machines"]:
            out.append(f"{bench['name']}: reports from {len(prov['machines'])} machines or "
                       f"builds ({'; '.join(f'{m} ×{n}' for m, n in prov['machines'].items())}); "
                       "metrics can move with the machine, thread count and torch build.")
        elif prov["unknown_machine"]:
            out.append(f"{bench['name']}: {_count(prov['unknown_machine'], 'report')} without "
                       "a machine record (written before the field existed).")
        sweep = bench["ratio_sweep"]
        if sweep and sweep["mismatched"]:
            out.append(f"{bench['name']}: {_count(len(sweep['mismatched']), 'run')} trained at "
                       "another base ratio than its label carries (its config overrides "
                       "dropkey.drop_ratio): " + ", ".join(
                           f"{m['variant']} seed {m['seed']} at {m['base_drop_ratio']:g}"
                           for m in sweep["mismatched"]) + ".")
        if prov["dirty"]:
            out.append(f"{bench['name']}: {_count(prov['dirty'], 'report')} from a tree with "
                       "local changes (+dirty); runs of one dirty commit need not share their "
                       "code.")
    return out


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


def summarise(runs: list[Run], statuses: list[tuple[Path, dict]], inputs,
              effect_percent: float = DEFAULT_EFFECT_PERCENT, allow_mixed: bool = False) -> dict:
    """The whole result as JSON-ready data: benchmarks with their comparisons and verdicts,
    cross-task views, provenance warnings and problems."""
    effect_percent = check_effect(effect_percent)
    grouped = defaultdict(list)
    for run in runs:
        grouped[run.benchmark].append(run)
    benchmarks = [_benchmark(name, grouped[name], allow_mixed) for name in sorted(grouped)]
    family = _assess(benchmarks, effect_percent)
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "inputs": [str(d) for d in inputs],
            "confidence": CONFIDENCE, "comparisons": family, "allow_mixed": allow_mixed,
            "num_reports": len(runs), "benchmarks": benchmarks,
            "warnings": _warnings(benchmarks), "cross_task": _cross_task(benchmarks),
            "problems": _problems(benchmarks, runs, statuses)}


# ---------------------------------------------------------------------------------------- entry

def aggregate(dirs, out_dir, effect_percent: float = DEFAULT_EFFECT_PERCENT,
              allow_mixed: bool = False) -> dict:
    """Summarise the reports under ``dirs`` and write OUT_DIR/summary.{md,html,csv,json}.

    ``effect_percent``: the effect of interest in percent of the baseline's mean (positive);
    ``allow_mixed``: pair seeds whose runs come from different commits. Returns {format: path}.
    Every file is written atomically; nothing is written on bad input.
    """
    check_effect(effect_percent)
    dirs = [Path(d) for d in dirs]
    runs, statuses = collect(dirs)
    summary = summarise(runs, statuses, dirs, effect_percent, allow_mixed)
    return write_outputs(summary, {str(run.path): run.report for run in runs}, out_dir)
