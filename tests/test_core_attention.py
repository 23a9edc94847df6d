"""Semantics of dropkey_attention: each test names the property it guards."""
import pytest
import torch
import torch.nn.functional as F

from dropkey_core import (DropKeyMultiheadAttention, dropkey_attention, restore_empty_rows,
                          sample_method_keep_mask)

from attention_inputs import gen, paper_reference, qkv


@pytest.mark.parametrize("fused", [True, False])
def test_output_equals_paper_formula_for_the_same_mask(fused):
    q, k, v = qkv()
    keep = sample_method_keep_mask("dropkey", (2, 3, 16, 16), 0.3, generator=gen())
    assert keep.any(dim=-1).all(), "test needs rows with survivors"
    out = dropkey_attention(q, k, v, 0.3, generator=gen(), fused=fused)
    torch.testing.assert_close(out, paper_reference(q, k, v, keep), rtol=1e-5, atol=1e-5)


def test_dropped_keys_get_zero_weight_and_survivors_are_not_rescaled():
    q, k, v = qkv()
    keep = sample_method_keep_mask("dropkey", (2, 3, 16, 16), 0.4, generator=gen())
    out, weights = dropkey_attention(q, k, v, 0.4, generator=gen(), need_weights=True)
    assert torch.all(weights[~keep] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 16))
    # Survivors are exactly the softmax over the surviving logits (no 1/(1-p) factor).
    logits = (q * 8 ** -0.5) @ k.transpose(-2, -1)
    expected = torch.where(keep, logits.exp(), 0.0)
    expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, weights @ v)


@pytest.mark.parametrize("method", ["dropkey", "attn_drop", "dropkey_block", "dropkey_cross",
                                    "dropkey_column", "drophead"])
@pytest.mark.parametrize("fused", [True, False])
def test_eval_mode_and_zero_ratio_equal_plain_attention(method, fused):
    q, k, v = qkv()
    plain = F.scaled_dot_product_attention(q, k, v)
    options = dict(method=method, fused=fused, key_grid=(4, 4))
    torch.testing.assert_close(dropkey_attention(q, k, v, 0.5, training=False, **options), plain)
    torch.testing.assert_close(dropkey_attention(q, k, v, 0.0, training=True, **options), plain)
    torch.testing.assert_close(dropkey_attention(q, k, v, 0.5, method="none"), plain)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fused", [True, False])
def test_rows_with_every_key_dropped_behave_as_if_nothing_was_dropped(dtype, fused):
    # Two keys and p = 0.8: about 64% of rows lose both keys.
    q, k, v = qkv(b=4, h=4, nq=32, nk=2, dtype=dtype)
    keep = sample_method_keep_mask("dropkey", (4, 4, 32, 2), 0.8, generator=gen())
    empty = ~keep.any(dim=-1)
    assert empty.float().mean() > 0.3
    out = dropkey_attention(q, k, v, 0.8, generator=gen(), fused=fused)
    assert torch.isfinite(out).all()
    plain = dropkey_attention(q, k, v, 0.0, fused=fused)
    tol = dict(rtol=1e-2, atol=1e-2) if dtype != torch.float32 else {}
    torch.testing.assert_close(out[empty], plain[empty], **tol)
    # The other rows still drop: they equal attention to their single survivor, i.e. v itself.
    partial = keep.any(-1) & ~keep.all(-1)
    survivor = keep.long().argmax(-1)
    expected = torch.gather(v.expand(4, 4, 2, 8), 2, survivor[..., None].expand(-1, -1, -1, 8))
    torch.testing.assert_close(out[partial], expected[partial], **tol)


def test_restore_empty_rows_respects_the_attention_mask():
    keep = torch.tensor([[True, False, False], [False, False, False]])
    allowed = torch.tensor([False, True, True])
    restored = restore_empty_rows(keep, allowed)
    # Row 0 keeps only a key the mask forbids, so it is empty too and is restored.
    assert restored.tolist() == [[True, True, True], [True, True, True]]
    assert restore_empty_rows(torch.tensor([[True, False]])).tolist() == [[True, False]]


def test_gradients_reach_qkv_and_a_dropped_key_gets_none_from_its_query():
    q, k, v = qkv(b=1, h=1, nq=1, nk=12, requires_grad=True)
    keep = sample_method_keep_mask("dropkey", (1, 1, 1, 12), 0.5, generator=gen(5))[0, 0, 0]
    assert 0 < keep.sum() < 12
    out = dropkey_attention(q, k, v, 0.5, generator=gen(5))
    out.sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and t.grad.abs().sum() > 0
    assert torch.all(k.grad[0, 0, ~keep] == 0) and torch.all(v.grad[0, 0, ~keep] == 0)
    assert torch.all(k.grad[0, 0, keep].abs().sum(-1) > 0)


def test_same_generator_seed_gives_the_same_mask():
    q, k, v = qkv()
    a = dropkey_attention(q, k, v, 0.3, generator=gen(7), need_weights=True)[1]
    b = dropkey_attention(q, k, v, 0.3, generator=gen(7), need_weights=True)[1]
    c = dropkey_attention(q, k, v, 0.3, generator=gen(8), need_weights=True)[1]
    assert torch.equal(a == 0, b == 0) and not torch.equal(a == 0, c == 0)
    torch.manual_seed(11)
    d = dropkey_attention(q, k, v, 0.3, need_weights=True)[1]
    torch.manual_seed(11)
    e = dropkey_attention(q, k, v, 0.3, need_weights=True)[1]
    assert torch.equal(d, e)


