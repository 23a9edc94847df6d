"""DropKey attention, its baselines and every registered regulariser as one function, planned in
one place.

:func:`plan_attention` decides everything about one call: whether the regulariser
(:mod:`.regularisers`) is active (training, ``drop_ratio > 0``, a method other than ``none``),
how its keep mask is drawn, and which path computes the attention. :func:`dropkey_attention`
and :func:`sample_method_keep_mask` both follow it, so a mask drawn by
``sample_method_keep_mask`` with the same generator state is the one the attention uses.

Paths (``AttentionPlan.path``):
  * ``fused``: ``F.scaled_dot_product_attention`` with the keep mask merged into its mask.
  * ``readable``: matmul, masked softmax, matmul; the one path that forms the attention weights.
  * ``chunked``: the counter-based mask, never materialised: query chunks on the fused CPU flash
    kernels, each chunk's mask recomputed in backward (:mod:`.chunked`, O(N) memory).
  * ``sdpa_dropout``: ``attn_drop`` as SDPA's own dropout (no mask to reproduce from a generator).
A ``weights``-stage regulariser runs on ``readable`` (or ``sdpa_dropout``); the others on
``fused`` unless the weights are asked for.

Backends of the unstructured DropKey mask:
  * ``reference``: i.i.d. draws from torch's generator (:func:`sample_keep_mask`), materialised.
  * ``hash``: the counter-based :class:`HashMask`, seeded once from the generator, materialised.
  * ``chunked``: the hash mask on the ``chunked`` path.
  * ``auto`` (default): ``reference`` for masks of at most ``SMALL_MASK_ELEMENTS`` entries,
    where the per-call cost of a few tensor ops outweighs the per-element cost of the generator;
    above that the hash mask, on the ``chunked`` path where its kernels apply. The sampler
    depends on the mask's shape alone.
Other methods always use their registered samplers (``reference``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .chunked import chunked_dropkey_attention, chunked_supported
from .hash_mask import HashMask
from .masks import allowed_keys, as_additive, merge_masks, restore_empty_rows
from .regularisers import REGULARISERS, get_regulariser

BACKENDS = ("auto", "reference", "hash", "chunked")
SMALL_MASK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class AttentionPlan:
    """What one attention call does; made by :func:`plan_attention`.

    ``method`` is ``none`` whenever nothing is dropped. ``sampler`` is how the keep mask is
    drawn: ``reference`` (the regulariser's registered sampler) or ``hash`` (:class:`HashMask`);
    None when nothing is dropped. ``fused`` and ``readable`` draw it in full, ``chunked`` block
    by block, ``sdpa_dropout`` not at all. ``path`` is one of the paths in the module docstring.
    """

    method: str
    sampler: Optional[str]
    path: str

    @property
    def stage(self) -> Optional[str]:
        """Where the keep mask acts (see :mod:`.regularisers`); None when nothing is dropped."""
        return REGULARISERS[self.method].stage


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
    depends on ``method``, ``backend`` and ``shape`` only. The hash backends draw the i.i.d.
    logits mask (``dropkey``) only.
    """
    regulariser = get_regulariser(method)
    if backend not in BACKENDS:
        raise ValueError(f"unknown DropKey backend {backend!r}; expected one of {BACKENDS}")
    hashable = regulariser.iid and regulariser.stage == "logits"
    if backend in ("hash", "chunked") and not hashable:
        raise ValueError(f"backend {backend!r} draws i.i.d. key drops (method 'dropkey'); "
                         f"method {method!r} has its own sampler")
    if not 0.0 <= drop_ratio < 1.0:
        raise ValueError(f"drop_ratio must lie in [0, 1), got {drop_ratio}")
    fused = fused and not need_weights
    if not (training and drop_ratio > 0 and regulariser.stage is not None):
        return AttentionPlan("none", None, "fused" if fused else "readable")

    large = hashable and backend == "auto" and math.prod(shape) > SMALL_MASK_ELEMENTS
    sampler = "hash" if backend in ("hash", "chunked") or large else "reference"
    if backend == "chunked" or (large and fused and chunkable):
        if need_weights:
            raise ValueError("backend 'chunked' never forms the attention weights; "
                             "use backend 'hash' or 'reference' with need_weights")
        return AttentionPlan(method, sampler, "chunked")
    if regulariser.stage == "weights":  # SDPA applies dropout only with its own generator
        sdpa_dropout = regulariser.iid and fused and generator is None
        return AttentionPlan(method, sampler, "sdpa_dropout" if sdpa_dropout else "readable")
    return AttentionPlan(method, sampler, "fused" if fused else "readable")


def draw_keep_mask(
    plan: AttentionPlan,
    shape: Sequence[int],
    drop_ratio: float,
    *,
    generator: Optional[torch.Generator] = None,
    device=None,
    key_grid: Optional[Sequence[int]] = None,
    num_prefix_keys: int = 0,
    block_size: int = 3,
) -> torch.Tensor:
    """The boolean keep mask (True = kept) that ``plan`` draws for logits of ``shape``;
    broadcastable to the tensor its stage acts on."""
    if plan.sampler == "hash":
        return HashMask.draw(drop_ratio, generator, device).keep_mask(shape, device)
    return REGULARISERS[plan.method].draw(
        shape, drop_ratio, generator=generator, device=device, key_grid=key_grid,
        num_prefix_keys=num_prefix_keys, block_size=block_size)


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
    """The keep mask that ``method`` draws in training for attention logits of ``shape``,
    broadcastable to them (e.g. (B, H, 1, Nk) for ``dropkey_column``)."""
    plan = plan_attention(method, drop_ratio, shape, backend=backend)
    if plan.sampler is None:
        raise ValueError(f"method {method!r} with drop_ratio {drop_ratio} drops nothing")
    return draw_keep_mask(plan, shape, drop_ratio, generator=generator, device=device,
                          key_grid=key_grid, num_prefix_keys=num_prefix_keys,
                          block_size=block_size)


def rescale_survivors(x: torch.Tensor, keep: torch.Tensor, drop_ratio: float) -> torch.Tensor:
    """``x`` zeroed where ``keep`` is False, the rest scaled by 1/(1-p) (inverted dropout)."""
    return x * keep.to(x.dtype) / (1.0 - drop_ratio)


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
    """Scaled dot-product attention over (B, H, N, D) tensors with an attention regulariser.

    ``method`` is any name in :data:`~dropkey_core.regularisers.REGULARISERS`; built in:
      * ``none``: plain attention.
      * ``attn_drop``: dropout on the softmax weights, survivors scaled by 1/(1-p).
      * ``dropkey``: each logit (b, h, q, k) is masked to -inf with probability p before the
        softmax; surviving keys are renormalised by the softmax itself, nothing is rescaled.
      * ``dropkey_block`` / ``dropkey_cross``: structured DropKey over the key grid (square
        windows, or whole rows and columns); ``num_prefix_keys`` leading keys are never dropped.
      * ``dropkey_column``: DropKey of whole key columns, the same keys for every query of a
        (batch, head) (HiddenKey's column-wise DropKey).
      * ``drophead``: whole (batch, head) outputs dropped, survivors scaled by 1/(1-p)
        (DropHead); the weights returned with ``need_weights`` are the softmax's.

    A query whose (allowed) keys are all dropped before the softmax is computed as if nothing
    had been dropped, in every dtype; see :func:`restore_empty_rows`. ``backend`` picks how the
    ``dropkey`` mask is drawn and applied (see the module docstring). Regularisation is active
    only when ``training`` and ``drop_ratio > 0``. ``attn_mask`` follows SDPA: boolean (True =
    attend) or additive float, broadcastable to (B, H, Nq, Nk).

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

    stage = plan.stage
    keep = None if stage is None else draw_keep_mask(
        plan, shape, drop_ratio, generator=generator, device=q.device, key_grid=key_grid,
        num_prefix_keys=num_prefix_keys, block_size=block_size)
    mask = attn_mask
    if stage == "logits":
        mask = merge_masks(restore_empty_rows(keep, allowed_keys(attn_mask)), attn_mask)
    if plan.path == "fused":
        if stage == "logits":  # SDPA would make a boolean mask additive twice (fwd, bwd)
            mask = as_additive(mask, q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        return rescale_survivors(out, keep, drop_ratio) if stage == "output" else out

    weights = attention_weights(q, k, scale, mask)
    if stage == "weights":
        weights = rescale_survivors(weights, keep, drop_ratio)
    out = weights @ v
    if stage == "output":
        out = rescale_survivors(out, keep, drop_ratio)
    return (out, weights) if need_weights else out
