"""The regulariser registry, column-wise DropKey and DropHead: each test names what it guards."""
import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dropkey_core.attention as attention_module
from dropkey_core import (REGULARISERS, DropKeyAttentionMixin, DropKeySettings, dropkey_attention,
                          get_regulariser, inject_dropkey, plan_attention, register_regulariser,
                          sample_method_keep_mask)

from attention_inputs import gen, paper_reference, qkv

NEW = ["dropkey_column", "drophead"]


def assert_binomial_rate(dropped: torch.Tensor, p: float):
    """The dropped fraction of ``dropped`` (independent draws) is p within 6 standard errors."""
    sigma = math.sqrt(p * (1 - p) / dropped.numel())
    assert abs(dropped.float().mean().item() - p) < 6 * sigma


def plain(q, k, v, attn_mask=None, scale=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)


# ------------------------------------------------------------------------------------ registry
@pytest.fixture
def registered():
    """Names registered by a test, removed afterwards so tests stay independent."""
    names = []
    yield names
    for name in names:
        REGULARISERS.pop(name, None)


def test_a_registered_regulariser_runs_everywhere_without_editing_the_core(registered):
    received = {}

    @register_regulariser("test_first_key_out", stage="logits")
    def drop_first_key(shape, drop_ratio, *, generator=None, num_prefix_keys=0):
        received.update(generator=generator, num_prefix_keys=num_prefix_keys)
        keep = torch.ones(*shape[:-1], shape[-1], dtype=torch.bool)
        keep[..., 0] = False
        return keep
    registered.append("test_first_key_out")

    q, k, v = qkv(nq=5, nk=6)
    generator = gen()
    out = dropkey_attention(q, k, v, 0.2, method="test_first_key_out", generator=generator,
                            num_prefix_keys=2, block_size=5)
    # Only the keywords the sampler declares reach it (block_size and device do not).
    assert received == dict(generator=generator, num_prefix_keys=2)
    torch.testing.assert_close(out, plain(q, k[..., 1:, :], v[..., 1:, :]))
    # The plan, injection and module settings accept the new name.
    assert plan_attention("test_first_key_out", 0.2, (2, 3, 5, 6)).stage == "logits"
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2,
                                  enable_nested_tensor=False)
    layers = inject_dropkey(model, 0.2, method="test_first_key_out", schedule="constant")
    assert [l.method for l in layers] == ["test_first_key_out"] * 2


def test_an_output_stage_regulariser_is_rescaled_like_dropout(registered):
    @register_regulariser("test_second_head_out", stage="output")
    def drop_second_head(shape, drop_ratio):
        keep = torch.ones(*shape[:-2], 1, 1, dtype=torch.bool)
        keep[:, 1] = False
        return keep
    registered.append("test_second_head_out")

    q, k, v = qkv()
    for fused in (True, False):
        out = dropkey_attention(q, k, v, 0.2, method="test_second_head_out", fused=fused)
        expected = plain(q, k, v) / 0.8
        expected[:, 1] = 0
        torch.testing.assert_close(out, expected)


def test_registry_rejects_bad_and_duplicate_entries(registered):
    sampler = lambda shape, drop_ratio: torch.ones(shape, dtype=torch.bool)  # noqa: E731
    with pytest.raises(ValueError, match="already registered"):
        register_regulariser("dropkey", stage="logits")(sampler)
    with pytest.raises(ValueError, match="stage"):
        register_regulariser("test_bad_stage", stage="values")(sampler)
    with pytest.raises(ValueError, match="lower-case"):
        register_regulariser("Drop-Key", stage="logits")(sampler)
    with pytest.raises(ValueError, match="unknown attention method 'dropout'.*drophead"):
        get_regulariser("dropout")
    assert {"none", "attn_drop", "dropkey", "dropkey_block", "dropkey_cross", "dropkey_column",
            "drophead"} <= set(REGULARISERS)


def test_only_the_iid_logits_method_has_the_hash_backends():
    for method in ["dropkey_column", "drophead", "dropkey_block"]:
        with pytest.raises(ValueError, match="own sampler"):
            plan_attention(method, 0.1, (1, 1, 4, 4), backend="hash")
    large = (1, 1, 4096, 1025)  # above SMALL_MASK_ELEMENTS: dropkey would take the hash
    assert plan_attention("dropkey_column", 0.1, large, chunkable=True).path == "fused"
    assert plan_attention("drophead", 0.1, large).path == "fused"
    assert plan_attention("drophead", 0.1, large, need_weights=True).path == "readable"


