"""What Monte-Carlo evaluation costs: the time of an evaluation with K stochastic passes over the
time of the deterministic one, per task that supports it.

    python tools/bench_monte_carlo.py [--samples 8] [--repeats 5] [--threads 2]

For each task's embedded `dropkey-dec` config, in one process: builds the runner, injects the
regulariser as a run does (its `before_run` hooks), then evaluates the validation set with the
model's `test_step` (the model's share of an evaluation; the metric is left out), alternately
deterministic and with K passes, `--repeats` times each (ABAB..., so drift affects both). The
expected ratio is 1 + K (the deterministic forward is kept, K are added); anything above it is
overhead of the Monte-Carlo machinery. Machine-dependent; the ratio much less so.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {
    "classification": "configs/classification/vit-mini_dropkey-dec_embedded.py",
    "mesh": "configs/mesh/metro-mini_dropkey-dec_embedded.py",
}


def measure(config: str, samples: int, repeats: int, work_dir: Path) -> dict:
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    from tasks.common.hooks import unwrap

    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    cfg.monte_carlo = dict(samples=samples)
    runner = Runner.from_cfg(cfg)
    runner.call_hook("before_run")  # injects the regulariser and checks `monte_carlo`
    model = unwrap(runner.model).eval()
    batches = list(runner.test_dataloader)

    def evaluate(passes: int) -> float:
        model.monte_carlo_samples = passes
        started = time.perf_counter()
        with torch.no_grad():
            for batch in batches:
                model.test_step(batch)
        return time.perf_counter() - started

    evaluate(0), evaluate(samples)  # untimed: first-use costs
    times = {"deterministic": [], "monte_carlo": []}
    for _ in range(repeats):
        times["deterministic"].append(evaluate(0))
        times["monte_carlo"].append(evaluate(samples))
    ratios = [mc / det for det, mc in zip(times["deterministic"], times["monte_carlo"])]
    return {"images": sum(len(batch["inputs"]) for batch in batches),
            "deterministic_s": statistics.median(times["deterministic"]),
            "monte_carlo_s": statistics.median(times["monte_carlo"]),
            "ratio": statistics.median(ratios), "expected": 1 + samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8, help="K, stochastic passes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    if args.samples < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--samples, --repeats and --threads must be at least 1")
    import torch
    torch.set_num_threads(args.threads)
    print(f"| task | images | deterministic (s) | K = {args.samples} (s) | ratio | 1 + K |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            row = measure(CONFIGS[task], args.samples, args.repeats, Path(tmp) / task)
            print(f"| {task} | {row['images']} | {row['deterministic_s']:.3f} | "
                  f"{row['monte_carlo_s']:.3f} | {row['ratio']:.2f}× | {row['expected']}× |",
                  flush=True)


if __name__ == "__main__":
    main()
