"""Aggregate run reports into per-task and cross-task results (Markdown, HTML, CSV, JSON).

Runs are grouped into benchmarks (task, dataset) and paired across methods by seed. Every number
in ``summary.json`` carries the report files it came from (``sources``). Runs that produced no
report (failed or unfinished per the suite's ``run_status.json``, or seeds that other methods of
the same benchmark have) are listed under ``problems``, never dropped.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from .files import DataFormatError, load_json, write_atomic, write_json_atomic
from .report import REPORT_NAME, read_report
from .suite import RUN_STATES, STATUS_NAME

METHOD_ORDER = ("none", "attndrop", "dropkey-const", "dropkey-dec", "dropkey-inc", "dropkey-block")
BASELINES = ("none", "attndrop")
CONFIDENCE = 0.95
OUTPUT_STEM = "summary"
MAX_DECIMALS = 6


def method_key(method: str):
    """Paper order for the known methods, then the others alphabetically."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


@dataclass(frozen=True)
class Run:
    path: Path
    report: dict

    @property
    def benchmark(self) -> str:
        return f"{self.report['task']}/{self.report['dataset']}"


# --------------------------------------------------------------------------------------- reading

def _read_status(path: Path) -> dict:
    status = load_json(path, "run status")
    fields = {"task": str, "method": str, "seed": int, "status": str}
    for name, kind in fields.items():
        if not isinstance(status, dict) or not isinstance(status.get(name), kind):
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
    statuses = [(path, _read_status(path)) for path in find(STATUS_NAME)]
    if not runs and not statuses:
        raise DataFormatError(dirs[0], REPORT_NAME, f"no {REPORT_NAME} or {STATUS_NAME} found")
    return runs, statuses


# ------------------------------------------------------------------------------------ statistics

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


# ------------------------------------------------------------------------------------- summaries

