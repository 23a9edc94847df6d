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
from typing import Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from dropkey_core import SCHEDULES, get_regulariser, inject_dropkey, set_regularisation

from .files import DataFormatError
from .variants import VARIANTS, Variant, get_variant, split_label

VARIANT_FIELDS = ("variant", "method", "schedule", "drop_ratio", "start", "end", "ratios",
                  "block_size")
RUN_FIELDS = ("finetune_epochs",)  # how the run uses the regulariser: not inject_dropkey's
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


def _check_finetune_epochs(source, cfg: Config, label: str, variant: Variant,
                           value) -> Optional[int]:
    """The fine-tune tail's length: required by a variant with a tail, refused by any other,
    and shorter than training (it is part of the same total epochs)."""
    field = "dropkey.finetune_epochs"
    if not variant.finetune_tail:
        if value is None:
            return None
        with_tail = ", ".join(name for name, known in VARIANTS.items() if known.finetune_tail)
        raise DataFormatError(source, field, f"variant {label!r} has no fine-tune tail "
                              f"(variants with one: {with_tail})")
    if value is None:
        raise DataFormatError(source, field, f"missing: variant {label!r} trains its last "
                              "epochs without the regulariser; say how many (about 10 % of "
                              "train_cfg.max_epochs)")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataFormatError(source, field, f"{value!r} is not a whole number of epochs >= 1")
    max_epochs = (cfg.get("train_cfg") or {}).get("max_epochs")
    if not isinstance(max_epochs, int):
        raise DataFormatError(source, field, "a fine-tune tail needs an epoch-based schedule "
                              "(train_cfg.max_epochs)")
    if value >= max_epochs:
        raise DataFormatError(source, field, f"{value}: a fine-tune tail longer than training "
                              f"(train_cfg.max_epochs = {max_epochs}) leaves no epoch with the "
                              "regulariser")
    return value


def _resolve(cfg: Config) -> tuple[str, dict, Optional[int]]:
    """(label, ``inject_dropkey`` arguments, fine-tune tail or None), every value checked."""
    source = cfg.filename or "<config>"
    dropkey = dict(cfg.get("dropkey") or {})
    scope = dict(cfg.get("dropkey_scope") or {})
    for name, given, allowed in (("dropkey", dropkey, VARIANT_FIELDS + RUN_FIELDS),
                                 ("dropkey_scope", scope, SCOPE_FIELDS)):
        for key in given:
            if key not in allowed:
                raise DataFormatError(source, f"{name}.{key}",
                                      f"unknown key (allowed: {', '.join(allowed)})")
    label = dropkey.pop("variant", "none")
    finetune_epochs = dropkey.pop("finetune_epochs", None)
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
    label_ratio = split_label(label)[1]
    if label_ratio is not None and options["drop_ratio"] != label_ratio:
        raise DataFormatError(source, "dropkey.drop_ratio",
                              f"{options['drop_ratio']!r} contradicts the ratio {label_ratio!r} "
                              f"that the variant label {label!r} carries; keep one of them")
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
    finetune_epochs = _check_finetune_epochs(source, cfg, label, variant, finetune_epochs)
    return label, options, finetune_epochs


def resolve_dropkey(cfg: Config) -> tuple[str, dict]:
    """The variant label and the ``inject_dropkey`` arguments a config asks for.

    ``cfg.dropkey`` names the variant (:mod:`tasks.common.variants`) and may override its fields;
    ``cfg.dropkey_scope`` says where, which belongs to the task: the modules, one regular
    expression per attention stack, the key grid. Every value is checked here, before training,
    and a bad one is a DataFormatError naming the config and the field; this includes
    ``dropkey.finetune_epochs`` (see :func:`resolve_finetune_epochs`).
    """
    label, options, _ = _resolve(cfg)
    return label, options


def resolve_finetune_epochs(cfg: Config) -> Optional[int]:
    """How many final epochs train with the regulariser off (``dropkey.finetune_epochs``,
    required by a variant with ``finetune_tail`` and refused by any other), or None."""
    return _resolve(cfg)[2]


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

    A variant with a fine-tune tail (``dropkey.finetune_epochs``) trains its last epochs with
    the regulariser off. The switch is decided at the start of every epoch from the epoch's
    index alone, so a run resumed inside the tail trains it off, and one resumed before it on.
    """

    priority = "VERY_HIGH"

    def __init__(self):
        self.finetune_epochs: Optional[int] = None
        self._regularising: Optional[bool] = None

    def before_run(self, runner) -> None:
        label, options, self.finetune_epochs = _resolve(runner.cfg)
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

    def before_train_epoch(self, runner) -> None:
        if self.finetune_epochs is None:
            return
        tail_start = runner.max_epochs - self.finetune_epochs
        regularise = runner.epoch < tail_start
        set_regularisation(unwrap(runner.model), regularise)
        if regularise != self._regularising:
            print_log(f"epoch {runner.epoch + 1}: the regulariser is "
                      + ("on" if regularise else "off for the fine-tune tail (epochs "
                         f"{tail_start + 1}-{runner.max_epochs})"), logger="current")
            self._regularising = regularise


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s random numbers in a multi-process run of ``seed``, distinct for
    every (seed, rank) pair (``seed + rank`` would give seed 1's rank 0 the numbers of seed 0's
    rank 1)."""
    return int(np.random.SeedSequence((seed, rank)).generate_state(1, np.uint64)[0])
