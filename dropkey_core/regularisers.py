"""The registry of attention regularisers: every ``method`` name the core accepts is an entry here.

A regulariser is a keep-mask sampler and the stage of the attention it acts on:

  * ``logits``: dropped entries are removed from the logits before the softmax and the
    survivors are renormalised by the softmax itself, nothing is rescaled (DropKey). A query
    left without any allowed key is computed as if nothing had been dropped.
  * ``weights``: dropped softmax weights are zeroed and the survivors scaled by 1/(1-p)
    (attention dropout). It needs the weights formed, so it runs on the readable path.
  * ``output``: dropped entries of the attention output (B, H, Nq, Dv) are zeroed and the
    survivors scaled by 1/(1-p) (DropHead); the fused kernels still apply.

Register one with :func:`register_regulariser`; :func:`~dropkey_core.functional.plan_attention`,
``inject_dropkey`` and the benchmark's config check all read this registry, so the new name works
everywhere without editing the core.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from .masks import (sample_block_keep_mask, sample_column_keep_mask, sample_cross_keep_mask,
                    sample_head_keep_mask, sample_keep_mask)

STAGES = ("logits", "weights", "output")
# Keywords a sampler may declare, besides (shape, drop_ratio); it receives those it declares.
MASK_OPTIONS = ("generator", "device", "key_grid", "num_prefix_keys", "block_size")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Regulariser:
    """One entry of :data:`REGULARISERS`.

    ``sample(shape, drop_ratio, **options)`` returns the boolean keep mask (True = kept) for
    logits of ``shape`` (B, H, Nq, Nk), broadcastable to the tensor its ``stage`` acts on (an
    ``output`` mask has a last dimension of 1, e.g. (B, H, 1, 1)). It draws from ``generator``
    (None: torch's global one), so seeding reproduces it. ``options`` are the
    :data:`MASK_OPTIONS` its signature declares (``accepts``). ``stage`` is None for ``none``
    only. ``iid``: every entry of a full (B, H, Nq, Nk) mask is dropped independently with
    probability p, so the counter-based hash (``logits``) or SDPA's own dropout (``weights``)
    may draw it instead of ``sample``. ``needs_key_grid``: the mask is structured over the key
    grid, which ``inject_dropkey`` then requires of every module it adapts.
    """

    name: str
    stage: Optional[str]
    sample: Optional[Callable]
    iid: bool = False
    needs_key_grid: bool = False
    description: str = ""
    accepts: tuple = ()

    def draw(self, shape, drop_ratio: float, **options):
        """The keep mask for logits of ``shape``; ``options`` the sampler does not declare
        are not passed."""
        return self.sample(shape, drop_ratio, **{key: options[key] for key in self.accepts
                                                 if key in options})


REGULARISERS: Dict[str, Regulariser] = {}


def register_regulariser(name: str, *, stage: str, iid: bool = False,
                         needs_key_grid: bool = False, description: str = "") -> Callable:
    """Register the decorated keep-mask sampler as regulariser ``name`` (see :class:`Regulariser`).

    ``name`` is lower-case letters, digits and ``_``, and new: a registered name is never
    replaced, so a project cannot silently change what a built-in method means.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"regulariser name {name!r} is not lower-case letters, digits and _")
    if name in REGULARISERS:
        raise ValueError(f"regulariser {name!r} is already registered")
    if stage not in STAGES:
        raise ValueError(f"regulariser stage {stage!r} is not one of {STAGES}")

    def wrap(sample: Callable) -> Callable:
        parameters = inspect.signature(sample).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        accepts = tuple(key for key in MASK_OPTIONS if takes_any or key in parameters)
        REGULARISERS[name] = Regulariser(name, stage, sample, iid, needs_key_grid, description,
                                         accepts)
        return sample
    return wrap


def get_regulariser(name: str) -> Regulariser:
    """The registered regulariser ``name``; a ValueError listing the known ones otherwise."""
    regulariser = REGULARISERS.get(name) if isinstance(name, str) else None
    if regulariser is None:
        raise ValueError(f"unknown attention method {name!r}; expected one of "
                         f"{', '.join(REGULARISERS)}")
    return regulariser


REGULARISERS["none"] = Regulariser("none", None, None, description="plain attention")
register_regulariser("attn_drop", stage="weights", iid=True,
                     description="dropout on the softmax weights, survivors scaled by 1/(1-p)")(
    sample_keep_mask)
register_regulariser("dropkey", stage="logits", iid=True,
                     description="DropKey: each logit dropped before the softmax, no rescaling")(
    sample_keep_mask)
register_regulariser("dropkey_block", stage="logits", needs_key_grid=True,
                     description="DropKey over square windows of the key grid, per query")(
    sample_block_keep_mask)
register_regulariser("dropkey_cross", stage="logits", needs_key_grid=True,
                     description="DropKey over whole rows and columns of the key grid, per query")(
    sample_cross_keep_mask)
register_regulariser("dropkey_column", stage="logits",
                     description="column-wise DropKey (HiddenKey): each key of a head dropped "
                                 "for every query, no rescaling")(sample_column_keep_mask)
register_regulariser("drophead", stage="output",
                     description="DropHead: whole heads dropped at the attention output, "
                                 "survivors scaled by 1/(1-p)")(sample_head_keep_mask)
