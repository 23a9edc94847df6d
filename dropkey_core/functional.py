"""DropKey attention and its baselines as one function, planned in one place.

:func:`plan_attention` decides everything about one call: whether the regulariser is active
(training, ``drop_ratio > 0``, a method other than ``none``), how its keep mask is drawn, and
which path computes the attention. :func:`dropkey_attention` and :func:`sample_method_keep_mask`
both follow it, so a mask drawn by ``sample_method_keep_mask`` with the same generator state is
the one the attention uses.

Paths (``AttentionPlan.path``):
  * ``fused``: ``F.scaled_dot_product_attention`` with the keep mask merged into its mask.
  * ``readable``: matmul, masked softmax, matmul; the one path that forms the attention weights.
  * ``chunked``: the counter-based mask, never materialised: query chunks on the fused CPU flash
    kernels, each chunk's mask recomputed in backward (:mod:`.chunked`, O(N) memory).
  * ``sdpa_dropout``: ``attn_drop`` as SDPA's own dropout (no mask to reproduce from a generator).

Backends of the unstructured DropKey mask:
  * ``reference``: i.i.d. draws from torch's generator (:func:`sample_keep_mask`), materialised.
  * ``hash``: the counter-based :class:`HashMask`, seeded once from the generator, materialised.
  * ``chunked``: the hash mask on the ``chunked`` path.
  * ``auto`` (default): ``reference`` for masks of at most ``SMALL_MASK_ELEMENTS`` entries,
    where the per-call cost of a few tensor ops outweighs the per-element cost of the generator;
    above that the hash mask, on the ``chunked`` path where its kernels apply. The sampler
    depends on the mask's shape alone.
Other methods always use the reference samplers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .chunked import chunked_dropkey_attention, chunked_supported
from .hash_mask import HashMask
from .masks import (allowed_keys, as_additive, merge_masks, restore_empty_rows,
                    sample_block_keep_mask, sample_cross_keep_mask, sample_keep_mask)

METHODS = ("none", "attn_drop", "dropkey", "dropkey_block", "dropkey_cross")
KEY_DROP_METHODS = ("dropkey", "dropkey_block", "dropkey_cross")
BACKENDS = ("auto", "reference", "hash", "chunked")
SMALL_MASK_ELEMENTS = 1 << 22
_STRUCTURED_SAMPLERS = {"dropkey_block": "block", "dropkey_cross": "cross"}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown attention method {method!r}; expected one of {METHODS}")
    return method


@dataclass(frozen=True)
class AttentionPlan:
    """What one attention call does; made by :func:`plan_attention`.

    ``method`` is ``none`` whenever nothing is dropped. ``sampler`` is the keep mask's sampler
    (``reference``, ``hash``, ``block`` or ``cross``; None when nothing is dropped); ``fused`` and
    ``readable`` draw it in full, ``chunked`` block by block, ``sdpa_dropout`` not at all.
    ``path`` is one of the paths in the module docstring.
    """

    method: str
    sampler: Optional[str]
    path: str

    @property
    def drops_keys(self) -> bool:
        """The keep mask removes logits before the softmax (DropKey and its variants)."""
        return self.method in KEY_DROP_METHODS


def plan_attention(
    method: str,
    drop_ratio: float,
    shape: Sequence[int],
    *,
    training: bool = True,
    backend: str = "auto",
    fused: bool = True,
    need_weights: bool = False,
    chunkable: bool = False,
    generator: Optional[torch.Generator] = None,
) -> AttentionPlan:
    """The plan of one attention call with logits of ``shape`` (B, H, Nq, Nk).

    ``chunkable``: the inputs suit the chunked kernels (:func:`chunked_supported`). The sampler
    depends on ``method``, ``backend`` and ``shape`` only.
    """
    check_method(method)
    if backend not in BACKENDS:
        raise ValueError(f"unknown DropKey backend {backend!r}; expected one of {BACKENDS}")
    if backend in ("hash", "chunked") and method != "dropkey":
        raise ValueError(f"backend {backend!r} implements method 'dropkey' only, not {method!r}")
    if not 0.0 <= drop_ratio < 1.0:
        raise ValueError(f"drop_ratio must lie in [0, 1), got {drop_ratio}")
    fused = fused and not need_weights
    if not (training and drop_ratio > 0 and method != "none"):
        return AttentionPlan("none", None, "fused" if fused else "readable")

    if method == "dropkey":
        large = backend == "auto" and math.prod(shape) > SMALL_MASK_ELEMENTS
        sampler = "hash" if backend in ("hash", "chunked") or large else "reference"
    else:
        sampler = _STRUCTURED_SAMPLERS.get(method, "reference")
    if backend == "chunked" or (sampler == "hash" and backend == "auto" and fused and chunkable):
        if need_weights:
            raise ValueError("backend 'chunked' never forms the attention weights; "
                             "use backend 'hash' or 'reference' with need_weights")
        return AttentionPlan(method, sampler, "chunked")
    if method == "attn_drop":  # SDPA applies dropout only with its own generator
        return AttentionPlan(method, sampler,
                             "sdpa_dropout" if fused and generator is None else "readable")
    return AttentionPlan(method, sampler, "fused" if fused else "readable")


def draw_keep_mask(
    sampler: str,
    shape: Sequence[int],
    drop_ratio: float,
    *,
    generator: Optional[torch.Generator] = None,
    device=None,
    key_grid: Optional[Sequence[int]] = None,
    num_prefix_keys: int = 0,
    block_size: int = 3,
) -> torch.Tensor:
    """The boolean keep mask (True = kept) that ``sampler`` draws for logits of ``shape``."""
    if sampler == "hash":
        return HashMask.draw(drop_ratio, generator, device).keep_mask(shape, device)
    if sampler == "reference":
        return sample_keep_mask(shape, drop_ratio, generator=generator, device=device)
    structure = dict(key_grid=key_grid, num_prefix_keys=num_prefix_keys, generator=generator,
                     device=device)
    if sampler == "block":
        return sample_block_keep_mask(shape, drop_ratio, block_size=block_size, **structure)
    return sample_cross_keep_mask(shape, drop_ratio, **structure)


def sample_method_keep_mask(
    method: str,
    shape: Sequence[int],
    drop_ratio: float,
    *,
    generator: Optional[torch.Generator] = None,
    device=None,
    key_grid: Optional[Sequence[int]] = None,
    num_prefix_keys: int = 0,
    block_size: int = 3,
    backend: str = "auto",
) -> torch.Tensor:
    """The keep mask that ``method`` draws in training for attention logits of ``shape``."""
    sampler = plan_attention(method, drop_ratio, shape, backend=backend).sampler
    if sampler is None:
        raise ValueError(f"method {method!r} with drop_ratio {drop_ratio} drops nothing")
    return draw_keep_mask(sampler, shape, drop_ratio, generator=generator, device=device,
                          key_grid=key_grid, num_prefix_keys=num_prefix_keys,
                          block_size=block_size)


def attention_weights(q, k, scale: float, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) over keys, in the readable (eager) form."""
    scores = (q * scale) @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores + as_additive(mask, scores.dtype)
    return scores.softmax(dim=-1)


