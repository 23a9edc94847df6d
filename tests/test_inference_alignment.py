"""Inference alignment (issue #16): the fine-tune tail of ``dropkey-dec-ft``, which trains its last
epochs with the regulariser off, and Monte-Carlo evaluation, which averages K passes with the
regulariser on next to the deterministic evaluation."""
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

from dropkey_core import (REGULARISERS, DropKeyMultiheadAttention, attention_entropy,
                          inject_dropkey, register_regulariser, sample_keep_mask,
                          sampling_in_eval, set_attention_stats, set_regularisation)
from tasks.classification.metric import ClassificationMetric
from tasks.classification.model import TimmClassifier
from tasks.common import DataFormatError, read_report, resolve_dropkey
from tasks.common.files import write_json_atomic
from tasks.common.hooks import resolve_finetune_epochs
from tasks.common.monte_carlo import MonteCarloEvalHook, average_passes, resolve_monte_carlo
from tasks.common.report import REPORT_NAME, BenchReportHook

REPO = Path(__file__).resolve().parents[1]
CONFIG_NAME = "run_config.py"


def config(**fields) -> Config:
    """A config read from a file, as a run has it (``cfg.filename`` names the file)."""
    Config({}).dump(CONFIG_NAME)
    cfg = Config.fromfile(CONFIG_NAME)
    cfg.merge_from_dict(fields)
    return cfg


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------ fine-tune tail: config
FT = dict(variant="dropkey-dec-ft", finetune_epochs=2)


def test_finetune_epochs_is_resolved_apart_from_the_injection_arguments(in_tmp_dir):
    cfg = config(dropkey=FT, train_cfg=dict(max_epochs=10))
    assert resolve_dropkey(cfg) == ("dropkey-dec-ft", {"method": "dropkey",
                                                       "schedule": "linear_decrease",
                                                       "drop_ratio": 0.1})
    assert resolve_finetune_epochs(cfg) == 2
    assert resolve_finetune_epochs(config(dropkey=dict(variant="dropkey-dec"))) is None
    # a label carrying its ratio, with the same ratio given explicitly, is consistent
    cfg = config(dropkey=dict(variant="dropkey-dec-ft-p0.3", drop_ratio=0.3, finetune_epochs=1),
                 train_cfg=dict(max_epochs=10))
    assert resolve_dropkey(cfg)[1]["drop_ratio"] == 0.3 and resolve_finetune_epochs(cfg) == 1


@pytest.mark.parametrize("fields, field, message", [
    (dict(dropkey=dict(FT, finetune_epochs=10)), "dropkey.finetune_epochs",
     "a fine-tune tail longer than training"),
    (dict(dropkey=dict(FT, finetune_epochs=12)), "dropkey.finetune_epochs",
     "a fine-tune tail longer than training"),
    (dict(dropkey=dict(variant="dropkey-dec", finetune_epochs=2)), "dropkey.finetune_epochs",
     "has no fine-tune tail"),
    (dict(dropkey=dict(variant="none", finetune_epochs=2)), "dropkey.finetune_epochs",
     "has no fine-tune tail"),
    (dict(dropkey=dict(variant="dropkey-dec-ft")), "dropkey.finetune_epochs", "missing"),
    (dict(dropkey=dict(FT, finetune_epochs=2.0)), "dropkey.finetune_epochs", "whole number"),
    (dict(dropkey=dict(FT, finetune_epochs="2")), "dropkey.finetune_epochs", "whole number"),
    (dict(dropkey=dict(FT, finetune_epochs=True)), "dropkey.finetune_epochs", "whole number"),
    (dict(dropkey=dict(FT, finetune_epochs=0)), "dropkey.finetune_epochs", "whole number"),
    (dict(dropkey=dict(variant="dropkey-dec-p0.3", drop_ratio=0.2)), "dropkey.drop_ratio",
     "contradicts the ratio 0.3"),
    (dict(dropkey=dict(variant="dropkey-dec-ft-p0.2", drop_ratio=0.1, finetune_epochs=2)),
     "dropkey.drop_ratio", "contradicts the ratio 0.2"),
])
def test_bad_tail_settings_name_the_config_and_field(in_tmp_dir, fields, field, message):
    with pytest.raises(DataFormatError, match=message) as err:
        resolve_dropkey(config(train_cfg=dict(max_epochs=10), **fields))
    assert err.value.path.endswith(CONFIG_NAME) and err.value.field == field


