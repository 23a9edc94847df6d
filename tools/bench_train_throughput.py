"""End-to-end training throughput per task: ``dropkey-dec`` vs ``none`` on the same model.

    python tools/bench_train_throughput.py [--tasks classification detection ...]
                                           [--round-seconds 4] [--rounds 5] [--warmup 5]
                                           [--threads 2] [--out-dir DIR]

For each task with ``configs/<task>/<model>_{none,dropkey-dec}_embedded.py`` (every task found
when omitted), one subprocess builds both runners (same architecture, seed and data; DropKey
injected as in training) and times ``model.train_step`` (forward, backward, optimizer step, with
the config's learning-rate warm-up stepped as in training) in alternating rounds of at least
``--round-seconds`` each, so background load hits both alike. Data loading is excluded. Reports
samples/s (median over rounds) and the slowdown (median over rounds of the paired ratio);
writes DIR/bench_train_throughput.{json,md}.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.common.files import write_atomic, write_json_atomic  # noqa: E402

METHODS = ("none", "dropkey-dec")


def config_pairs() -> dict:
    """{task: {method: config path}} for every task with both embedded configs."""
    pairs = {}
    for none_config in sorted((REPO / "configs").glob("*/*_none_embedded.py")):
        dec_config = none_config.with_name(none_config.name.replace("_none_", "_dropkey-dec_"))
        if dec_config.exists():
            pairs[none_config.parent.name] = dict(zip(METHODS, (none_config, dec_config)))
    return pairs


def batch_size(data_batch) -> int:
    inputs = data_batch["inputs"] if isinstance(data_batch, dict) else data_batch[0]
    return len(inputs)


def worker(args) -> dict:
    """Time both methods of one task in this process; return per-method samples/s."""
    import torch
    from mmengine.config import Config

    from tasks.common import build_runner

    steps = {}
    with tempfile.TemporaryDirectory() as work_dir:
        for method, config in config_pairs()[args.task].items():
            cfg = Config.fromfile(config)
            cfg.work_dir = str(Path(work_dir) / method)
            cfg.launcher = "none"
            cfg.log_level = "WARNING"
            cfg.visualizer = dict(type="Visualizer", vis_backends=[])  # nothing is logged
            runner = build_runner(cfg)
            # Runner.train() initialises the weights; building alone leaves e.g. DINO's
            # level_embed as torch.empty memory, which made the timed steps NaN at random.
            runner.model.init_weights()
            runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
            # Warm-up as in training: without it DETR-style models can diverge in a few steps.
            schedulers = runner.build_param_scheduler(runner.param_schedulers)
            loader = runner.build_dataloader(runner._train_dataloader, seed=0)
            runner.model.train()
            steps[method] = (runner.model, runner.optim_wrapper, schedulers, loader)

        def run(method, min_iters, min_seconds=0.0):
            model, optim_wrapper, schedulers, loader = steps[method]
            seconds, samples, iters = 0.0, 0, 0
            batches = iter(loader)
            while iters < min_iters or seconds < min_seconds:
                try:
                    data_batch = next(batches)
                except StopIteration:
                    batches = iter(loader)
                    data_batch = next(batches)
                start = time.perf_counter()
                try:
                    model.train_step(data_batch, optim_wrapper)
                except Exception as err:
                    raise RuntimeError(f"{method}, step {iters} of a round: {err}") from err
                seconds += time.perf_counter() - start
                samples, iters = samples + batch_size(data_batch), iters + 1
                for scheduler in schedulers:
                    scheduler.step()
            return samples / seconds

        torch.manual_seed(0)
        for method in METHODS:
            run(method, args.warmup)
        rates = {method: [] for method in METHODS}
        for round_index in range(args.rounds):
            order = METHODS if round_index % 2 == 0 else METHODS[::-1]  # ABBA: drift cancels
            for method in order:
                rates[method].append(run(method, 3, args.round_seconds))
    result = {method: dict(samples_per_s=statistics.median(r), rounds=r)
              for method, r in rates.items()}
    # Throughput drifts during a run (for both methods alike), so compare round by round.
    result["slowdown"] = statistics.median(
        none / dropkey - 1 for none, dropkey in zip(*(rates[m] for m in METHODS)))
    return result


def markdown(results: dict, args) -> str:
    lines = [f"Training samples/s (train_step only, median of {args.rounds} alternating rounds of "
             f"at least {args.round_seconds} s, {args.threads} thread(s)).", "",
             "| task | none | dropkey-dec | DropKey slowdown |", "|---|---|---|---|"]
    for task, row in results.items():
        if "error" in row:
            lines.append(f"| {task} | - | - | failed: {row['error']} |")
            continue
        none, dropkey = (row[method]["samples_per_s"] for method in METHODS)
        lines.append(f"| {task} | {none:.1f} | {dropkey:.1f} | {100 * row['slowdown']:+.1f}% |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", help="default: every task with both configs")
    parser.add_argument("--round-seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per method")
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
