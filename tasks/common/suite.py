"""Benchmark suites: tasks x variants x seeds, each run a ``tools/train.py`` subprocess.

A suite config (``configs/suites/*.py``, read with mmengine) has ``variants`` (labels of
:mod:`tasks.common.variants`) and ``seeds`` lists and a ``tasks`` dict; each task entry may
override ``variants``/``seeds`` and set

- ``epochs``: train that many epochs instead of the config's ``max_epochs``, evaluating and
  checkpointing once, at the end. Warm-up and cosine schedules follow ``max_epochs`` in every
  config, so this one knob shortens the whole schedule consistently;
- ``cfg_options``: dotted keys as for ``--cfg-options`` (they win over what ``epochs`` sets);
- ``config``: a glob template naming the task's config per variant (default: the task's one
  embedded config per variant). A label carrying its ratio (``dropkey-dec-p0.3``) uses the
  config of its base label (``dropkey-dec``) with ``dropkey.variant=<label>`` added to its
  ``cfg_options``, so a ratio sweep needs no config of its own;
- ``resources``: what one run needs on Slurm (``gpus_per_node``, ``nodes``, ``cpus_per_task``,
  ``mem_gb``, ``time_min``, ``partition``, ``sbatch`` extra options), over the suite-level
  ``resources`` dict and :data:`tasks.common.slurm.RESOURCE_DEFAULTS`.

Every run gets ``WORK_DIR/<task>/<variant>/seed<k>/`` holding the run's own work dir contents,
``run.log`` (its stdout and stderr) and ``run_status.json`` (pending, running, ok or failed, with
the reason and the log's tail; the executor, the fingerprint of the resolved config the run
started with and, on Slurm, the job id and its last known state),
which the aggregation reads to list runs that produced no report and a rerun reads to follow
jobs that are still queued or running instead of submitting them again.
Task names and variant labels become directory names, so both are checked to be path-safe when
the suite file is read.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from statistics import mean
from typing import Callable, Iterable, Optional

from mmengine.config import Config

from . import slurm
from .checkpoint import LAST_CHECKPOINT
from .files import DataFormatError, write_json_atomic
from .report import REPO_ROOT, REPORT_NAME, read_report
from .variants import check_label, get_variant, split_label

SUITE_DIR = REPO_ROOT / "configs" / "suites"
TRAIN_SCRIPT = REPO_ROOT / "tools" / "train.py"
DEFAULT_CONFIG_TEMPLATE = "configs/{task}/*_{variant}_embedded.py"
TEMPLATE_FIELDS = ("task", "variant")
TASK_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")  # the task's package name under tasks/
STATUS_NAME = "run_status.json"
RUN_STATES = ("pending", "running", "ok", "failed")
LOG_NAME = "run.log"
ERROR_TAIL_LINES = 40
TASK_KEYS = {"cfg_options", "variants", "seeds", "config", "epochs", "resources"}
VARIANT_OPTION = "dropkey.variant"  # set by the suite from the label, never by cfg_options
RATIO_OPTION = "dropkey.drop_ratio"  # would overrule the ratio a label carries
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
    resources: dict = field(default_factory=lambda: dict(slurm.RESOURCE_DEFAULTS))

    @property
    def name(self) -> str:
        return f"{self.task}/{self.variant}/seed{self.seed}"

    def command(self, resume: bool = False, launcher: Optional[str] = None) -> list[str]:
        command = [sys.executable, str(TRAIN_SCRIPT), str(self.config),
                   "--work-dir", str(self.work_dir), "--seed", str(self.seed)]
        if resume:
            command.append("--resume")
        if launcher:
            command += ["--launcher", launcher]
        if self.cfg_options:
            command.append("--cfg-options")
            command += [f"{key}={format_option(value)}" for key, value in self.cfg_options.items()]
        return command

    def recipe(self) -> Optional[str]:
        """Fingerprint of the resolved config (file, its bases and the cfg_options), or None when
        it does not parse (the run then fails in train.py, which says why)."""
        try:
            cfg = Config.fromfile(self.config, import_custom_modules=False)
            cfg.merge_from_dict(self.cfg_options)
        except Exception:  # noqa: BLE001 - any parse error is train.py's to report
            return None
        text = json.dumps(cfg.to_dict(), sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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
    """Path-safe labels; a label carrying a ratio must also name a known variant here, as its
    run would otherwise fail late, looking for a config of an unknown base label."""
    labels = _check_list(path, field_name, value, str)
    for i, label in enumerate(labels):
        try:
            check_label(label)
            if split_label(label)[1] is not None:
                get_variant(label)
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


def _task_options(path, task: str, options, variants: list, seeds: list,
                  resources: dict) -> dict:
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
    if VARIANT_OPTION in cfg_options:
        raise DataFormatError(path, f"{where}.cfg_options.{VARIANT_OPTION}",
                              "the variant of a run is its label in `variants`")
    if "epochs" in options:
        epochs = options["epochs"]
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise DataFormatError(path, f"{where}.epochs", f"{epochs!r} is not a positive integer")
        if "train_cfg.max_epochs" in cfg_options:
            raise DataFormatError(path, f"{where}.cfg_options",
                                  "sets train_cfg.max_epochs next to epochs; keep one")
        cfg_options = {**epochs_options(epochs), **cfg_options}
    variants = _check_variants(path, f"{where}.variants", options.get("variants", variants))
    carrying = [label for label in variants if split_label(label)[1] is not None]
    if carrying and RATIO_OPTION in cfg_options:
        raise DataFormatError(path, f"{where}.cfg_options.{RATIO_OPTION}",
                              f"contradicts the ratio that {carrying[0]!r} carries")
    return dict(
        variants=variants,
        seeds=_check_list(path, f"{where}.seeds", options.get("seeds", seeds), int),
        cfg_options=dict(cfg_options),
        config=_check_template(path, f"{where}.config",
                               options.get("config", DEFAULT_CONFIG_TEMPLATE)),
        resources=slurm.check_resources(path, f"{where}.resources",
                                        options.get("resources", {}), resources))


def load_suite(suite: str) -> dict:
    """Read and validate a suite config; returns {task: {variants, seeds, cfg_options, config,
    resources}}.

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
    resources = slurm.check_resources(path, "resources", cfg.get("resources", {}))
    return {task: _task_options(path, task, options, variants, seeds, resources)
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


def variant_config(task: str, variant: str, options: dict) -> tuple[Optional[Path], str, dict]:
    """(config, why it is None, cfg_options) of one variant of a task: a label carrying its
    ratio runs its base label's config with the label set as ``dropkey.variant``."""
    base, ratio = split_label(variant)
    config, error = resolve_config(task, base, options["config"])
    if ratio is None:
        return config, error, options["cfg_options"]
    return config, error, {**options["cfg_options"], VARIANT_OPTION: variant}


def plan_runs(tasks: dict, work_dir, only_tasks: Optional[Iterable[str]] = None,
              only_variants: Optional[Iterable[str]] = None) -> list[PlannedRun]:
    """The suite's runs, or those of ``only_tasks`` and ``only_variants`` (a part of a suite
    runs in the suite's own directories, so a later full run skips what it finished)."""
    work_dir = Path(work_dir).resolve()
    if only_tasks:
        unknown = set(only_tasks) - set(tasks)
        if unknown:
            raise ValueError(f"--tasks: {sorted(unknown)} not in the suite (has {sorted(tasks)})")
        tasks = {name: tasks[name] for name in tasks if name in set(only_tasks)}
    if only_variants:
        known = {variant for options in tasks.values() for variant in options["variants"]}
        unknown = set(only_variants) - known
        if unknown:
            raise ValueError(f"--variants: {sorted(unknown)} not in the suite's selected tasks")
    runs = []
    for task, options in tasks.items():
        for variant in options["variants"]:
            if only_variants and variant not in set(only_variants):
                continue
            config, error, cfg_options = variant_config(task, variant, options)
            for seed in options["seeds"]:
                runs.append(PlannedRun(task, variant, seed,
                                       work_dir / task / variant / f"seed{seed}",
                                       config, error, cfg_options, options["resources"]))
    return runs


def has_valid_report(work_dir) -> bool:
    try:
        read_report(Path(work_dir) / REPORT_NAME)
        return True
    except DataFormatError:
        return False


def threads_per_run(jobs: int) -> int:
    return max(1, len(os.sched_getaffinity(0)) // jobs)


def thread_env(threads: int) -> dict:
    return {name: str(threads) for name in THREAD_VARIABLES}


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-ERROR_TAIL_LINES:])


