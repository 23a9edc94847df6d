"""Attention modules built on :func:`dropkey_attention`.

``DropKeyAttentionMixin`` holds the per-layer settings and the entropy meter; both the native
``DropKeyMultiheadAttention`` and the adapters that ``inject_dropkey`` puts on existing modules
route their attention through its ``_attend``. :func:`set_regularisation` and
:func:`sampling_in_eval` switch the regulariser of a whole model without touching the per-layer
methods and ratios: off in training (a fine-tune tail), or on in eval (Monte-Carlo evaluation).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn

from .functional import dropkey_attention
from .masks import merge_masks
from .regularisers import get_regulariser


@dataclass
class DropKeySettings:
    """How one attention layer is regularised (``method``: a registered regulariser). Not a
    module: state dicts stay unchanged. A method structured over the key grid needs ``key_grid``.
    """

    method: str = "dropkey"
    drop_ratio: float = 0.0
    key_grid: Optional[Sequence[int]] = None
    num_prefix_keys: int = 0
    block_size: int = 3
    record_stats: bool = False
    # The only caller keeps the output and drops the weights it asks for (e.g. mmcv's wrapper of
    # nn.MultiheadAttention): skip forming them, so the fused kernels run.
    weights_discarded: bool = False
    # False: training computes what eval does (a fine-tune tail), while ``method`` and
    # ``drop_ratio`` keep recording what the layer was trained with (see set_regularisation).
    regularise: bool = True
    # True: masks are drawn in eval mode too, for Monte-Carlo evaluation (see sampling_in_eval).
    sample_in_eval: bool = False
    entropy_sum: float = field(default=0.0, repr=False)
    entropy_rows: int = field(default=0, repr=False)

    def __post_init__(self):
        if get_regulariser(self.method).needs_key_grid and self.key_grid is None:
            raise ValueError(f"method {self.method!r} drops structures of the key grid and needs "
                             "key_grid=(height, width)")

    def mask_options(self) -> dict:
        return dict(key_grid=self.key_grid, num_prefix_keys=self.num_prefix_keys,
                    block_size=self.block_size)


def row_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each attention row (last dim); 0·log 0 counts as 0."""
    weights = weights.float()
    return -torch.special.xlogy(weights, weights).sum(dim=-1)


class DropKeyAttentionMixin:
    """Gives a module ``self.dropkey`` settings and an ``_attend`` that applies them."""

    dropkey: DropKeySettings

    def _attend(self, q, k, v, attn_mask: Optional[torch.Tensor] = None, need_weights: bool = False,
                scale: Optional[float] = None):
        """Attention over (B, H, N, D) tensors; returns ``(out, weights or None)``.

        Entropy is recorded in deterministic eval passes only, so Monte-Carlo passes leave the
        meters as the plain evaluation fills them.
        """
        settings = self.dropkey
        stochastic = settings.regularise if self.training else settings.sample_in_eval
        record = settings.record_stats and not self.training and not stochastic
        out = dropkey_attention(
            q, k, v, settings.drop_ratio, method=settings.method, training=stochastic,
            attn_mask=attn_mask, need_weights=need_weights or record, scale=scale,
            **settings.mask_options())
        if not (need_weights or record):
            return out, None
        out, weights = out
        if record:
            with torch.no_grad():
                entropy = row_entropy(weights)
            settings.entropy_sum += float(entropy.sum())
            settings.entropy_rows += entropy.numel()
        return out, weights


def _regularised_layers(model: nn.Module) -> list[DropKeyAttentionMixin]:
    return [module for module in model.modules() if isinstance(module, DropKeyAttentionMixin)]


def set_regularisation(model: nn.Module, active: bool) -> None:
    """Turn the regulariser of every attention layer of ``model`` off in training
    (``active=False``: a training forward computes what an eval forward does) or back on.

    The per-layer methods and ratios stay as injected, so the model still reports the schedule
    it was trained with; ``dropkey-dec-ft`` switches it off for its fine-tune tail.
    """
    for layer in _regularised_layers(model):
        layer.dropkey.regularise = active


@contextmanager
def sampling_in_eval(model: nn.Module) -> Iterator[None]:
    """Within the block, every attention layer of ``model`` draws its regulariser's masks in
    eval mode too, at its own ratio and from torch's global generator (so a seeded run repeats
    them). Nothing else changes mode: batch-norm keeps its running statistics and ordinary
    dropout stays off, so a pass differs from the deterministic one by the attention masks only.
    Monte-Carlo evaluation averages several such passes.
    """
    layers = _regularised_layers(model)
    previous = [layer.dropkey.sample_in_eval for layer in layers]
    for layer in layers:
        layer.dropkey.sample_in_eval = True
    try:
        yield
    finally:
        for layer, sampled in zip(layers, previous):
            layer.dropkey.sample_in_eval = sampled


class DropKeyMultiheadAttention(DropKeyAttentionMixin, nn.Module):
    """Multi-head attention for self-attention (``key=None``) and cross-attention.

    Inputs are (B, N, C), batch first. ``attn_mask`` follows SDPA: boolean (True = attend) or
    additive float, broadcastable to (B, H, Nq, Nk); ``key_padding_mask`` (B, Nk) is True at
    padded keys.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, kdim: Optional[int] = None,
                 vdim: Optional[int] = None, qkv_bias: bool = True, proj_drop: float = 0.0,
                 drop_ratio: float = 0.0, method: str = "dropkey", **settings):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(kdim or embed_dim, embed_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(vdim or embed_dim, embed_dim, bias=qkv_bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dropkey = DropKeySettings(method=method, drop_ratio=drop_ratio, **settings)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query, key=None, value=None, attn_mask=None, key_padding_mask=None,
                need_weights: bool = False):
        key = query if key is None else key
        value = key if value is None else value
        q = self._split_heads(self.q_proj(query))
        k = self._split_heads(self.k_proj(key))
        v = self._split_heads(self.v_proj(value))
        if key_padding_mask is not None:
            attend = ~key_padding_mask.bool()[:, None, None, :]
            attn_mask = merge_masks(attend, attn_mask)
        out, weights = self._attend(q, k, v, attn_mask=attn_mask, need_weights=need_weights)
        out = out.transpose(1, 2).flatten(2)
        out = self.proj_drop(self.out_proj(out))
        return (out, weights) if need_weights else out

