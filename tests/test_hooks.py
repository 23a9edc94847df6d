"""The run hooks: the config's regulariser is resolved, checked and injected, and importing the
project allow-lists nothing for torch's weights-only unpickler."""
import math
import subprocess
import sys

import pytest
import torch.nn as nn
from mmengine.config import Config

from dropkey_core import REGULARISERS, register_regulariser, sample_head_keep_mask
from tasks.common import DataFormatError, DropKeyHook, resolve_dropkey


CONFIG_NAME = "run_config.py"


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def config(**fields) -> Config:
    """A config read from a file, as a run has it (``cfg.filename`` names the file)."""
    Config({}).dump(CONFIG_NAME)
    cfg = Config.fromfile(CONFIG_NAME)
    cfg.merge_from_dict(fields)
    return cfg


def test_variant_defaults_and_overrides():
    assert resolve_dropkey(config()) == ("none", {"method": "none", "schedule": "constant",
                                                  "drop_ratio": 0.0})
    label, options = resolve_dropkey(config(
        dropkey=dict(variant="dropkey-dec", drop_ratio=0.3),
        dropkey_scope=dict(groups=[r"^encoder\."], exclude="cross_attn")))
    assert label == "dropkey-dec"
    assert options == {"method": "dropkey", "schedule": "linear_decrease", "drop_ratio": 0.3,
                       "groups": [r"^encoder\."], "exclude": "cross_attn"}


@pytest.mark.parametrize("fields, field", [
    (dict(dropkey=dict(variant="dropkey-fast")), "dropkey.variant"),
    (dict(dropkey=dict(variant="../x")), "dropkey.variant"),
    (dict(dropkey=dict(variant="dropkey-dec", drop_ratio=1.5)), "dropkey.drop_ratio"),
    (dict(dropkey=dict(variant="dropkey-dec", drop_ratio=-0.1)), "dropkey.drop_ratio"),
    (dict(dropkey=dict(variant="dropkey-dec", drop_ratio=math.nan)), "dropkey.drop_ratio"),
    (dict(dropkey=dict(variant="dropkey-dec", drop_ratio="0.1")), "dropkey.drop_ratio"),
    (dict(dropkey=dict(variant="dropkey-dec", ratios=[0.1, 1.0])), "dropkey.ratios[1]"),
    (dict(dropkey=dict(variant="none", schedule="cosine")), "dropkey.schedule"),
    (dict(dropkey=dict(variant="none", method="dropout")), "dropkey.method"),
    (dict(dropkey=dict(variant="dropkey-dec", method=["dropkey"])), "dropkey.method"),
    (dict(dropkey=dict(variant="none", drop_rate=0.1)), "dropkey.drop_rate"),
    (dict(dropkey_scope=dict(inclde="blocks")), "dropkey_scope.inclde"),
    (dict(dropkey_scope=dict(include="blocks[")), "dropkey_scope.include"),
    (dict(dropkey_scope=dict(groups=["^enc", "(dec"])), "dropkey_scope.groups[1]"),
])
def test_bad_settings_name_the_config_and_field(fields, field):
    with pytest.raises(DataFormatError) as err:
        resolve_dropkey(config(**fields))
    assert err.value.path.endswith(CONFIG_NAME) and err.value.field == field


@pytest.mark.parametrize("label, method, schedule", [
    ("dropkey-column", "dropkey_column", "linear_decrease"), ("drophead", "drophead", "constant")])
def test_new_regulariser_variants_resolve_to_their_core_method(label, method, schedule):
    assert resolve_dropkey(config(dropkey=dict(variant=label))) == (
        label, {"method": method, "schedule": schedule, "drop_ratio": 0.1})


def test_a_registered_regulariser_is_a_valid_method():
    with pytest.raises(DataFormatError, match="unknown attention method 'test_hooks_reg'"):
        resolve_dropkey(config(dropkey=dict(variant="dropkey-dec", method="test_hooks_reg")))
    register_regulariser("test_hooks_reg", stage="output")(sample_head_keep_mask)
    try:
        _, options = resolve_dropkey(config(dropkey=dict(variant="dropkey-dec",
                                                         method="test_hooks_reg")))
        assert options["method"] == "test_hooks_reg"
    finally:
        REGULARISERS.pop("test_hooks_reg")


class FakeRunner:
    def __init__(self, model, **fields):
        self.model, self.cfg = model, config(**fields)


def test_hook_injects_the_schedule_per_stack():
    model = nn.ModuleDict({"encoder": nn.ModuleList([nn.MultiheadAttention(8, 2)
                                                     for _ in range(3)])})
    DropKeyHook().before_run(FakeRunner(
        model, dropkey=dict(variant="dropkey-dec"), dropkey_scope=dict(groups=[r"^encoder\."])))
    assert [m.dropkey.drop_ratio for m in model["encoder"]] == pytest.approx([0.1, 0.05, 0.0])


def test_scope_that_reaches_no_attention_is_an_error():
    runner = FakeRunner(nn.Sequential(nn.MultiheadAttention(8, 2)),
                        dropkey=dict(variant="dropkey-dec"), dropkey_scope=dict(include="blocks"))
    with pytest.raises(DataFormatError, match="matches no attention module") as err:
        DropKeyHook().before_run(runner)
    assert err.value.field == "dropkey_scope"


def test_structured_variant_on_a_stack_without_key_grid_fails_before_training():
    model = nn.ModuleDict({"decoder": nn.ModuleList([nn.MultiheadAttention(8, 2)])})
    runner = FakeRunner(model, dropkey=dict(variant="dropkey-block"),
                        dropkey_scope=dict(groups=[r"^decoder\."]))
    with pytest.raises(DataFormatError, match=r"needs a key grid, and stack '\^decoder") as err:
        DropKeyHook().before_run(runner)
    assert err.value.field == "dropkey"
    assert not hasattr(model["decoder"][0], "dropkey")


@pytest.mark.slow
def test_importing_the_packages_allow_lists_nothing():
    """torch registers its own classes as its submodules load; the project adds none."""
    code = ("import torch, mmengine.runner, mmdet.models, timm, smplx\n"
            "before = set(torch.serialization.get_safe_globals())\n"
            "import tasks.classification, tasks.detection, tasks.hoi, tasks.mesh\n"
            "after = set(torch.serialization.get_safe_globals())\n"
            "print(sorted(map(str, after - before)), getattr in after)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[] False"