def dropkey_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    drop_ratio: float,
    *,
    method: str = "dropkey",
    training: bool = True,
    generator: Optional[torch.Generator] = None,
    attn_mask: Optional[torch.Tensor] = None,
    need_weights: bool = False,
    scale: Optional[float] = None,
    key_grid: Optional[Sequence[int]] = None,
    num_prefix_keys: int = 0,
    block_size: int = 3,
    fused: bool = True,
    backend: str = "auto",
):
    """Scaled dot-product attention over (B, H, N, D) tensors with a key-drop regulariser.

    Methods:
      * ``none``: plain attention.
      * ``attn_drop``: dropout on the softmax weights, survivors scaled by 1/(1-p).
      * ``dropkey``: each logit (b, h, q, k) is masked to -inf with probability p before the
        softmax; surviving keys are renormalised by the softmax itself, nothing is rescaled.
      * ``dropkey_block`` / ``dropkey_cross``: structured DropKey over the key grid (square
        windows, or whole rows and columns); ``num_prefix_keys`` leading keys are never dropped.

    A query whose (allowed) keys are all dropped is computed as if nothing had been dropped,
    in every dtype; see :func:`restore_empty_rows`. ``backend`` picks how the ``dropkey`` mask
    is drawn and applied (see the module docstring). Regularisation is active only when
    ``training`` and ``drop_ratio > 0``. ``attn_mask`` follows SDPA: boolean (True = attend) or
    additive float, broadcastable to (B, H, Nq, Nk).

    Returns the output (B, H, Nq, Dv), and with ``need_weights`` also the (B, H, Nq, Nk) weights.
    """
    shape = (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])
    plan = plan_attention(method, drop_ratio, shape, training=training, backend=backend,
                          fused=fused, need_weights=need_weights, generator=generator,
                          chunkable=chunked_supported(q, k, v, attn_mask))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if plan.path == "chunked":
        mask = HashMask.draw(drop_ratio, generator, q.device)
        return chunked_dropkey_attention(q, k, v, mask, attn_mask=attn_mask, scale=scale)
    if plan.path == "sdpa_dropout":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop_ratio,
                                              scale=scale)

    keep = None if plan.method == "none" else draw_keep_mask(
        plan.sampler, shape, drop_ratio, generator=generator, device=q.device, key_grid=key_grid,
        num_prefix_keys=num_prefix_keys, block_size=block_size)
    mask = attn_mask
    if plan.drops_keys:
        mask = merge_masks(restore_empty_rows(keep, allowed_keys(attn_mask)), attn_mask)
    if plan.path == "fused":
        if plan.drops_keys:  # SDPA would turn a boolean mask into an additive one twice (fwd, bwd)
            mask = as_additive(mask, q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)

    weights = attention_weights(q, k, scale, mask)
    if plan.method == "attn_drop":
        weights = weights * keep.to(weights.dtype) / (1.0 - drop_ratio)
    out = weights @ v
    return (out, weights) if need_weights else out