def test_a_tail_needs_an_epoch_based_schedule(in_tmp_dir):
    with pytest.raises(DataFormatError, match="train_cfg.max_epochs") as err:
        resolve_dropkey(config(dropkey=FT))
    assert err.value.field == "dropkey.finetune_epochs"


# -------------------------------------------------------------------------- the core's switches
def attention(drop_ratio=0.5) -> DropKeyMultiheadAttention:
    torch.manual_seed(0)
    return DropKeyMultiheadAttention(8, 2, drop_ratio=drop_ratio)


def test_regularisation_off_trains_as_eval_computes_and_keeps_the_ratio():
    layer, x = attention(), torch.randn(2, 5, 8)
    deterministic = layer.eval()(x)
    layer.train()
    assert not torch.equal(layer(x), deterministic)
    set_regularisation(layer, False)
    assert torch.equal(layer(x), deterministic)
    assert layer.dropkey.drop_ratio == 0.5 and layer.dropkey.method == "dropkey"
    set_regularisation(layer, True)
    assert not torch.equal(layer(x), deterministic)


def test_sampling_in_eval_draws_the_training_masks_and_leaves_the_entropy_meter_alone():
    layer, x = attention(), torch.randn(2, 5, 8)
    torch.manual_seed(1)
    trained = layer.train()(x)
    layer.eval()
    set_attention_stats(layer, True)
    deterministic = layer(x)
    torch.manual_seed(1)
    with sampling_in_eval(layer):
        sampled = layer(x)
        assert not layer.training
    assert torch.equal(sampled, trained) and not torch.equal(sampled, deterministic)
    assert torch.equal(layer(x), deterministic)  # off again after the block
    # the meter holds the two deterministic passes only: both equal, so one pass's entropy
    single = DropKeyMultiheadAttention(8, 2, drop_ratio=0.5)
    single.load_state_dict(layer.state_dict())
    set_attention_stats(single.eval(), True)
    single(x)
    assert attention_entropy(layer) == pytest.approx(attention_entropy(single))
    assert layer.dropkey.entropy_rows == 2 * single.dropkey.entropy_rows


# --------------------------------------------------------------- fine-tune tail: a real training
MASKS_DRAWN = []


@pytest.fixture
def counted_method():
    """DropKey's sampler, counting the masks it draws."""
    def sample(shape, drop_ratio, *, generator=None, device=None):
        MASKS_DRAWN.append(tuple(shape))
        return sample_keep_mask(shape, drop_ratio, generator=generator, device=device)

    register_regulariser("test_counted_dropkey", stage="logits")(sample)
    yield "test_counted_dropkey"
    REGULARISERS.pop("test_counted_dropkey")


class TinyAttentionModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, inputs, mode="tensor"):
        out = self.head(self.attn(inputs, inputs, inputs)[0]).mean()
        return {"loss": out ** 2} if mode == "loss" else out


class MasksPerEpoch(Hook):
    def __init__(self):
        self.epochs = {}

    def before_train_epoch(self, runner):
        MASKS_DRAWN.clear()

    def after_train_epoch(self, runner):
        self.epochs[runner.epoch] = len(MASKS_DRAWN)  # runner.epoch: the epoch's index


