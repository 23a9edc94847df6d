"""Measure the detection targets: embedded runs end to end, with their wall time and COCO AP.

    python tools/bench_detection.py [--variants dropkey-dec none] [--threads 2]
                                    [--work-root work_dirs/bench_detection] [--cfg-options ...]

Each variant runs ``tools/train.py configs/detection/<model>_<variant>_embedded.py`` in a fresh
process (so the wall time includes start-up, data generation if needed, training and the final
evaluation) and the script prints a Markdown table. Targets of the ``dropkey-dec`` run: bbox AP50
>= 0.30 on the generated val split within 10 minutes on 2 CPU cores. Writes
``WORK_ROOT/bench.json``.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.common import read_report, write_json_atomic  # noqa: E402
from tasks.common.variants import check_label  # noqa: E402

MODEL = "dino-tiny"
TARGET_AP50, TARGET_SECONDS = 0.30, 600.0
COLUMNS = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "AR@100")


def run(variant: str, work_root: Path, threads: int, cfg_options: list) -> dict:
    config = REPO / "configs/detection" / f"{MODEL}_{variant}_embedded.py"
    work_dir = work_root / variant
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, str(REPO / "tools/train.py"), str(config), "--work-dir",
               str(work_dir)] + (["--cfg-options", *cfg_options] if cfg_options else [])
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    report = read_report(work_dir / "report.json")
    metrics = {k: report["metrics"][f"coco/bbox_{k}"] for k in COLUMNS}
    return {"variant": variant, "wall_seconds": round(wall, 1),
            "train_seconds": report["train_seconds"], "epochs": report["epochs"],
            "metrics": metrics,
            "per_class_ap": {k.split("/")[1].removesuffix("_precision"): v
                             for k, v in report["metrics"].items() if k.endswith("_precision")},
            "meets_targets": metrics["mAP_50"] >= TARGET_AP50 and wall <= TARGET_SECONDS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", type=check_label, default=["dropkey-dec", "none"],
                        help="labels of tasks/common/variants.py (work dir names)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--work-root", default="work_dirs/bench_detection")
    parser.add_argument("--cfg-options", nargs="+", default=[])
    args = parser.parse_args()
    work_root = Path(args.work_root)
    rows = [run(v, work_root, args.threads, args.cfg_options) for v in args.variants]
    write_json_atomic(work_root / "bench.json", {
        "model": MODEL, "threads": args.threads, "cpu_count": os.cpu_count(),
        "cfg_options": args.cfg_options, "runs": rows})
    print(f"| variant | wall s | epochs | {' | '.join(COLUMNS)} | targets |")
    print("|---" * (len(COLUMNS) + 4) + "|")
    for row in rows:
        values = " | ".join(f"{row['metrics'][k]:.3f}" for k in COLUMNS)
        print(f"| {row['variant']} | {row['wall_seconds']:.0f} | {row['epochs']} | {values} | "
              f"{'met' if row['meets_targets'] else 'missed'} |")


if __name__ == "__main__":
    main()
