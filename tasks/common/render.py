"""The aggregated results as files: Markdown, HTML with plots, CSV and JSON.

Every table is built once (:func:`tables`) and rendered as Markdown and HTML; numbers are
rounded to their uncertainty so a column's digits line up. Each benchmark's section opens with
its verdicts and a forest plot of the paired differences from ``none``; a ratio sweep and the
inference alignment (Monte-Carlo evaluation, fine-tune tail) follow when the runs have them.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Optional

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dropkey_core.inject import layer_key

from .files import write_atomic, write_json_atomic
from .statistics import CONFIDENCE, POWER
from .variants import BASELINES

OUTPUT_STEM = "summary"
MAX_DECIMALS = 6
LEGEND_INSIDE_MAX = 8  # more variants than this: the legend goes beside the plot
LEGEND_ROWS_MAX = 10  # in columns of at most this many, so it stays as tall as the plot


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


def format_p(value: Optional[float]) -> str:
    """A p-value to two significant digits, ``<0.001`` below that."""
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.2g}"


def _direction(bench: dict) -> str:
    return "↑" if bench["higher_is_better"] else "↓"


def tables(summary: dict) -> list[dict]:
    """Every table of the report as {title, header, rows, note, benchmark}; rendered twice."""
    out, family = [], summary["comparisons"]
    for bench in summary["benchmarks"]:
        primary, stats = bench["primary_metric"], bench["stats"]
        if bench["differences"]:
            out.append(verdict_table(bench, family))
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
                     "* = the interval excludes 0; no interval with fewer than 2 paired seeds"
                     + _cross_commit_note(bench),
                rows=[[v, str(max((cell["n"] for cell in diffs[v].values()), default=0))]
                      + [format_difference(diffs[v].get(metric)) for metric in bench["metrics"]]
                      for v in diffs]))
        if bench["ratio_sweep"]:
            out.append(ratio_sweep_table(bench))
        alignment = bench["inference_alignment"]
        if alignment["monte_carlo"] or alignment["finetune"]:
            out.append(alignment_table(bench, family))
        out.append(provenance_table(bench))
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


def _cross_commit_note(bench: dict) -> str:
    prov = bench["provenance"]
    if not prov["cross_commit_pairs"]:
        return ""
    if prov["cross_commit_paired"]:
        return (f"; {len(prov['cross_commit_pairs'])} pairs join runs of different commits "
                "(--allow-mixed)")
    return (f"; {len(prov['cross_commit_pairs'])} seed pairs across commits left out "
            "(see the provenance table)")


NOT_COMPARED = "not compared: its seeds ran at other commits"


def _refused_pairing(bench: dict, variant: str, baseline: str) -> bool:
    """Whether the pairs of ``variant`` and ``baseline`` were all left out for their commits."""
    prov = bench["provenance"]
    return not prov["cross_commit_paired"] and any(
        {pair["variant"], pair["baseline"]} == {variant, baseline}
        for pair in prov["cross_commit_pairs"])


def _comparison_header(effect: float) -> list[str]:
    return ["pairs", f"Δ [{CONFIDENCE:.0%} CI]", f"MDD ({POWER:.0%} power)",
            f"effect ±{effect:g} %", f"seeds for ±{effect:g} %", "p", "Holm p", "TOST p",
            "verdict"]


def _comparison_cells(cell: Optional[dict], refused: bool) -> Optional[list[str]]:
    """The columns of :func:`_comparison_header` for an assessed paired difference. Without
    one: columns saying it was not compared when its pairs were refused, else None (no row)."""
    if cell is None:
        return ["0"] + ["–"] * 7 + [NOT_COMPARED] if refused else None
    return [str(cell["n"]), format_difference(cell),
            format_number(cell["mdd"], uncertainty=cell["mdd"]),
            format_number(cell["effect"], uncertainty=cell["effect"]),
            "–" if cell["seeds_needed"] is None else str(cell["seeds_needed"]),
            format_p(cell["p_value"]), format_p(cell["p_holm"]),
            format_p(cell["p_equivalence"]), cell["verdict"]]


def verdict_table(bench: dict, family: dict) -> dict:
    """The comparisons of a benchmark's primary metric with their power and verdicts."""
    primary, effect = bench["primary_metric"], family["effect_percent"]
    rows = []
    for baseline, diffs in bench["differences"].items():
        for variant, cells in diffs.items():
            columns = _comparison_cells(cells.get(primary),
                                        _refused_pairing(bench, variant, baseline))
            if columns:
                rows.append([variant, baseline] + columns)
    return dict(
        benchmark=bench["name"], title=f"{bench['name']}: verdicts on {primary} "
                                       f"{_direction(bench)}",
        header=["variant", "vs"] + _comparison_header(effect),
        note=(f"paired t-tests on per-seed differences (variant − baseline), two-sided α = "
              f"{family['alpha']:.2g}. MDD: the smallest true difference detected with "
              f"{POWER:.0%} power at these pairs and this spread; effect: ±{effect:g} % of the "
              f"baseline's mean; seeds: pairs needed to detect it with {POWER:.0%} power at the "
              f"observed spread. Holm p: adjusted over all {family['size']} comparisons in "
              "this report. Verdict, first that applies: better/worse (Holm p < α), equivalent "
              "(TOST: both one-sided p < α), not shown: underpowered (MDD > effect, or fewer "
              "than 2 pairs), inconclusive (powered, but neither shown)"
              + _cross_commit_note(bench)),
        rows=rows)


