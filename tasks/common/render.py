"""The aggregated results as files: Markdown, HTML with plots, CSV and JSON.

Every table is built once (:func:`tables`) and rendered as Markdown and HTML; numbers are
rounded to their uncertainty so a column's digits line up.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import math
from pathlib import Path
from typing import Optional

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .files import write_atomic, write_json_atomic
from .statistics import CONFIDENCE
from .variants import BASELINES

OUTPUT_STEM = "summary"
MAX_DECIMALS = 6


# --------------------------------------------------------------------------------------- tables

def format_number(value, signed: bool = False, uncertainty: Optional[float] = None) -> str:
    """``value`` to two significant digits of its ``uncertainty`` (a std or an interval's
    half-width), so a column's numbers line up; four significant digits without one."""
    if value is None:
        return "–"
    sign = "+" if signed else ""
    if uncertainty and math.isfinite(uncertainty):
        decimals = min(MAX_DECIMALS, max(0, 1 - math.floor(math.log10(abs(uncertainty)))))
        return f"{value:{sign}.{decimals}f}"
    return f"{value:{sign}.4g}"


def format_mean_std(cell: Optional[dict]) -> str:
    if not cell:
        return "–"
    if cell["std"] is None:
        return format_number(cell["mean"])
    mean, std = (format_number(cell[key], uncertainty=cell["std"]) for key in ("mean", "std"))
    return f"{mean} ± {std}"


def format_difference(cell: Optional[dict]) -> str:
    if not cell:
        return "–"
    if cell["ci_low"] is None:
        text = format_number(cell["mean"], signed=True)
    else:
        half_width = (cell["ci_high"] - cell["ci_low"]) / 2
        low, mean, high = (format_number(cell[key], True, half_width)
                           for key in ("ci_low", "mean", "ci_high"))
        text = f"{mean} [{low}, {high}]"
    return text + (" *" if cell["excludes_zero"] else "")


def _direction(bench: dict) -> str:
    return "↑" if bench["higher_is_better"] else "↓"


