"""Command-line plumbing of tools/train.py and tools/test.py (OpenMMLab style).

The tools parse arguments; everything else a run needs is in the config they hand to
``Runner.from_cfg``, so a config run in Python with the same entries is the same run.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from mmengine.config import Config, DictAction

from .files import DataFormatError


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", help="directory for logs, checkpoints and report.json "
                        "(default: work_dirs/<config name>)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic algorithms (slower)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, e.g. train_cfg.max_epochs=2")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="job launcher for distributed runs (torchrun: pytorch)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """``args.config`` with the common arguments applied."""
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.launcher != "none" and not torch.cuda.is_available():
        cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or str(
        Path("work_dirs") / Path(args.config).stem)
    randomness = dict(cfg.get("randomness", {}))
    if args.seed is not None:
        randomness["seed"] = args.seed
    if args.deterministic:
        randomness["deterministic"] = True
    cfg.randomness = randomness
    return cfg


def config_for_training(args: argparse.Namespace) -> Config:
    """The config of ``tools/train.py``; ``args.resume`` is a checkpoint, ``"auto"`` or None."""
    cfg = load_config(args)
    if args.resume == "auto":  # the latest checkpoint in the work dir
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def config_for_testing(args: argparse.Namespace) -> Config:
    """The config of ``tools/test.py``: the model's weights from ``args.checkpoint``."""
    cfg = load_config(args)
    cfg.load_from, cfg.resume = args.checkpoint, False
    return cfg


def run_cli(main) -> None:
    """Run ``main()``; bad input data ends the process with a one-line error and exit code 2."""
    try:
        main()
    except DataFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
