"""Run a DropKey Bench suite (tasks x variants x seeds), then aggregate it into DIR/summary.

    python tools/run_suite.py {quick|standard|SUITE.py} --work-dir DIR [--jobs N] [--threads T]
                              [--tasks TASK ...] [--dry-run]

Each run trains in DIR/<task>/<variant>/seed<k>; runs that already have a valid report.json are
skipped, so rerunning the same command resumes an interrupted suite. Exit code 1 when a run failed.
"""
import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.common.summary import aggregate  # noqa: E402
from tasks.common.cli import run_cli  # noqa: E402
from tasks.common.suite import (has_valid_report, load_suite, plan_runs, run_suite,  # noqa: E402
                                threads_per_run)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", help="preset name (quick, standard) or a suite config file")
    parser.add_argument("--work-dir", required=True, help="suite directory; one sub-dir per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/OpenMP threads per run (default: cores // jobs)")
    parser.add_argument("--tasks", nargs="+", help="only these tasks of the suite")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and the commands, run and write nothing")
    args = parser.parse_args()
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--jobs and --threads must be at least 1")
    try:
        runs = plan_runs(load_suite(args.suite), args.work_dir, args.tasks)
    except ValueError as err:
        parser.error(str(err))
    if args.dry_run:
        threads = args.threads or threads_per_run(args.jobs)
        print(f"{len(runs)} runs, {args.jobs} at a time, OMP_NUM_THREADS={threads} each")
        for run in runs:
            state = ("skip (valid report)" if has_valid_report(run.work_dir)
                     else "run" if run.config else f"fail: {run.config_error}")
            print(f"{run.name}: {state}")
            if run.config and state == "run":
                print("  " + shlex.join(run.command()))
        return
    counts = run_suite(runs, jobs=args.jobs, threads=args.threads)
    paths = aggregate([args.work_dir], Path(args.work_dir) / "summary")
    print(f"runs: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped")
    print(f"report: {paths['html']} (also {paths['md'].name}, {paths['csv'].name}, "
          f"{paths['json'].name})")
    if counts["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