def train_tiny(work_dir, method, name, max_epochs=4, tail=2, resume_from=None) -> dict:
    """Masks drawn per epoch index of a tiny training run (2 iterations an epoch) with a tail."""
    probe = MasksPerEpoch()
    dropkey = dict(variant="dropkey-dec-ft", method=method, schedule="constant",
                   finetune_epochs=tail)
    runner = Runner(
        model=TinyAttentionModel(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dict(dataset=[{"inputs": torch.randn(3, 8)} for _ in range(4)],
                              sampler=dict(type="DefaultSampler", shuffle=False), batch_size=2,
                              collate_fn=dict(type="default_collate")),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type="SafeCheckpointHook", interval=1)),
        custom_hooks=[dict(type="DropKeyHook"), dict(type="PlainCheckpointHook"), probe],
        load_from=None if resume_from is None else str(resume_from),
        resume=resume_from is not None,
        cfg=Config(dict(dropkey=dropkey, train_cfg=dict(max_epochs=max_epochs))))
    runner.train()
    return probe.epochs


def test_the_tail_trains_without_masks_also_when_resumed(tmp_path, counted_method):
    per_epoch = 2 * 1  # iterations x attention layers
    assert train_tiny(tmp_path, counted_method, "tail") == {0: per_epoch, 1: per_epoch, 2: 0, 3: 0}
    # resumed inside the tail (after 3 epochs): off; before it (after 1 epoch): on, then off
    assert train_tiny(tmp_path, counted_method, "tail-resumed-late",
                      resume_from=tmp_path / "epoch_3.pth") == {3: 0}
    assert train_tiny(tmp_path, counted_method, "tail-resumed-early",
                      resume_from=tmp_path / "epoch_1.pth") == {1: per_epoch, 2: 0, 3: 0}


# ------------------------------------------------------------------- Monte-Carlo: configuration
@pytest.mark.parametrize("value, field", [
    (dict(samples=0), "monte_carlo.samples"), (dict(samples=-2), "monte_carlo.samples"),
    (dict(samples=2.0), "monte_carlo.samples"), (dict(samples="4"), "monte_carlo.samples"),
    (dict(samples=True), "monte_carlo.samples"), (dict(), "monte_carlo.samples"),
    (dict(samples=4, seed=1), "monte_carlo.seed"), (4, "monte_carlo"),
])
def test_bad_monte_carlo_settings_name_the_field(in_tmp_dir, value, field):
    with pytest.raises(DataFormatError) as err:
        resolve_monte_carlo(config(monte_carlo=value))
    assert err.value.path.endswith(CONFIG_NAME) and err.value.field == field


def test_monte_carlo_is_off_when_absent_and_refused_by_a_model_that_cannot_average(in_tmp_dir):
    assert resolve_monte_carlo(config()) is None
    assert resolve_monte_carlo(config(monte_carlo=dict(samples=3))) == 3
    runner = SimpleNamespace(model=nn.Linear(2, 2), cfg=config(monte_carlo=dict(samples=3)))
    with pytest.raises(DataFormatError, match="cannot average stochastic passes") as err:
        MonteCarloEvalHook().before_run(runner)
    assert err.value.field == "monte_carlo"
    runner.cfg = config()
    MonteCarloEvalHook().before_run(runner)  # off: any model will do


def test_detection_and_hoi_models_cannot_average_passes():
    from tasks.common.monte_carlo import MonteCarloModel
    from tasks.detection.model import DotProductEncoderDINO
    from tasks.hoi.model import QPIC
    from tasks.mesh.model import MeshTransformer

    assert not issubclass(DotProductEncoderDINO, MonteCarloModel)
    assert not issubclass(QPIC, MonteCarloModel)
    assert issubclass(TimmClassifier, MonteCarloModel)
    assert issubclass(MeshTransformer, MonteCarloModel)


def test_the_hook_asks_for_passes_at_the_reported_evaluations_only(in_tmp_dir):
    model = tiny_classifier(0.1)
    runner = SimpleNamespace(model=model, cfg=config(monte_carlo=dict(samples=3)), max_epochs=4,
                             epoch=0)
    hook = MonteCarloEvalHook()
    hook.before_run(runner)
    hook.before_train(runner)
    seen = []
    for epoch in (2, 4):  # an intermediate validation, then the one after the last epoch
        runner.epoch = epoch
        hook.before_val_epoch(runner)
        seen.append(model.monte_carlo_samples)
        hook.after_val_epoch(runner)
        seen.append(model.monte_carlo_samples)
    hook.before_test_epoch(runner)
    seen.append(model.monte_carlo_samples)
    hook.after_test_epoch(runner)
    assert seen + [model.monte_carlo_samples] == [0, 0, 3, 0, 3, 0]
    standalone = MonteCarloEvalHook()  # runner.val() without training: reported
    standalone.before_run(runner)
    standalone.before_val_epoch(runner)
    assert model.monte_carlo_samples == 3


