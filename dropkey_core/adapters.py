"""DropKey forwards for attention modules of other libraries, keyed by qualified class name.

Each adapter is a ``forward`` that reproduces the original module's computation with the same
submodules and parameters, routing the softmax attention through ``DropKeyAttentionMixin._attend``.
Classes are matched by name, so this module imports neither timm nor mmcv. Projects can add their
own with :func:`register_adapter`.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

from .attention import DropKeyAttentionMixin
from .masks import as_additive

ADAPTERS: Dict[str, Callable] = {}

# Attention modules that are not a dot-product softmax over keys: left alone, but reported.
UNTOUCHED: Dict[str, str] = {
    "mmcv.ops.multi_scale_deform_attn.MultiScaleDeformableAttention":
        "deformable attention samples a few points per query; there is no softmax over keys",
    "timm.models.volo.OutlookAttention":
        "outlook attention predicts local weights from the query; there are no keys to drop",
}


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_adapter(name: str) -> Callable[[Callable], Callable]:
    """Register ``forward`` (a decorator) as the DropKey forward of the class with qualified
    ``name`` (``type(module).__module__ + "." + __qualname__``), so ``inject_dropkey`` adapts it.

    ``forward(self, ...)`` takes the original's arguments and computes what the original does
    with the same submodules and parameters, except that the softmax attention over (B, H, N, D)
    tensors goes through ``self._attend(q, k, v, attn_mask=None, need_weights=False,
    scale=None)``, which returns ``(out, weights or None)``.
    """
    def wrap(forward: Callable) -> Callable:
        ADAPTERS[name] = forward
        return forward
    return wrap


_ADAPTED_CLASSES: Dict[type, type] = {}


def adapted_class(cls: type) -> type:
    """A subclass of ``cls`` with the DropKey forward; created once per class, picklable by name."""
    if cls not in _ADAPTED_CLASSES:
        name = "DropKey_" + qualified_name(cls).replace(".", "_")
        new = type(name, (DropKeyAttentionMixin, cls), {
            "forward": ADAPTERS[qualified_name(cls)], "__module__": __name__, "adapted_from": cls})
        globals()[name] = new
        _ADAPTED_CLASSES[cls] = new
    return _ADAPTED_CLASSES[cls]


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, H·D) -> (B, H, N, D)."""
    batch, tokens, _ = x.shape
    return x.view(batch, tokens, num_heads, -1).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, H, N, D) -> (B, N, H·D)."""
    return x.transpose(1, 2).flatten(2)


# ---------------------------------------------------------------------------------------- timm
@register_adapter("timm.layers.attention.Attention")
def _timm_attention(self, x, attn_mask=None, is_causal=False):
    """ViT / DeiT (and every timm model built on ``timm.layers.Attention``)."""
    batch, tokens, _ = x.shape
    gate = self.gate(x).sigmoid() if getattr(self, "gate", None) is not None else None
    q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim) \
        .permute(2, 0, 3, 1, 4).unbind(0)
    q, k = self.q_norm(q), self.k_norm(k)
    if is_causal:
        attn_mask = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).tril()
    out, _ = self._attend(q, k, v, attn_mask=attn_mask, scale=self.scale)
    out = self.norm(_merge(out))
    if gate is not None:
        out = out * gate
    return self.proj_drop(self.proj(out))


@register_adapter("timm.models.volo.Attention")
def _volo_attention(self, x):
    """VOLO's self-attention stages, on (B, H, W, C) maps."""
    batch, height, width, channels = x.shape
    q, k, v = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1) \
        .permute(2, 0, 3, 1, 4).unbind(0)
    out, _ = self._attend(q, k, v, scale=self.scale)
    out = _merge(out).reshape(batch, height, width, channels)
    return self.proj_drop(self.proj(out))


@register_adapter("timm.models.volo.ClassAttention")
def _volo_class_attention(self, x):
    """VOLO's class attention: the class token queries every token."""
    batch, tokens, _ = x.shape
    k, v = self.kv(x).reshape(batch, tokens, 2, self.num_heads, self.head_dim) \
        .permute(2, 0, 3, 1, 4).unbind(0)
    q = _heads(self.q(x[:, :1]), self.num_heads)
    out, _ = self._attend(q, k, v, scale=self.scale)
    return self.proj_drop(self.proj(_merge(out)))


# --------------------------------------------------------------------------------------- torch
def _mha_allowed(attn_mask: Optional[torch.Tensor], key_padding_mask: Optional[torch.Tensor],
                 batch: int, heads: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """nn.MultiheadAttention's masks (bool True = blocked, or additive) as one SDPA-style mask."""
    def to_sdpa(mask):
        return ~mask if mask.dtype == torch.bool else mask.to(dtype)

    merged = None
    if attn_mask is not None:
        merged = to_sdpa(attn_mask)
        if merged.dim() == 3:  # (B·H, L, S)
            merged = merged.view(batch, heads, *merged.shape[-2:])
    if key_padding_mask is not None:
        padding = to_sdpa(key_padding_mask)[:, None, None, :]
        if merged is None:
            merged = padding
        elif merged.dtype == torch.bool and padding.dtype == torch.bool:
            merged = merged & padding
        else:
            merged = as_additive(merged, dtype) + as_additive(padding, dtype)
    return merged


# Wrappers whose forward calls the named child attention and keeps only its output: the child
# need not form the weights that nn.MultiheadAttention returns by default.
WEIGHTS_DISCARDED_BY: Dict[str, str] = {"mmcv.cnn.bricks.transformer.MultiheadAttention": "attn"}


@register_adapter("torch.nn.modules.activation.MultiheadAttention")
def _torch_multihead_attention(self, query, key, value, key_padding_mask=None, need_weights=True,
                               attn_mask=None, average_attn_weights=True, is_causal=False):
    """``nn.MultiheadAttention`` (also inside ``nn.Transformer*`` layers and mmcv's wrapper)."""
    need_weights = need_weights and not self.dropkey.weights_discarded
    unbatched = query.dim() == 2
    if self.batch_first and not unbatched:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    if unbatched:
        query, key, value = (t.unsqueeze(1) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, batch, embed_dim = query.shape
    if self._qkv_same_embed_dim:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
    b_q, b_k, b_v = (self.in_proj_bias.chunk(3) if self.in_proj_bias is not None
                     else (None, None, None))
    q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    if is_causal and attn_mask is None:
        attn_mask = torch.ones(tgt_len, key.shape[0], dtype=torch.bool, device=q.device).triu(1)
    if self.bias_k is not None:
        k = torch.cat([k, self.bias_k.repeat(1, batch, 1)])
        v = torch.cat([v, self.bias_v.repeat(1, batch, 1)])
        attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
        key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
    q, k, v = (_heads(t.transpose(0, 1), self.num_heads) for t in (q, k, v))
    if self.add_zero_attn:
        k = torch.cat([k, k.new_zeros(*k.shape[:2], 1, k.shape[-1])], dim=2)
        v = torch.cat([v, v.new_zeros(*v.shape[:2], 1, v.shape[-1])], dim=2)
        attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
        key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
    mask = _mha_allowed(attn_mask, key_padding_mask, batch, self.num_heads, q.dtype)

    out, weights = self._attend(q, k, v, attn_mask=mask, need_weights=need_weights)
    out = self.out_proj(_merge(out)).transpose(0, 1)
    if weights is not None and average_attn_weights:
        weights = weights.mean(dim=1)
    if unbatched:
        out = out.squeeze(1)
        weights = None if weights is None else weights.squeeze(0)
    elif self.batch_first:
        out = out.transpose(0, 1)
    return out, weights