def _write_status(run: PlannedRun, status: str, executor: str = "local", **extra) -> dict:
    """Write the run's status record; the recipe it started with stays until a new start."""
    if "recipe" not in extra:
        extra["recipe"] = (read_run_status(run) or {}).get("recipe")
    record = dict(task=run.task, variant=run.variant, seed=run.seed,
                  config=str(run.config) if run.config else None, status=status,
                  executor=executor, **extra)
    write_json_atomic(run.work_dir / STATUS_NAME, record)
    return record


def read_run_status(run: PlannedRun) -> Optional[dict]:
    """The run's last ``run_status.json``, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((run.work_dir / STATUS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def eta_seconds(durations: dict[str, list[float]], remaining: dict[str, int],
                parallel: int) -> Optional[float]:
    """Time to finish ``remaining`` runs per task, ``parallel`` at a time, at the mean duration of
    the task's finished runs (of all finished runs for a task with none); None before any."""
    finished = [seconds for task_seconds in durations.values() for seconds in task_seconds]
    if not finished:
        return None
    work = sum(count * mean(durations.get(task) or finished) for task, count in remaining.items())
    return work / max(1, parallel)


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


class Progress:
    """Progress lines of a suite: ``[done/total] status run (seconds, reason); elapsed; ETA``."""

    def __init__(self, runs: list[PlannedRun], parallel: int, echo: Callable[[str], None]):
        self.remaining = {}
        for run in runs:
            self.remaining[run.task] = self.remaining.get(run.task, 0) + 1
        self.total, self.done, self.parallel, self.echo = len(runs), 0, parallel, echo
        self.durations: dict[str, list[float]] = {}
        self.started = time.perf_counter()
        self.lock = threading.Lock()

    def finished(self, run: PlannedRun, status: dict) -> None:
        with self.lock:
            self.done += 1
            self.remaining[run.task] -= 1
            if status["status"] == "ok" and status.get("seconds"):
                self.durations.setdefault(run.task, []).append(status["seconds"])
            seconds = status.get("seconds")
            detail = ", ".join(([f"{seconds:.0f} s"] if seconds is not None else []) + (
                [status["reason"]] if status["status"] == "failed" else []))
            eta = eta_seconds(self.durations, self.remaining, self.parallel)
            eta = f"; ETA {format_duration(eta)}" if self.done < self.total else ""
            self.echo(f"[{self.done}/{self.total}] {status['status']:<6} {run.name} ({detail}); "
                      f"elapsed {time.perf_counter() - self.started:.0f} s{eta}")