def _benchmark(name: str, runs: list[Run]) -> dict:
    first = runs[0]
    by_method = defaultdict(dict)  # method -> seed -> Run
    for run in runs:
        for field in ("primary_metric", "higher_is_better"):
            if run.report[field] != first.report[field]:
                raise DataFormatError(run.path, field, f"is {run.report[field]!r} but {first.path} "
                                      f"(same task and dataset) has {first.report[field]!r}")
        method, seed = run.report["method"], run.report["seed"]
        if seed in by_method[method]:
            raise DataFormatError(run.path, "seed", f"{name} {method} seed {seed} is also "
                                  f"reported by {by_method[method][seed].path}")
        by_method[method][seed] = run
    primary = first.report["primary_metric"]
    methods = sorted(by_method, key=method_key)
    metric_names = {key for run in runs for key in run.report["metrics"]}
    metrics = [primary] + sorted(metric_names - {primary})

    def values(method, metric):
        runs = sorted(by_method[method].items())
        return {seed: run.report["metrics"][metric] for seed, run in runs
                if metric in run.report["metrics"]}

    def sources(method, seeds):
        return [str(by_method[method][seed].path) for seed in seeds]

    table = {}
    for method in methods:
        table[method] = {}
        for metric in metrics:
            per_seed = values(method, metric)
            if per_seed:
                table[method][metric] = {**describe(list(per_seed.values())),
                                         "seeds": list(per_seed), "values": list(per_seed.values()),
                                         "sources": sources(method, per_seed)}
    differences = {}
    for baseline in BASELINES:
        if baseline not in by_method:
            continue
        differences[baseline] = {}
        for method in methods:
            if method == baseline:
                continue
            differences[baseline][method] = {}
            for metric in metrics:
                diff = paired_difference(values(method, metric), values(baseline, metric))
                if diff is not None:
                    diff["sources"] = (sources(method, diff["seeds"])
                                       + sources(baseline, diff["seeds"]))
                    differences[baseline][method][metric] = diff
    return {
        "name": name, "task": first.report["task"], "dataset": first.report["dataset"],
        "primary_metric": primary, "higher_is_better": first.report["higher_is_better"],
        "methods": methods, "metrics": metrics,
        "seeds": sorted({seed for seeds in by_method.values() for seed in seeds}),
        "stats": table, "differences": differences,
        "runs": {method: {str(seed): str(run.path) for seed, run in sorted(seeds.items())}
                 for method, seeds in by_method.items()},
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
        problems.append({"task": status["task"], "method": status["method"], "seed": status["seed"],
                         "status": status["status"], "reason": reason,
                         "error_tail": status.get("error_tail", ""), "source": str(path)})
        known.add((status["task"], status["method"], status["seed"]))
    for bench in benchmarks:
        for method in bench["methods"]:
            for seed in bench["seeds"]:
                key = (bench["task"], method, seed)
                if str(seed) not in bench["runs"][method] and key not in known:
                    problems.append({"task": bench["task"], "method": method, "seed": seed,
                                     "status": "missing", "source": None, "error_tail": "",
                                     "reason": f"no report, while other methods of {bench['name']} "
                                               "have this seed"})
    return sorted(problems, key=lambda p: (p["task"], method_key(p["method"]), p["seed"]))


def _scaled_interval(difference: Optional[dict], scale: float) -> dict:
    """The paired interval of a difference from ``none`` in percent of none's mean (``scale``
    is negative for lower-is-better metrics, which swaps the ends)."""
    if not difference or difference["ci_low"] is None:
        return {"ci_low": None, "ci_high": None, "excludes_zero": False}
    low, high = sorted(scale * difference[end] for end in ("ci_low", "ci_high"))
    return {"ci_low": low, "ci_high": high, "excludes_zero": difference["excludes_zero"]}


def _cross_task(benchmarks: list[dict]) -> dict:
    methods = sorted({m for b in benchmarks for m in b["methods"]}, key=method_key)
    primary = {m: {b["name"]: b["stats"][m][b["primary_metric"]] for b in benchmarks
                   if b["primary_metric"] in b["stats"].get(m, {})} for m in methods}
    relative = {}
    for method in methods:
        relative[method] = {}
        for bench in benchmarks:
            cell = primary[method].get(bench["name"])
            base = primary.get("none", {}).get(bench["name"])
            if cell is None or base is None or base["mean"] == 0:
                continue
            scale = (100 if bench["higher_is_better"] else -100) / abs(base["mean"])
            relative[method][bench["name"]] = {
                "percent": scale * (cell["mean"] - base["mean"]),
                **_scaled_interval(bench["differences"].get("none", {}).get(method, {})
                                   .get(bench["primary_metric"]), scale),
                "sources": cell["sources"] + base["sources"]}

    def rank(bench, candidates):
        """Average ranks (1 = best) of ``candidates`` by their mean primary metric in ``bench``."""
        means = np.array([primary[m][bench["name"]]["mean"] for m in candidates])
        return stats.rankdata(-means if bench["higher_is_better"] else means)

    ranks = {m: {} for m in methods}
    for bench in benchmarks:
        present = [m for m in methods if bench["name"] in primary[m]]
        for method, value in zip(present, rank(bench, present)):
            ranks[method][bench["name"]] = float(value)
    shared = [m for m in methods if len(ranks[m]) == len(benchmarks)]
    ranking = {}
    for method in methods:
        values = list(ranks[method].values())
        gains = [cell["percent"] for cell in relative[method].values()]
        ranking[method] = {
            "ranks": ranks[method], "mean_rank": float(np.mean(values)) if values else None,
            "rank_spread": max(values) - min(values) if values else None,
            "consistent": len(values) > 1 and max(values) == min(values),
            "better_than_none": sum(g > 0 for g in gains) if method != "none" else None,
            "compared_with_none": len(gains) if method != "none" else None}
    concordance = kendalls_w(np.array([rank(b, shared) for b in benchmarks])) if shared else None
    return {"methods": methods, "primary": primary, "relative_to_none_percent": relative,
            "ranking": ranking, "kendalls_w": concordance, "kendalls_w_methods": shared}


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


# --------------------------------------------------------------------------------------- tables

def _num(value, signed: bool = False, uncertainty: Optional[float] = None) -> str:
    """``value`` to two significant digits of its ``uncertainty`` (a std or an interval's
    half-width), so a column's numbers line up; four significant digits without one."""
    if value is None:
        return "–"
    sign = "+" if signed else ""
    if uncertainty and math.isfinite(uncertainty):
        decimals = min(MAX_DECIMALS, max(0, 1 - math.floor(math.log10(abs(uncertainty)))))
        return f"{value:{sign}.{decimals}f}"
    return f"{value:{sign}.4g}"


def _mean_std(cell: Optional[dict]) -> str:
    if not cell:
        return "–"
    if cell["std"] is None:
        return _num(cell["mean"])
    mean, std = (_num(cell[key], uncertainty=cell["std"]) for key in ("mean", "std"))
    return f"{mean} ± {std}"


def _difference(cell: Optional[dict]) -> str:
    if not cell:
        return "–"
    if cell["ci_low"] is None:
        text = _num(cell["mean"], signed=True)
    else:
        half_width = (cell["ci_high"] - cell["ci_low"]) / 2
        low, mean, high = (_num(cell[key], True, half_width)
                           for key in ("ci_low", "mean", "ci_high"))
        text = f"{mean} [{low}, {high}]"
    return text + (" *" if cell["excludes_zero"] else "")


def _direction(bench: dict) -> str:
    return "↑" if bench["higher_is_better"] else "↓"


def tables(summary: dict) -> list[dict]:
    """Every table of the report as {title, header, rows, note, benchmark}; rendered twice."""
    out = []
    for bench in summary["benchmarks"]:
        header = ["method", "n"] + [m + (f" {_direction(bench)}" if m == bench["primary_metric"]
                                         else "") for m in bench["metrics"]]
        out.append(dict(
            benchmark=bench["name"], title=f"{bench['name']}: metrics (mean ± std over seeds)",
            header=header,
            note=f"primary metric: {bench['primary_metric']}; seeds {bench['seeds']}",
            rows=[[m, str(bench["stats"][m][bench["primary_metric"]]["n"])
                   if bench["primary_metric"] in bench["stats"][m] else "0"]
                  + [_mean_std(bench["stats"][m].get(k)) for k in bench["metrics"]]
                  for m in bench["methods"]]))
        for baseline, diffs in bench["differences"].items():
            out.append(dict(
                benchmark=bench["name"], title=f"{bench['name']}: difference from {baseline}",
                header=["method", "pairs"] + bench["metrics"],
                note=f"mean of per-seed differences [{CONFIDENCE:.0%} t-interval]; "
                     "* = the interval excludes 0; no interval with fewer than 2 paired seeds",
                rows=[[m, str(max((c["n"] for c in diffs[m].values()), default=0))]
                      + [_difference(diffs[m].get(k)) for k in bench["metrics"]] for m in diffs]))
    cross, benchmarks = summary["cross_task"], summary["benchmarks"]
    if benchmarks:
        names = [b["name"] for b in benchmarks]
        out.append(dict(
            benchmark=None, title="All tasks: primary metric (mean ± std)",
            header=["method"] + [f"{b['name']} {b['primary_metric']} {_direction(b)}"
                                 for b in benchmarks], note="",
            rows=[[m] + [_mean_std(cross["primary"][m].get(n)) for n in names]
                  for m in cross["methods"]]))
        relative = cross["relative_to_none_percent"]
        out.append(dict(
            benchmark=None, title="All tasks: relative improvement over none (%)",
            header=["method"] + names + ["better than none"],
            note="100 · (mean − mean of none) / |mean of none|, sign flipped for "
                 f"lower-is-better metrics: positive is better; [{CONFIDENCE:.0%} paired "
                 "t-interval of the difference, also in % of none's mean]; * = it excludes 0",
            rows=[[m] + [_difference({**relative[m][n], "mean": relative[m][n]["percent"]})
                         if n in relative[m] else "–" for n in names]
                  + [f"{cross['ranking'][m]['better_than_none']}/"
                     f"{cross['ranking'][m]['compared_with_none']}"]
                  for m in cross["methods"] if m != "none"]))
        w = cross["kendalls_w"]
        out.append(dict(
            benchmark=None, title="All tasks: ranking by primary metric (1 = best)",
            header=["method"] + names + ["mean rank", "spread", "same rank everywhere"],
            note=f"ranks by mean among the methods run on each task; Kendall's W over the "
                 f"{len(cross['kendalls_w_methods'])} methods run on every task: {_num(w)} "
                 "(1 = identical rankings, 0 = no agreement)",
            rows=[[m] + [_num(cross["ranking"][m]["ranks"].get(n)) for n in names]
                  + [_num(cross["ranking"][m]["mean_rank"]),
                     _num(cross["ranking"][m]["rank_spread"]),
                     "yes" if cross["ranking"][m]["consistent"] else "no"]
                  for m in cross["methods"]]))
    out.append(dict(
        benchmark=None, title=f"Missing or failed runs ({len(summary['problems'])})",
        header=["task", "method", "seed", "status", "reason", "source"],
        note="" if summary["problems"] else "none: every expected run has a report",
        rows=[[p["task"], p["method"], str(p["seed"]), p["status"], p["reason"],
               p["source"] or "–"] for p in summary["problems"]]))
    return out


def render_markdown(summary: dict) -> str:
    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["# DropKey Bench results", "",
             f"{summary['num_reports']} reports from {', '.join(summary['inputs'])}; "
             f"created {summary['created']}. Plots: {OUTPUT_STEM}.html; sources of every number: "
             f"{OUTPUT_STEM}.json.", ""]
    for table in tables(summary):
        lines += [f"## {table['title']}", ""]
        if table["rows"]:
            lines += ["| " + " | ".join(map(cell, table["header"])) + " |",
                      "|" + "---|" * len(table["header"])]
            lines += ["| " + " | ".join(map(cell, row)) + " |" for row in table["rows"]]
            lines.append("")
        if table["note"]:
            lines += [table["note"], ""]
    return "\n".join(lines)


def render_csv(summary: dict) -> str:
    """One row per benchmark x method x metric, with both paired differences and the sources."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["benchmark", "task", "dataset", "method", "metric", "is_primary", "higher_is_better",
              "n", "mean", "std", "seeds"]
    for baseline in BASELINES:
        header += [f"diff_vs_{baseline}", f"ci_low_vs_{baseline}", f"ci_high_vs_{baseline}",
                   f"excludes_zero_vs_{baseline}"]
    writer.writerow(header + ["sources"])
    for bench in summary["benchmarks"]:
        for method in bench["methods"]:
            for metric, cell in bench["stats"][method].items():
                row = [bench["name"], bench["task"], bench["dataset"], method, metric,
                       metric == bench["primary_metric"], bench["higher_is_better"], cell["n"],
                       cell["mean"], cell["std"], " ".join(map(str, cell["seeds"]))]
                for baseline in BASELINES:
                    diff = bench["differences"].get(baseline, {}).get(method, {}).get(metric)
                    row += ([diff["mean"], diff["ci_low"], diff["ci_high"], diff["excludes_zero"]]
                            if diff else ["", "", "", ""])
                writer.writerow(["" if v is None else v for v in row] + [";".join(cell["sources"])])
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------- plots

def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def _colors(methods: list[str]) -> dict:
    palette = matplotlib.colormaps["tab10"].colors
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def _reports_by_method(bench: dict, runs_by_path: dict) -> dict:
    return {m: [runs_by_path[p] for p in bench["runs"][m].values()] for m in bench["methods"]}


def benchmark_figures(bench: dict, runs_by_path: dict) -> list[tuple[str, str]]:
    """(caption, base64 PNG) for one benchmark: bars, schedules, entropy, training curves."""
    colors, reports = _colors(bench["methods"]), _reports_by_method(bench, runs_by_path)
    primary, figures = bench["primary_metric"], []

    fig = Figure(figsize=(6, 3.2))
    ax, low, high = fig.subplots(), math.inf, -math.inf
    for i, method in enumerate(bench["methods"]):
        cell = bench["stats"][method].get(primary)
        if cell:
            std = cell["std"] or 0.0
            ax.bar(i, cell["mean"], yerr=std, capsize=4, color=colors[method], alpha=0.8)
            ax.plot([i] * cell["n"], cell["values"], "k.", markersize=4)
            low = min(low, cell["mean"] - std, *cell["values"])
            high = max(high, cell["mean"] + std, *cell["values"])
    margin = (high - low) * 0.3 or abs(high) * 0.05 or 1.0
    ax.set_ylim(low - margin, high + margin)  # zoomed: differences are small next to the level
    ax.set_xticks(range(len(bench["methods"])), bench["methods"], rotation=20)
    ax.set_ylabel(f"{primary} {_direction(bench)}")
    figures.append((f"{bench['name']}: {primary}, mean ± std over seeds (dots: seeds; "
                    "y axis zoomed)", _png(fig)))

    layer_plots = [("drop_ratio", "drop ratio", "per-layer drop-ratio schedule by method"),
                   ("entropy", "attention entropy (nats)",
                    "per-layer attention entropy in evaluation, mean over seeds")]
    for field, label, caption in layer_plots:
        fig = Figure(figsize=(6, 3.2))
        ax, names = fig.subplots(), []
        for method, method_reports in reports.items():
            layers = [r["attention_layers"] for r in method_reports]
            if not layers or not layers[0] or not all(field in layer for layer in layers[0]):
                continue
            values = np.mean([[layer[field] for layer in run_layers] for run_layers in layers
                              if len(run_layers) == len(layers[0])], axis=0)
            ax.plot(range(len(values)), values, "o-", color=colors[method], label=method,
                    markersize=3)
            names = [layer["name"] for layer in layers[0]]
        if names:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel(f"attention layer ({names[0]} … {names[-1]})")
            ax.set_ylabel(label)
            ax.legend(fontsize=7)
            figures.append((f"{bench['name']}: {caption}", _png(fig)))

    curve_keys = ["train/loss", f"val/{primary}"]
    fig = Figure(figsize=(10, 3.2))
    axes, drawn = fig.subplots(1, len(curve_keys)), False
    for ax, key in zip(axes, curve_keys):
        for method, method_reports in reports.items():
            for i, report in enumerate(method_reports):
                curve = report.get("curves", {}).get(key)
                if curve and curve.get("step"):
                    ax.plot(curve["step"], curve["value"], color=colors[method], alpha=0.7,
                            linewidth=1, label=method if i == 0 else None)
                    drawn = True
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("logged step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if drawn:
        figures.append((f"{bench['name']}: training curves, one line per seed", _png(fig)))
    return figures


def render_html(summary: dict, runs_by_path: dict) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>DropKey Bench results"
             "</title><style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
             "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;font-size:13px;text-align:right}td:first-child{text-align:left}"
             ".note{color:#555;font-size:13px}figure{display:inline-block;margin:6px}"
             "figcaption{font-size:12px;color:#444}</style></head><body>",
             "<h1>DropKey Bench results</h1>",
             f"<p class='note'>{summary['num_reports']} reports from "
             f"{esc(', '.join(summary['inputs']))}; created {esc(summary['created'])}. "
             f"The sources of every number are in {OUTPUT_STEM}.json.</p>"]
    all_tables = tables(summary)
    figures = {b["name"]: benchmark_figures(b, runs_by_path) for b in summary["benchmarks"]}
    for bench in [b["name"] for b in summary["benchmarks"]] + [None]:
        parts.append(f"<h2>{esc(bench) if bench else 'Across tasks and problems'}</h2>")
        for table in (t for t in all_tables if t["benchmark"] == bench):
            parts.append(f"<h3>{esc(table['title'])}</h3>")
            if table["rows"]:
                parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in table["header"])
                             + "</tr>" + "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>"
                                                                  for c in row) + "</tr>"
                                                 for row in table["rows"]) + "</table>")
            if table["note"]:
                parts.append(f"<p class='note'>{esc(table['note'])}</p>")
        for caption, png in figures.get(bench, []):
            parts.append(f"<figure><img src='data:image/png;base64,{png}' alt='{esc(caption)}'>"
                         f"<figcaption>{esc(caption)}</figcaption></figure>")
    failed_tails = [p for p in summary["problems"] if p["error_tail"]]
    for problem in failed_tails:
        parts.append(f"<details><summary>{esc(problem['task'])}/{esc(problem['method'])}/seed"
                     f"{problem['seed']}: log tail</summary><pre>{esc(problem['error_tail'])}"
                     "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------- entry

def aggregate(dirs, out_dir) -> dict:
    """Summarise the reports under ``dirs`` and write OUT_DIR/summary.{md,html,csv,json}.

    Returns {format: path}. Every file is written atomically; nothing is written on bad input.
    """
    dirs = [Path(d) for d in dirs]
    runs, statuses = collect(dirs)
    summary = summarise(runs, statuses, dirs)
    runs_by_path = {str(run.path): run.report for run in runs}
    rendered = {"md": render_markdown(summary), "html": render_html(summary, runs_by_path),
                "csv": render_csv(summary)}
    out_dir = Path(out_dir)
    paths = {fmt: out_dir / f"{OUTPUT_STEM}.{fmt}" for fmt in ("md", "html", "csv", "json")}
    for fmt, text in rendered.items():
        write_atomic(paths[fmt], text.encode())
    write_json_atomic(paths["json"], summary)
    return paths