# ----------------------------------------------------------------------------- column DropKey
def test_column_drop_rate_is_p_per_batch_head_and_key():
    p, shape = 0.25, (16, 8, 32, 256)
    keep = sample_method_keep_mask("dropkey_column", shape, p, generator=gen(3))
    assert keep.shape == (16, 8, 1, 256)
    assert_binomial_rate(~keep, p)
    # Heads and batches draw their own columns.
    assert not torch.equal(keep[:, 0], keep[:, 1]) and not torch.equal(keep[0], keep[1])


@pytest.mark.parametrize("fused", [True, False])
def test_column_drops_the_same_keys_for_every_query_without_rescaling(fused):
    q, k, v = qkv(nq=10, nk=12)
    keep = sample_method_keep_mask("dropkey_column", (2, 3, 10, 12), 0.4, generator=gen())
    assert keep.any(-1).all() and not keep.all()
    out = dropkey_attention(q, k, v, 0.4, method="dropkey_column", generator=gen(), fused=fused)
    torch.testing.assert_close(out, paper_reference(q, k, v, keep.expand(2, 3, 10, 12)))
    _, weights = dropkey_attention(q, k, v, 0.4, method="dropkey_column", generator=gen(),
                                   need_weights=True)
    zero = weights == 0
    assert torch.equal(zero, ~keep.expand_as(zero))  # one column set per (batch, head)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 10))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fused", [True, False])
def test_column_heads_with_every_key_dropped_behave_as_if_nothing_was_dropped(dtype, fused):
    # Two keys and p = 0.8: about 64% of (batch, head) pairs lose both columns.
    q, k, v = qkv(b=4, h=4, nq=8, nk=2, dtype=dtype, requires_grad=True)
    keep = sample_method_keep_mask("dropkey_column", (4, 4, 8, 2), 0.8, generator=gen())[..., 0, :]
    empty, partial = ~keep.any(-1), keep.any(-1) & ~keep.all(-1)
    assert empty.any() and partial.any()
    out = dropkey_attention(q, k, v, 0.8, method="dropkey_column", generator=gen(), fused=fused)
    out.float().sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(t.grad).all() for t in (q, k, v))
    tol = dict(rtol=1e-2, atol=1e-2) if dtype != torch.float32 else {}
    torch.testing.assert_close(out[empty], plain(q, k, v)[empty], **tol)
    # A head with one surviving key returns that key's value for every query.
    survivor = v.gather(2, keep.long().argmax(-1)[..., None, None].expand(-1, -1, 1, 8))
    torch.testing.assert_close(out[partial], survivor.expand_as(out)[partial], **tol)


def test_column_gradients_reach_qkv_and_dropped_keys_get_none():
    q, k, v = qkv(b=1, h=2, nq=5, nk=12, requires_grad=True)
    keep = sample_method_keep_mask("dropkey_column", (1, 2, 5, 12), 0.5, generator=gen(0))[:, :, 0]
    assert keep.any(-1).all() and not keep.all()
    dropkey_attention(q, k, v, 0.5, method="dropkey_column", generator=gen(0)).sum().backward()
    assert q.grad.abs().sum() > 0
    for t in (k, v):
        assert torch.all(t.grad[~keep] == 0) and torch.all(t.grad[keep].abs().sum(-1) > 0)


# ------------------------------------------------------------------------------------ DropHead
def test_drophead_drop_rate_is_p_per_batch_and_head():
    p = 0.3
    keep = sample_method_keep_mask("drophead", (64, 64, 4, 4), p, generator=gen(3))
    assert keep.shape == (64, 64, 1, 1)
    assert_binomial_rate(~keep, p)


@pytest.mark.parametrize("fused", [True, False])
def test_drophead_zeroes_whole_heads_and_rescales_the_survivors(fused):
    q, k, v = qkv()
    keep = sample_method_keep_mask("drophead", (2, 3, 16, 16), 0.5, generator=gen(0))[..., 0, 0]
    assert keep.tolist() == [[False, False, True], [True, False, False]]
    out = dropkey_attention(q, k, v, 0.5, method="drophead", generator=gen(0), fused=fused)
    assert torch.all(out[~keep] == 0)
    torch.testing.assert_close(out[keep], plain(q, k, v)[keep] * 2)