def execute(run: PlannedRun, threads: int) -> dict:
    """Run one training subprocess; returns (and writes) its final status record.

    ``--resume``: a run interrupted by a stopped suite continues from its latest checkpoint
    (resume is exact, README "Checkpoints and resume") instead of training again from epoch 0;
    its ``run.log`` grows by the new attempt's output."""
    if run.config is None:
        return _write_status(run, "failed", reason=run.config_error, seconds=0.0)
    env = dict(os.environ, **thread_env(threads))
    command = run.command(resume=True)
    log = run.work_dir / LOG_NAME
    _write_status(run, "running", command=command, threads=threads, log=str(log),
                  recipe=run.recipe())
    started = time.perf_counter()
    with open(log, "ab") as out:
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


def changed_recipe(run: PlannedRun) -> Optional[str]:
    """Why the run must not resume its checkpoint: its config resolves differently from the one
    the checkpoint was trained with (resuming would mix two recipes in one run); else None."""
    started_with = (read_run_status(run) or {}).get("recipe")
    if run.config is None or not started_with or not (run.work_dir / LAST_CHECKPOINT).exists():
        return None
    if run.recipe() == started_with:
        return None
    return (f"{run.config} resolves differently from the config its checkpoint was trained with; "
            f"remove {run.work_dir} to train it again")


def _runs_to_do(runs: list[PlannedRun], echo) -> list[PlannedRun]:
    """Runs without a valid report; a run whose checkpoint another recipe wrote fails at once."""
    todo = []
    for run in runs:
        if has_valid_report(run.work_dir):
            echo(f"[skip] {run.name}: valid {REPORT_NAME} exists")
            continue
        reason = changed_recipe(run)
        if reason:
            run.config, run.config_error = None, reason
        todo.append(run)
    return sorted(todo, key=lambda r: r.config is not None)  # config-less fail at once


def run_suite(runs: list[PlannedRun], jobs: int = 1, threads: Optional[int] = None,
              echo: Callable[[str], None] = partial(print, flush=True)) -> dict:
    """Run what has no valid report yet, ``jobs`` at a time; returns counts by outcome."""
    threads = threads or threads_per_run(jobs)
    todo = _runs_to_do(runs, echo)
    counts = {"skipped": len(runs) - len(todo), "ok": 0, "failed": 0}
    echo(f"{len(todo)} of {len(runs)} runs to do, {jobs} at a time, {threads} thread(s) each")
    for run in todo:
        run.work_dir.mkdir(parents=True, exist_ok=True)
        _write_status(run, "pending")
    progress = Progress(todo, jobs, echo)

    def start(run):
        if run.config:
            with progress.lock:
                echo(f"[start] {run.name} -> {run.work_dir / LOG_NAME}")
        return execute(run, threads)

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(start, run): run for run in todo}
        for future in as_completed(futures):
            status = future.result()
            counts[status["status"]] += 1
            progress.finished(futures[future], status)
    finally:
        # On Ctrl-C start nothing new; unstarted runs keep status "pending" for the aggregation.
        pool.shutdown(wait=True, cancel_futures=True)
    return counts


