"""mmengine hooks that make a config the whole description of a benchmark run.

``configs/_base_/default_runtime.py`` lists them in ``custom_hooks``, so ``Runner.from_cfg(cfg)``
on any config of this repository injects the configured regulariser, keeps its checkpoints safe
to load (:mod:`tasks.common.checkpoint`) and writes ``report.json``
(:class:`~tasks.common.report.BenchReportHook`), exactly as ``tools/train.py`` and
``tools/test.py`` do.
"""
from __future__ import annotations

import math
import re

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from dropkey_core import SCHEDULES, get_regulariser, inject_dropkey

from .files import DataFormatError
from .variants import Variant, get_variant

VARIANT_FIELDS = ("variant", "method", "schedule", "drop_ratio", "start", "end", "ratios",
                  "block_size")
SCOPE_FIELDS = ("include", "exclude", "groups", "key_grid", "num_prefix_keys")


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _check_ratio(source, field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not 0.0 <= value < 1.0:
        raise DataFormatError(source, field, f"{value!r} is not a ratio in [0, 1)")
    return float(value)


def _check_regex(source, field: str, value) -> None:
    try:
        re.compile(value)
    except (re.error, TypeError) as err:
        raise DataFormatError(source, field, f"{value!r} is not a regular expression: {err}") \
            from None


def resolve_dropkey(cfg: Config) -> tuple[str, dict]:
    """The variant label and the ``inject_dropkey`` arguments a config asks for.

    ``cfg.dropkey`` names the variant (:mod:`tasks.common.variants`) and may override its fields;
    ``cfg.dropkey_scope`` says where, which belongs to the task: the modules, one regular
    expression per attention stack, the key grid. Every value is checked here, before training,
    and a bad one is a DataFormatError naming the config and the field.
    """
    source = cfg.filename or "<config>"
    dropkey = dict(cfg.get("dropkey") or {})
    scope = dict(cfg.get("dropkey_scope") or {})
    for name, given, allowed in (("dropkey", dropkey, VARIANT_FIELDS),
                                 ("dropkey_scope", scope, SCOPE_FIELDS)):
        for key in given:
            if key not in allowed:
                raise DataFormatError(source, f"{name}.{key}",
                                      f"unknown key (allowed: {', '.join(allowed)})")
    label = dropkey.pop("variant", "none")
    try:
        variant: Variant = get_variant(label)
    except ValueError as err:
        raise DataFormatError(source, "dropkey.variant", str(err)) from None
    options = {**variant.injection(), **{k: v for k, v in dropkey.items() if v is not None}}
    try:
        get_regulariser(options["method"])
    except ValueError as err:
        raise DataFormatError(source, "dropkey.method", str(err)) from None
    if options["schedule"] not in SCHEDULES:
        raise DataFormatError(source, "dropkey.schedule",
                              f"{options['schedule']!r} is not one of {', '.join(SCHEDULES)}")
    options["drop_ratio"] = _check_ratio(source, "dropkey.drop_ratio", options["drop_ratio"])
    for key in ("start", "end"):
        if key in options:
            options[key] = _check_ratio(source, f"dropkey.{key}", options[key])
    for i, ratio in enumerate(options.get("ratios") or ()):
        _check_ratio(source, f"dropkey.ratios[{i}]", ratio)
    for key in ("include", "exclude"):
        if scope.get(key) is not None:
            _check_regex(source, f"dropkey_scope.{key}", scope[key])
    for i, pattern in enumerate(scope.get("groups") or ()):
        _check_regex(source, f"dropkey_scope.groups[{i}]", pattern)
    options.update({k: v for k, v in scope.items() if v is not None})
    return label, options


@HOOKS.register_module()
class DropKeyHook(Hook):
    """Puts the config's attention regulariser (``dropkey``, ``dropkey_scope``) into the model.

    Runs at ``before_run``, which the Runner calls before it initialises or loads any weights in
    ``train()``, ``val()`` and ``test()``. Injection swaps module classes only, so state dicts
    are unchanged. A scope that reaches no attention module is an error, not a silent baseline.

    In a multi-process run every rank seeds torch's global generator with the run's seed
    (mmengine's ``randomness.diff_rank_seed`` would also change the data sampler's), so every
    rank would draw the same masks for its different samples. Before training, each rank
    re-seeds it from (seed, rank): masks, dropout and torch-drawn augmentation differ between
    ranks, while the weights (initialised and synchronised before) and the sampler's order
    stay the run's. A resumed run then restores each rank's saved generator state.
    """

    priority = "VERY_HIGH"

    def before_run(self, runner) -> None:
        label, options = resolve_dropkey(runner.cfg)
        try:
            layers = inject_dropkey(unwrap(runner.model), **options)
        except ValueError as err:  # e.g. an explicit schedule of the wrong length
            raise DataFormatError(runner.cfg.filename, "dropkey", str(err)) from None
        if not any(layer.method != "untouched" for layer in layers):
            raise DataFormatError(runner.cfg.filename, "dropkey_scope",
                                  "matches no attention module of the model")
        rows = "\n".join(f"  {layer.name}: {layer.method} p={layer.drop_ratio:.4f}"
                         for layer in layers)
        print_log(f"variant {label}, attention layers ({len(layers)}):\n{rows}",
                  logger="current")

    def before_train(self, runner) -> None:
        if runner.world_size > 1:
            torch.manual_seed(rank_seed(runner.seed, runner.rank))


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s random numbers in a multi-process run of ``seed``, distinct for
    every (seed, rank) pair (``seed + rank`` would give seed 1's rank 0 the numbers of seed 0's
    rank 1)."""
    return int(np.random.SeedSequence((seed, rank)).generate_state(1, np.uint64)[0])
