"""Small deterministic attention inputs shared by the core tests."""
import torch


def qkv(b=2, h=3, nq=16, nk=16, d=8, dtype=torch.float32, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g).to(dtype).requires_grad_(requires_grad)
            for n in (nq, nk, nk)]


def gen(seed=1):
    return torch.Generator().manual_seed(seed)
