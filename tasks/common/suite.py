"""Benchmark suites: tasks x methods x seeds, each run a ``tools/train.py`` subprocess.

A suite config (``configs/suites/*.py``, read with mmengine) has ``methods`` and ``seeds`` lists
and a ``tasks`` dict; each task entry may override ``methods``/``seeds`` and set ``cfg_options``
(dotted keys, as for ``--cfg-options``) and ``config``, a glob template naming the task's config
per method (default: the task's one embedded config per method).

Every run gets ``WORK_DIR/<task>/<method>/seed<k>/`` holding the run's own work dir contents,
``run.log`` (its stdout and stderr) and ``run_status.json`` (pending, running, ok or failed, with
the reason and the log's tail), which the aggregation reads to list runs that produced no report.
"""
from __future__ import annotations

import glob
import os
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

SUITE_DIR = REPO_ROOT / "configs" / "suites"
TRAIN_SCRIPT = REPO_ROOT / "tools" / "train.py"
DEFAULT_CONFIG_TEMPLATE = "configs/{task}/*_{method}_embedded.py"
STATUS_NAME = "run_status.json"
RUN_STATES = ("pending", "running", "ok", "failed")
LOG_NAME = "run.log"
ERROR_TAIL_LINES = 40
TASK_KEYS = {"cfg_options", "methods", "seeds", "config"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class PlannedRun:
    task: str
    method: str
    seed: int
    work_dir: Path
    config: Optional[Path]
    config_error: str = ""  # why ``config`` is None
    cfg_options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.task}/{self.method}/seed{self.seed}"

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


def load_suite(suite: str) -> dict:
    """Read and validate a suite config; returns {task: {methods, seeds, cfg_options, config}}."""
    path = suite_path(suite)
    cfg = Config.fromfile(path)
    for name in ("methods", "seeds", "tasks"):
        if name not in cfg:
            raise DataFormatError(path, name, "missing")
    methods = _check_list(path, "methods", cfg.methods, str)
    seeds = _check_list(path, "seeds", cfg.seeds, int)
    if not isinstance(cfg.tasks, dict) or not cfg.tasks:
        raise DataFormatError(path, "tasks", "expected a non-empty dict of task name -> options")
    tasks = {}
    for task, options in cfg.tasks.items():
        where = f"tasks.{task}"
        if not isinstance(options, dict):
            raise DataFormatError(path, where, "expected a dict")
        unknown = set(options) - TASK_KEYS
        if unknown:
            raise DataFormatError(path, where, f"unknown keys {sorted(unknown)} "
                                  f"(allowed: {sorted(TASK_KEYS)})")
        cfg_options = options.get("cfg_options", {})
        if not isinstance(cfg_options, dict) or any(isinstance(v, dict)
                                                   for v in cfg_options.values()):
            raise DataFormatError(path, f"{where}.cfg_options",
                                  "expected a dict of dotted keys to plain values")
        template = options.get("config", DEFAULT_CONFIG_TEMPLATE)
        if not isinstance(template, str):
            raise DataFormatError(path, f"{where}.config", "expected a glob template string")
        tasks[task] = dict(
            methods=_check_list(path, f"{where}.methods", options.get("methods", methods), str),
            seeds=_check_list(path, f"{where}.seeds", options.get("seeds", seeds), int),
            cfg_options=dict(cfg_options), config=template)
    return tasks


def resolve_config(task: str, method: str, template: str) -> tuple[Optional[Path], str]:
    """The one config the template matches, or None and the reason."""
    pattern = template.format(task=task, method=method)
    matches = sorted(glob.glob(os.path.join(REPO_ROOT, pattern)))  # relative to the repo root
    if len(matches) == 1:
        return Path(matches[0]), ""
    if not matches:
        return None, f"no config matches {pattern} (task or method not implemented yet?)"
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
        for method in options["methods"]:
            config, error = resolve_config(task, method, options["config"])
            for seed in options["seeds"]:
                runs.append(PlannedRun(task, method, seed, work_dir / task / method / f"seed{seed}",
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
    record = dict(task=run.task, method=run.method, seed=run.seed,
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
