"""Benchmark suites: tasks x variants x seeds, each run a ``tools/train.py`` subprocess.

A suite config (``configs/suites/*.py``, read with mmengine) has ``variants`` (labels of
:mod:`tasks.common.variants`) and ``seeds`` lists and a ``tasks`` dict; each task entry may
override ``variants``/``seeds`` and set

- ``epochs``: train that many epochs instead of the config's ``max_epochs``, evaluating and
  checkpointing once, at the end. Warm-up and cosine schedules follow ``max_epochs`` in every
  config, so this one knob shortens the whole schedule consistently;
- ``cfg_options``: dotted keys as for ``--cfg-options`` (they win over what ``epochs`` sets);
- ``config``: a glob template naming the task's config per variant (default: the task's one
  embedded config per variant).

Every run gets ``WORK_DIR/<task>/<variant>/seed<k>/`` holding the run's own work dir contents,
``run.log`` (its stdout and stderr) and ``run_status.json`` (pending, running, ok or failed, with
the reason and the log's tail), which the aggregation reads to list runs that produced no report.
Task names and variant labels become directory names, so both are checked to be path-safe when
the suite file is read.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Optional

from mmengine.config import Config

from .files import DataFormatError, write_json_atomic
from .report import REPO_ROOT, REPORT_NAME, read_report
from .variants import check_label

SUITE_DIR = REPO_ROOT / "configs" / "suites"
TRAIN_SCRIPT = REPO_ROOT / "tools" / "train.py"
DEFAULT_CONFIG_TEMPLATE = "configs/{task}/*_{variant}_embedded.py"
TEMPLATE_FIELDS = ("task", "variant")
TASK_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")  # the task's package name under tasks/
STATUS_NAME = "run_status.json"
RUN_STATES = ("pending", "running", "ok", "failed")
LOG_NAME = "run.log"
ERROR_TAIL_LINES = 40
TASK_KEYS = {"cfg_options", "variants", "seeds", "config", "epochs"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class PlannedRun:
    task: str
    variant: str
    seed: int
    work_dir: Path
    config: Optional[Path]
    config_error: str = ""  # why ``config`` is None
    cfg_options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.task}/{self.variant}/seed{self.seed}"

    def command(self) -> list[str]:
        command = [sys.executable, str(TRAIN_SCRIPT), str(self.config),
                   "--work-dir", str(self.work_dir), "--seed", str(self.seed)]
        if self.cfg_options:
            command.append("--cfg-options")
            command += [f"{key}={format_option(value)}" for key, value in self.cfg_options.items()]
        return command


def format_option(value) -> str:
    """A config value as mmengine's ``DictAction`` parses it back (lists/tuples without spaces)."""
    if isinstance(value, (list, tuple)):
        inner = ",".join(format_option(item) for item in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return str(value)


def suite_path(suite: str) -> Path:
    """A preset name (``quick``, ``standard``) or a path to a suite config."""
    path = Path(suite)
    if not path.suffix:
        path = SUITE_DIR / f"{suite}.py"
    if not path.is_file():
        presets = sorted(p.stem for p in SUITE_DIR.glob("*.py"))
        raise DataFormatError(path, "suite", f"no such suite config (presets: {presets})")
    return path


def _check_list(path, field_name: str, value, kind: type) -> list:
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value)):
        raise DataFormatError(path, field_name, f"expected a non-empty list of {kind.__name__}")
    if len(set(value)) != len(value):
        raise DataFormatError(path, field_name, "has duplicates")
    return list(value)


def _check_variants(path, field_name: str, value) -> list:
    labels = _check_list(path, field_name, value, str)
    for i, label in enumerate(labels):
        try:
            check_label(label)
        except ValueError as err:
            raise DataFormatError(path, f"{field_name}[{i}]", str(err)) from None
    return labels


