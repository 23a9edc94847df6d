"""Classification task: data split, metric, configs and end-to-end runs through the tools."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

from tasks.classification.datasets import DigitsDataset, ImageFolderDataset, digits_split
from tasks.classification.generate import generate, main as generate_main
from tasks.classification.metric import classification_metrics
from tasks.common import DataFormatError, get_variant, read_report
from tasks.common.embedded_data import COMPLETE_MARKER

from lr_schedules import expected_schedule, lr_per_iteration

REPO = Path(__file__).resolve().parents[1]
METHODS = ["none", "attndrop", "dropkey-const", "dropkey-dec", "dropkey-inc", "dropkey-block"]


def test_digits_split_is_fixed_and_disjoint():
    train_x, train_y = digits_split("train")
    val_x, val_y = digits_split("val")
    assert (len(train_y), len(val_y)) == (1437, 360)
    assert np.bincount(val_y, minlength=10).min() >= 20  # every class is validated
    assert not {x.tobytes() for x in val_x} <= {x.tobytes() for x in train_x}
    assert np.array_equal(digits_split("val")[1], val_y)
    item = DigitsDataset("val")[0]
    assert item["inputs"].shape == (1, 8, 8) and -1 <= item["inputs"].min() <= item["inputs"].max() <= 1


def test_metric_matches_hand_computed_values():
    probs = torch.tensor([
        [0.7, 0.2, 0.1, 0.0, 0.0, 0.0],   # label 0: correct, confidence 0.7
        [0.1, 0.6, 0.3, 0.0, 0.0, 0.0],   # label 2: wrong, confidence 0.6, in top-5
        [0.0, 0.0, 0.0, 0.1, 0.1, 0.8],   # label 5: correct, confidence 0.8
        [0.3, 0.2, 0.15, 0.15, 0.1, 0.1], # label 5: wrong, in top-5? no (6th), confidence 0.3
    ])
    labels = torch.tensor([0, 2, 5, 5])
    m = classification_metrics(probs, labels, num_bins=10)
    assert m["top1"] == pytest.approx(0.5)
    assert m["top5"] == pytest.approx(0.75)
    assert m["nll"] == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.8)
                                       + math.log(0.1)) / 4)
    # Bins (width 0.1): 0.3 -> wrong; 0.6 -> wrong; 0.7 -> right; 0.8 -> right.
    expected_ece = (abs(0 - 0.3) + abs(0 - 0.6) + abs(1 - 0.7) + abs(1 - 0.8)) / 4
    assert m["ece"] == pytest.approx(expected_ece)


@pytest.mark.filterwarnings("ignore:Detected call of `scheduler.step")
def test_max_epochs_alone_shortens_warm_up_and_cosine_consistently(tmp_path):
    for epochs in (60, 12):
        cfg = Config.fromfile(REPO / "configs/classification/vit-mini_dropkey-dec_embedded.py")
        cfg.work_dir, cfg.experiment_name = str(tmp_path / str(epochs)), f"schedule{epochs}"
        cfg.train_cfg.max_epochs = epochs
        cfg.train_dataloader.update(dataset=dict(split="val"), batch_size=360)  # 1 iteration
        assert lr_per_iteration(cfg) == pytest.approx(
            expected_schedule(2e-3, 0.05, 3, 1e-5, epochs))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_embedded_configs_train_their_shortest_schedule(method, tmp_path, shortest_epochs):
    config = REPO / f"configs/classification/vit-mini_{method}_embedded.py"
    cfg = Config.fromfile(config)
    cfg.work_dir = str(tmp_path)
    cfg.experiment_name = method  # in-process runs keep their loggers apart
    cfg.train_cfg.max_epochs = shortest_epochs(config)
    cfg.train_dataloader.dataset.split = "val"  # 12 iterations an epoch: a smoke run
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    Runner.from_cfg(cfg).train()
    report = read_report(tmp_path / "report.json")
    core_method = get_variant(method).method
    assert report["variant"] == method and report["method"] == core_method
    layers = report["attention_layers"]
    assert len(layers) == 6 and all("entropy" in l for l in layers)
    assert {l["method"] for l in layers} == {core_method}
    ratios = [l["drop_ratio"] for l in layers]
    if method.endswith("-dec") or method == "dropkey-block":
        assert ratios[0] == pytest.approx(0.1) and ratios[-1] == 0 and ratios == sorted(ratios)[::-1]
    elif method.endswith("-inc"):
        assert ratios[0] == 0 and ratios[-1] == pytest.approx(0.1)
    elif method == "none":
        assert ratios == [0.0] * 6
    else:
        assert ratios == [pytest.approx(0.1)] * 6
    assert 0 <= report["metrics"]["cls/top1"] <= 1


def test_class_folders_hold_the_digits_split(tmp_path, monkeypatch):
    root = tmp_path / "folders"
    monkeypatch.setattr(sys, "argv", ["generate", "--out", str(root), "--size", "16",
                                      "--per-class", "2"])
    generate_main()
    assert (root / COMPLETE_MARKER).is_file()  # written through prepare_embedded
    for split in ("train", "val"):
        images, labels = digits_split(split)
        folder = ImageFolderDataset(str(root), split=split, image_size=16)
        assert folder.metainfo["classes"] == tuple(str(d) for d in range(10))
        assert len(folder) == 20
        for path, class_index in folder.folder.samples:
            index = int(Path(path).stem)
            assert labels[index] == int(folder.metainfo["classes"][class_index])
            picture = np.asarray(Image.open(path))
            assert picture.shape == (16, 16, 3)  # 8 px digit, each pixel a 2x2 block
            assert np.array_equal(picture[::2, ::2, 0], (images[index] * 255).round())


def tiny_class_folders(root):
    return generate(root, size=32, per_class=1)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["deit-s", "volo-d1"])
@pytest.mark.parametrize("method", ["none", "attndrop", "dropkey-dec"])
def test_imagenet_configs_run_one_iteration(model, method, tmp_path):
    data_root = tiny_class_folders(tmp_path / "data")
    cfg = Config.fromfile(REPO / f"configs/classification/{model}_{method}_imagenet.py")
    cfg.work_dir = str(tmp_path / "work")
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].update(batch_size=2, num_workers=0, persistent_workers=False)
        cfg[loader].dataset.data_root = str(data_root)
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    cfg.experiment_name = f"{model}_{method}"
    runner = Runner.from_cfg(cfg)
    runner.call_hook("before_run")  # what train() does first: DropKeyHook injects the variant
    optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    batch = next(iter(runner.build_dataloader(cfg.train_dataloader)))
    assert batch["inputs"].shape == (2, 3, 224, 224)
    runner.model.train()
    losses = runner.model.train_step(batch, optim_wrapper)
    assert torch.isfinite(losses["loss"])
    runner.model.eval()
    outputs = runner.model.val_step(batch)
    assert len(outputs) == 2 and outputs[0]["probs"].shape == (1000,)
    layers = [l for l in runner.model.modules() if hasattr(l, "dropkey")]
    assert layers and all(l.dropkey.method == get_variant(method).method for l in layers)


def test_image_folder_reports_a_missing_root(tmp_path):
    with pytest.raises(DataFormatError, match="data_root"):
        ImageFolderDataset(str(tmp_path / "nowhere"), split="train")


@pytest.mark.slow
def test_train_resume_and_test_through_the_tools(run_tool, tmp_path, shortest_epochs):
    config = "configs/classification/vit-mini_dropkey-dec_embedded.py"
    epochs = shortest_epochs(REPO / config)
    work = tmp_path / "run"
    common = ["--work-dir", work, "--seed", 3, "--cfg-options", "train_dataloader.dataset.split=val"]
    first = run_tool("train.py", config, *common, f"train_cfg.max_epochs={epochs}",
                     "default_hooks.checkpoint.interval=1")
    assert first.returncode == 0, first.stderr[-3000:]
    report = read_report(work / "report.json")
    assert report["seed"] == 3 and report["epochs"] == epochs and report["mode"] == "train"
    assert report["primary_metric"] == "cls/top1" and report["higher_is_better"] is True
    assert set(report["versions"]) == {"torch", "mmengine", "mmdet", "mmcv", "timm"}
    assert "train/loss" in report["curves"]
    # Resume loads the checkpoint with torch's weights-only unpickler (nothing allow-listed).
    second = run_tool("train.py", config, *common, f"train_cfg.max_epochs={epochs + 1}",
                      "default_hooks.checkpoint.interval=1", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed" in (second.stdout + second.stderr).lower()
    assert read_report(work / "report.json")["epochs"] == epochs + 1
    test_dir = tmp_path / "test"
    tested = run_tool("test.py", config, work / f"epoch_{epochs + 1}.pth", "--work-dir", test_dir)
    assert tested.returncode == 0, tested.stderr[-3000:]
    test_report = read_report(test_dir / "report.json")
    assert test_report["mode"] == "test"
    assert test_report["metrics"]["cls/top1"] == pytest.approx(
        read_report(work / "report.json")["metrics"]["cls/top1"])


@pytest.mark.slow
def test_bad_data_root_exits_nonzero_without_a_report(run_tool, tmp_path):
    result = run_tool("train.py", "configs/classification/deit-s_dropkey-dec_imagenet.py",
                      "--work-dir", tmp_path, "--cfg-options",
                      f"train_dataloader.dataset.data_root={tmp_path / 'missing'}",
                      "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False")
    assert result.returncode == 2
    assert "missing/train: data_root: class-folder directory not found" in result.stderr
    assert not (tmp_path / "report.json").exists()


def test_read_report_names_the_file_and_field(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("{not json")
    with pytest.raises(DataFormatError, match="report.json: line 1"):
        read_report(path)
    path.write_text(json.dumps({"task": "x"}))
    with pytest.raises(DataFormatError, match="config: missing"):
        read_report(path)
