"""Command-line plumbing of tools/train.py and tools/test.py (OpenMMLab style).

The tools parse arguments; everything else a run needs is in the config they hand to
``Runner.from_cfg``, so a config run in Python with the same entries is the same run.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed
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
    if not Path(args.config).is_file():
        raise DataFormatError(args.config, "config", "file not found")
    try:
        cfg = Config.fromfile(args.config)
    except SyntaxError as err:
        raise DataFormatError(args.config, f"line {err.lineno}",
                              f"invalid Python: {err.msg}") from None
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    epochs = (cfg.get("train_cfg") or {}).get("max_epochs")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or epochs < 1):  # mmengine would fail building the schedulers
        raise DataFormatError(args.config, "train_cfg.max_epochs",
                              f"{epochs!r} is not a positive whole number of epochs")
    cfg.launcher = args.launcher
    if args.launcher == "slurm":
        set_slurm_master_port()
    if args.launcher != "none" and not torch.cuda.is_available():
        use_cpu_processes(cfg)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or str(
        Path("work_dirs") / Path(args.config).stem)
    randomness = dict(cfg.get("randomness", {}))
    if args.seed is not None:
        randomness["seed"] = args.seed
    if args.deterministic:
        randomness["deterministic"] = True
    cfg.randomness = randomness
    return cfg


def set_slurm_master_port() -> None:
    """Give the processes of a Slurm job a rendezvous port of their own, derived from the job id.

    mmengine's Slurm launcher falls back to port 29500, which two jobs sharing a node would both
    take; a ``MASTER_PORT`` in the environment is kept.
    """
    if "MASTER_PORT" not in os.environ and "SLURM_JOB_ID" in os.environ:
        os.environ["MASTER_PORT"] = str(20000 + int(os.environ["SLURM_JOB_ID"]) % 20000)


def use_cpu_processes(cfg: Config) -> None:
    """Run a multi-process (``--launcher pytorch|slurm``) run of ``cfg`` on CPUs, over gloo.

    mmengine's launchers select a CUDA device before they create the process group, so this
    process joins the group first (the Runner creates none when one exists), and the model is
    wrapped in DistributedDataParallel without device ids (DDP refuses them for CPU modules).
    Machines with CUDA take mmengine's own path.
    """
    dist_cfg = cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})
    dist_cfg["backend"] = "gloo"
    wrapper = cfg.get("model_wrapper_cfg") or dict(
        type="MMDistributedDataParallel", broadcast_buffers=False,
        find_unused_parameters=cfg.get("find_unused_parameters", False))
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)
    if torch.distributed.is_initialized():
        return
    if cfg.launcher == "slurm":  # the variables torchrun sets, from Slurm's (as mmengine does)
        if "port" in dist_cfg:
            os.environ["MASTER_PORT"] = str(dist_cfg["port"])
        os.environ.setdefault("MASTER_ADDR", subprocess.run(
            ["scontrol", "show", "hostnames", os.environ["SLURM_NODELIST"]], check=True,
            capture_output=True, text=True).stdout.split()[0])
        os.environ["RANK"] = os.environ["SLURM_PROCID"]
        os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
        os.environ["LOCAL_RANK"] = os.environ["SLURM_LOCALID"]
    options = {key: value for key, value in dist_cfg.items() if key not in ("backend", "port")}
    if "timeout" in options:  # seconds in the config, as mmengine reads it
        options["timeout"] = datetime.timedelta(seconds=options["timeout"])
    torch.distributed.init_process_group(backend="gloo", **options)


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
    """Run ``main()``; bad input data ends the process with a one-line error and exit code 2.

    A distributed run's process group is destroyed before the interpreter exits: left to the
    exit handlers, gloo's threads were torn down unjoined and a rank could abort with SIGABRT
    ("terminate called without an active exception") after its results were written."""
    try:
        main()
    except DataFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