def _check_template(path, field_name: str, template) -> str:
    """A glob template whose only placeholders are ``{task}`` and ``{variant}``."""
    if not isinstance(template, str):
        raise DataFormatError(path, field_name, "expected a glob template string")
    try:
        template.format(**{name: name for name in TEMPLATE_FIELDS})
    except (KeyError, IndexError, ValueError) as err:
        raise DataFormatError(path, field_name, f"{template!r}: bad placeholder {err} "
                              f"(allowed: {', '.join('{%s}' % f for f in TEMPLATE_FIELDS)})") \
            from None
    return template


def epochs_options(epochs: int) -> dict:
    """The config entries of a schedule shortened to ``epochs``: train, then evaluate once."""
    return {"train_cfg.max_epochs": epochs, "train_cfg.val_interval": epochs,
            "default_hooks.checkpoint.interval": epochs}


def _task_options(path, task: str, options, variants: list, seeds: list) -> dict:
    where = f"tasks.{task}"
    if not isinstance(task, str) or not TASK_PATTERN.match(task):
        raise DataFormatError(path, where, f"{task!r} is not a task name (lower-case letters, "
                              "digits and _, starting with a letter)")
    if not isinstance(options, dict):
        raise DataFormatError(path, where, "expected a dict")
    unknown = set(options) - TASK_KEYS
    if unknown:
        raise DataFormatError(path, where, f"unknown keys {sorted(unknown)} "
                              f"(allowed: {sorted(TASK_KEYS)})")
    cfg_options = options.get("cfg_options", {})
    if not isinstance(cfg_options, dict) or any(isinstance(v, dict) for v in cfg_options.values()):
        raise DataFormatError(path, f"{where}.cfg_options",
                              "expected a dict of dotted keys to plain values")
    if "epochs" in options:
        epochs = options["epochs"]
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise DataFormatError(path, f"{where}.epochs", f"{epochs!r} is not a positive integer")
        if "train_cfg.max_epochs" in cfg_options:
            raise DataFormatError(path, f"{where}.cfg_options",
                                  "sets train_cfg.max_epochs next to epochs; keep one")
        cfg_options = {**epochs_options(epochs), **cfg_options}
    return dict(
        variants=_check_variants(path, f"{where}.variants", options.get("variants", variants)),
        seeds=_check_list(path, f"{where}.seeds", options.get("seeds", seeds), int),
        cfg_options=dict(cfg_options),
        config=_check_template(path, f"{where}.config",
                               options.get("config", DEFAULT_CONFIG_TEMPLATE)))


def load_suite(suite: str) -> dict:
    """Read and validate a suite config; returns {task: {variants, seeds, cfg_options, config}}.

    Every task name and variant label is checked here, before any path is built from it.
    """
    path = suite_path(suite)
    cfg = Config.fromfile(path)
    for name in ("variants", "seeds", "tasks"):
        if name not in cfg:
            hint = " (the labels list is called `variants`)" if "methods" in cfg else ""
            raise DataFormatError(path, name, "missing" + hint)
    variants = _check_variants(path, "variants", cfg.variants)
    seeds = _check_list(path, "seeds", cfg.seeds, int)
    if not isinstance(cfg.tasks, dict) or not cfg.tasks:
        raise DataFormatError(path, "tasks", "expected a non-empty dict of task name -> options")
    return {task: _task_options(path, task, options, variants, seeds)
            for task, options in cfg.tasks.items()}


def resolve_config(task: str, variant: str, template: str) -> tuple[Optional[Path], str]:
    """The one config the template matches, or None and the reason."""
    pattern = template.format(task=task, variant=variant)
    matches = sorted(glob.glob(os.path.join(REPO_ROOT, pattern)))  # relative to the repo root
    if len(matches) == 1:
        return Path(matches[0]), ""
    if not matches:
        return None, f"no config matches {pattern} (task or variant not implemented yet?)"
    return None, f"{len(matches)} configs match {pattern}, expected one: {', '.join(matches)}"


