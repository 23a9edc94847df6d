"""Injection into real timm, torch and mmcv models keeps weights and eval outputs unchanged."""
import copy
import math
import pickle

import pytest
import torch
import torch.nn as nn

from dropkey_core import (attention_entropy, attention_layers, inject_dropkey,
                          layer_drop_ratios, set_attention_stats)


def timm_model(name, **kwargs):
    import timm
    torch.manual_seed(0)
    if name == "volo":  # a small VOLO: its factory functions fix the stage depths
        from timm.models.volo import VOLO
        return VOLO(num_classes=5, **kwargs).eval()
    return timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()


TIMM_MODELS = {
    "vit": ("vit_tiny_patch16_224", dict(img_size=32, patch_size=8, depth=4, embed_dim=64,
                                         num_heads=4), 4),
    "deit": ("deit_tiny_patch16_224", dict(img_size=32, patch_size=8, depth=3), 3),
    "volo": ("volo", dict(img_size=64, layers=(1, 1, 1, 1), embed_dims=(32, 64, 64, 64),
                          num_heads=(2, 4, 4, 4)), 5),
}


def assert_injection_is_transparent(model, make_input, inject=None, expected_layers=None):
    """State-dict keys and values unchanged, eval outputs unchanged, training actually drops."""
    x = make_input()
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(*x)
    saved = copy.deepcopy(model.state_dict())
    layers = (inject or (lambda m: inject_dropkey(m, 0.5, schedule="constant")))(model)
    if expected_layers is not None:
        assert len([l for l in layers if l.method != "untouched"]) == expected_layers
    after_state = model.state_dict()
    assert list(after_state) == list(before_state)
    for key, value in before_state.items():
        assert torch.equal(after_state[key], value), key
    model.load_state_dict(saved, strict=True)
    with torch.no_grad():
        after = model(*x)
    first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731
    torch.testing.assert_close(first(after), first(before), rtol=1e-5, atol=1e-5)
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        trained = first(model(*x))
    assert torch.isfinite(trained).all()
    assert not torch.allclose(trained, first(before), atol=1e-4), "DropKey changed nothing"
    return layers


@pytest.mark.parametrize("family", sorted(TIMM_MODELS))
def test_timm_injection_keeps_weights_and_eval_outputs(family):
    name, kwargs, num_layers = TIMM_MODELS[family]
    model = timm_model(name, **kwargs)
    size = kwargs["img_size"]
    assert_injection_is_transparent(model, lambda: (torch.randn(2, 3, size, size),),
                                    expected_layers=num_layers)


def test_volo_outlook_attention_is_reported_untouched():
    name, kwargs, _ = TIMM_MODELS["volo"]
    model = timm_model(name, **kwargs)
    layers = inject_dropkey(model, 0.1)
    untouched = [l for l in layers if l.method == "untouched"]
    assert untouched and all("Outlook" in l.type for l in untouched)


def test_vit_layers_get_the_schedule_in_depth_order():
    model = timm_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=6, embed_dim=64,
                       num_heads=4)
    layers = inject_dropkey(model, 0.2, schedule="linear_decrease")
    assert [l.name for l in layers] == [f"blocks.{i}.attn" for i in range(6)]
    assert [l.drop_ratio for l in layers] == pytest.approx(layer_drop_ratios(0.2, 6))
    assert all(l.method == "dropkey" for l in layers)
    # The block variant reads the key grid and class token from the timm model.
    inject_dropkey(model, 0.2, method="dropkey_block", schedule="constant")
    assert model.blocks[0].attn.dropkey.key_grid == (4, 4)
    assert model.blocks[0].attn.dropkey.num_prefix_keys == 1
    model.train()
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


def test_transformer_encoder_injection():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
    layers = assert_injection_is_transparent(model, lambda: (torch.randn(2, 7, 32),),
                                             expected_layers=3)
    assert [l.name for l in layers] == [f"layers.{i}.self_attn" for i in range(3)]


def test_transformer_decoder_stacks_get_their_own_schedules():
    torch.manual_seed(0)
    model = nn.Transformer(32, 4, num_encoder_layers=2, num_decoder_layers=3,
                           dim_feedforward=64, dropout=0.0, batch_first=True).eval()
    src, tgt = torch.randn(2, 9, 32), torch.randn(2, 5, 32)

    def inject(m):
        return inject_dropkey(m, 0.3, schedule="linear_decrease",
                              groups=[r"^encoder\.", r"^decoder\."])

    layers = assert_injection_is_transparent(model, lambda: (src, tgt), inject=inject,
                                             expected_layers=2 + 3 * 2)
    ratios = {l.name: l.drop_ratio for l in layers}
    assert ratios["encoder.layers.0.self_attn"] == pytest.approx(0.3)
    assert ratios["encoder.layers.1.self_attn"] == pytest.approx(0.0)
    # Self- and cross-attention of one decoder layer share that layer's ratio.
    for i, r in enumerate(layer_drop_ratios(0.3, 3)):
        assert ratios[f"decoder.layers.{i}.self_attn"] == pytest.approx(r)
        assert ratios[f"decoder.layers.{i}.multihead_attn"] == pytest.approx(r)


def test_include_and_exclude_select_modules():
    model = nn.Transformer(32, 4, 1, 2, 64, batch_first=True)
    layers = inject_dropkey(model, 0.1, exclude=r"multihead_attn")
    assert {l.name for l in layers} == {"encoder.layers.0.self_attn",
                                        "decoder.layers.0.self_attn", "decoder.layers.1.self_attn"}


