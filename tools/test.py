"""Evaluate a checkpoint of a DropKey Bench config and write WORK_DIR/report.json.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]
                         [--launcher {none,pytorch,slurm}]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.runner import Runner  # noqa: E402

from tasks.common.cli import add_common_arguments, config_for_testing, run_cli  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint to evaluate")
    add_common_arguments(parser)
    Runner.from_cfg(config_for_testing(parser.parse_args())).test()


if __name__ == "__main__":
    run_cli(main)