# --- Slurm -------------------------------------------------------------------------------------

def slurm_threads(run: PlannedRun, threads: Optional[int]) -> int:
    return threads or run.resources["cpus_per_task"]


def slurm_command(run: PlannedRun) -> list[str]:
    """The run inside its job: always ``--resume`` (from the latest checkpoint, if any), and one
    distributed run over the job's tasks when it has several."""
    tasks = run.resources["nodes"] * max(1, run.resources["gpus_per_node"])
    return run.command(resume=True, launcher="slurm" if tasks > 1 else None)


def live_slurm_states(runs: list[PlannedRun]) -> dict[str, tuple[dict, Optional[str]]]:
    """{run name: (its status record, Slurm's state of its job now)} for runs with a Slurm job."""
    records = {run.name: read_run_status(run) for run in runs}
    records = {name: record for name, record in records.items()
               if record and record.get("executor") == "slurm" and record.get("job_id")}
    states = slurm.job_states([record["job_id"] for record in records.values()])
    return {name: (record, states.get(record["job_id"])) for name, record in records.items()}


def run_suite_slurm(runs: list[PlannedRun], work_dir, max_parallel: Optional[int] = None,
                    threads: Optional[int] = None, name: str = "dropkey-suite",
                    echo: Callable[[str], None] = partial(print, flush=True),
                    poll_seconds: float = slurm.POLL_SECONDS) -> dict:
    """Submit every run without a valid report (one job array per resource set), follow jobs still
    queued or running from an earlier call instead, and wait for all; returns counts by outcome."""
    slurm.require_slurm()
    todo = _runs_to_do(runs, echo)
    live = live_slurm_states(todo)
    follow = {run.name for run in todo
              if run.name in live and live[run.name][1] in slurm.ACTIVE_STATES}
    submit = [run for run in todo if run.config and run.name not in follow]
    groups: dict[str, list[PlannedRun]] = {}
    for run in submit:
        groups.setdefault(json.dumps(run.resources, sort_keys=True), []).append(run)
    slurm.check_cluster([json.loads(key) for key in groups])  # before anything is submitted
    counts = {"skipped": len(runs) - len(todo), "ok": 0, "failed": 0}
    progress = Progress(todo, max_parallel or len(todo), echo)
    for run in todo:
        if run.config is None:
            counts["failed"] += 1
            progress.finished(run, _write_status(run, "failed", "slurm", reason=run.config_error))
    folder = Path(work_dir).resolve() / slurm.JOB_FOLDER
    jobs = {}  # job id -> (run, its status record)
    for run in todo:
        if run.name in follow:
            record, state = live[run.name]
            jobs[record["job_id"]] = (run, record)
            echo(f"[follow] {run.name}: Slurm job {record['job_id']} {state}")
    setup = [f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]
    for group in groups.values():
        train_jobs = []
        for run in group:
            run.work_dir.mkdir(parents=True, exist_ok=True)
            train_jobs.append(slurm.TrainJob(
                slurm_command(run), str(run.work_dir / LOG_NAME),
                thread_env(slurm_threads(run, threads)), str(REPO_ROOT)))
        job_ids = slurm.submit_array(train_jobs, group[0].resources, folder, name, max_parallel,
                                     setup)
        for run, job, job_id in zip(group, train_jobs, job_ids):
            jobs[job_id] = (run, _write_status(
                run, "pending", "slurm", recipe=run.recipe(), job_id=job_id, slurm_state="PENDING",
                command=job.command, threads=slurm_threads(run, threads),
                log=str(run.work_dir / LOG_NAME), submitted=time.time()))
        echo(f"[submit] {len(group)} run(s) as job array {job_ids[0].split('_')[0]} "
             f"({shlex.join(slurm.sbatch_flags(slurm.sbatch_parameters(group[0].resources)))})")

    def on_state(job_id: str, state: Optional[str]) -> bool:
        run, record = jobs[job_id]
        if state in slurm.ACTIVE_STATES:
            if state != record.get("slurm_state"):
                status = "pending" if state in slurm.QUEUED_STATES else "running"
                jobs[job_id] = (run, _write_status(run, status, **{
                    **_without_state(record), "slurm_state": state}))
            return False
        status = _finished_status(run, record, folder, state)
        counts[status["status"]] += 1
        progress.finished(run, status)
        return True

    slurm.follow(list(jobs), on_state, poll_seconds)
    return counts


