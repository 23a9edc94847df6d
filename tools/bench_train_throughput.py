"""End-to-end training throughput per task: ``dropkey-dec`` vs ``none`` on the same model.

    python tools/bench_train_throughput.py [--tasks classification detection ...] [--iters 20]
                                           [--rounds 3] [--warmup 3] [--threads 2] [--out-dir DIR]

For each task with ``configs/<task>/<model>_{none,dropkey-dec}_embedded.py`` (every task found
when omitted), one subprocess builds both runners (same architecture, seed and data; DropKey
injected as in training) and times ``model.train_step`` (forward, backward, optimizer step) in
alternating rounds, so background load hits both alike. Data loading is excluded. Reports
samples/s (median over rounds) and the slowdown; writes DIR/bench_train_throughput.{json,md}.
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
            optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
            loader = runner.build_dataloader(runner._train_dataloader, seed=0)
            runner.model.train()
            steps[method] = (runner.model, optim_wrapper, loader)

        def run(method, iters):
            model, optim_wrapper, loader = steps[method]
            seconds, samples = 0.0, 0
            batches = iter(loader)
            for _ in range(iters):
                try:
                    data_batch = next(batches)
                except StopIteration:
                    batches = iter(loader)
                    data_batch = next(batches)
                start = time.perf_counter()
                model.train_step(data_batch, optim_wrapper)
                seconds += time.perf_counter() - start
                samples += batch_size(data_batch)
            return samples / seconds

        torch.manual_seed(0)
        for method in METHODS:
            run(method, args.warmup)
        rates = {method: [] for method in METHODS}
        for _ in range(args.rounds):
            for method in METHODS:
                rates[method].append(run(method, args.iters))
    result = {method: dict(samples_per_s=statistics.median(r), rounds=r)
              for method, r in rates.items()}
    none, dropkey = (result[method]["samples_per_s"] for method in METHODS)
    result["slowdown"] = none / dropkey - 1
    return result


def markdown(results: dict, args) -> str:
    lines = [f"Training samples/s (train_step only, median of {args.rounds} alternating rounds of "
             f"{args.iters} iterations, {args.threads} thread(s)).", "",
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
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
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
            command = [sys.executable, __file__, "--task", task, "--iters", str(args.iters),
                       "--rounds", str(args.rounds), "--warmup", str(args.warmup)]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
            if done.returncode == 0:
                results[task] = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                results[task] = dict(error=(done.stderr.strip().splitlines() or ["?"])[-1])
        print(task, json.dumps(results[task]), flush=True)
    out_dir = Path(args.out_dir)
    write_json_atomic(out_dir / "bench_train_throughput.json",
                      dict(conditions=dict(threads=args.threads, iters=args.iters,
                                           rounds=args.rounds, load_average=os.getloadavg()),
                           results=results))
    table = markdown(results, args)
    write_atomic(out_dir / "bench_train_throughput.md", table.encode())
    print(table)


if __name__ == "__main__":
    main()
