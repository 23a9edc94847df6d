"""The run report: ``WORK_DIR/report.json``, the contract between a run and the aggregation.

Written atomically at the end of every finished train or test run (rank 0 only); a run that
fails writes none. ``read_report`` validates one, naming the file and the field at fault, and
reads schema version 1 (where ``method`` held the variant label) as version 2.

``machine`` (CPU model, torch threads, torch build) and ``git_commit`` record what a run ran on,
because a metric moves with them; reports written before ``machine`` existed have none and stay
valid (the aggregation counts their machine as unknown).

``evaluated_samples`` is the number of per-sample results the last evaluation's metrics were
computed on. In a multi-process run the distributed sampler pads the data set to a multiple of
the world size and mmengine drops the padding when it collects the ranks' results, which is only
right for metrics that keep one result per sample: the field shows that every sample was
evaluated exactly once (it equals the evaluation data set's size).

``finetune_epochs`` (the fine-tune tail trained without the regulariser) and ``monte_carlo``
(``{"samples": K}`` when the reported evaluation also averaged K stochastic passes, see
:mod:`tasks.common.monte_carlo`) are null when the run had none; reports written before they
existed have neither and stay valid.
"""
from __future__ import annotations

import math
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Optional

import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from dropkey_core import attention_entropy, attention_layers, set_attention_stats

from .files import DataFormatError, load_json, write_json_atomic
from .hooks import resolve_dropkey, resolve_finetune_epochs, unwrap
from .monte_carlo import resolve_monte_carlo
from .variants import VARIANTS

REPORT_NAME = "report.json"
SCHEMA_VERSION = 2
REQUIRED_FIELDS = {
    "task": str, "config": str, "variant": str, "method": str, "schedule": str,
    "attention_layers": list,
    "seed": (int, type(None)), "dataset": str, "metrics": dict, "primary_metric": str,
    "higher_is_better": bool, "epochs": (int, float), "train_seconds": (int, float),
    "versions": dict, "git_commit": str,
}
MACHINE_FIELDS = {  # the optional ``machine`` record: field -> allowed types
    "cpu_model": str, "torch_threads": int, "torch_version": str,
    "torch_cuda": (str, type(None)), "torch_git_version": (str, type(None)),
    "gpu": (str, type(None)),
}
VERSIONED_PACKAGES = ("torch", "mmengine", "mmdet", "mmcv", "timm")
MAX_CURVE_POINTS = 200
CPUINFO = "/proc/cpuinfo"
REPO_ROOT = Path(__file__).resolve().parents[2]


