"""Train a DropKey Bench config on the mmengine Runner and write WORK_DIR/report.json.

    python tools/train.py CONFIG [--work-dir DIR] [--seed N] [--resume [CKPT]]
                          [--cfg-options k=v ...] [--launcher {none,pytorch,slurm}]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.runner import Runner  # noqa: E402

from tasks.common.cli import add_common_arguments, config_for_training, run_cli  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config file")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="resume from CKPT, or from the latest checkpoint in the work dir")
    add_common_arguments(parser)
    Runner.from_cfg(config_for_training(parser.parse_args())).train()


if __name__ == "__main__":
    run_cli(main)
