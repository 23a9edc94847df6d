"""Fast DropKey backends: counter-based masks, the chunked O(N)-memory path, and the plan that
picks sampler and path."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dropkey_core import (AttentionPlan, HashMask, chunked, chunked_dropkey_attention,
                          dropkey_attention, functional, hash_mask, plan_attention,
                          sample_method_keep_mask)

from attention_inputs import gen, paper_reference, qkv

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("backend", ["reference", "hash"])
def test_backends_share_drop_statistics(backend):
    p, shape = 0.25, (8, 4, 64, 64)
    dropped = ~sample_method_keep_mask("dropkey", shape, p, generator=gen(3), backend=backend)
    n = dropped.numel()
    assert abs(dropped.float().mean().item() - p) < 6 * math.sqrt(p * (1 - p) / n)
    for dim in range(4):  # uniform over batch, head, query and key positions
        rates = dropped.float().mean(dim=[d for d in range(4) if d != dim])
        sigma = math.sqrt(p * (1 - p) / (n / shape[dim]))
        assert (rates - p).abs().max().item() < 6 * sigma, dim
    for dim in range(4):  # neighbours drop independently: joint rate p²
        a = dropped.narrow(dim, 0, shape[dim] - 1).float()
        b = dropped.narrow(dim, 1, shape[dim] - 1).float()
        assert abs((a * b).mean().item() - p * p) < 6 * math.sqrt(p * p * (1 - p * p) / a.numel())
    # Per-row drop counts are binomial: their variance is N p (1 - p).
    counts = dropped.float().sum(-1).flatten()
    assert abs(counts.var().item() / (64 * p * (1 - p)) - 1) < 0.1


def test_hash_rows_are_not_shifted_copies_of_each_other():
    keep = HashMask(123, 0.5).keep_mask((1, 1, 256, 256))[0, 0].float()
    agreement = (keep[:, None, :] == keep[None, :, :]).float().mean(-1)
    off_diagonal = agreement[~torch.eye(256, dtype=torch.bool)]
    assert off_diagonal.max() < 0.5 + 6 * math.sqrt(0.25 / 256)
    for shift in (1, 2, 7):  # nor copies of a neighbour shifted along the keys
        assert abs((keep[1:, shift:] == keep[:-1, :-shift]).float().mean().item() - 0.5) < 0.02


@pytest.mark.parametrize("backend,fused", [("hash", True), ("hash", False), ("chunked", True)])
def test_each_backend_gives_the_paper_output_for_its_own_mask(backend, fused):
    q, k, v = qkv(nq=40, nk=24)
    keep = sample_method_keep_mask("dropkey", (2, 3, 40, 24), 0.3, generator=gen(), backend=backend)
    assert keep.any(-1).all() and not keep.all()
    out = dropkey_attention(q, k, v, 0.3, generator=gen(), backend=backend, fused=fused)
    torch.testing.assert_close(out, paper_reference(q, k, v, keep), rtol=1e-5, atol=1e-5)


def test_chunks_split_the_queries_and_never_hold_the_whole_mask(monkeypatch):
    q, k, v = qkv(nq=50, nk=30, requires_grad=True)
    sizes = []
    drop_bias = HashMask.drop_bias
    monkeypatch.setattr(HashMask, "drop_bias",
                        lambda self, *a, **kw: sizes.append(drop_bias(self, *a, **kw).numel()) or
                        drop_bias(self, *a, **kw))
    mask = HashMask(9, 0.2)
    out = chunked_dropkey_attention(q, k, v, mask, chunk_elements=6 * 30 * 8)
    out.sum().backward()
    assert len(sizes) == 2 * 7 and max(sizes) <= 6 * 30 * 8  # 7 chunks, forward and backward
    torch.testing.assert_close(out, paper_reference(q, k, v, mask.keep_mask((2, 3, 50, 30))))


@pytest.mark.parametrize("ratio,keys", [(0.4, 13), (0.8, 2)])  # 0.8 of 2 keys: empty rows
def test_chunked_gradients_equal_the_reference_gradients_for_the_same_mask(ratio, keys):
    q, k, v = qkv(b=2, h=2, nq=21, nk=keys, d=6, dtype=torch.float64, requires_grad=True)
    mask = HashMask(4, ratio)
    keep = mask.keep_mask((2, 2, 21, keys))
    assert (~keep.any(-1)).any() == (keys == 2)
    keep = keep | ~keep.any(-1, keepdim=True)  # keyless rows count as if nothing was dropped
    additive = torch.randn(21, keys, dtype=torch.float64)
    grad_out = torch.randn(2, 2, 21, 6, dtype=torch.float64)

    def grads(fn):
        return torch.autograd.grad(fn(q, k, v), (q, k, v), grad_out)

    chunk = 2 * 2 * 5 * keys  # five queries per chunk: the last chunk is partial
    fast = grads(lambda *t: chunked_dropkey_attention(*t, mask, attn_mask=additive,
                                                      chunk_elements=chunk))
    slow = grads(lambda *t: paper_reference(*t, keep, additive))
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    small = [t[:1, :1, :4].detach().requires_grad_() for t in (q, k, v)]
    assert torch.autograd.gradcheck(
        lambda *t: chunked_dropkey_attention(*t, HashMask(2, 0.3), chunk_elements=8), small)


def test_keyless_rows_are_confirmed_on_the_mask():
    bias = torch.full((1, 1, 3, 4), float("-inf"))
    bias[0, 0, 0, 1] = 0.0  # a single key: this real row can have logsumexp exactly 0
    bias[0, 0, 2] = 0.0
    logsumexp = torch.tensor([[[0.0, 0.0, 1.3]]])  # rows 0 and 1 are candidates
    assert chunked.keyless_rows(logsumexp, bias).flatten().tolist() == [False, True, False]
    assert chunked.keyless_rows(torch.ones(1, 1, 3), bias) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["hash", "chunked"])
def test_empty_rows_are_restored_without_nan(dtype, backend):
    # Two keys and p = 0.8: about 64% of rows lose both keys.
    q, k, v = qkv(b=4, h=4, nq=32, nk=2, dtype=dtype, requires_grad=True)
    keep = sample_method_keep_mask("dropkey", (4, 4, 32, 2), 0.8, generator=gen(), backend=backend)
    empty = ~keep.any(-1)
    assert empty.float().mean() > 0.3
    out = dropkey_attention(q, k, v, 0.8, generator=gen(), backend=backend)
    out.float().sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(t.grad).all() for t in (q, k, v))
    plain = dropkey_attention(q, k, v, 0.0)
    tol = dict(rtol=1e-2, atol=1e-2) if dtype != torch.float32 else {}
    torch.testing.assert_close(out[empty], plain[empty], **tol)
    assert not torch.allclose(out[~empty].float(), plain[~empty].float(), atol=1e-2)


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32])
def test_chunked_combines_the_attention_mask_like_the_materialised_path(mask_dtype):
    q, k, v = qkv(nq=12, nk=6)
    allowed = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    allowed[1, ..., 2:] = False  # batch 1 may attend to two keys only: many rows end up empty
    attn_mask = allowed if mask_dtype == torch.bool else \
        torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    fast = dropkey_attention(q, k, v, 0.6, backend="chunked", generator=gen(5), attn_mask=attn_mask)
    materialised, weights = dropkey_attention(q, k, v, 0.6, backend="hash", need_weights=True,
                                              generator=gen(5), attn_mask=attn_mask)
    torch.testing.assert_close(fast, materialised)
    assert torch.all(weights[1, ..., 2:] == 0)


def test_seed_reproducibility_and_generator_independence():
    q, k, v = qkv()
    run = lambda seed: dropkey_attention(q, k, v, 0.3, generator=gen(seed), backend="chunked")
    assert torch.equal(run(7), run(7)) and not torch.equal(run(7), run(8))
    torch.manual_seed(3)
    a = dropkey_attention(q, k, v, 0.3)
    torch.manual_seed(3)
    assert torch.equal(a, dropkey_attention(q, k, v, 0.3))
    assert HashMask.draw(0.3, gen(4)) == HashMask.draw(0.3, gen(4))


def test_fused_formula_equals_the_eager_hash():
    """The formula torch.compile fuses (run eagerly here) writes the same bits as the eager loop."""
    mask = HashMask(2 ** 40 + 17, 0.15)
    shape = (3, 2, 10, 37)
    rows = mask.row_keys(shape[:2], shape[2], slice(None))
    out = torch.empty(rows.numel(), 37, dtype=torch.int32)
    hash_mask._fill_fused(out, rows, mask.column_keys(37),
                          torch.tensor(mask.threshold >> 1, dtype=torch.int32))
    assert torch.equal(out.view(torch.float32).view(shape), mask.drop_bias(shape))


@pytest.mark.slow
def test_compiled_hash_writes_the_eager_bits_and_is_used_only_for_large_fills(monkeypatch):
    """Automatic mode compiles fills of at least COMPILE_MIN_ELEMENTS (one compilation)."""
    mask, shape = HashMask(2 ** 40 + 17, 0.15), (3, 2, 10, 37)
    monkeypatch.setattr(hash_mask, "_compile_setting", False)
    eager = mask.drop_bias(shape)
    calls = []
    monkeypatch.setattr(hash_mask, "_compile_setting", None)
    monkeypatch.setattr(hash_mask, "COMPILE_MIN_ELEMENTS", math.prod(shape))
    monkeypatch.setattr(hash_mask, "_compiled_fill", None)
    compiled = hash_mask._compiler()
    if compiled is None:
        pytest.skip("torch.compile is unavailable here")
    monkeypatch.setattr(hash_mask, "_compiled_fill", lambda *a: calls.append(1) or compiled(*a))
    smaller = mask.drop_bias(shape[:-1] + (36,))  # below the threshold: the eager loop
    assert torch.equal(smaller, eager[..., :36]) and not calls
    assert torch.equal(mask.drop_bias(shape), eager) and calls == [1]


def test_backend_arguments_are_checked():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="backend"):
        dropkey_attention(q, k, v, 0.1, backend="fast")
    with pytest.raises(ValueError, match="dropkey"):
        dropkey_attention(q, k, v, 0.1, method="attn_drop", backend="hash")
    with pytest.raises(ValueError, match="need_weights"):
        dropkey_attention(q, k, v, 0.1, backend="chunked", need_weights=True)
    with pytest.raises(ValueError, match="chunked DropKey needs"):
        chunked_dropkey_attention(q[0], k[0], v[0], HashMask(1, 0.1))
    assert chunked.chunked_supported(q, k, v) and not chunked.chunked_supported(q, k, v[..., :4])


def test_auto_picks_the_backend_by_mask_size(monkeypatch):
    q, k, v = qkv()
    shape = (*q.shape[:-1], k.shape[-2])
    small = sample_method_keep_mask("dropkey", shape, 0.3, generator=gen())
    assert torch.equal(small, sample_method_keep_mask("dropkey", shape, 0.3, generator=gen(),
                                                      backend="reference"))
    out = dropkey_attention(q, k, v, 0.3, generator=gen())
    torch.testing.assert_close(out, paper_reference(q, k, v, small))

    monkeypatch.setattr(functional, "SMALL_MASK_ELEMENTS", 0)
    large = sample_method_keep_mask("dropkey", shape, 0.3, generator=gen())
    assert torch.equal(large, HashMask.draw(0.3, gen()).keep_mask(shape))
    out = dropkey_attention(q, k, v, 0.3, generator=gen())  # chunked
    torch.testing.assert_close(out, paper_reference(q, k, v, large))
    # The materialised hash where the chunked kernels do not apply (3-D inputs).
    out = dropkey_attention(q[0], k[0], v[0], 0.3, generator=gen())
    keep = HashMask.draw(0.3, gen()).keep_mask(shape[1:])
    torch.testing.assert_close(out, paper_reference(q[0], k[0], v[0], keep))


SMALL, LARGE = (2, 3, 16, 16), (1, 1, 4096, 1025)  # LARGE: above SMALL_MASK_ELEMENTS


@pytest.mark.parametrize("method,shape,options,expected", [
    ("dropkey", SMALL, dict(training=False), ("none", None, "fused")),
    ("dropkey", SMALL, dict(training=False, need_weights=True), ("none", None, "readable")),
    ("attn_drop", SMALL, dict(drop_ratio=0.0), ("none", None, "fused")),
    ("none", SMALL, {}, ("none", None, "fused")),
    ("dropkey", SMALL, {}, ("dropkey", "reference", "fused")),
    ("dropkey", SMALL, dict(fused=False), ("dropkey", "reference", "readable")),
    ("dropkey", SMALL, dict(backend="hash"), ("dropkey", "hash", "fused")),
    ("dropkey", SMALL, dict(backend="chunked"), ("dropkey", "hash", "chunked")),
    ("dropkey", LARGE, {}, ("dropkey", "hash", "fused")),
    ("dropkey", LARGE, dict(chunkable=True), ("dropkey", "hash", "chunked")),
    ("dropkey", LARGE, dict(chunkable=True, need_weights=True), ("dropkey", "hash", "readable")),
    ("dropkey", LARGE, dict(chunkable=True, backend="reference"),
     ("dropkey", "reference", "fused")),
    ("attn_drop", LARGE, {}, ("attn_drop", "reference", "sdpa_dropout")),
    ("attn_drop", SMALL, dict(generator=gen()), ("attn_drop", "reference", "readable")),
    ("attn_drop", SMALL, dict(need_weights=True), ("attn_drop", "reference", "readable")),
    ("dropkey_block", LARGE, dict(chunkable=True), ("dropkey_block", "reference", "fused")),
    ("dropkey_cross", SMALL, dict(fused=False), ("dropkey_cross", "reference", "readable")),
    ("dropkey_column", LARGE, dict(chunkable=True), ("dropkey_column", "reference", "fused")),
    ("dropkey_column", SMALL, dict(training=False), ("none", None, "fused")),
    ("drophead", SMALL, {}, ("drophead", "reference", "fused")),
    ("drophead", SMALL, dict(generator=gen()), ("drophead", "reference", "fused")),
    ("drophead", SMALL, dict(need_weights=True), ("drophead", "reference", "readable")),
])
def test_plan_picks_sampler_and_path(method, shape, options, expected):
    options = dict(options)
    drop_ratio = options.pop("drop_ratio", 0.3)
    assert plan_attention(method, drop_ratio, shape, **options) == AttentionPlan(*expected)


def _fill_in_a_fresh_process(setting: str, shape, out: Path) -> dict:
    """Import the core with ``DROPKEY_COMPILE_HASH=setting``, fill one hash mask of ``shape``
    (saved to ``out``) and report how many fills ran compiled."""
    script = f"""