def _without_state(record: dict) -> dict:
    return {key: value for key, value in record.items()
            if key not in ("task", "variant", "seed", "config", "status")}


def _finished_status(run: PlannedRun, record: dict, folder: Path, state: Optional[str]) -> dict:
    """The final status of a run whose job ended (``state`` None: Slurm forgot it)."""
    job_id = record["job_id"]
    error, seconds = slurm.job_outcome(folder, job_id)
    common = {**_without_state(record), "slurm_state": state or "UNKNOWN"}
    if seconds is not None:
        common["seconds"] = seconds
    if has_valid_report(run.work_dir):
        return _write_status(run, "ok", **common)
    reason = f"Slurm job {job_id} ended {state or 'unknown to Slurm'}" + (
        f": {error}" if error else "")
    tail = _log_tail(run.work_dir / LOG_NAME) or _log_tail(slurm.submitit_log(folder, job_id))
    return _write_status(run, "failed", **common, reason=reason, error_tail=tail)


def cancel_suite(runs: list[PlannedRun], echo: Callable[[str], None] = print) -> int:
    """``scancel`` the suite's queued and running jobs; returns how many."""
    slurm.require_slurm()
    live = {name: (record, state) for name, (record, state) in live_slurm_states(runs).items()
            if state in slurm.ACTIVE_STATES}
    slurm.cancel([record["job_id"] for record, _ in live.values()])
    for run in runs:
        if run.name in live:
            record, state = live[run.name]
            _write_status(run, "failed", **{**_without_state(record), "slurm_state": "CANCELLED"},
                          reason=f"cancelled with --cancel while {state}")
            echo(f"[cancel] {run.name}: Slurm job {record['job_id']}")
    return len(live)


PROGRESS_COLUMNS = ("done", "running", "queued", "failed", "not started")


def suite_progress(runs: list[PlannedRun]) -> tuple[dict[str, dict[str, int]], dict]:
    """({task: {column: runs}}, {task: [finished runs' seconds]}) from the suite's files and, for
    runs on Slurm, their jobs' live states."""
    live = live_slurm_states(runs) if shutil.which("squeue") else {}
    table: dict[str, dict[str, int]] = {}
    durations: dict[str, list[float]] = {}
    for run in runs:
        record = read_run_status(run)
        if has_valid_report(run.work_dir):
            column = "done"
            if record and record.get("seconds"):
                durations.setdefault(run.task, []).append(record["seconds"])
        elif run.name in live and live[run.name][1] in slurm.ACTIVE_STATES:
            column = "queued" if live[run.name][1] in slurm.QUEUED_STATES else "running"
        elif record is None:
            column = "not started"
        elif run.name in live or record.get("status") == "failed":
            column = "failed"  # a Slurm job that ended without a report counts as failed
        else:
            column = {"pending": "queued", "running": "running"}.get(record["status"], "failed")
        table.setdefault(run.task, dict.fromkeys(PROGRESS_COLUMNS, 0))[column] += 1
    return table, durations


def format_progress(table: dict[str, dict[str, int]], durations: dict[str, list[float]],
                    parallel: Optional[int] = None) -> str:
    width = max(len("task"), *map(len, table))
    lines = [f"{'task':<{width}}  " + "  ".join(PROGRESS_COLUMNS)]
    for task, counts in table.items():
        lines.append(f"{task:<{width}}  " + "  ".join(
            f"{counts[column]:>{len(column)}}" for column in PROGRESS_COLUMNS))
    remaining = {task: sum(counts.values()) - counts["done"] for task, counts in table.items()}
    running = sum(counts["running"] for counts in table.values())
    parallel = parallel or max(1, running)
    eta = eta_seconds(durations, remaining, parallel)
    lines.append(f"ETA {format_duration(eta)} for {sum(remaining.values())} unfinished run(s), "
                 f"{parallel} at a time" + ("" if eta is not None else " (no finished run yet)"))
    return "\n".join(lines)


def holds_suite(runs: list[PlannedRun]) -> bool:
    return any((run.work_dir / STATUS_NAME).exists() or (run.work_dir / REPORT_NAME).exists()
               for run in runs)