def tables(summary: dict) -> list[dict]:
    """Every table of the report as {title, header, rows, note, benchmark}; rendered twice."""
    out = []
    for bench in summary["benchmarks"]:
        primary, stats = bench["primary_metric"], bench["stats"]
        header = ["variant", "n"] + [metric + (f" {_direction(bench)}" if metric == primary else "")
                                     for metric in bench["metrics"]]
        out.append(dict(
            benchmark=bench["name"], title=f"{bench['name']}: metrics (mean ± std over seeds)",
            header=header, note=f"primary metric: {primary}; seeds {bench['seeds']}",
            rows=[[v, str(stats[v][primary]["n"]) if primary in stats[v] else "0"]
                  + [format_mean_std(stats[v].get(metric)) for metric in bench["metrics"]]
                  for v in bench["variants"]]))
        for baseline, diffs in bench["differences"].items():
            out.append(dict(
                benchmark=bench["name"], title=f"{bench['name']}: difference from {baseline}",
                header=["variant", "pairs"] + bench["metrics"],
                note=f"mean of per-seed differences [{CONFIDENCE:.0%} t-interval]; "
                     "* = the interval excludes 0; no interval with fewer than 2 paired seeds",
                rows=[[v, str(max((cell["n"] for cell in diffs[v].values()), default=0))]
                      + [format_difference(diffs[v].get(metric)) for metric in bench["metrics"]]
                      for v in diffs]))
    cross, benchmarks = summary["cross_task"], summary["benchmarks"]
    if benchmarks:
        names = [b["name"] for b in benchmarks]
        ranking = cross["ranking"]
        out.append(dict(
            benchmark=None, title="All tasks: primary metric (mean ± std)",
            header=["variant"] + [f"{b['name']} {b['primary_metric']} {_direction(b)}"
                                  for b in benchmarks], note="",
            rows=[[v] + [format_mean_std(cross["primary"][v].get(n)) for n in names]
                  for v in cross["variants"]]))
        relative = cross["relative_to_none_percent"]
        out.append(dict(
            benchmark=None, title="All tasks: relative improvement over none (%)",
            header=["variant"] + names + ["better than none"],
            note="100 · (mean − mean of none) / |mean of none|, sign flipped for "
                 f"lower-is-better metrics: positive is better; [{CONFIDENCE:.0%} paired "
                 "t-interval of the difference, also in % of none's mean]; * = it excludes 0",
            rows=[[v] + [format_difference({**relative[v][n], "mean": relative[v][n]["percent"]})
                         if n in relative[v] else "–" for n in names]
                  + [f"{ranking[v]['better_than_none']}/{ranking[v]['compared_with_none']}"]
                  for v in cross["variants"] if v != "none"]))
        out.append(dict(
            benchmark=None, title="All tasks: ranking by primary metric (1 = best)",
            header=["variant"] + names + ["mean rank", "spread", "same rank everywhere"],
            note=f"ranks by mean among the variants run on each task; Kendall's W over the "
                 f"{len(cross['kendalls_w_variants'])} variants run on every task: "
                 f"{format_number(cross['kendalls_w'])} (1 = identical rankings, 0 = no agreement)",
            rows=[[v] + [format_number(ranking[v]["ranks"].get(n)) for n in names]
                  + [format_number(ranking[v]["mean_rank"]),
                     format_number(ranking[v]["rank_spread"]),
                     "yes" if ranking[v]["consistent"] else "no"]
                  for v in cross["variants"]]))
    out.append(dict(
        benchmark=None, title=f"Missing or failed runs ({len(summary['problems'])})",
        header=["task", "variant", "seed", "status", "reason", "source"],
        note="" if summary["problems"] else "none: every expected run has a report",
        rows=[[p["task"], p["variant"], str(p["seed"]), p["status"], p["reason"],
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
    """One row per benchmark x variant x metric, with both paired differences and the sources."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["benchmark", "task", "dataset", "variant", "metric", "is_primary", "higher_is_better",
              "n", "mean", "std", "seeds"]
    for baseline in BASELINES:
        header += [f"diff_vs_{baseline}", f"ci_low_vs_{baseline}", f"ci_high_vs_{baseline}",
                   f"excludes_zero_vs_{baseline}"]
    writer.writerow(header + ["sources"])
    for bench in summary["benchmarks"]:
        for variant in bench["variants"]:
            for metric, cell in bench["stats"][variant].items():
                row = [bench["name"], bench["task"], bench["dataset"], variant, metric,
                       metric == bench["primary_metric"], bench["higher_is_better"], cell["n"],
                       cell["mean"], cell["std"], " ".join(map(str, cell["seeds"]))]
                for baseline in BASELINES:
                    diff = bench["differences"].get(baseline, {}).get(variant, {}).get(metric)
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


def _colors(variants: list[str]) -> dict:
    palette = matplotlib.colormaps["tab10"].colors
    return {v: palette[i % len(palette)] for i, v in enumerate(variants)}


def _reports_by_variant(bench: dict, reports_by_path: dict) -> dict:
    return {v: [reports_by_path[path] for path in bench["runs"][v].values()]
            for v in bench["variants"]}


def benchmark_figures(bench: dict, reports_by_path: dict) -> list[tuple[str, str]]:
    """(caption, base64 PNG) for one benchmark: bars, schedules, entropy, training curves."""
    colors, reports = _colors(bench["variants"]), _reports_by_variant(bench, reports_by_path)
    primary, figures = bench["primary_metric"], []

    fig = Figure(figsize=(6, 3.2))
    ax, low, high = fig.subplots(), math.inf, -math.inf
    for i, variant in enumerate(bench["variants"]):
        cell = bench["stats"][variant].get(primary)
        if cell:
            std = cell["std"] or 0.0
            ax.bar(i, cell["mean"], yerr=std, capsize=4, color=colors[variant], alpha=0.8)
            ax.plot([i] * cell["n"], cell["values"], "k.", markersize=4)
            low = min(low, cell["mean"] - std, *cell["values"])
            high = max(high, cell["mean"] + std, *cell["values"])
    margin = (high - low) * 0.3 or abs(high) * 0.05 or 1.0
    ax.set_ylim(low - margin, high + margin)  # zoomed: differences are small next to the level
    ax.set_xticks(range(len(bench["variants"])), bench["variants"], rotation=20)
    ax.set_ylabel(f"{primary} {_direction(bench)}")
    figures.append((f"{bench['name']}: {primary}, mean ± std over seeds (dots: seeds; "
                    "y axis zoomed)", _png(fig)))

    layer_plots = [("drop_ratio", "drop ratio", "per-layer drop-ratio schedule by variant"),
                   ("entropy", "attention entropy (nats)",
                    "per-layer attention entropy in evaluation, mean over seeds")]
    for field, label, caption in layer_plots:
        fig = Figure(figsize=(6, 3.2))
        ax, names = fig.subplots(), []
        for variant, variant_reports in reports.items():
            layers = [r["attention_layers"] for r in variant_reports]
            if not layers or not layers[0] or not all(field in layer for layer in layers[0]):
                continue
            values = np.mean([[layer[field] for layer in run_layers] for run_layers in layers
                              if len(run_layers) == len(layers[0])], axis=0)
            ax.plot(range(len(values)), values, "o-", color=colors[variant], label=variant,
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
        for variant, variant_reports in reports.items():
            for i, report in enumerate(variant_reports):
                curve = report.get("curves", {}).get(key)
                if curve and curve.get("step"):
                    ax.plot(curve["step"], curve["value"], color=colors[variant], alpha=0.7,
                            linewidth=1, label=variant if i == 0 else None)
                    drawn = True
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("logged step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if drawn:
        figures.append((f"{bench['name']}: training curves, one line per seed", _png(fig)))
    return figures


def render_html(summary: dict, reports_by_path: dict) -> str:
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
    figures = {b["name"]: benchmark_figures(b, reports_by_path) for b in summary["benchmarks"]}
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
        parts.append(f"<details><summary>{esc(problem['task'])}/{esc(problem['variant'])}/seed"
                     f"{problem['seed']}: log tail</summary><pre>{esc(problem['error_tail'])}"
                     "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------- files

def write_outputs(summary: dict, reports_by_path: dict, out_dir) -> dict:
    """Write OUT_DIR/summary.{md,html,csv,json}, each atomically; returns {format: path}.

    ``reports_by_path`` maps the report paths named in ``summary`` to the reports (for plots).
    """
    rendered = {"md": render_markdown(summary), "html": render_html(summary, reports_by_path),
                "csv": render_csv(summary)}
    out_dir = Path(out_dir)
    paths = {fmt: out_dir / f"{OUTPUT_STEM}.{fmt}" for fmt in ("md", "html", "csv", "json")}
    for fmt, text in rendered.items():
        write_atomic(paths[fmt], text.encode())
    write_json_atomic(paths["json"], summary)
    return paths