# --------------------------------------------------------------- Monte-Carlo: classification
def tiny_classifier(drop_ratio: float) -> TimmClassifier:
    torch.manual_seed(0)
    model = TimmClassifier("vit_tiny_patch16_224", num_classes=10, img_size=8, patch_size=2,
                           in_chans=1, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0,
                           class_token=False, global_pool="avg")
    inject_dropkey(model, drop_ratio, schedule="constant")
    return model.eval()


def digits_batch(n=6):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 8, 8, generator=generator), torch.arange(n) % 10


def evaluate(samples) -> dict:
    metric = ClassificationMetric()
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_one_pass_at_ratio_zero_equals_the_deterministic_evaluation():
    model = tiny_classifier(0.0)
    model.monte_carlo_samples = 1
    inputs, labels = digits_batch()
    metrics = evaluate(model(inputs, labels, mode="predict"))
    assert set(metrics) == {"cls/top1", "cls/top5", "cls/nll", "cls/ece",
                            "mc/cls/top1", "mc/cls/top5", "mc/cls/nll", "mc/cls/ece"}
    for name in ("top1", "top5", "nll", "ece"):
        assert metrics[f"mc/cls/{name}"] == metrics[f"cls/{name}"]


def test_the_average_is_the_mean_of_the_seeded_passes():
    model = tiny_classifier(0.3)
    inputs, labels = digits_batch()
    model.monte_carlo_samples = 3
    torch.manual_seed(7)
    samples = model(inputs, labels, mode="predict")
    averaged = torch.stack([sample["mc_probs"] for sample in samples])
    deterministic = torch.stack([sample["probs"] for sample in samples])
    # By hand: the deterministic pass draws nothing; then three passes draw masks, in order,
    # from the same generator. This ViT has no dropout and no batch-norm, so a training-mode
    # forward is such a pass.
    torch.manual_seed(7)
    model.train()
    passes = [model.backbone(inputs).softmax(dim=-1) for _ in range(3)]
    model.eval()
    torch.testing.assert_close(averaged, (passes[0] + passes[1] + passes[2]) / 3)
    assert not torch.allclose(averaged, deterministic) and not torch.allclose(averaged, passes[0])
    assert torch.equal(deterministic, model.backbone(inputs).softmax(dim=-1))
    # metrics of the average, computed as the deterministic ones are
    metrics = evaluate(samples)
    top1 = (averaged.argmax(dim=1) == labels).float().mean().item()
    nll = -averaged[torch.arange(len(labels)), labels].log().mean().item()
    assert metrics["mc/cls/top1"] == pytest.approx(top1)
    assert metrics["mc/cls/nll"] == pytest.approx(nll)
    assert metrics["cls/nll"] != pytest.approx(nll)


def test_average_passes_is_the_element_wise_mean():
    values = iter([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0]), torch.tensor([2.0, 1.0])])
    assert torch.equal(average_passes(lambda: {"x": next(values)}, 3)["x"],
                       torch.tensor([2.0, 3.0]))


def test_monte_carlo_costs_k_forwards_and_nothing_when_off():
    model = tiny_classifier(0.1)
    forwards = []
    model.backbone.register_forward_hook(lambda *args: forwards.append(1))
    inputs, labels = digits_batch()
    samples = model(inputs, labels, mode="predict")
    assert len(forwards) == 1 and "mc_probs" not in samples[0]
    assert set(evaluate(samples)) == {"cls/top1", "cls/top5", "cls/nll", "cls/ece"}
    model.monte_carlo_samples = 4
    model(inputs, labels, mode="predict")
    assert len(forwards) == 1 + 1 + 4