def package_versions() -> dict:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str:
    """HEAD of the checkout this code runs from, with ``+dirty`` when it has local changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        with open(CPUINFO) as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict:
    """What this process computes on: CPU model, torch threads, torch build (its version, the
    CUDA version it was built for, its source commit) and the GPU if one is visible."""
    return {"cpu_model": cpu_model(), "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "torch_cuda": torch.version.cuda,
            "torch_git_version": getattr(torch.version, "git_version", None),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _curves(message_hub) -> dict:
    """Logged scalars (train losses, lr, val metrics) as at most MAX_CURVE_POINTS points each."""
    curves = {}
    for key, buffer in message_hub.log_scalars.items():
        values = buffer.data[0]
        stride = max(1, math.ceil(len(values) / MAX_CURVE_POINTS))
        steps = list(range(0, len(values), stride))
        curves[key] = {"step": [s + 1 for s in steps], "value": [float(values[s]) for s in steps]}
    return curves


def _float_metrics(metrics: dict) -> dict:
    out = {}
    for key, value in metrics.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue  # tables and per-image lists are logged, not reported
        if math.isfinite(value):  # e.g. COCO's per-class AP of a class without ground truth
            out[key] = value
    return out


@HOOKS.register_module()
class BenchReportHook(Hook):
    """Records attention entropy during evaluation and writes the report when the run ends."""

    priority = "VERY_LOW"

    def __init__(self, record_entropy: bool = True):
        self.record_entropy = record_entropy
        self.metrics: Optional[dict] = None
        self.evaluated_samples: Optional[int] = None
        self.entropy: dict = {}
        self.mode = "test"
        self.train_started = self.train_seconds = self.iter_seconds = 0.0
        self.train_iters = 0
        self._iter_started = 0.0

    def before_train(self, runner):
        self.mode = "train"
        self.train_started = time.perf_counter()

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._iter_started = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.iter_seconds += time.perf_counter() - self._iter_started
        self.train_iters += 1

    def after_train(self, runner):
        self.train_seconds = time.perf_counter() - self.train_started

    def _counting(self, compute_metrics):
        """``compute_metrics`` that records how many results it gets (on the main process,
        after mmengine collected the ranks' results and dropped the padding); with several
        metrics, the fewest."""
        def compute(results):
            self.evaluated_samples = len(results) if self.evaluated_samples is None \
                else min(self.evaluated_samples, len(results))
            return compute_metrics(results)
        compute.counted = True
        return compute

    def _start_eval(self, loop, runner):
        for metric in loop.evaluator.metrics:
            if not getattr(metric.compute_metrics, "counted", False):
                metric.compute_metrics = self._counting(metric.compute_metrics)
        self.evaluated_samples = None
        if self.record_entropy:
            set_attention_stats(unwrap(runner.model), True)

    def _end_eval(self, runner, metrics):
        self.metrics = dict(metrics or {})
        if self.record_entropy:
            self.entropy = attention_entropy(unwrap(runner.model))
            set_attention_stats(unwrap(runner.model), False)

    def before_val_epoch(self, runner):
        self._start_eval(runner.val_loop, runner)

    def before_test_epoch(self, runner):
        self._start_eval(runner.test_loop, runner)

    def after_val_epoch(self, runner, metrics=None):
        self._end_eval(runner, metrics)

    def after_test_epoch(self, runner, metrics=None):
        self._end_eval(runner, metrics)

    def after_run(self, runner):
        if not is_main_process():
            return
        if self.metrics is None:
            raise RuntimeError("the run produced no evaluation metrics; report.json needs them")
        write_json_atomic(Path(runner.work_dir) / REPORT_NAME, self.build_report(runner))

    def build_report(self, runner) -> dict:
        cfg = runner.cfg
        variant, dropkey = resolve_dropkey(cfg)
        monte_carlo = resolve_monte_carlo(cfg)
        metrics = _float_metrics(self.metrics)
        primary = cfg.get("primary_metric")
        if primary not in metrics:
            raise KeyError(f"primary_metric {primary!r} is not among the metrics {sorted(metrics)}")
        layers = []
        for layer in attention_layers(unwrap(runner.model)):
            record = layer.as_dict()
            if layer.name in self.entropy:
                record["entropy"] = self.entropy[layer.name]
            layers.append(record)
        loader = runner.train_dataloader
        batch_size = (loader.batch_size or loader.batch_sampler.batch_size) \
            if self.mode == "train" else 0
        samples = self.train_iters * batch_size * get_world_size()
        return {
            "schema_version": SCHEMA_VERSION,
            "mode": self.mode,
            "task": cfg.get("task", "unknown"),
            "config": str(cfg.filename),
            "variant": variant,
            "method": dropkey["method"],
            "schedule": dropkey["schedule"],
            "base_drop_ratio": dropkey["drop_ratio"],
            "finetune_epochs": resolve_finetune_epochs(cfg),
            "attention_layers": layers,
            "seed": runner.seed,
            "dataset": cfg.get("dataset_name", "unknown"),
            "metrics": metrics,
            "monte_carlo": None if monte_carlo is None else {"samples": monte_carlo},
            "evaluated_samples": self.evaluated_samples,
            "primary_metric": primary,
            "higher_is_better": bool(cfg.get("higher_is_better", True)),
            "epochs": runner.epoch,
            "iterations": runner.iter,
            "train_seconds": round(self.train_seconds, 3),
            "train_samples_per_second": (samples / self.iter_seconds if self.iter_seconds else None),
            "curves": _curves(runner.message_hub),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "machine": machine(),
            "work_dir": str(runner.work_dir),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def _upgrade_v1(report: dict) -> dict:
    """A version-1 report as version 2: its ``method`` was the variant label."""
    label = report.get("method")
    if isinstance(label, str):
        report["variant"] = label
        known = VARIANTS.get(label)
        report["method"] = known.method if known else next(
            (layer.get("method") for layer in report.get("attention_layers") or ()
             if isinstance(layer, dict) and layer.get("method") != "untouched"), label)
    report["schema_version"] = SCHEMA_VERSION
    return report


def read_report(path) -> dict:
    """Load and validate a report; raise DataFormatError naming the file and field at fault."""
    report = load_json(path, "report")
    if not isinstance(report, dict):
        raise DataFormatError(path, "<root>", "expected a JSON object")
    version = report.get("schema_version", 1)
    if version == 1:
        report = _upgrade_v1(report)
    elif version != SCHEMA_VERSION:
        raise DataFormatError(path, "schema_version",
                              f"{version!r} is not 1 or {SCHEMA_VERSION}")
    for field, kind in REQUIRED_FIELDS.items():
        if field not in report:
            raise DataFormatError(path, field, "missing")
        if not isinstance(report[field], kind) or isinstance(report[field], bool) and kind is not bool:
            raise DataFormatError(path, field, f"has type {type(report[field]).__name__}")
    _check_finite(path, report, "")
    for key, value in report["metrics"].items():
        if not _is_number(value):
            raise DataFormatError(path, f"metrics.{key}", "is not a number")
    if "base_drop_ratio" in report and not _is_ratio(report["base_drop_ratio"]):
        raise DataFormatError(path, "base_drop_ratio", "is not a ratio in [0, 1)")
    _check_curves(path, report.get("curves", {}))
    if report["primary_metric"] not in report["metrics"]:
        raise DataFormatError(path, "primary_metric",
                              f"{report['primary_metric']!r} is not a key of metrics")
    samples = report.get("evaluated_samples")  # absent from reports written before it existed
    if samples is not None and not _is_count(samples, minimum=0):
        raise DataFormatError(path, "evaluated_samples", f"{samples!r} is not a count")
    tail = report.get("finetune_epochs")  # both absent from reports written before they existed
    if tail is not None and not _is_count(tail, minimum=1):
        raise DataFormatError(path, "finetune_epochs", f"{tail!r} is not a number of epochs >= 1")
    monte_carlo = report.get("monte_carlo")
    if monte_carlo is not None and not (isinstance(monte_carlo, dict)
                                        and set(monte_carlo) == {"samples"}
                                        and _is_count(monte_carlo["samples"], minimum=1)):
        raise DataFormatError(path, "monte_carlo", f"{monte_carlo!r} is not {{'samples': K}} "
                              "with K >= 1, or null")
    if "machine" in report:
        if not isinstance(report["machine"], dict):
            raise DataFormatError(path, "machine", "is not an object")
        for field, kind in MACHINE_FIELDS.items():
            value = report["machine"].get(field)
            if field not in report["machine"] or not isinstance(value, kind) or (
                    isinstance(value, bool)):
                raise DataFormatError(path, f"machine.{field}",
                                      f"missing or has type {type(value).__name__}")
    for i, layer in enumerate(report["attention_layers"]):
        if not isinstance(layer, dict) or not {"name", "method", "drop_ratio"} <= set(layer):
            raise DataFormatError(path, f"attention_layers[{i}]",
                                  "needs name, method and drop_ratio")
        if not _is_ratio(layer["drop_ratio"]):
            raise DataFormatError(path, f"attention_layers[{i}].drop_ratio",
                                  f"{layer['drop_ratio']!r} is not a ratio in [0, 1)")
        if "entropy" in layer and not _is_number(layer["entropy"]):
            raise DataFormatError(path, f"attention_layers[{i}].entropy", "is not a number")
    return report


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_ratio(value) -> bool:
    return _is_number(value) and 0.0 <= value < 1.0


def _check_finite(path, value, where: str) -> None:
    """No NaN or infinity anywhere: Python's json reads the bare ``NaN``/``Infinity`` that
    strict JSON forbids, and one of them in a metric would poison every mean it enters."""
    if isinstance(value, float) and not math.isfinite(value):
        raise DataFormatError(path, where or "<root>", f"{value} is not a finite number")
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        _check_finite(path, item, f"{where}[{key}]" if isinstance(key, int) else
                      f"{where}.{key}" if where else str(key))


def _check_curves(path, curves) -> None:
    """``curves`` maps a key to equally long lists of integer ``step`` and number ``value``
    (null where a logged value was not finite, e.g. the loss of a diverged step)."""
    if not isinstance(curves, dict):
        raise DataFormatError(path, "curves", "is not an object")
    for key, curve in curves.items():
        where = f"curves.{key}"
        if not isinstance(curve, dict) or not isinstance(curve.get("step"), list) \
                or not isinstance(curve.get("value"), list):
            raise DataFormatError(path, where, "needs lists 'step' and 'value'")
        if len(curve["step"]) != len(curve["value"]):
            raise DataFormatError(path, where, f"{len(curve['step'])} steps but "
                                  f"{len(curve['value'])} values")
        if not all(isinstance(step, int) and not isinstance(step, bool) for step in curve["step"]):
            raise DataFormatError(path, f"{where}.step", "holds a value that is not an integer")
        if not all(value is None or _is_number(value) for value in curve["value"]):
            raise DataFormatError(path, f"{where}.value", "holds a value that is not a number")