def plan_runs(tasks: dict, work_dir,
              only_tasks: Optional[Iterable[str]] = None) -> list[PlannedRun]:
    work_dir = Path(work_dir).resolve()
    if only_tasks:
        unknown = set(only_tasks) - set(tasks)
        if unknown:
            raise ValueError(f"--tasks: {sorted(unknown)} not in the suite (has {sorted(tasks)})")
        tasks = {name: tasks[name] for name in tasks if name in set(only_tasks)}
    runs = []
    for task, options in tasks.items():
        for variant in options["variants"]:
            config, error = resolve_config(task, variant, options["config"])
            for seed in options["seeds"]:
                runs.append(PlannedRun(task, variant, seed,
                                       work_dir / task / variant / f"seed{seed}",
                                       config, error, options["cfg_options"]))
    return runs


def has_valid_report(work_dir) -> bool:
    try:
        read_report(Path(work_dir) / REPORT_NAME)
        return True
    except DataFormatError:
        return False


def threads_per_run(jobs: int) -> int:
    return max(1, len(os.sched_getaffinity(0)) // jobs)


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-ERROR_TAIL_LINES:])


def _write_status(run: PlannedRun, status: str, **extra) -> dict:
    record = dict(task=run.task, variant=run.variant, seed=run.seed,
                  config=str(run.config) if run.config else None, status=status, **extra)
    write_json_atomic(run.work_dir / STATUS_NAME, record)
    return record


def execute(run: PlannedRun, threads: int) -> dict:
    """Run one training subprocess; returns (and writes) its final status record."""
    if run.config is None:
        return _write_status(run, "failed", reason=run.config_error, seconds=0.0)
    env = dict(os.environ, **{name: str(threads) for name in THREAD_VARIABLES})
    command = run.command()
    log = run.work_dir / LOG_NAME
    _write_status(run, "running", command=command, threads=threads, log=str(log))
    started = time.perf_counter()
    with open(log, "wb") as out:
        returncode = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    seconds = round(time.perf_counter() - started, 1)
    common = dict(command=command, threads=threads, log=str(log), seconds=seconds)
    if returncode != 0:
        return _write_status(run, "failed", reason=f"tools/train.py exited with code {returncode}",
                             error_tail=_log_tail(log), **common)
    try:
        read_report(run.work_dir / REPORT_NAME)
    except DataFormatError as err:
        return _write_status(run, "failed", reason=f"no valid report after exit code 0: {err}",
                             error_tail=_log_tail(log), **common)
    return _write_status(run, "ok", **common)


def run_suite(runs: list[PlannedRun], jobs: int = 1, threads: Optional[int] = None,
              echo: Callable[[str], None] = partial(print, flush=True)) -> dict:
    """Run what has no valid report yet, ``jobs`` at a time; returns counts by outcome."""
    threads = threads or threads_per_run(jobs)
    todo = []
    for run in sorted(runs, key=lambda r: r.config is not None):  # config-less fail at once
        if has_valid_report(run.work_dir):
            echo(f"[skip] {run.name}: valid {REPORT_NAME} exists")
        else:
            todo.append(run)
    counts = {"skipped": len(runs) - len(todo), "ok": 0, "failed": 0}
    echo(f"{len(todo)} of {len(runs)} runs to do, {jobs} at a time, {threads} thread(s) each")
    for run in todo:
        run.work_dir.mkdir(parents=True, exist_ok=True)
        _write_status(run, "pending")
    lock = threading.Lock()

    def start(run):
        if run.config:
            with lock:
                echo(f"[start] {run.name} -> {run.work_dir / LOG_NAME}")
        return execute(run, threads)

    started = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(start, run): run for run in todo}
        for done, future in enumerate(as_completed(futures), 1):
            run, status = futures[future], future.result()
            counts[status["status"]] += 1
            detail = f"{status['seconds']:.0f} s" + (
                f", {status['reason']}" if status["status"] == "failed" else "")
            with lock:
                echo(f"[{done}/{len(todo)}] {status['status']:<6} {run.name} ({detail}); "
                     f"elapsed {time.perf_counter() - started:.0f} s")
    finally:
        # On Ctrl-C start nothing new; unstarted runs keep status "pending" for the aggregation.
        pool.shutdown(wait=True, cancel_futures=True)
    return counts