def test_attn_drop_has_dropout_semantics():
    p = 0.3
    q, k, v = qkv(b=4, h=4, nq=32, nk=32)
    weights_plain = ((q * 8 ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
    keep = sample_method_keep_mask("attn_drop", (4, 4, 32, 32), p, generator=gen())
    out, weights = dropkey_attention(q, k, v, p, method="attn_drop", generator=gen(),
                                     need_weights=True)
    # Dropout's transform for this mask: zeros, survivors scaled by 1/(1-p).
    torch.testing.assert_close(weights, weights_plain * keep / (1 - p))
    torch.testing.assert_close(out, weights @ v)
    # The fused path (SDPA dropout) drops and keeps the output unbiased.
    assert not torch.allclose(dropkey_attention(q, k, v, p, method="attn_drop"), weights_plain @ v)
    torch.manual_seed(0)
    mean = torch.stack([dropkey_attention(q, k, v, p, method="attn_drop") for _ in range(200)]).mean(0)
    torch.testing.assert_close(mean, weights_plain @ v, rtol=0.1, atol=0.1)


def _opening(dropped_grid, size):
    """Morphological opening with clipped square windows: unions of windows are fixed points."""
    x = dropped_grid.float()
    eroded = -F.max_pool2d(-x, size, stride=1, padding=size // 2)[..., :x.shape[-2], :x.shape[-1]]
    return F.max_pool2d(eroded, size, stride=1, padding=size // 2)[..., :x.shape[-2], :x.shape[-1]]


def test_block_variant_drops_whole_windows_at_the_expected_ratio():
    p, grid, prefix = 0.2, (10, 12), 1
    shape = (4, 4, 50, 1 + 120)
    keep = sample_method_keep_mask("dropkey_block", shape, p, generator=gen(), key_grid=grid,
                                   num_prefix_keys=prefix, block_size=3)
    assert keep[..., :prefix].all(), "prefix (class) tokens are never dropped"
    dropped = ~keep[..., prefix:]
    assert abs(dropped.float().mean().item() - p) < 0.01
    maps = dropped.reshape(-1, 1, *grid)
    assert torch.equal(_opening(maps, 3), maps.float())
    iid = ~sample_method_keep_mask("dropkey", shape, p, generator=gen())[..., prefix:]
    assert not torch.equal(_opening(iid.reshape(-1, 1, *grid), 3), iid.reshape(-1, 1, *grid).float())


def test_cross_variant_drops_whole_rows_and_columns_at_the_expected_ratio():
    p, grid = 0.3, (8, 8)
    keep = sample_method_keep_mask("dropkey_cross", (4, 4, 64, 65), p, generator=gen(),
                                   key_grid=grid, num_prefix_keys=1)
    assert keep[..., 0].all()
    dropped = (~keep[..., 1:]).reshape(4, 4, 64, *grid)
    assert abs(dropped.float().mean().item() - p) < 0.01
    whole_lines = dropped.all(-1, keepdim=True) | dropped.all(-2, keepdim=True)
    assert torch.equal(dropped, whole_lines)


def test_structured_variants_need_a_grid():
    with pytest.raises(ValueError, match="grid"):
        sample_method_keep_mask("dropkey_block", (1, 1, 2, 10), 0.1)


def test_bad_arguments_are_rejected():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="method"):
        dropkey_attention(q, k, v, 0.1, method="dropout")
    with pytest.raises(ValueError, match="drop_ratio"):
        dropkey_attention(q, k, v, 1.0)


def test_attention_mask_is_combined_with_the_drop():
    q, k, v = qkv(nk=16)
    allowed = torch.zeros(16, 16, dtype=torch.bool)
    allowed[:, :8] = True
    _, weights = dropkey_attention(q, k, v, 0.3, generator=gen(), attn_mask=allowed,
                                   need_weights=True)
    assert torch.all(weights[..., 8:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 16))
    additive = torch.zeros(16, 16).masked_fill(~allowed, float("-inf"))
    fused = dropkey_attention(q, k, v, 0.3, generator=gen(), attn_mask=additive)
    torch.testing.assert_close(fused, weights @ v)


@pytest.mark.parametrize("attn_mask", [None, "bool", "float"])
def test_multihead_module_ignores_padded_keys(attn_mask):
    torch.manual_seed(0)
    module = DropKeyMultiheadAttention(16, 4, drop_ratio=0.3).train()
    x = torch.randn(2, 5, 16)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[0, -2:] = True
    mask = {None: None, "bool": torch.ones(5, 5, dtype=torch.bool).tril(),
            "float": torch.zeros(5, 5)}[attn_mask]
    out, weights = module(x, attn_mask=mask, key_padding_mask=padding, need_weights=True)
    assert torch.isfinite(out).all()
    assert torch.all(weights[0, ..., -2:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 5))
    if attn_mask == "bool":
        assert torch.all(weights.triu(1) == 0)