def ratio_sweep_table(bench: dict) -> dict:
    """The primary metric of the ratio-carrying labels: base label by ratio."""
    sweep, primary = bench["ratio_sweep"], bench["primary_metric"]

    def cell(stats):
        return f"{format_mean_std(stats)} (n={stats['n']})" if stats else "–"
    return dict(
        benchmark=bench["name"],
        title=f"{bench['name']}: ratio sweep, {primary} {_direction(bench)} (mean ± std, n)",
        header=["variant (schedule)"] + [f"p = {ratio:g}" for ratio in sweep["ratios"]],
        note="cells: the runs labelled <variant>-p<ratio>, whose base ratio is that ratio (the "
             "schedule sets each layer's ratio from it); their comparisons with the baselines "
             "are in the verdicts above",
        rows=[[f"{row['variant']} ({row['schedule']})"] + [cell(c) for c in row["cells"]]
              for row in sweep["rows"]])


def alignment_table(bench: dict, family: dict) -> dict:
    """Inference alignment on the primary metric: Monte-Carlo − deterministic evaluation of the
    same runs, and fine-tune-tail variants − the same variant without the tail."""
    primary, alignment = bench["primary_metric"], bench["inference_alignment"]
    rows = []
    for variant, entry in alignment["monte_carlo"].items():
        samples = "/".join(map(str, entry["samples"]))
        rows.append([variant, f"Monte-Carlo ×{samples} − deterministic"]
                    + _comparison_cells(entry["difference"], False))
    for variant, entry in alignment["finetune"].items():
        counterpart = entry["counterpart"]
        columns = _comparison_cells(entry["difference"],
                                    _refused_pairing(bench, variant, counterpart))
        if columns:
            rows.append([variant, f"− {counterpart}"] + columns)
    parts = []
    if alignment["monte_carlo"]:
        metric = next(iter(alignment["monte_carlo"].values()))["metric"]
        parts.append(f"Monte-Carlo ×K: a run's {metric} (its evaluation over K stochastic "
                     "passes with the regulariser on) minus its deterministic evaluation, every "
                     "run paired with itself")
    if alignment["finetune"]:
        parts.append("fine-tune: the variant whose last epochs train without the regulariser "
                     "minus the same variant and ratio without that tail, paired by seed")
    return dict(
        benchmark=bench["name"],
        title=f"{bench['name']}: inference alignment on {primary} {_direction(bench)}",
        header=["variant", "comparison"] + _comparison_header(family["effect_percent"]),
        note="; ".join(parts) + ". Columns and verdicts as in the verdicts table, in the same "
             "Holm family" + _cross_commit_note(bench),
        rows=rows)


def provenance_table(bench: dict) -> dict:
    """Which commit and machine each of a benchmark's runs came from."""
    prov = bench["provenance"]
    flags = [text for flag, text in ((prov["mixed_commits"], "mixed commits"),
                                     (prov["mixed_machines"], "mixed machines")) if flag]
    note = "; ".join(flags) if flags else "one commit and one machine"
    if prov["cross_commit_pairs"]:
        how = "paired (--allow-mixed)" if prov["cross_commit_paired"] else "not paired"
        note += f". Seed pairs across commits, {how}: " + ", ".join(
            f"{p['variant']} vs {p['baseline']} seed {p['seed']}"
            for p in prov["cross_commit_pairs"])
    return dict(benchmark=bench["name"], title=f"{bench['name']}: provenance",
                header=["git commit", "machine", "runs", "seeds per variant"], note=note,
                rows=[[group["commit"], group["machine"],
                       str(sum(map(len, group["runs"].values()))),
                       "; ".join(f"{variant} {' '.join(map(str, seeds))}"
                                 for variant, seeds in group["runs"].items())]
                      for group in prov["groups"]])