def test_drophead_returns_the_softmax_weights():
    q, k, v = qkv()
    out, weights = dropkey_attention(q, k, v, 0.5, method="drophead", generator=gen(0),
                                     need_weights=True)
    torch.testing.assert_close(weights, ((q * 8 ** -0.5) @ k.transpose(-2, -1)).softmax(-1))
    keep = sample_method_keep_mask("drophead", (2, 3, 16, 16), 0.5, generator=gen(0))
    torch.testing.assert_close(out, (weights @ v) * keep / 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fused", [True, False])
def test_drophead_is_finite_when_every_head_is_dropped(dtype, fused):
    q, k, v = qkv(b=1, h=2, nq=6, nk=5, dtype=dtype, requires_grad=True)
    assert not sample_method_keep_mask("drophead", (1, 2, 6, 5), 0.9, generator=gen(0)).any()
    out = dropkey_attention(q, k, v, 0.9, method="drophead", generator=gen(0), fused=fused)
    out.float().sum().backward()
    assert torch.all(out == 0) and all(torch.all(t.grad == 0) for t in (q, k, v))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_drophead_survivors_in_half_precision(dtype):
    q, k, v = qkv(dtype=dtype)
    keep = sample_method_keep_mask("drophead", (2, 3, 16, 16), 0.5, generator=gen(0))[..., 0, 0]
    out = dropkey_attention(q, k, v, 0.5, method="drophead", generator=gen(0))
    assert torch.isfinite(out).all() and torch.all(out[~keep] == 0)
    torch.testing.assert_close(out[keep], plain(q, k, v)[keep] * 2, rtol=1e-2, atol=1e-2)


def test_drophead_gradients_are_zero_in_dropped_heads_only():
    q, k, v = qkv(requires_grad=True)
    keep = sample_method_keep_mask("drophead", (2, 3, 16, 16), 0.5, generator=gen(0))[..., 0, 0]
    dropkey_attention(q, k, v, 0.5, method="drophead", generator=gen(0)).sum().backward()
    for t in (q, k, v):
        assert torch.all(t.grad[~keep] == 0) and torch.all(t.grad[keep].abs().sum((-2, -1)) > 0)


# ---------------------------------------------------------------- through every adapter
@pytest.fixture
def attention_calls(monkeypatch):
    """Every call the adapters make to dropkey_attention, with its inputs and output."""
    calls, original = [], attention_module.dropkey_attention

    def spy(q, k, v, drop_ratio, **options):
        result = original(q, k, v, drop_ratio, **options)
        out = result[0] if isinstance(result, tuple) else result
        calls.append(dict(q=q.detach(), k=k.detach(), v=v.detach(), out=out.detach(),
                          attn_mask=options.get("attn_mask"), scale=options.get("scale")))
        return result
    monkeypatch.setattr(attention_module, "dropkey_attention", spy)
    return calls


def _timm_attention():
    import timm
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                            depth=1, embed_dim=64, num_heads=4)
    return vit.blocks[0].attn, (torch.randn(2, 17, 64),), {}


def _volo(part):
    from timm.models.volo import VOLO
    torch.manual_seed(0)
    volo = VOLO(num_classes=5, img_size=64, layers=(1, 1, 1, 1), embed_dims=(32, 64, 64, 64),
                num_heads=(2, 4, 4, 4))
    if part == "attention":
        return volo.network[2][0].attn, (torch.randn(2, 4, 4, 64),), {}
    return volo.post_network[0].attn, (torch.randn(2, 17, 64),), {}


def _torch_mha(need_weights):
    torch.manual_seed(0)
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[0, -2:] = True
    x = torch.randn(2, 7, 16)
    return (nn.MultiheadAttention(16, 4, batch_first=True), (x, x, x),
            dict(key_padding_mask=padding, need_weights=need_weights,
                 average_attn_weights=False))


def _mmcv_mha():
    from mmcv.cnn.bricks.transformer import MultiheadAttention
    torch.manual_seed(0)
    query, key = torch.randn(2, 6, 32), torch.randn(2, 10, 32)
    return MultiheadAttention(32, 4, attn_drop=0.0, batch_first=True), (query, key, key), {}


ADAPTED = {
    "timm-attention": _timm_attention,
    "volo-attention": lambda: _volo("attention"),
    "volo-class-attention": lambda: _volo("class"),
    "mha-need-weights": lambda: _torch_mha(True),
    "mha-no-weights": lambda: _torch_mha(False),
    "mmcv-mha": _mmcv_mha,
}


