"""The Slurm executor of a suite: submitit job arrays, followed through ``squeue``.

Submission, arrays, requeue on timeout or preemption and the job's Python process are
submitit's. What this module adds is the suite's view: which runs need a job, the resources a
task asks for, and each run's last known Slurm state in its ``run_status.json``, so that a rerun
follows live jobs instead of submitting them again.

Job states are read with ``squeue --states=all`` (Slurm remembers finished jobs for
``MinJobAge``) and, for jobs it has forgotten, with ``sacct`` where accounting is configured.
A job neither knows is judged by what it left: a valid report is done, anything else failed.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

import submitit

from .files import DataFormatError

# Slurm's per-node resources of a run; the GPUs of a run are gpus_per_node x nodes, one task each.
RESOURCE_DEFAULTS = dict(gpus_per_node=0, nodes=1, cpus_per_task=1, mem_gb=None, time_min=60,
                         partition=None, sbatch={})
RESOURCE_TYPES = dict(gpus_per_node=int, nodes=int, cpus_per_task=int, mem_gb=(int, float),
                      time_min=int, partition=str, sbatch=dict)
MINIMUM = dict(gpus_per_node=0, nodes=1, cpus_per_task=1, mem_gb=0, time_min=1)
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                 "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT",
                 "RESV_DEL_HOLD", "STOPPED", "PREEMPTED"}
QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
POLL_SECONDS = 10.0  # as submitit's own watcher: a cluster's controller is shared
MAX_TIMEOUT_REQUEUES = 20  # a multi-day run on a 24 h partition requeues a few times per run
JOB_FOLDER = "slurm/%j"  # submitit's scripts, pickles and logs, under the suite's work dir
STOP_GRACE_SECONDS = 60


class SubmissionError(RuntimeError):
    """Slurm refused, or cannot take, what the suite asks for; nothing was submitted."""


def check_resources(path, where: str, value, base: Optional[dict] = None) -> dict:
    """``value`` (a suite config's ``resources`` dict) validated and laid over ``base``."""
    if not isinstance(value, dict):
        raise DataFormatError(path, where, "expected a dict of resources")
    unknown = set(value) - set(RESOURCE_DEFAULTS)
    if unknown:
        raise DataFormatError(path, f"{where}.{sorted(unknown)[0]}",
                              f"unknown resource key (allowed: {sorted(RESOURCE_DEFAULTS)})")
    for key, item in value.items():
        kind = RESOURCE_TYPES[key]
        if (item is not None and (isinstance(item, bool) or not isinstance(item, kind))) or (
                item is None and RESOURCE_DEFAULTS[key] is not None):
            raise DataFormatError(path, f"{where}.{key}", f"{item!r} is not a valid {key}")
        if key in MINIMUM and item is not None and item < MINIMUM[key]:
            raise DataFormatError(path, f"{where}.{key}", f"{item!r} is below {MINIMUM[key]}")
    return {**(base or RESOURCE_DEFAULTS), **value}


def sbatch_parameters(resources: dict) -> dict:
    """The run's sbatch options in submitit's ``SlurmExecutor`` names (``--`` + dashes for sbatch).

    A run is one task per GPU (one task on CPU); ``tools/train.py --launcher slurm`` turns the
    job's tasks into one distributed run.
    """
    gpus = resources["gpus_per_node"]
    parameters = dict(nodes=resources["nodes"], ntasks_per_node=max(1, gpus),
                      cpus_per_task=resources["cpus_per_task"], time=resources["time_min"])
    if gpus:
        parameters["gpus_per_node"] = gpus
    if resources["mem_gb"] is not None:
        parameters["mem"] = f"{resources['mem_gb']}GB"
    if resources["partition"]:
        parameters["partition"] = resources["partition"]
    return dict(parameters, **resources["sbatch"])


def sbatch_flags(parameters: dict) -> list[str]:
    return [f"--{key.replace('_', '-')}" + ("" if value is True else f"={value}")
            for key, value in parameters.items()]


def gpus_per_run(resources: dict) -> int:
    return resources["gpus_per_node"] * resources["nodes"]


def require_slurm() -> None:
    if shutil.which("sbatch") is None:
        raise SubmissionError("--executor slurm: sbatch is not on PATH (is this a Slurm login "
                              "node? tools/local_slurm.sh start runs a local cluster)")


def check_cluster(resource_sets: list[dict]) -> None:
    """Ask Slurm, before anything is submitted, whether it takes every resource set of the suite.

    ``sbatch --test-only`` validates without submitting, so a partition Slurm rejects is
    reported in sbatch's words; GPUs on a partition without GPU resources are refused here.
    """
    require_slurm()
    partitions = _partition_gres()
    default = next((name for name, (is_default, _) in partitions.items() if is_default), None)
    for resources in resource_sets:
        partition = resources["partition"] or default
        if resources["gpus_per_node"] and partition in partitions:
            gres = partitions[partition][1]
            if not any("gpu" in item for item in gres):
                raise SubmissionError(
                    f"partition {partition!r} has no GPUs (Gres {'/'.join(sorted(gres))}), "
                    f"but a run asks for {resources['gpus_per_node']} per node; choose a GPU "
                    "partition (--partition) or --gpus-per-node 0")
        command = ["sbatch", "--test-only", *sbatch_flags(sbatch_parameters(resources)),
                   "--wrap", "true"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            message = " ".join(result.stderr.split()) or f"exit code {result.returncode}"
            raise SubmissionError(f"sbatch rejects the resources "
                                  f"{shlex.join(command[2:-2])}: {message}")


def _partition_gres() -> dict[str, tuple[bool, set]]:
    """{partition: (is the default, its nodes' Gres)} from ``sinfo``."""
    result = subprocess.run(["sinfo", "-h", "-o", "%P|%G"], capture_output=True, text=True)
    partitions: dict[str, tuple[bool, set]] = {}
    for line in result.stdout.splitlines():
        name, _, gres = line.partition("|")
        is_default = name.endswith("*")
        name = name.rstrip("*")
        previous = partitions.get(name, (False, set()))
        partitions[name] = (previous[0] or is_default, previous[1] | {gres.strip()})
    return partitions


class TrainJob(submitit.helpers.Checkpointable):
    """One suite run inside its Slurm job: ``tools/train.py --resume``, appended to ``run.log``.

    Every task of the job runs this; with several tasks ``--launcher slurm`` makes them one
    distributed run. On submitit's timeout/preemption signal the training process is stopped and
    the job requeued with the same command, which resumes from the latest (crash-safe) epoch
    checkpoint. The returned seconds sum all attempts, for the suite's time estimates.
    """

    def __init__(self, command: list[str], log: str, env: dict, cwd: str, seconds: float = 0.0):
        self.command, self.log, self.env, self.cwd = command, log, env, cwd
        self.seconds = seconds
        self._process: Optional[subprocess.Popen] = None
        self._started = 0.0

    def __call__(self) -> float:
        rank = int(os.environ.get("SLURM_PROCID", "0"))
        log = Path(self.log) if rank == 0 else Path(self.log).with_suffix(f".rank{rank}.log")
        self._started = time.perf_counter()
        with open(log, "ab") as out:
            out.write(f"\n=== Slurm job {submitit.JobEnvironment().job_id} (restart "
                      f"{os.environ.get('SLURM_RESTART_COUNT', '0')}): "
                      f"{shlex.join(self.command)}\n".encode())
            out.flush()
            self._process = subprocess.Popen(
                self.command, cwd=self.cwd, env={**os.environ, **self.env}, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # submitit's handler in this process stops training; the signal is not its own
                preexec_fn=_ignore_requeue_signal)
            code = self._process.wait()
        if code != 0:
            raise RuntimeError(f"tools/train.py exited with code {code}")
        return round(self.seconds + time.perf_counter() - self._started, 1)

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """Stop training (its checkpoints are on disk) and hand submitit the same run to requeue."""
        self._stop_training()
        spent = time.perf_counter() - self._started if self._started else 0.0
        return submitit.helpers.DelayedSubmission(
            TrainJob(self.command, self.log, self.env, self.cwd, round(self.seconds + spent, 1)))

    def _stop_training(self) -> None:
        """SIGTERM, then SIGKILL after a grace period. This runs in submitit's signal handler,
        which interrupted ``Popen.wait`` holding the process's wait lock: reap with os.waitpid."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            try:
                if os.waitpid(process.pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:  # reaped already
                return
            time.sleep(0.2)
        process.kill()

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "_process"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _process=None)


def _ignore_requeue_signal() -> None:
    signal.signal(getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG), signal.SIG_IGN)


def submit_array(jobs: list[TrainJob], resources: dict, folder: Path, name: str,
                 max_parallel: Optional[int], setup: list[str]) -> list[str]:
    """Submit ``jobs`` as one job array; returns their Slurm job ids (``<array>_<index>``)."""
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_TIMEOUT_REQUEUES)
    executor.update_parameters(job_name=name, setup=setup, stderr_to_stdout=True,
                               **_submitit_names(sbatch_parameters(resources)),
                               **({"array_parallelism": max_parallel} if max_parallel else {}))
    try:
        with executor.batch():
            submitted = [executor.submit(job) for job in jobs]
    except subprocess.CalledProcessError as err:
        output = err.output.decode(errors="replace") if isinstance(err.output, bytes) else \
            str(err.output)
        raise SubmissionError(f"sbatch failed: {' '.join(output.split())}") from None
    return [job.job_id for job in submitted]


def _submitit_names(parameters: dict) -> dict:
    """sbatch options submitit names itself, the others as ``additional_parameters``."""
    known = submitit.SlurmExecutor._valid_parameters()
    additional = {key: value for key, value in parameters.items() if key not in known}
    named = {key: value for key, value in parameters.items() if key in known}
    return dict(named, additional_parameters=additional) if additional else named


def job_states(job_ids: list[str]) -> dict[str, str]:
    """{job id: Slurm state} for the jobs Slurm still knows (see the module docstring)."""
    if not job_ids:
        return {}
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    result = subprocess.run(["squeue", "--states=all", "--array", "--noheader",
                             "--format=%i|%T", "--jobs=" + ",".join(arrays)],
                            capture_output=True, text=True)
    states = dict(_parse_states(result.stdout)) if result.returncode == 0 else {}
    for job_id in job_ids:  # elements cancelled before they started stay in the array's record
        array = job_id.split("_")[0]
        if job_id not in states and array in states and states[array] not in ACTIVE_STATES:
            states[job_id] = states[array]
    missing = [job_id for job_id in job_ids if job_id not in states]
    if missing and shutil.which("sacct"):
        result = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations",
                                 "--format=JobID,State", "--jobs=" + ",".join(missing)],
                                capture_output=True, text=True)
        if result.returncode == 0:
            states.update({job_id: state for job_id, state in _parse_states(result.stdout)
                           if job_id not in states})
    return {job_id: states[job_id] for job_id in job_ids if job_id in states}


def _parse_states(text: str):
    """(job id, state) per array element; Slurm lists unstarted elements as ``12_[3-5%2]``."""
    for line in text.splitlines():
        job_id, _, state = line.strip().partition("|")
        if not job_id or not state or "." in job_id:
            continue
        for main, *elements in submitit.slurm.slurm.read_job_id(job_id):
            first, last = (elements + elements)[:2] if elements else (None, None)
            ids = [main] if first is None else [f"{main}_{k}" for k in range(int(first),
                                                                            int(last) + 1)]
            for element_id in ids:
                yield element_id, state.split()[0]  # sacct: "CANCELLED by 0"


def job_outcome(folder: Path, job_id: str) -> tuple[Optional[str], Optional[float]]:
    """What submitit recorded of a finished job: (error message or None, seconds or None)."""
    paths = submitit.core.utils.JobPaths(folder, job_id=job_id, task_id=0)
    if not paths.result_pickle.exists():
        return None, None
    try:
        outcome, value = submitit.core.utils.pickle_load(paths.result_pickle)
    except Exception as err:  # a partial or foreign file: the run's report decides
        return f"unreadable submitit result {paths.result_pickle}: {err}", None
    if outcome == "success":
        return None, value
    lines = [line for line in str(value).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "the job raised an error"), None


def submitit_log(folder: Path, job_id: str) -> Path:
    return submitit.core.utils.JobPaths(folder, job_id=job_id, task_id=0).stdout


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], check=True)


def follow(job_ids: list[str], on_state: Callable[[str, Optional[str]], bool],
           poll_seconds: float = POLL_SECONDS,
           sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll Slurm every ``poll_seconds`` until ``on_state(job_id, state)`` has returned True
    (finished) for every job; ``state`` is None for a job Slurm no longer knows."""
    waiting = list(job_ids)
    while waiting:
        states = job_states(waiting)
        waiting = [job_id for job_id in waiting if not on_state(job_id, states.get(job_id))]
        if waiting:
            sleep(poll_seconds)