# -------------------------------------------------------------------------- Monte-Carlo: mesh
@pytest.fixture(scope="module")
def mesh_model():
    from tasks.mesh.model import MeshTransformer

    torch.manual_seed(0)
    model = MeshTransformer(embed_dim=32, num_heads=2, encoder_depth=1, decoder_depth=1)
    for head in (model.pose_head, model.shape_head, model.camera_head):  # the heads start at 0
        nn.init.normal_(head.weight, std=0.5)
    inject_dropkey(model, 0.3, schedule="constant", groups=[r"^encoder\.", r"^decoder\."])
    return model.eval()


def mesh_batch(n=2):
    generator = torch.Generator().manual_seed(2)
    return torch.randn(n, 3, 64, 64, generator=generator), {
        "pose": 0.1 * torch.randn(n, 72, generator=generator), "betas": torch.zeros(n, 10),
        "gender": torch.zeros(n, dtype=torch.long)}


def test_mesh_averages_the_regressed_parameters_with_batch_norm_in_eval(mesh_model):
    from tasks.mesh.metric import MeshMetric
    from tasks.mesh.model import rot6d_to_rotmat

    batch_norms = [m for m in mesh_model.modules() if isinstance(m, nn.BatchNorm2d)]
    running = [m.running_mean.clone() for m in batch_norms]
    modes = []
    for module in batch_norms:
        module.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    inputs, samples = mesh_batch()
    mesh_model.monte_carlo_samples = 3
    torch.manual_seed(5)
    with torch.no_grad():
        predicted = mesh_model(inputs, samples, mode="predict")
    mesh_model.monte_carlo_samples = 0
    assert len(modes) == len(batch_norms) * (1 + 3) and not any(modes)
    assert all(torch.equal(m.running_mean, r) for m, r in zip(batch_norms, running))

    # By hand: the mean of three seeded passes' 6D rotations, betas and camera, then decoded.
    torch.manual_seed(5)
    with torch.no_grad():
        mesh_model.regress_parameters(inputs)  # the deterministic pass draws nothing
        with sampling_in_eval(mesh_model):
            passes = [mesh_model.regress_parameters(inputs) for _ in range(3)]
        rot6d = sum(p["rot6d"] for p in passes) / 3
        betas = sum(p["betas"] for p in passes) / 3
        expected = mesh_model.body(rot6d_to_rotmat(rot6d), betas)
        joints_of_passes = [mesh_model.body(rot6d_to_rotmat(p["rot6d"]), p["betas"])
                            ["h36m_joints"] for p in passes]
    averaged = torch.stack([sample["mc_pred_joints"] for sample in predicted])
    torch.testing.assert_close(averaged, expected["h36m_joints"])
    torch.testing.assert_close(torch.stack([s["mc_pred_vertices"] for s in predicted]),
                               expected["vertices"])
    assert not torch.allclose(averaged, sum(joints_of_passes) / 3)  # parameters, not joints
    assert not torch.allclose(averaged, torch.stack([s["pred_joints"] for s in predicted]))

    metric = MeshMetric()
    metric.process(None, predicted)
    metrics = metric.evaluate(len(predicted))
    for name in ("mpjpe", "pa_mpjpe", "pve", "pa_mpjpe_vs_baseline"):
        assert math.isfinite(metrics[f"mc/mesh/{name}"])
        assert metrics[f"mc/mesh/{name}"] != metrics[f"mesh/{name}"]
    assert "mc/mesh/baseline_pa_mpjpe" not in metrics
    assert metrics["mc/mesh/pa_mpjpe_vs_baseline"] == pytest.approx(
        metrics["mc/mesh/pa_mpjpe"] / metrics["mesh/baseline_pa_mpjpe"])


def test_mesh_metrics_without_monte_carlo_are_unchanged(mesh_model):
    from tasks.mesh.metric import MeshMetric

    inputs, samples = mesh_batch()
    with torch.no_grad():
        predicted = mesh_model(inputs, samples, mode="predict")
    assert "mc_pred_joints" not in predicted[0]
    metric = MeshMetric()
    metric.process(None, predicted)
    assert not any(key.startswith("mc/") for key in metric.evaluate(len(predicted)))


