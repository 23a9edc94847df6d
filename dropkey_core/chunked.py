"""DropKey attention in O(N) memory: query chunks on torch's fused CPU flash-attention kernels.

The forward runs ``_scaled_dot_product_flash_attention_for_cpu`` on one block of query rows at a
time, each with its own block of the counter-based drop mask (:class:`HashMask`) as additive
mask, and keeps only q, k, v, the output and the row logsumexp. The backward recomputes each
block's mask from the seed and calls the kernel's backward. No N x N tensor of the whole
sequence exists at any time; the largest is one chunk's mask (``CHUNK_ELEMENTS`` floats).

Rows whose allowed keys were all dropped are found from the kernel's logsumexp, which is 0 (or
not finite) for a row without any key; only such candidate rows are checked against the mask,
so the common case costs no extra pass over it. Found rows are recomputed with the user's mask
alone (as if nothing was dropped), and the backward restores the same rows.
"""
from __future__ import annotations

import math
import threading
from typing import Optional

import torch

from .hash_mask import HashMask
from .masks import as_additive

CHUNK_ELEMENTS = 1 << 26  # mask elements per kernel call (256 MB in float32): with fewer than
# about 1000 query rows per call the flash kernels lose up to a third of their speed
SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def chunked_supported(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      attn_mask: Optional[torch.Tensor] = None) -> bool:
    """Whether the flash kernels accept these inputs (CPU, 4-D, equal batch/heads/head dims,
    and an attention mask, if any, that needs no gradient)."""
    return (q.device.type == "cpu" and q.dtype in SUPPORTED_DTYPES
            and q.dim() == k.dim() == v.dim() == 4
            and q.shape[:2] == k.shape[:2] == v.shape[:2]
            and q.shape[-1] == k.shape[-1] == v.shape[-1]
            and k.shape[-2] == v.shape[-2]
            and (attn_mask is None or not attn_mask.requires_grad))


def additive_mask(attn_mask: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """An SDPA-style mask (bool True = attend, or additive) as 4-D ``dtype``, at its own size."""
    if attn_mask is None:
        return None
    return as_additive(attn_mask, dtype).to(dtype)[(None,) * (4 - attn_mask.dim())]


_local = threading.local()


def _workspace(numel: int) -> torch.Tensor:
    """A per-thread int32 buffer reused by every chunk and call: a fresh allocation of this size
    is served by mmap, and its page faults cost more than hashing the mask."""
    buffer = getattr(_local, "workspace", None)
    if buffer is None or buffer.numel() < numel:
        buffer = _local.workspace = torch.empty(numel, dtype=torch.int32)
    return buffer


def chunk_bias(mask: HashMask, shape, rows: slice, user_bias: Optional[torch.Tensor],
               dtype: torch.dtype, restore: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The additive mask of query rows ``rows``: drop bias plus the user's mask; rows flagged in
    ``restore`` (B, H, len(rows), 1) get the user's mask alone.

    Lives in the shared workspace (float32 inputs): valid until the next chunk is built.
    """
    num_rows = len(range(shape[-2])[rows])
    workspace = _workspace(math.prod(shape[:-2]) * num_rows * shape[-1])
    bias = mask.drop_bias(shape, rows, out=workspace).to(dtype)
    user_rows = None
    if user_bias is not None:
        user_rows = user_bias if user_bias.shape[-2] == 1 else user_bias[..., rows, :]
        bias.add_(user_rows)
    if restore is not None:
        bias = torch.where(restore, bias.new_zeros(()) if user_rows is None else user_rows, bias)
    return bias


def keyless_rows(logsumexp: torch.Tensor, bias: torch.Tensor) -> Optional[torch.Tensor]:
    """Rows of ``bias`` with no finite entry, as (B, H, rows, 1), or None when there are none.

    The flash kernel leaves such a row's logsumexp at 0 (other versions may give -inf or NaN);
    a real row can also have logsumexp 0, so candidates are confirmed on the mask itself.
    """
    candidates = (logsumexp == 0) | ~torch.isfinite(logsumexp)
    if not bool(candidates.any()):
        return None
    keyless = candidates[..., None] & (bias.amax(dim=-1, keepdim=True) == float("-inf"))
    return keyless if bool(keyless.any()) else None


def _chunks(num_queries: int, rows_per_chunk: int):
    return [slice(start, min(start + rows_per_chunk, num_queries))
            for start in range(0, num_queries, rows_per_chunk)]


class _ChunkedDropKeyAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask: HashMask, user_bias, scale: float, rows_per_chunk: int):
        shape = (*q.shape[:-1], k.shape[-2])
        chunks = _chunks(q.shape[-2], rows_per_chunk)
        outputs, logsumexps, restored = [], [], {}
        for index, rows in enumerate(chunks):
            bias = chunk_bias(mask, shape, rows, user_bias, q.dtype)
            out, logsumexp = _flash(q[:, :, rows], k, v, attn_mask=bias, scale=scale)
            keyless = keyless_rows(logsumexp, bias)
            if keyless is not None:  # rare: recompute the chunk with those rows restored
                restored[index] = keyless
                bias = chunk_bias(mask, shape, rows, user_bias, q.dtype, restore=keyless)
                out, logsumexp = _flash(q[:, :, rows], k, v, attn_mask=bias, scale=scale)
            outputs.append(out)
            logsumexps.append(logsumexp)
        out = outputs[0] if len(chunks) == 1 else torch.cat(outputs, dim=2)
        logsumexp = logsumexps[0] if len(chunks) == 1 else torch.cat(logsumexps, dim=2)
        ctx.save_for_backward(q, k, v, out, logsumexp, user_bias)
        ctx.mask, ctx.scale, ctx.chunks, ctx.restored = mask, scale, chunks, restored
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, logsumexp, user_bias = ctx.saved_tensors
        shape = (*q.shape[:-1], k.shape[-2])
        grad_q = torch.empty_like(q)
        grad_k = grad_v = None
        for index, rows in enumerate(ctx.chunks):
            bias = chunk_bias(ctx.mask, shape, rows, user_bias, q.dtype,
                              restore=ctx.restored.get(index))
            dq, dk, dv = _flash_backward(
                grad_out[:, :, rows], q[:, :, rows], k, v, out[:, :, rows], logsumexp[:, :, rows],
                0.0, False, attn_mask=bias, scale=ctx.scale)
            grad_q[:, :, rows] = dq
            grad_k = dk if grad_k is None else grad_k.add_(dk)
            grad_v = dv if grad_v is None else grad_v.add_(dv)
        return grad_q, grad_k, grad_v, None, None, None, None


def chunked_dropkey_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: HashMask, *,
                              attn_mask: Optional[torch.Tensor] = None,
                              scale: Optional[float] = None,
                              chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """DropKey attention over (B, H, N, D) CPU tensors with ``mask``, in O(N) memory.

    Equals softmax(q kᵀ · scale + drop · (−inf) + attn_mask) · v, rows without a surviving
    allowed key computed as if nothing was dropped. See :func:`chunked_supported`.
    """
    if not chunked_supported(q, k, v, attn_mask):
        raise ValueError("chunked DropKey needs 4-D CPU float q, k, v with equal batch, head and "
                         "head-dim sizes, and an attention mask without gradient; got "
                         f"q {tuple(q.shape)} {q.dtype} on {q.device}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    rows_per_chunk = max(1, chunk_elements // (q.shape[0] * q.shape[1] * k.shape[-2]))
    return _ChunkedDropKeyAttention.apply(q, k, v, mask, additive_mask(attn_mask, q.dtype), scale,
                                          rows_per_chunk)