def test_mmcv_multihead_attention_injection():
    from mmcv.cnn.bricks.transformer import MultiheadAttention

    torch.manual_seed(0)
    model = MultiheadAttention(32, 4, attn_drop=0.0, batch_first=True).eval()
    query, key = torch.randn(2, 6, 32), torch.randn(2, 10, 32)
    layers = assert_injection_is_transparent(model, lambda: (query, key, key),
                                             expected_layers=1)
    assert layers[0].name == "attn"
    # The wrapper keeps only the output, so its attention skips the weights (and runs fused).
    assert model.attn.dropkey.weights_discarded
    seq_first = query.transpose(0, 1), key.transpose(0, 1), key.transpose(0, 1)
    assert model.attn(*seq_first)[1] is None  # the wrapper's inner module is sequence-first
    standalone = nn.MultiheadAttention(32, 4, batch_first=True)
    inject_dropkey(standalone, 0.1)
    assert standalone(query, key, key)[1] is not None


MHA_CASES = {
    "batch_first": dict(kwargs=dict(batch_first=True), self_attn=True),
    "seq_first_cross": dict(kwargs=dict(kdim=12, vdim=20), self_attn=False),
    "bias_kv_zero_attn": dict(kwargs=dict(add_bias_kv=True, add_zero_attn=True), self_attn=True),
    "no_bias": dict(kwargs=dict(bias=False, batch_first=True), self_attn=True),
}


@pytest.mark.parametrize("case", sorted(MHA_CASES))
@pytest.mark.parametrize("masks", ["none", "padding", "bool_attn", "float_attn_3d", "both"])
def test_multihead_attention_adapter_matches_torch(case, masks):
    spec = MHA_CASES[case]
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, **spec["kwargs"]).eval()
    reference = copy.deepcopy(mha)
    batch_first = mha.batch_first
    L, S, B = 5, 7, 3
    if spec["self_attn"]:
        S = L
    kdim, vdim = spec["kwargs"].get("kdim", 16), spec["kwargs"].get("vdim", 16)
    shape = (lambda n, d: (B, n, d)) if batch_first else (lambda n, d: (n, B, d))
    q = torch.randn(shape(L, 16))
    k = q if spec["self_attn"] else torch.randn(shape(S, kdim))
    v = q if spec["self_attn"] else torch.randn(shape(S, vdim))
    kwargs = {}
    if masks in ("padding", "both"):
        padding = torch.zeros(B, S, dtype=torch.bool)
        padding[0, -2:] = True
        kwargs["key_padding_mask"] = padding
    if masks in ("bool_attn", "both"):
        kwargs["attn_mask"] = torch.ones(L, S, dtype=torch.bool).triu(1)
    if masks == "float_attn_3d":
        kwargs["attn_mask"] = torch.randn(B * 4, L, S)
    inject_dropkey(mha, 0.5)
    for average in (True, False):
        out, weights = mha(q, k, v, need_weights=True, average_attn_weights=average, **kwargs)
        ref_out, ref_weights = reference(q, k, v, need_weights=True,
                                         average_attn_weights=average, **kwargs)
        torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(weights, ref_weights, rtol=1e-5, atol=1e-5)
    out, weights = mha(q, k, v, need_weights=False, **kwargs)
    assert weights is None
    torch.testing.assert_close(out, reference(q, k, v, need_weights=False, **kwargs)[0],
                               rtol=1e-5, atol=1e-5)


def test_multihead_attention_adapter_unbatched_input():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    reference = copy.deepcopy(mha)
    inject_dropkey(mha, 0.5)
    x = torch.randn(5, 16)
    out, weights = mha(x, x, x)
    ref_out, ref_weights = reference(x, x, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights, ref_weights, rtol=1e-5, atol=1e-5)


def test_attention_entropy_is_recorded_in_eval_only():
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=False), 2,
                                  enable_nested_tensor=False)
    inject_dropkey(model, 0.1)
    set_attention_stats(model, True)
    model.train()
    model(torch.randn(6, 2, 16))
    assert attention_entropy(model) == {}
    model.eval()
    with torch.no_grad():
        model(torch.randn(6, 2, 16))
    entropy = attention_entropy(model)
    assert set(entropy) == {"layers.0.self_attn", "layers.1.self_attn"}
    assert all(0 < e <= math.log(6) + 1e-6 for e in entropy.values())
    # Zero queries give uniform attention: entropy is exactly log(number of keys).
    attn = model.layers[0].self_attn
    for p in (attn.in_proj_weight, attn.in_proj_bias):
        p.data[:16] = 0
    set_attention_stats(model, True)
    with torch.no_grad():
        model.layers[0].self_attn(*(torch.randn(6, 2, 16),) * 3)
    assert attention_entropy(model)["layers.0.self_attn"] == pytest.approx(math.log(6), rel=1e-5)
    set_attention_stats(model, False)
    assert attention_entropy(model) == {}


def test_injected_model_pickles_and_deep_copies():
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32), 2,
                                  enable_nested_tensor=False)
    inject_dropkey(model, 0.1)
    clone = pickle.loads(pickle.dumps(model))
    assert [l.drop_ratio for l in attention_layers(clone)] == [0.1, 0.0]
    assert attention_layers(copy.deepcopy(model)) == attention_layers(model)


def test_reinjection_updates_settings_in_place():
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32), 2,
                                  enable_nested_tensor=False)
    inject_dropkey(model, 0.1)
    layers = inject_dropkey(model, 0.2, method="attn_drop", schedule="constant")
    assert [(l.method, l.drop_ratio) for l in layers] == [("attn_drop", 0.2)] * 2
    assert type(model.layers[0].self_attn).__mro__.count(nn.MultiheadAttention) == 1