# ------------------------------------------------------------------------------------- report
def reported(tmp_path, **fields) -> dict:
    cfg = Config(dict(task="classification", dataset_name="digits", primary_metric="cls/top1",
                      higher_is_better=True, train_cfg=dict(max_epochs=10), **fields))
    loop = SimpleNamespace(evaluator=SimpleNamespace(metrics=[]))
    runner = SimpleNamespace(
        cfg=cfg, model=nn.Linear(2, 2), work_dir=str(tmp_path), seed=0, epoch=10, iter=3,
        train_dataloader=SimpleNamespace(batch_size=4), message_hub=SimpleNamespace(
            log_scalars={}), val_loop=loop, test_loop=loop)
    hook = BenchReportHook(record_entropy=False)
    hook.before_test_epoch(runner)
    hook.after_test_epoch(runner, metrics={"cls/top1": 0.75, "mc/cls/top1": 0.8})
    hook.after_run(runner)
    return read_report(tmp_path / REPORT_NAME)


def test_the_report_records_the_tail_and_the_passes(tmp_path):
    report = reported(tmp_path / "ft", dropkey=FT, monte_carlo=dict(samples=4))
    assert report["finetune_epochs"] == 2 and report["monte_carlo"] == {"samples": 4}
    assert report["metrics"] == {"cls/top1": 0.75, "mc/cls/top1": 0.8}
    plain = reported(tmp_path / "plain", dropkey=dict(variant="dropkey-dec"))
    assert plain["finetune_epochs"] is None and plain["monte_carlo"] is None


@pytest.mark.parametrize("field, value", [
    ("finetune_epochs", 0), ("finetune_epochs", 2.5), ("finetune_epochs", True),
    ("monte_carlo", {"samples": 0}), ("monte_carlo", {"samples": 2.0}), ("monte_carlo", 4),
    ("monte_carlo", {"passes": 4}), ("monte_carlo", {}),
])
def test_read_report_validates_the_new_fields_when_present(tmp_path, field, value):
    report = reported(tmp_path, dropkey=FT, monte_carlo=dict(samples=4))
    path = tmp_path / REPORT_NAME
    del report[field]  # a report written before the field existed
    write_json_atomic(path, report)
    assert field not in read_report(path)
    write_json_atomic(path, dict(report, **{field: value}))
    with pytest.raises(DataFormatError) as err:
        read_report(path)
    assert err.value.field == field


# ---------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_test_tool_reports_deterministic_and_monte_carlo_metrics(tmp_path, run_tool):
    config = REPO / "configs/classification/vit-mini_dropkey-dec_embedded.py"
    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.experiment_name = str(tmp_path / "train"), "mc-train"
    cfg.train_cfg.update(max_epochs=4, val_interval=4)
    cfg.train_dataloader.dataset.split = "val"  # 12 iterations an epoch
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    Runner.from_cfg(cfg).train()
    checkpoint = tmp_path / "train" / "epoch_4.pth"

    runs = {}
    for name, options in (("plain", ()), ("mc", ("--cfg-options", "monte_carlo.samples=4"))):
        tool = run_tool("test.py", config, checkpoint, "--work-dir", tmp_path / name, *options,
                        env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert tool.returncode == 0, tool.stderr[-3000:]
        runs[name] = read_report(tmp_path / name / REPORT_NAME)
    plain, mc = runs["plain"]["metrics"], runs["mc"]["metrics"]
    assert runs["mc"]["monte_carlo"] == {"samples": 4} and runs["plain"]["monte_carlo"] is None
    assert set(plain) == {"cls/top1", "cls/top5", "cls/nll", "cls/ece"}
    assert set(mc) == set(plain) | {f"mc/{key}" for key in plain}
    assert {key: mc[key] for key in plain} == plain  # the deterministic evaluation is unchanged
    assert mc["mc/cls/nll"] != mc["cls/nll"]
    # the entropy is that of the deterministic passes, as in the plain run
    assert runs["mc"]["attention_layers"] == runs["plain"]["attention_layers"]
