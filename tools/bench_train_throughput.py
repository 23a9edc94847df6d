"""End-to-end training throughput per task: ``dropkey-dec`` vs ``none`` on the same model.

    python tools/bench_train_throughput.py [--tasks classification detection ...]
                                           [--round-seconds 4] [--rounds 5] [--warmup 5]
                                           [--threads 2] [--out-dir DIR]

For each task with ``configs/<task>/<model>_{none,dropkey-dec}_embedded.py`` (every task found
when omitted), one subprocess trains both configs the way every run trains: a round is
``Runner.from_cfg(cfg).train()`` on the config shortened to a few iterations (an
``IterBasedTrainLoop``; the config's own learning-rate schedule, warm-up included, over its full
length; one evaluation at the end, which the report needs), and its rate is the report's
``train_samples_per_second`` (forward, backward and optimizer step; data loading excluded).
An untimed first round of ``--warmup`` iterations per variant sets the round length to about
``--round-seconds``; then the variants alternate in ABBA rounds, so background load hits both
alike. Reports samples/s (median over rounds) and the slowdown (median over rounds of the paired
ratio); writes DIR/bench_train_throughput.{json,md}.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.common.files import write_atomic, write_json_atomic  # noqa: E402

VARIANTS = ("none", "dropkey-dec")


def config_pairs() -> dict:
    """{task: {variant: config path}} for every task with both embedded configs."""
    pairs = {}
    for none_config in sorted((REPO / "configs").glob("*/*_none_embedded.py")):
        dec_config = none_config.with_name(none_config.name.replace("_none_", "_dropkey-dec_"))
        if dec_config.exists():
            pairs[none_config.parent.name] = dict(zip(VARIANTS, (none_config, dec_config)))
    return pairs


def round_config(config: Path, work_dir: Path, iters: int):
    """``config`` trained for ``iters`` iterations of its own schedule, evaluated once at the end.

    Schedules without an ``end`` follow the training loop's length; they get the config's
    ``max_epochs`` here, so the round's learning rates are those of the first ``iters``
    iterations of the full run.
    """
    from mmengine.config import Config

    cfg = Config.fromfile(config)
    max_epochs = cfg.train_cfg.max_epochs
    cfg.param_scheduler = [dict(scheduler, end=max_epochs)
                           if "end" not in scheduler and scheduler.get("by_epoch", True)
                           else scheduler for scheduler in cfg.param_scheduler]
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters)
    cfg.default_hooks.checkpoint = None  # nothing to keep
    cfg.log_processor = dict(by_epoch=False)
    cfg.log_level = "WARNING"
    cfg.visualizer = dict(type="Visualizer", vis_backends=[])  # nothing is logged
    cfg.launcher = "none"
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = work_dir.name  # one logger and message hub per round
    return cfg


def train_round(config: Path, work_dir: Path, iters: int) -> dict:
    """Train one round through the public path; returns its report."""
    from mmengine.runner import Runner

    from tasks.common import REPORT_NAME, read_report

    Runner.from_cfg(round_config(config, work_dir, iters)).train()
    return read_report(work_dir / REPORT_NAME)


def worker(args) -> dict:
    """Time both variants of one task in this process; return per-variant samples/s."""
    from mmengine.config import Config

    configs = config_pairs()[args.task]
    rates = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as work_root:
        round_iters = []
        for variant in VARIANTS:  # untimed: first-use costs, and the round length
            report = train_round(configs[variant], Path(work_root) / f"{variant}-warmup",
                                 args.warmup)
            batch_size = Config.fromfile(configs[variant]).train_dataloader.batch_size
            iters_per_second = report["train_samples_per_second"] / batch_size
            round_iters.append(max(3, math.ceil(args.round_seconds * iters_per_second)))
        iters = max(round_iters)  # the same work for both
        for round_index in range(args.rounds):
            order = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]  # ABBA: drift cancels
            for variant in order:
                report = train_round(configs[variant],
                                     Path(work_root) / f"{variant}-round{round_index}", iters)
                rates[variant].append(report["train_samples_per_second"])
    result = {variant: dict(samples_per_s=statistics.median(r), rounds=r)
              for variant, r in rates.items()}
    result["round_iterations"] = iters
    # Throughput drifts during a run (for both variants alike), so compare round by round.
    result["slowdown"] = statistics.median(
        none / dropkey - 1 for none, dropkey in zip(*(rates[v] for v in VARIANTS)))
    return result


def markdown(results: dict, args) -> str:
    lines = [f"Training samples/s (report.json's train_samples_per_second of Runner.train(); "
             f"median of {args.rounds} alternating rounds of about {args.round_seconds} s, "
             f"{args.threads} thread(s)).", "",
             "| task | none | dropkey-dec | DropKey slowdown |", "|---|---|---|---|"]
    for task, row in results.items():
        if "error" in row:
            lines.append(f"| {task} | - | - | failed: {row['error']} |")
            continue
        none, dropkey = (row[variant]["samples_per_s"] for variant in VARIANTS)
        lines.append(f"| {task} | {none:.1f} | {dropkey:.1f} | {100 * row['slowdown']:+.1f}% |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", help="default: every task with both configs")
    parser.add_argument("--round-seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5,
                        help="iterations of the untimed first round per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=str(REPO / "work_dirs" / "bench_train_throughput"))
    parser.add_argument("--task", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        print(json.dumps(worker(args)))
        return
    available = config_pairs()
    tasks = args.tasks or list(available)
    results = {}
    for task in tasks:
        if task not in available:
            results[task] = dict(error="no configs/<task>/*_{none,dropkey-dec}_embedded.py pair")
        else:
            command = [sys.executable, __file__, "--task", task, "--round-seconds",
                       str(args.round_seconds), "--rounds", str(args.rounds), "--warmup",
                       str(args.warmup)]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
            if done.returncode == 0:
                results[task] = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                results[task] = dict(error=(done.stderr.strip().splitlines() or ["?"])[-1])
        print(task, json.dumps(results[task]), flush=True)
    out_dir = Path(args.out_dir)
    write_json_atomic(out_dir / "bench_train_throughput.json",
                      dict(conditions=dict(threads=args.threads, round_seconds=args.round_seconds,
                                           rounds=args.rounds, load_average=os.getloadavg()),
                           results=results))
    table = markdown(results, args)
    write_atomic(out_dir / "bench_train_throughput.md", table.encode())
    print(table)


if __name__ == "__main__":
    main()