import json, sys, torch
from dropkey_core import hash_mask
calls, compiler = [], hash_mask._compiler
def counting_compiler():
    fill = compiler()
    return None if fill is None else (lambda *a: calls.append(1) or fill(*a))
hash_mask._compiler = counting_compiler
torch.save(hash_mask.HashMask(2 ** 40 + 17, 0.15).drop_bias({tuple(shape)}), {str(out)!r})
print(json.dumps(dict(compiled_fills=len(calls), setting=hash_mask._compile_setting)))
"""
    env = dict(os.environ, DROPKEY_COMPILE_HASH=setting, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, text=True,
                            capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setting", [
    pytest.param("0", id="0-eager-even-for-large-fills"),
    pytest.param("1", id="1-compiles-even-small-fills", marks=pytest.mark.slow),
])
def test_compile_hash_environment_variable(setting, tmp_path, monkeypatch):
    """Read at import: ``0`` keeps every fill eager (even one that automatic mode compiles),
    ``1`` compiles every fill (even a small one); the bits equal the eager loop's either way."""
    large = (1, 1, hash_mask.COMPILE_MIN_ELEMENTS // 1024, 1024)
    shape = large if setting == "0" else (3, 2, 10, 37)
    report = _fill_in_a_fresh_process(setting, shape, tmp_path / "bias.pt")
    if setting == "1" and report["setting"] is False:
        pytest.skip("torch.compile failed on this machine; the eager loop took over")
    assert report == dict(compiled_fills=int(setting), setting=setting == "1")
    monkeypatch.setattr(hash_mask, "_compile_setting", False)
    eager = HashMask(2 ** 40 + 17, 0.15).drop_bias(shape)
    assert torch.equal(torch.load(tmp_path / "bias.pt").view(torch.int32), eager.view(torch.int32))