def _expected(method, call, keep, p):
    """The regulariser's formula for the recorded inputs and the keep mask, written out."""
    q, k, v, attn_mask = call["q"], call["k"], call["v"], call["attn_mask"]
    scale = q.shape[-1] ** -0.5 if call["scale"] is None else call["scale"]
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape).masked_fill(~attn_mask, float("-inf"))
    if method == "drophead":
        return plain(q, k, v, attn_mask, scale) * keep / (1 - p)
    logits = (q * scale) @ k.transpose(-2, -1) + torch.zeros(()).masked_fill(~keep, float("-inf"))
    logits = logits if attn_mask is None else logits + attn_mask
    assert torch.isfinite(logits.amax(-1)).all(), "the check needs a survivor in every row"
    return logits.softmax(-1) @ v


@pytest.mark.parametrize("method", NEW)
@pytest.mark.parametrize("adapter", sorted(ADAPTED))
def test_new_regularisers_work_through_every_adapter(adapter, method, attention_calls):
    module, inputs, options = ADAPTED[adapter]()
    module.eval()
    original = copy.deepcopy(module)
    first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731
    layers = inject_dropkey(module, 0.5, method=method, schedule="constant")
    assert [(l.method, l.drop_ratio) for l in layers] == [(method, 0.5)]
    with torch.no_grad():
        torch.testing.assert_close(first(module(*inputs, **options)),
                                   first(original(*inputs, **options)))

    module.train()
    attention_calls.clear()
    torch.manual_seed(3)
    trained = module(*inputs, **options)
    (call,) = attention_calls
    torch.manual_seed(3)
    shape = (*call["q"].shape[:-1], call["k"].shape[-2])
    keep = sample_method_keep_mask(method, shape, 0.5)
    assert keep.any() and not keep.all(), "the check needs drops and survivors"
    torch.testing.assert_close(call["out"], _expected(method, call, keep, 0.5))
    if options.get("need_weights"):
        weights = trained[1]
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        if method == "dropkey_column":  # the dropped columns are zero for every query
            assert torch.all(weights.masked_select(~keep.expand_as(weights)) == 0)
        else:  # DropHead acts after the weights
            torch.testing.assert_close(weights, original(*inputs, **options)[1])
    first(trained).sum().backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# ------------------------------------------------------------------ key grids for structure
def _vit_with_a_decoder():
    import timm
    torch.manual_seed(0)
    return nn.ModuleDict({
        "encoder": timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                                     patch_size=8, depth=2, embed_dim=64, num_heads=4),
        "decoder": nn.TransformerDecoder(nn.TransformerDecoderLayer(64, 4, 64, batch_first=True),
                                         2),
    })


@pytest.mark.parametrize("method", ["dropkey_block", "dropkey_cross"])
def test_structured_method_on_a_stack_without_key_grid_fails_naming_it(method):
    model = _vit_with_a_decoder()
    with pytest.raises(ValueError, match=r"needs a key grid, and stack '\^decoder\\\\\.' has none"):
        inject_dropkey(model, 0.1, method=method, groups=[r"^encoder\.", r"^decoder\."])
    # Nothing was changed, not even the stack that has a grid.
    assert not any(isinstance(m, DropKeyAttentionMixin) for m in model.modules())
    with pytest.raises(ValueError, match="needs a key grid, and the model has none"):
        inject_dropkey(nn.MultiheadAttention(8, 2), 0.1, method=method)

    # The stack inside the ViT reads the ViT's grid; a given grid serves any stack.
    layers = inject_dropkey(model, 0.1, method=method, groups=[r"^encoder\."])
    assert [l.name for l in layers] == ["encoder.blocks.0.attn", "encoder.blocks.1.attn"]
    settings = model["encoder"].blocks[0].attn.dropkey
    assert (settings.key_grid, settings.num_prefix_keys) == ((4, 4), 1)
    inject_dropkey(model, 0.1, method=method, groups=[r"^decoder\."], key_grid=(2, 3))
    assert model["decoder"].layers[0].self_attn.dropkey.key_grid == (2, 3)


def test_unstructured_methods_need_no_key_grid_and_settings_check_it():
    for method in ["dropkey", "dropkey_column", "drophead"]:
        assert inject_dropkey(nn.MultiheadAttention(8, 2), 0.1, method=method)
    with pytest.raises(ValueError, match="key_grid"):
        DropKeySettings(method="dropkey_block", drop_ratio=0.1)