def render_markdown(summary: dict) -> str:
    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["# DropKey Bench results", "",
             f"{summary['num_reports']} reports from {', '.join(summary['inputs'])}; "
             f"created {summary['created']}. Plots: {OUTPUT_STEM}.html; sources of every number: "
             f"{OUTPUT_STEM}.json.", ""]
    if summary["warnings"]:
        lines += ["## Provenance warnings", ""] + [f"- {w}" for w in summary["warnings"]] + [""]
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


COMPARISON_COLUMNS = ("p_value", "p_holm", "mdd", "effect", "seeds_needed", "p_equivalence",
                      "verdict")  # filled for the primary metric only


def render_csv(summary: dict) -> str:
    """One row per benchmark x variant x metric, with both paired differences (and, for the
    primary metric, their power and verdicts) and the sources."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["benchmark", "task", "dataset", "variant", "metric", "is_primary", "higher_is_better",
              "n", "mean", "std", "seeds"]
    for baseline in BASELINES:
        header += [f"diff_vs_{baseline}", f"ci_low_vs_{baseline}", f"ci_high_vs_{baseline}",
                   f"excludes_zero_vs_{baseline}"]
        header += [f"{column}_vs_{baseline}" for column in COMPARISON_COLUMNS]
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
                    row += [diff.get(column) if diff else "" for column in COMPARISON_COLUMNS]
                writer.writerow(["" if v is None else v for v in row] + [";".join(cell["sources"])])
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------- plots

def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def _variant_legend(ax, count: int) -> None:
    """The variants' legend: inside the axes for a few, beside them (right) for more, where it
    would hide the lines (an ablation has about twenty)."""
    if count <= LEGEND_INSIDE_MAX:
        ax.legend(fontsize=7)
    else:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0,
                  frameon=False, ncol=math.ceil(count / LEGEND_ROWS_MAX))


def _colors(variants: list[str]) -> dict:
    """One colour per variant; tab20 beyond ten variants (an ablation has about twenty)."""
    palette = matplotlib.colormaps["tab10" if len(variants) <= 10 else "tab20"].colors
    return {v: palette[i % len(palette)] for i, v in enumerate(variants)}


def _reports_by_variant(bench: dict, reports_by_path: dict) -> dict:
    return {v: [reports_by_path[path] for path in bench["runs"][v].values()]
            for v in bench["variants"]}


def _better_side(bench: dict) -> str:
    return "better →" if bench["higher_is_better"] else "← better"


def forest_figure(bench: dict, colors: dict, effect_percent: float) -> Optional[Figure]:
    """Paired differences from ``none`` in the primary metric, one row per variant: seeds, mean
    and interval, the ±effect band, the verdict (or why it was not compared). None without
    ``none`` or pairs."""
    primary, diffs = bench["primary_metric"], bench["differences"].get("none", {})
    rows = [(v, diffs[v].get(primary)) for v in bench["variants"]
            if primary in diffs.get(v, {}) or v in diffs and _refused_pairing(bench, v, "none")]
    if not rows:
        return None
    fig = Figure(figsize=(7.5, 1.0 + 0.55 * len(rows)))
    ax, band_label = fig.subplots(), f"±{effect_percent:g} % of none"
    for y, (variant, cell) in enumerate(rows):
        if cell is None:
            ax.text(1.01, y, NOT_COMPARED, transform=ax.get_yaxis_transform(), va="center",
                    fontsize=8)
            continue
        ax.fill_betweenx([y - 0.35, y + 0.35], -cell["effect"], cell["effect"], color="0.88",
                         linewidth=0, label=band_label)
        band_label = None  # one legend entry for the bands
        if cell["ci_low"] is not None:
            ax.hlines(y, cell["ci_low"], cell["ci_high"], color=colors[variant], linewidth=2.5)
        ax.plot(cell["differences"], [y + 0.18] * cell["n"], "o", color="0.35", markersize=3)
        ax.plot(cell["mean"], y, "D", color=colors[variant], markersize=7)
        ax.text(1.01, y, cell["verdict"], transform=ax.get_yaxis_transform(), va="center",
                fontsize=8)
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [variant for variant, _ in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel(f"{primary}: variant − none, paired by seed ({_better_side(bench)})")
    if band_label is None:
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1), frameon=False)
    return fig


def dot_figure(bench: dict, colors: dict) -> Figure:
    """The primary metric per variant: every seed as a dot, mean ± std beside them."""
    primary, count = bench["primary_metric"], len(bench["variants"])
    fig = Figure(figsize=(max(6.0, 0.5 * count), 3.2 + 0.06 * count))  # room for the labels
    ax = fig.subplots()
    for i, variant in enumerate(bench["variants"]):
        cell = bench["stats"][variant].get(primary)
        if not cell:
            continue
        ax.plot([i - 0.12] * cell["n"], cell["values"], "o", color=colors[variant], alpha=0.7,
                markersize=5)
        ax.errorbar(i + 0.12, cell["mean"], yerr=cell["std"] or 0.0, fmt="_", color="k",
                    markersize=12, capsize=4)
    ax.set_xticks(range(count), bench["variants"], rotation=20 if count <= 6 else 45,
                  ha="center" if count <= 6 else "right")
    ax.set_xlim(-0.6, count - 0.4)
    ax.set_ylabel(f"{primary} {_direction(bench)}")
    return fig


def sweep_figure(bench: dict) -> Figure:
    """The ratio sweep: the primary metric's mean ± std against the base ratio, one line per
    base label (schedule)."""
    sweep = bench["ratio_sweep"]
    colors = _colors([row["variant"] for row in sweep["rows"]])
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    for row in sweep["rows"]:
        points = [(ratio, cell) for ratio, cell in zip(sweep["ratios"], row["cells"]) if cell]
        ax.errorbar([ratio for ratio, _ in points], [cell["mean"] for _, cell in points],
                    yerr=[cell["std"] or 0.0 for _, cell in points], fmt="o-", capsize=3,
                    color=colors[row["variant"]], label=row["variant"])
    ax.set_xticks(sweep["ratios"], [f"{ratio:g}" for ratio in sweep["ratios"]])
    ax.set_xlabel("base drop ratio")
    ax.set_ylabel(f"{bench['primary_metric']} {_direction(bench)}")
    ax.legend(fontsize=7)
    return fig


def attention_stack(name: str) -> tuple[str, int]:
    """(stack, depth) of an attention module: ``decoder.layers.2.cross_attn.attn`` is depth 2 of
    ``decoder.layers.*.cross_attn.attn``; a name without an index is a stack of one."""
    layer = layer_key(name)
    prefix, _, index = layer.rpartition(".")
    if not index.isdigit():
        return name, 0
    return f"{prefix}.*{name[len(layer):]}", int(index)


def layer_figure(bench: dict, reports: dict, colors: dict, field: str,
                 label: str) -> Optional[Figure]:
    """``field`` of every regularised attention layer by depth, one panel per attention stack
    (encoder and decoder apart), one line per variant (mean over its runs)."""
    series = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))  # stack, variant, depth
    for variant, variant_reports in reports.items():
        for report in variant_reports:
            for layer in report["attention_layers"]:
                if layer["method"] != "untouched" and field in layer:
                    stack, depth = attention_stack(layer["name"])
                    series[stack][variant][depth].append(layer[field])
    if not series:
        return None
    fig = Figure(figsize=(max(6.0, 3.6 * len(series)), 3.2))
    axes = fig.subplots(1, len(series), squeeze=False)[0]
    for ax, (stack, by_variant) in zip(axes, series.items()):
        for rank, variant in enumerate(bench["variants"]):
            if variant in by_variant:
                depths = sorted(by_variant[variant])
                nested = (len(bench["variants"]) - rank) / len(bench["variants"])
                ax.plot(depths, [np.mean(by_variant[variant][d]) for d in depths], "o-",
                        color=colors[variant], label=variant, linewidth=0.8 + 3.5 * nested,
                        markersize=2 + 6 * nested)  # earlier variants wider: overlaps stay visible
        ax.set_title(stack, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("depth in the stack (0 = nearest the input)")
    axes[0].set_ylabel(label)
    count = len(bench["variants"])
    _variant_legend(axes[0] if count <= LEGEND_INSIDE_MAX else axes[-1], count)
    return fig


def curve_figure(bench: dict, reports: dict, colors: dict) -> Optional[Figure]:
    """Training loss and validation primary metric per logged step, one line per run; a curve
    with one point is drawn as a marker."""
    curve_keys = ["train/loss", f"val/{bench['primary_metric']}"]
    fig = Figure(figsize=(10, 3.2))
    axes, drawn = fig.subplots(1, len(curve_keys)), False
    for ax, key in zip(axes, curve_keys):
        for variant, variant_reports in reports.items():
            for i, report in enumerate(variant_reports):
                curve = report.get("curves", {}).get(key)
                if curve and curve.get("step"):
                    ax.plot(curve["step"], curve["value"], color=colors[variant], alpha=0.7,
                            linewidth=1, marker="o" if len(curve["step"]) == 1 else None,
                            label=variant if i == 0 else None)
                    drawn = True
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("logged step")
    labelled = [ax for ax in axes if ax.get_legend_handles_labels()[0]]
    many = len(reports) > LEGEND_INSIDE_MAX
    for ax in labelled[-1:] if many else labelled:  # beside the figure: once is enough
        _variant_legend(ax, len(reports))
    return fig if drawn else None


def benchmark_figures(bench: dict, reports_by_path: dict,
                      effect_percent: float) -> tuple[Optional[tuple[str, str]], list]:
    """(caption, base64 PNG) figures of one benchmark: the forest plot (None without ``none``),
    and the others: dot plot, ratio sweep, schedules, entropy, training curves."""
    colors, reports = _colors(bench["variants"]), _reports_by_variant(bench, reports_by_path)
    name, primary = bench["name"], bench["primary_metric"]
    forest = forest_figure(bench, colors, effect_percent)
    if forest is not None:
        forest = (f"{name}: paired differences from none in {primary}, per variant: mean "
                  f"(diamond), {CONFIDENCE:.0%} t-interval (bar), seeds (dots), "
                  f"±{effect_percent:g} % of none's mean (grey band), verdict (right)",
                  _png(forest))
    others = [(f"{name}: {primary} per variant, dot plot: seeds (dots), mean ± std (black, to "
               "the right; the axis does not start at zero)", _png(dot_figure(bench, colors)))]
    if bench["ratio_sweep"]:
        others.append((f"{name}: ratio sweep, {primary} mean ± std over seeds by base ratio, one "
                       "line per schedule", _png(sweep_figure(bench))))
    layer_plots = [("drop_ratio", "drop ratio", "per-layer drop-ratio schedule by variant"),
                   ("entropy", "attention entropy (nats)",
                    "per-layer attention entropy in evaluation, mean over seeds")]
    for field, label, caption in layer_plots:
        fig = layer_figure(bench, reports, colors, field, label)
        if fig is not None:
            others.append((f"{name}: {caption}, one panel per attention stack (untouched layers "
                           "left out; coinciding lines drawn nested, the first variant widest)",
                           _png(fig)))
    fig = curve_figure(bench, reports, colors)
    if fig is not None:
        others.append((f"{name}: training curves, one line per seed (a single evaluation is a "
                       "marker)", _png(fig)))
    return forest, others


def _html_table(table: dict) -> list[str]:
    esc = html.escape
    parts = [f"<h3>{esc(table['title'])}</h3>"]
    if table["rows"]:
        parts.append("<div class='scroll'><table><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in table["header"]) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                               for row in table["rows"]) + "</table></div>")
    if table["note"]:
        parts.append(f"<p class='note'>{esc(table['note'])}</p>")
    return parts


def _html_figure(caption: str, png: str) -> str:
    esc = html.escape
    return (f"<figure><img src='data:image/png;base64,{png}' alt='{esc(caption)}'>"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def render_html(summary: dict, reports_by_path: dict) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>DropKey Bench results"
             "</title><style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 12px}"
             ".scroll{overflow-x:auto;max-width:100%}"
             "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;font-size:13px;text-align:right;white-space:nowrap}"
             "td:first-child,th:first-child{text-align:left;position:sticky;left:0;"
             "background:#fff}"
             ".note{color:#555;font-size:13px}.warn{background:#fff4d6;border:1px solid #e0b84a;"
             "padding:4px 12px}figure{display:inline-block;margin:6px;max-width:100%}"
             "figure img{max-width:100%}figcaption{font-size:12px;color:#444;max-width:640px}"
             "</style></head><body>",
             "<h1>DropKey Bench results</h1>",
             f"<p class='note'>{summary['num_reports']} reports from "
             f"{esc(', '.join(summary['inputs']))}; created {esc(summary['created'])}. "
             f"The sources of every number are in {OUTPUT_STEM}.json.</p>"]
    if summary["warnings"]:
        parts.append("<div class='warn'><h3>Provenance warnings</h3><ul>"
                     + "".join(f"<li>{esc(w)}</li>" for w in summary["warnings"]) + "</ul></div>")
    all_tables = tables(summary)
    effect = summary["comparisons"]["effect_percent"]
    for bench in summary["benchmarks"] + [None]:
        name = bench["name"] if bench else None
        parts.append(f"<h2>{esc(name) if bench else 'Across tasks and problems'}</h2>")
        forest, others = (benchmark_figures(bench, reports_by_path, effect) if bench
                          else (None, []))
        if forest:  # the section's first figure: the comparisons at a glance
            parts.append(_html_figure(*forest))
        for table in (t for t in all_tables if t["benchmark"] == name):
            parts += _html_table(table)
        parts += [_html_figure(*figure) for figure in others]
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
