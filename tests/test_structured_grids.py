"""Structured DropKey (``dropkey_block``, ``dropkey_cross``) over key grids of one or several
levels, and the configs that put it into the encoder of every task."""
import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from dropkey_core import (DropKeyAttentionMixin, inject_dropkey, sample_block_keep_mask,
                          sample_cross_keep_mask)
from dropkey_core.regularisers import REGULARISERS

from attention_inputs import gen

REPO = Path(__file__).resolve().parents[1]
SAMPLERS = {"dropkey_block": sample_block_keep_mask, "dropkey_cross": sample_cross_keep_mask}
LEVELS = ((6, 7), (3, 4), (1, 5))  # the last is narrower than a 3x3 window
PREFIX = 2
NUM_KEYS = PREFIX + sum(h * w for h, w in LEVELS)


def level_maps(keep, levels=LEVELS, prefix=PREFIX):
    """The dropped map (rows, height, width) of each level of a keep mask (..., Nk)."""
    maps, start = [], prefix
    for height, width in levels:
        maps.append(~keep[..., start:start + height * width].reshape(-1, height, width))
        start += height * width
    return maps


def opening(dropped, size):
    """Morphological opening with square windows clipped at the map's edges: a map is its own
    opening exactly when it is a union of such windows."""
    x = dropped[:, None].float()
    crop = (..., slice(0, x.shape[-2]), slice(0, x.shape[-1]))
    eroded = -F.max_pool2d(-x, size, stride=1, padding=size // 2)[crop]
    return F.max_pool2d(eroded, size, stride=1, padding=size // 2)[crop][:, 0] > 0


@pytest.mark.parametrize("method", sorted(SAMPLERS))
def test_each_level_is_drawn_as_a_grid_of_its_own(method):
    """A multi-level mask is, level by level, what the one-level sampler draws on that level
    alone from the same random stream: no window, row or column reaches into another level."""
    sample = SAMPLERS[method]
    shape = (2, 3, 5, NUM_KEYS)
    keep = sample(shape, 0.3, key_grid=LEVELS, num_prefix_keys=PREFIX, generator=gen())
    stream = gen()
    alone = [sample((*shape[:-1], h * w), 0.3, key_grid=(h, w), generator=stream)
             for h, w in LEVELS]
    assert keep.shape == shape and keep[..., :PREFIX].all()
    assert torch.equal(keep[..., PREFIX:], torch.cat(alone, dim=-1))
    # One level given as a list of one level is the same grid.
    single = sample((2, 3, 5, 42), 0.3, key_grid=(6, 7), generator=gen())
    assert torch.equal(single, sample((2, 3, 5, 42), 0.3, key_grid=[[6, 7]], generator=gen()))


def test_block_drops_clipped_windows_within_each_level():
    keep = sample_block_keep_mask((4, 2, 50, NUM_KEYS), 0.25, key_grid=LEVELS,
                                  num_prefix_keys=PREFIX, generator=gen())
    for (height, width), dropped in zip(LEVELS, level_maps(keep)):
        assert dropped.any(), "the test needs drops on every level"
        assert torch.equal(opening(dropped, min(3, height, width)), dropped)


def test_cross_drops_whole_rows_and_columns_within_each_level():
    keep = sample_cross_keep_mask((4, 2, 50, NUM_KEYS), 0.25, key_grid=LEVELS,
                                  num_prefix_keys=PREFIX, generator=gen())
    for dropped in level_maps(keep):
        assert dropped.any()
        whole_lines = dropped.all(-1, keepdim=True) | dropped.all(-2, keepdim=True)
        assert torch.equal(dropped, whole_lines)


@pytest.mark.parametrize("method", sorted(SAMPLERS))
@pytest.mark.parametrize("p", [0.1, 0.4])
def test_every_level_loses_a_fraction_p_on_average(method, p):
    keep = SAMPLERS[method]((32, 4, 64, NUM_KEYS), p, key_grid=LEVELS, num_prefix_keys=PREFIX,
                            generator=gen())
    assert keep[..., :PREFIX].all()
    for dropped in level_maps(keep):
        per_row = dropped.flatten(1).float().mean(1)  # rows are independent draws
        standard_error = per_row.std() / per_row.numel() ** 0.5
        assert abs(per_row.mean() - p) < 5 * standard_error + 1e-3


@pytest.mark.parametrize("method", sorted(SAMPLERS))
def test_a_grid_that_does_not_hold_the_keys_is_an_error_naming_both(method):
    with pytest.raises(ValueError, match=r"key_grid 6x7 \+ 3x4 \+ 1x5 does not match 60 keys "
                                         r"with 2 prefix keys"):
        SAMPLERS[method]((1, 1, 4, 60), 0.1, key_grid=LEVELS, num_prefix_keys=PREFIX)
    with pytest.raises(ValueError, match=r"key_grid 4x4 does not match 17 keys"):
        SAMPLERS[method]((1, 1, 4, 17), 0.1, key_grid=(4, 4))


@pytest.mark.parametrize("grid", [(4,), (4, 0), ((4, 4), (2,)), (), ((4, 4), 2), (True, 2), "4x4"])
def test_a_malformed_grid_is_rejected_before_anything_is_injected(grid):
    model = torch.nn.Sequential(torch.nn.MultiheadAttention(8, 2))
    with pytest.raises(ValueError, match=r"key_grid .* is neither \(height, width\) nor"):
        inject_dropkey(model, 0.1, method="dropkey_block", key_grid=grid)
    assert not any(isinstance(m, DropKeyAttentionMixin) for m in model.modules())


# ------------------------------------------------------------------------- configs, every task
def detection_batch(size, labels):
    """Random normalised images, each with two boxes (for HOI: a person, an object and one
    interaction between them), as the task's data preprocessor gives them."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    samples = []
    for _ in range(2):
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             batch_input_shape=(size, size),
                                             pad_shape=(size, size), hoi_triplets=[[0, 1, 2]]))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[10.0, 20.0, 60.0, 90.0], [50.0, 40.0, 100.0, 100.0]]),
            labels=torch.tensor(labels))
        samples.append(sample)
    return torch.randn(2, 3, size, size), samples


def classification_loss(model):
    return model(torch.randn(2, 1, 8, 8), torch.tensor([1, 7]), mode="loss")


def detection_loss(model, size=128):
    return model(*detection_batch(size, [0, 2]), mode="loss")


def hoi_loss(model, size=112):
    return model(*detection_batch(size, [0, 5]), mode="loss")


def mesh_loss(model):
    params = model(torch.randn(2, 3, 64, 64), mode="tensor")  # in training mode: masks drawn
    return {"loss": sum(value.sum() for value in params.values())}


# config -> (training loss of one random batch, encoder attention layers, keys each one sees)
CONFIGS = {
    "classification/vit-mini_dropkey-cross_embedded.py": (classification_loss, 6, 16),
    "detection/dino-tiny_dropkey-block_embedded.py": (detection_loss, 3, 320),
    "detection/dino-tiny_dropkey-cross_embedded.py": (detection_loss, 3, 320),
    "hoi/qpic-mini_dropkey-block_embedded.py": (hoi_loss, 3, 49),
    "hoi/qpic-mini_dropkey-cross_embedded.py": (hoi_loss, 3, 49),
    "mesh/metro-mini_dropkey-block_embedded.py": (mesh_loss, 2, 64),
    "mesh/metro-mini_dropkey-cross_embedded.py": (mesh_loss, 2, 64),
}


def build_injected(config):
    """The config's model with its regulariser injected, as ``DropKeyHook`` does it."""
    from tasks.common.hooks import resolve_dropkey

    cfg = Config.fromfile(REPO / "configs" / config)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(cfg.get("default_scope") or "mmengine"):
        model = MODELS.build(cfg.model)
    model.init_weights()  # as the Runner does (DINO's level embedding is uninitialised before)
    _, options = resolve_dropkey(cfg)
    return model, options, inject_dropkey(model, **options)


@pytest.fixture
def sampled(monkeypatch):
    """Records (keys, key_grid) of every structured mask drawn."""
    calls = []
    for method in SAMPLERS:
        regulariser = REGULARISERS[method]

        def spy(shape, drop_ratio, *, _sample=regulariser.sample, **options):
            calls.append((shape[-1], options["key_grid"]))
            return _sample(shape, drop_ratio, **options)
        monkeypatch.setitem(REGULARISERS, method, dataclasses.replace(regulariser, sample=spy))
    return calls


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_config_regularises_the_encoder_grid_only_and_trains(config, sampled):
    training_loss, encoder_depth, num_keys = CONFIGS[config]
    model, options, layers = build_injected(config)
    method = options["method"]
    injected = [layer for layer in layers if layer.method != "untouched"]
    assert [layer.method for layer in injected] == [method] * encoder_depth
    assert all(not layer.name.startswith("decoder.") for layer in injected)
    decoder = getattr(model, "decoder", None)
    assert decoder is None or not any(isinstance(m, DropKeyAttentionMixin)
                                      for m in decoder.modules())
    ratios = [layer.drop_ratio for layer in injected]
    assert ratios[0] == pytest.approx(0.1) and ratios[-1] == 0.0  # linear_decrease

    model.train()
    loss, _ = model.parse_losses(training_loss(model))
    loss.backward()
    assert torch.isfinite(loss)
    # Every regularised layer (ratio > 0) drew its structured mask over the configured grid.
    grid = options.get("key_grid", (4, 4))  # the ViT's is read from its patch_embed
    assert len(sampled) == sum(ratio > 0 for ratio in ratios) and sampled
    assert set(sampled) == {(num_keys, grid)}
    assert all(p.grad is not None for layer in injected
               for p in model.get_submodule(layer.name).parameters())


def test_an_image_of_another_size_fails_naming_the_grid_and_keys():
    """The embedded configs fix the grid; a batch of another size (e.g. real data) must fail,
    never fall back to unstructured DropKey."""
    model, _, _ = build_injected("hoi/qpic-mini_dropkey-cross_embedded.py")
    model.train()
    with pytest.raises(ValueError, match=r"key_grid 7x7 does not match 64 keys"):
        hoi_loss(model, size=128)
