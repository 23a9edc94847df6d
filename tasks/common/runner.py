"""Build an mmengine Runner for any task, with DropKey injected and the report hook attached."""
from __future__ import annotations

import codecs

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from dropkey_core import inject_dropkey

from .report import BenchReportHook

# torch >= 2.6 loads checkpoints with weights_only=True. mmengine's checkpoint metadata holds the
# message hub's history buffers (numpy arrays and scalars; their statistics methods are pickled as
# getattr(HistoryBuffer, name)). Allow exactly these instead of switching safe loading off.
_multiarray = getattr(np, "_core", None) or np.core
torch.serialization.add_safe_globals([
    HistoryBuffer, getattr, codecs.encode, np.ndarray, np.dtype,
    _multiarray.multiarray._reconstruct, _multiarray.multiarray.scalar,
    *{type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")},
])

INJECTION_KEYS = ("drop_ratio", "method", "schedule", "start", "end", "ratios", "include",
                  "exclude", "groups", "key_grid", "num_prefix_keys", "block_size")


def dropkey_options(cfg: Config) -> dict:
    """``inject_dropkey`` arguments from the config's ``dropkey`` (the method: what and how much)
    and ``dropkey_scope`` (the task: which modules, stacks and key grid)."""
    options = {**cfg.get("dropkey", {}), **cfg.get("dropkey_scope", {})}
    unknown = set(options) - set(INJECTION_KEYS)
    if unknown:
        raise KeyError(f"{cfg.filename}: dropkey/dropkey_scope: unknown keys {sorted(unknown)}")
    options.setdefault("drop_ratio", 0.0)
    options.setdefault("method", "none")
    options.setdefault("schedule", "constant")
    return options


def build_runner(cfg: Config) -> Runner:
    if not torch.cuda.is_available():
        cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
    runner = Runner.from_cfg(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    layers = inject_dropkey(model, **dropkey_options(cfg))
    rows = "\n".join(f"  {layer.name}: {layer.method} p={layer.drop_ratio:.4f}" for layer in layers)
    print_log(f"attention layers ({len(layers)}):\n{rows}", logger="current")
    runner.register_hook(BenchReportHook(record_entropy=cfg.get("record_attention_entropy", True)))
    return runner
