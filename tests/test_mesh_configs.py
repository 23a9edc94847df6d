"""Mesh configs: every embedded and paper-scale config builds and trains one iteration on a tiny
generated stand-in; the tool writes a valid report with the mean-pose baseline; bad data exits 2."""
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config

from tasks.common import build_runner, read_report
from tasks.mesh.generate import generate

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs/mesh").glob("*.py"))
EMBEDDED = [f"metro-mini_{m}_embedded.py"
            for m in ("none", "attndrop", "dropkey-const", "dropkey-dec", "dropkey-inc")]
PAPER = [f"metro-r50_{m}_{d}.py" for m in ("none", "dropkey-dec") for d in ("3dpw", "h36m")]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("mesh_data"), counts={"train": 2, "test": 3})


def _on_stand_in(cfg: Config, root: Path, work_dir: Path) -> Config:
    """Point a config at the stand-in data and body model; one batch of 2, small evaluation."""
    cfg.work_dir = str(work_dir)
    cfg.model.update(body_model_dir=str(root / "smpl"), mean_params=str(root / "mean_params.npz"))
    cfg.model.pop("generated_root", None)
    for loader, ann_file in ((cfg.train_dataloader, "train.npz"), (cfg.val_dataloader, "test.npz")):
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(root), ann_file=ann_file, generated=False)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    return cfg


def test_config_set_is_complete():
    assert sorted(p.name for p in CONFIGS) == sorted(EMBEDDED + PAPER)


@pytest.mark.parametrize("name", EMBEDDED + PAPER)
def test_config_trains_one_iteration(name, stand_in, tmp_path):
    cfg = _on_stand_in(Config.fromfile(REPO / "configs/mesh" / name), stand_in, tmp_path)
    runner = build_runner(cfg)
    runner.train()
    report = read_report(tmp_path / "report.json")
    assert report["iterations"] == 1 and report["higher_is_better"] is False
    metrics = report["metrics"]
    assert {"mesh/pa_mpjpe", "mesh/mpjpe", "mesh/pve", "mesh/baseline_pa_mpjpe"} <= set(metrics)
    layers = report["attention_layers"]
    encoder = [l for l in layers if l["name"].startswith("encoder.")]
    decoder = [l for l in layers if l["name"].startswith("decoder.")]
    assert encoder and decoder and len(encoder) + len(decoder) == len(layers)
    assert all("entropy" in l for l in layers)
    method = cfg.dropkey["method"]
    ratios = [l["drop_ratio"] for l in encoder]
    if cfg.method_name == "dropkey-dec":
        assert ratios[0] == cfg.dropkey["drop_ratio"] and ratios[-1] == 0.0
        assert decoder[0]["drop_ratio"] == cfg.dropkey["drop_ratio"]  # its own schedule
    assert all(l["method"] == method for l in layers)


def test_train_tool_writes_report_and_rejects_bad_data(stand_in, tmp_path, run_tool):
    cfg = _on_stand_in(Config.fromfile(REPO / "configs/mesh" / EMBEDDED[3]), stand_in,
                       tmp_path / "run")
    cfg.dump(tmp_path / "tiny.py")
    done = run_tool("train.py", tmp_path / "tiny.py", "--work-dir", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    report = read_report(tmp_path / "run/report.json")
    assert report["task"] == "mesh" and report["primary_metric"] == "mesh/pa_mpjpe"
    assert report["metrics"]["mesh/baseline_pa_mpjpe"] > 0

    with np.load(stand_in / "train.npz") as npz:
        data = {k: npz[k] for k in npz.files if k != "shape"}
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "train.npz", **data)
    cfg.train_dataloader.dataset.data_root = str(bad)
    cfg.dump(tmp_path / "bad.py")
    failed = run_tool("train.py", tmp_path / "bad.py", "--work-dir", tmp_path / "bad_run")
    assert failed.returncode == 2
    assert "train.npz: shape: missing" in failed.stderr
    assert not (tmp_path / "bad_run/report.json").exists()
