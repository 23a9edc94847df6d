"""What the up-front input checks and the checkpoint random state cost, per embedded task.

    python tools/bench_checks.py [--threads 2] [--out work_dirs/bench_checks]

For each task's embedded `dropkey-dec` config, in one process:
  * builds the training and validation datasets and the evaluator, as the Runner does, and
    times it: an upper bound of the checks' cost, since the same build also loaded the
    annotations before any check existed (the data set is prepared first, untimed);
  * times capturing the random state that every checkpoint carries;
  * trains the config's shortest schedule through `Runner.from_cfg(cfg).train()` and takes the
    time per epoch from its report, to scale the full schedule's training time.
The ratio is (build + one capture per epoch) / full-schedule training time: the share of a run's
wall time the checks can take at most. Machine-dependent; the ratio much less so.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {
    "classification": "configs/classification/vit-mini_dropkey-dec_embedded.py",
    "detection": "configs/detection/dino-tiny_dropkey-dec_embedded.py",
    "hoi": "configs/hoi/qpic-mini_dropkey-dec_embedded.py",
    "mesh": "configs/mesh/metro-mini_dropkey-dec_embedded.py",
}


def measure(task: str, config: str, work_dir: Path) -> dict:
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from tasks.common.checkpoint import random_state
    from tasks.common.schedules import shortest_epochs

    cfg = Config.fromfile(config)
    full_epochs = cfg.train_cfg.max_epochs
    cfg.train_cfg.max_epochs = shortest_epochs(cfg)
    cfg.train_cfg.val_interval = cfg.train_cfg.max_epochs
    cfg.default_hooks.checkpoint.interval = cfg.train_cfg.max_epochs
    cfg.work_dir = str(work_dir / task)
    runner = Runner.from_cfg(cfg)

    def build():
        with DefaultScope.overwrite_default_scope(cfg.get("default_scope", "mmengine")):
            runner.build_dataloader(cfg.train_dataloader)
            runner.build_dataloader(cfg.val_dataloader)
            runner.build_evaluator(cfg.val_evaluator)

    build()  # prepares the embedded data set when it is missing
    started = time.perf_counter()
    build()
    build_seconds = time.perf_counter() - started
    captures = []
    for _ in range(20):
        started = time.perf_counter()
        random_state()
        captures.append(time.perf_counter() - started)
    capture_seconds = statistics.median(captures)

    runner.train()
    report = json.loads((work_dir / task / "report.json").read_text())
    epoch_seconds = report["train_seconds"] / report["epochs"]
    full_seconds = epoch_seconds * full_epochs
    checks_seconds = build_seconds + capture_seconds * full_epochs
    return {"task": task, "config": config, "full_epochs": full_epochs,
            "build_seconds": build_seconds, "random_state_seconds": capture_seconds,
            "epoch_seconds": epoch_seconds, "full_train_seconds": full_seconds,
            "checks_share_percent": 100 * checks_seconds / full_seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", default="work_dirs/bench_checks")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for task in args.tasks:
            rows.append(measure(task, CONFIGS[task], Path(scratch)))
    lines = ["| task | data checks + build (s) | random state per save (ms) | full training (s, "
             "estimated) | share of the run |", "|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['build_seconds']:.2f} | {1000 * r['random_state_seconds']:.2f} "
              f"| {r['full_train_seconds']:.0f} | {r['checks_share_percent']:.2f} % |"
              for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_checks.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "bench_checks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
