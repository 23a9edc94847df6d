"""DropKey attention and its baselines as one function.

``dropkey_attention`` has a fused path (``F.scaled_dot_product_attention`` with the keep mask as
its boolean attention mask) and a readable path (matmul, masked softmax, matmul) side by side. The
readable path is used when the attention weights are needed.

Backends of the unstructured DropKey mask:
  * ``reference``: i.i.d. draws from torch's generator (:func:`sample_keep_mask`), materialised.
  * ``hash``: the counter-based :class:`HashMask`, seeded once from the generator, materialised.
  * ``chunked``: the same counter-based mask, never materialised: query chunks on the fused CPU
    flash kernels, each chunk's mask recomputed in backward (:mod:`.chunked`, O(N) memory).
  * ``auto`` (default): ``reference`` for masks of at most ``SMALL_MASK_ELEMENTS`` entries,
    where the per-call cost of a few tensor ops outweighs the per-element cost of the generator;
    above that ``chunked`` where its kernels apply, else ``hash``. The choice depends on the
    mask's shape alone, so a mask drawn by ``sample_method_keep_mask`` with the same generator
    state is the one the attention uses.
Other methods always use the reference samplers.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .chunked import chunked_dropkey_attention, chunked_supported
from .hash_mask import HashMask
from .masks import (as_additive, restore_empty_rows, sample_block_keep_mask,
                    sample_cross_keep_mask, sample_keep_mask)

METHODS = ("none", "attn_drop", "dropkey", "dropkey_block", "dropkey_cross")
KEY_DROP_METHODS = ("dropkey", "dropkey_block", "dropkey_cross")
BACKENDS = ("auto", "reference", "hash", "chunked")
SMALL_MASK_ELEMENTS = 1 << 22


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown attention method {method!r}; expected one of {METHODS}")
    return method


def check_backend(method: str, backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown DropKey backend {backend!r}; expected one of {BACKENDS}")
    if backend in ("hash", "chunked") and method != "dropkey":
        raise ValueError(f"backend {backend!r} implements method 'dropkey' only, not {method!r}")
    return backend


def uses_hash_mask(backend: str, shape: Sequence[int]) -> bool:
    """Whether ``backend`` draws the ``dropkey`` mask of logits ``shape`` from the counter hash."""
    return backend in ("hash", "chunked") or (
        backend == "auto" and math.prod(shape) > SMALL_MASK_ELEMENTS)


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
    """The keep mask that ``method`` draws for attention logits of ``shape`` (B, H, Nq, Nk)."""
    if method == "dropkey" and uses_hash_mask(check_backend(method, backend), shape):
        mask = HashMask.draw(drop_ratio, generator, device)
        return mask.keep_mask(shape, device)
    if method in ("dropkey", "attn_drop"):
        return sample_keep_mask(shape, drop_ratio, generator=generator, device=device)
    structure = dict(key_grid=key_grid, num_prefix_keys=num_prefix_keys, generator=generator,
                     device=device)
    if method == "dropkey_block":
        return sample_block_keep_mask(shape, drop_ratio, block_size=block_size, **structure)
    if method == "dropkey_cross":
        return sample_cross_keep_mask(shape, drop_ratio, **structure)
    raise ValueError(f"method {method!r} draws no mask")


def allowed_keys(attn_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The boolean may-attend part of an SDPA-style mask (None when there is no mask)."""
    if attn_mask is None:
        return None
    return attn_mask if attn_mask.dtype == torch.bool else attn_mask > float("-inf")


def merge_masks(keep: Optional[torch.Tensor], attn_mask: Optional[torch.Tensor]):
    """One SDPA-style mask (bool = may attend, float = additive) from a keep mask and a user mask."""
    if keep is None:
        return attn_mask
    if attn_mask is None:
        return keep
    if attn_mask.dtype == torch.bool:
        return keep & attn_mask
    return attn_mask.masked_fill(~keep, float("-inf"))


def attention_weights(q, k, scale: float, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) over keys, in the readable (eager) form."""
    scores = (q * scale) @ k.transpose(-2, -1)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
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
    check_backend(check_method(method), backend)
    if not 0.0 <= drop_ratio < 1.0:
        raise ValueError(f"drop_ratio must lie in [0, 1), got {drop_ratio}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    active = training and drop_ratio > 0 and method != "none"
    shape = (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])

    if active and method == "dropkey" and (backend == "chunked" or (
            backend == "auto" and uses_hash_mask(backend, shape) and fused and not need_weights
            and chunked_supported(q, k, v, attn_mask))):
        if need_weights:
            raise ValueError("backend 'chunked' never forms the attention weights; "
                             "use backend 'hash' or 'reference' with need_weights")
        mask = HashMask.draw(drop_ratio, generator, q.device)
        return chunked_dropkey_attention(q, k, v, mask, attn_mask=attn_mask, scale=scale)
    mask_options = dict(generator=generator, device=q.device, key_grid=key_grid,
                        num_prefix_keys=num_prefix_keys, block_size=block_size, backend=backend)
    if active and method == "attn_drop":
        if fused and not need_weights and generator is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                                  dropout_p=drop_ratio, scale=scale)
        keep = sample_method_keep_mask(method, shape, drop_ratio, **mask_options)
        weights = attention_weights(q, k, scale, attn_mask)
        weights = weights * keep.to(weights.dtype) / (1.0 - drop_ratio)
    else:
        mask = attn_mask
        if active:
            keep = sample_method_keep_mask(method, shape, drop_ratio, **mask_options)
            keep = restore_empty_rows(keep, allowed_keys(attn_mask))
            mask = merge_masks(keep, attn_mask)
        if fused and not need_weights:
            if active:  # SDPA would turn a boolean mask into an additive one twice (fwd, bwd)
                mask = as_additive(mask, q.dtype)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        weights = attention_weights(q, k, scale, mask)
    out = weights @ v
    return (out, weights) if need_weights else out
