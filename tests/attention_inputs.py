"""Small deterministic attention inputs and the reference formula shared by the core tests."""
import torch


def qkv(b=2, h=3, nq=16, nk=16, d=8, dtype=torch.float32, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g).to(dtype).requires_grad_(requires_grad)
            for n in (nq, nk, nk)]


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


def paper_reference(q, k, v, keep, attn_mask=None):
    """The paper's snippet, softmax(q kᵀ · scale + dropped · (−1e12) + attn_mask) · v, in q's
    dtype, for the boolean keep mask ``keep`` (True = kept)."""
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + (~keep).to(q.dtype) * -1e12
    if attn_mask is not None:
        logits = logits + attn_mask
    return logits.softmax(dim=-1) @ v
