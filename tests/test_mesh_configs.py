"""Mesh configs: the loops and data every config declares, each config's shortest schedule on a
tiny generated stand-in, the train tool's report with the mean-pose baseline, bad data exits 2."""
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from tasks.common import get_variant, read_report
from tasks.common.embedded_data import prepare_embedded
from tasks.mesh.generate import generate
from tasks.mesh.model import load_mean_params, rotmat_to_rot6d
from tasks.mesh.procedural_body import write_body_model
from lr_schedules import expected_schedule, lr_per_iteration

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs/mesh").glob("*.py"))
EMBEDDED = [f"metro-mini_{m}_embedded.py"
            for m in ("none", "attndrop", "dropkey-const", "dropkey-dec", "dropkey-inc")]
PAPER = [f"metro-r50_{m}_{d}.py" for m in ("none", "dropkey-dec") for d in ("3dpw", "h36m")]
# the ablation's variants; their injection and tail are tested in test_structured_grids.py and
# test_inference_alignment.py
ABLATION = [f"metro-mini_{m}_embedded.py" for m in
            ("dropkey-block", "dropkey-cross", "dropkey-column", "drophead", "dropkey-dec-ft")]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A complete tiny generated set, and the generated body and means as real-data files."""
    root = tmp_path_factory.mktemp("mesh_data")
    data = prepare_embedded(root / "generated", partial(generate, counts={"train": 2, "test": 3}))
    smpl = write_body_model(root / "smpl")
    rotmats, betas = load_mean_params(None)
    np.savez(smpl / "smpl_mean_params.npz", pose=rotmat_to_rot6d(rotmats).numpy().ravel(),
             shape=betas.numpy())
    return data, smpl


def _on_stand_in(cfg: Config, stand_in, work_dir: Path, epochs: int) -> Config:
    """Point a config at the stand-in data (and, for real-data configs, body model files); one
    batch of 2 per epoch, small evaluation."""
    data, smpl = stand_in
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = work_dir.name  # in-process runs keep their loggers apart
    if cfg.model.get("body_model_dir") is not None:
        cfg.model.update(body_model_dir=str(smpl), mean_params=str(smpl / "smpl_mean_params.npz"))
    for loader, ann_file in ((cfg.train_dataloader, "train.npz"), (cfg.val_dataloader, "test.npz")):
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(data), ann_file=ann_file)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg.max_epochs = epochs
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    return cfg


def test_config_set_is_complete():
    assert sorted(p.name for p in CONFIGS) == sorted(EMBEDDED + PAPER + ABLATION)


@pytest.mark.parametrize("name", EMBEDDED + PAPER + ABLATION)
def test_config_spells_loops_and_data_like_every_config(name):
    cfg = Config.fromfile(REPO / "configs/mesh" / name)
    assert cfg.train_cfg.type == "EpochBasedTrainLoop"
    assert (cfg.val_cfg.type, cfg.test_cfg.type) == ("ValLoop", "TestLoop")
    assert cfg.get("max_epochs") is None  # one knob: train_cfg.max_epochs
    embedded = name in EMBEDDED + ABLATION
    assert (cfg.model.get("body_model_dir") is None) == embedded
    for loader in ("train_dataloader", "val_dataloader"):
        assert cfg[loader].dataset.get("generate_if_missing", False) == embedded


@pytest.mark.filterwarnings("ignore:Detected call of `scheduler.step")
def test_max_epochs_alone_shortens_warm_up_and_cosine_consistently(stand_in, tmp_path):
    for epochs in (30, 8):  # one iteration an epoch on the stand-in
        cfg = _on_stand_in(Config.fromfile(REPO / "configs/mesh" / EMBEDDED[3]), stand_in,
                           tmp_path / f"epochs{epochs}", epochs)
        cfg.model = dict(type="MeshTransformer", embed_dim=32, num_heads=2, encoder_depth=1,
                         decoder_depth=1)
        assert lr_per_iteration(cfg) == pytest.approx(
            expected_schedule(1e-3, 0.1, 2, 1e-5, epochs))


@pytest.mark.slow
@pytest.mark.parametrize("name", EMBEDDED + PAPER)
def test_config_trains_its_shortest_schedule(name, stand_in, tmp_path, shortest_epochs):
    config = REPO / "configs/mesh" / name
    epochs = shortest_epochs(config)
    cfg = _on_stand_in(Config.fromfile(config), stand_in, tmp_path, epochs)
    Runner.from_cfg(cfg).train()
    report = read_report(tmp_path / "report.json")
    assert report["iterations"] == epochs and report["higher_is_better"] is False
    # Evaluated and saved at the last epoch, whatever val_interval and checkpoint.interval say.
    assert (tmp_path / f"epoch_{epochs}.pth").is_file()
    metrics = report["metrics"]
    assert {"mesh/pa_mpjpe", "mesh/mpjpe", "mesh/pve", "mesh/baseline_pa_mpjpe"} <= set(metrics)
    layers = report["attention_layers"]
    encoder = [l for l in layers if l["name"].startswith("encoder.")]
    decoder = [l for l in layers if l["name"].startswith("decoder.")]
    assert encoder and decoder and len(encoder) + len(decoder) == len(layers)
    assert all("entropy" in l for l in layers)
    variant = get_variant(cfg.dropkey.variant)
    assert report["variant"] == cfg.dropkey.variant and report["method"] == variant.method
    assert all(l["method"] == variant.method for l in layers)
    if cfg.dropkey.variant == "dropkey-dec":
        ratios = [l["drop_ratio"] for l in encoder]
        assert ratios[0] == variant.drop_ratio and ratios[-1] == 0.0
        assert decoder[0]["drop_ratio"] == variant.drop_ratio  # its own schedule


@pytest.mark.slow
def test_train_tool_writes_report_and_rejects_bad_data(stand_in, tmp_path, run_tool,
                                                       shortest_epochs):
    config = REPO / "configs/mesh" / EMBEDDED[3]
    cfg = _on_stand_in(Config.fromfile(config), stand_in, tmp_path / "run",
                       shortest_epochs(config))
    cfg.dump(tmp_path / "tiny.py")
    done = run_tool("train.py", tmp_path / "tiny.py", "--work-dir", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    report = read_report(tmp_path / "run/report.json")
    assert report["task"] == "mesh" and report["primary_metric"] == "mesh/pa_mpjpe"
    assert report["metrics"]["mesh/baseline_pa_mpjpe"] > 0

    with np.load(stand_in[0] / "train.npz") as npz:
        data = {k: npz[k] for k in npz.files if k != "shape"}
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "train.npz", **data)
    cfg.train_dataloader.dataset.update(data_root=str(bad), generate_if_missing=False)
    cfg.dump(tmp_path / "bad.py")
    failed = run_tool("train.py", tmp_path / "bad.py", "--work-dir", tmp_path / "bad_run")
    assert failed.returncode == 2
    assert "train.npz: shape: missing" in failed.stderr
    assert not (tmp_path / "bad_run/report.json").exists()
