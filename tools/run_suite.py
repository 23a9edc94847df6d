"""Run a DropKey Bench suite (tasks x variants x seeds), then aggregate it into DIR/summary.

    python tools/run_suite.py {quick|standard|ablation|paper|SUITE.py} --work-dir DIR [--jobs N]
                              [--threads T] [--tasks TASK ...] [--variants LABEL ...]
                              [--dry-run]
    python tools/run_suite.py SUITE --work-dir DIR --executor slurm [--partition P]
                              [--max-parallel N] [--gpus-per-node G] [--nodes N] [--cpus-per-task C]
                              [--mem-gb M] [--time-min T] [--sbatch KEY=VALUE ...]
    python tools/run_suite.py SUITE --work-dir DIR {--status | --cancel}

Each run trains in DIR/<task>/<variant>/seed<k>; runs that already have a valid report.json are
skipped, so rerunning the same command resumes an interrupted suite. On Slurm every run is a job
of one job array per resource set; a rerun follows jobs still queued or running and resubmits
failed, cancelled and timed-out ones, which resume from their latest checkpoint.
Exit code 1 when a run failed, 2 on bad input (nothing submitted).
"""
import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.common import slurm  # noqa: E402
from tasks.common.cli import run_cli  # noqa: E402
from tasks.common.files import DataFormatError  # noqa: E402
from tasks.common.summary import aggregate  # noqa: E402
from tasks.common.suite import (STATUS_NAME, cancel_suite, format_progress,  # noqa: E402
                                has_valid_report, holds_suite, load_suite, plan_runs, run_suite,
                                run_suite_slurm, slurm_command, slurm_threads, suite_progress,
                                threads_per_run)

RESOURCE_FLAGS = {"gpus_per_node": int, "nodes": int, "cpus_per_task": int, "mem_gb": float,
                  "time_min": int, "partition": str}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite",
                        help="preset name (quick, standard, ablation, paper) or a suite config file")
    parser.add_argument("--work-dir", required=True, help="suite directory; one sub-dir per run")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local",
                        help="local: subprocesses on this machine (default); slurm: submitit jobs")
    parser.add_argument("--jobs", type=int, default=1, help="local runs at once (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/OpenMP threads per run (default: cores // jobs locally, "
                        "cpus_per_task on Slurm)")
    parser.add_argument("--tasks", nargs="+", help="only these tasks of the suite")
    parser.add_argument("--variants", nargs="+", help="only these variant labels of the suite")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and the commands, run, submit and write nothing")
    parser.add_argument("--status", action="store_true",
                        help="print the suite's progress per task and an ETA; submit nothing")
    parser.add_argument("--cancel", action="store_true", help="scancel the suite's live jobs")
    slurm_group = parser.add_argument_group("Slurm (override the suite config's resources)")
    slurm_group.add_argument("--max-parallel", type=int, default=None,
                             help="jobs of an array running at once")
    for key, kind in RESOURCE_FLAGS.items():
        slurm_group.add_argument("--" + key.replace("_", "-"), type=kind, default=None)
    slurm_group.add_argument("--sbatch", nargs="+", default=[], metavar="KEY=VALUE",
                             help="extra sbatch options, e.g. account=abc qos=high")
    args = parser.parse_args()
    if args.jobs < 1 or (args.threads is not None and args.threads < 1) or (
            args.max_parallel is not None and args.max_parallel < 1):
        parser.error("--jobs, --threads and --max-parallel must be at least 1")
    if args.status and args.cancel:
        parser.error("--status and --cancel exclude each other")
    try:
        args.overrides = {key: getattr(args, key) for key in RESOURCE_FLAGS
                          if getattr(args, key) is not None}
        sbatch = dict(item.split("=", 1) for item in args.sbatch)
    except ValueError:
        parser.error(f"--sbatch takes KEY=VALUE items, got {args.sbatch}")
    if sbatch:
        args.overrides["sbatch"] = sbatch
    return parser, args


def main():
    parser, args = parse_args()
    tasks = load_suite(args.suite)  # bad suite files: a one-line DataFormatError, exit 2
    try:
        runs = plan_runs(tasks, args.work_dir, args.tasks, args.variants)
    except ValueError as err:
        parser.error(str(err))
    for run in runs:
        run.resources = slurm.check_resources("command line", "resources", args.overrides,
                                              run.resources)
    if args.status or args.cancel:
        if not holds_suite(runs):
            raise DataFormatError(args.work_dir, STATUS_NAME,
                                  f"holds no run of suite {args.suite!r} (no run_status.json "
                                  "or report.json where the suite's runs go)")
        if args.status:
            table, durations = suite_progress(runs)
            print(format_progress(table, durations, args.max_parallel))
        else:
            print(f"cancelled {cancel_suite(runs)} job(s)")
        return
    if args.dry_run:
        return dry_run(runs, args)
    if args.executor == "slurm":
        counts = run_suite_slurm(runs, args.work_dir, args.max_parallel, args.threads,
                                 name=f"dropkey-{Path(args.suite).stem}")
    else:
        counts = run_suite(runs, jobs=args.jobs, threads=args.threads)
    paths = aggregate([args.work_dir], Path(args.work_dir) / "summary")
    print(f"runs: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped")
    print(f"report: {paths['html']} (also {paths['md'].name}, {paths['csv'].name}, "
          f"{paths['json'].name})")
    if counts["failed"]:
        sys.exit(1)


def dry_run(runs, args) -> None:
    if args.executor == "slurm":
        print(f"{len(runs)} runs, one Slurm job each"
              + (f", {args.max_parallel} at a time per array" if args.max_parallel else ""))
    else:
        threads = args.threads or threads_per_run(args.jobs)
        print(f"{len(runs)} runs, {args.jobs} at a time, OMP_NUM_THREADS={threads} each")
    for run in runs:
        state = ("skip (valid report)" if has_valid_report(run.work_dir)
                 else "run" if run.config else f"fail: {run.config_error}")
        print(f"{run.name}: {state}")
        if not run.config or state != "run":
            continue
        if args.executor == "slurm":
            flags = slurm.sbatch_flags(slurm.sbatch_parameters(run.resources))
            print(f"  sbatch {shlex.join(flags)}  "
                  f"({slurm.gpus_per_run(run.resources)} GPU(s) per run, "
                  f"OMP_NUM_THREADS={slurm_threads(run, args.threads)})")
            print("  " + shlex.join(slurm_command(run)))
        else:
            print("  " + shlex.join(run.command()))


def run_and_report_bad_input():
    try:
        main()
    except slurm.SubmissionError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_cli(run_and_report_bad_input)
