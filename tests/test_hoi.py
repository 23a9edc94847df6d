"""HOI task: generated data, dataset, QPIC model, configs and runs through the tools."""
import json
import math
import shutil
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from tasks.common import DropKeyHook, get_variant, read_report
from tasks.common.embedded_data import is_complete, prepare_embedded
from tasks.hoi import generate as hoi_data
from tasks.hoi.generate import IMAGE_SIZE, RARE_PAIRS, VERB_ID, generate, split_statistics
from tasks.hoi.hico import COCO_OBJECT_IDS, load_correspondence

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = [f"configs/hoi/qpic-mini_{m}_embedded.py"
            for m in ("none", "attndrop", "dropkey-const", "dropkey-dec", "dropkey-inc")]
PAPER = [f"configs/hoi/qpic-r50_{m}_hico.py" for m in ("none", "dropkey-dec")]
NO_TENSORBOARD = "visualizer.vis_backends=None"  # text logs only: quicker, no TensorBoard


def build_dataset(cfg):
    """Build a dataset (and its mmdet transforms) outside a runner."""
    from mmdet.registry import DATASETS
    import tasks.hoi  # noqa: F401  (registers the dataset)
    with DefaultScope.overwrite_default_scope("mmdet"):
        return DATASETS.build(cfg)


tiny_generate = partial(generate, num_train=8, num_test=4)


@pytest.fixture(scope="module")
def full_data(tmp_path_factory):
    """The embedded data set, generated through the dataset as a config would."""
    root = tmp_path_factory.mktemp("hoi") / "generated"
    dataset = build_dataset(dict(
        type="HicoDetDataset", data_root=str(root), num_verbs=len(VERB_ID),
        generate_if_missing=True, ann_file="annotations/test_hico.json",
        data_prefix=dict(img="images/test2015/"), test_mode=True))
    assert is_complete(root) and len(dataset) == hoi_data.SPLIT_SIZES["test"]
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return prepare_embedded(tmp_path_factory.mktemp("tiny") / "hoi", tiny_generate)


def test_generated_data_has_the_required_shape(full_data):
    stats = split_statistics(full_data)
    assert stats["train"]["images"] >= 600 and stats["test"]["images"] >= 150
    train, test = Counter(stats["train"]["triplets"]), Counter(stats["test"]["triplets"])
    rare = {t for t in test if train[t] < 10}
    assert len(rare) == len(RARE_PAIRS) and len(set(test) - rare) >= 15
    assert all(test[t] >= 1 for t in rare) and len({verb for _, verb in train}) == len(VERB_ID)
    corr = load_correspondence(full_data / "annotations/corre_hico.npy")
    used = {(verb - 1, COCO_OBJECT_IDS.index(obj)) for obj, verb in train | test}
    assert used == set(zip(*np.nonzero(corr)))  # the mask allows exactly the combinations used


def test_generator_is_deterministic(tmp_path, tiny_data):
    again = tiny_generate(tmp_path / "again")
    for name in ("annotations/trainval_hico.json", "annotations/test_hico.json",
                 "images/train2015/HICO_train2015_00000003.jpg"):
        assert (again / name).read_bytes() == (tiny_data / name).read_bytes()
    entries = json.loads((again / "annotations/trainval_hico.json").read_text())
    hoi = entries[0]["hoi_annotation"][0]
    person = entries[0]["annotations"][hoi["subject_id"]]
    assert person["category_id"] == 1 and hoi["category_id"] in VERB_ID.values()


def test_pipeline_keeps_hois_aligned_with_flipped_boxes(tiny_data):
    cfg = Config.fromfile(REPO / EMBEDDED[0])
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = str(tiny_data)
    dataset_cfg.pipeline[2].prob = 1.0  # always flip
    dataset = build_dataset(dataset_cfg)
    raw = dataset.get_data_info(0)
    sample = dataset[0]["data_samples"]
    assert np.array_equal(sample.hoi_triplets, raw["hoi_triplets"])
    boxes = sample.gt_instances.bboxes.tensor
    original = torch.tensor([inst["bbox"] for inst in raw["instances"]], dtype=torch.float32)
    assert torch.allclose(boxes[:, 0], IMAGE_SIZE - original[:, 2]) and sample.flip


def qpic(**overrides):
    """The embedded QPIC, built in mmdet's scope as the Runner of its config builds it."""
    from tasks.hoi.model import QPIC
    cfg = Config.fromfile(REPO / EMBEDDED[0])
    with DefaultScope.overwrite_default_scope("mmdet"):
        return QPIC(**{**{k: v for k, v in cfg.model.items()
                          if k not in ("type", "data_preprocessor")}, **overrides})


def test_matching_pairs_queries_with_their_targets():
    model = qpic()
    target = {"obj_labels": torch.tensor([5, 9]), "verbs": torch.tensor([[1., 0, 0, 0, 0, 0],
                                                                         [0, 0, 1, 1, 0, 0]]),
              "sub_boxes": torch.tensor([[.2, .2, .1, .3], [.7, .7, .1, .3]]),
              "obj_boxes": torch.tensor([[.3, .2, .1, .1], [.8, .8, .2, .1]])}
    out = {"obj_logits": torch.full((16, 81), -5.0), "verb_logits": torch.full((16, 6), -5.0),
           "sub_boxes": torch.full((16, 4), 0.5), "obj_boxes": torch.full((16, 4), 0.5)}
    for query, pair in ((3, 0), (11, 1)):
        out["obj_logits"][query, target["obj_labels"][pair]] = 5.0
        out["verb_logits"][query] = target["verbs"][pair] * 10 - 5
        out["sub_boxes"][query] = target["sub_boxes"][pair]
        out["obj_boxes"][query] = target["obj_boxes"][pair]
    queries, pairs = model._match(out, target)
    assert dict(zip(queries.tolist(), pairs.tolist())) == {3: 0, 11: 1}


def test_generate_command_writes_a_complete_set(tmp_path, monkeypatch, capsys):
    out = tmp_path / "hoi"
    monkeypatch.setattr("sys.argv", ["generate", "--out", str(out), "--train", "3",
                                     "--test", "2"])
    hoi_data.main()
    assert is_complete(out) and "train 3 images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:  # a complete set is left as it is
        hoi_data.main()
    assert done.value.code == 0 and split_statistics(out)["test"]["images"] == 2


def test_predict_rescales_boxes_to_original_pixels():
    """A 160 x 120 image resized by (0.5, 0.25) to 80 x 30; boxes are normalised to 80 x 30."""
    from mmdet.structures import DetDataSample
    model = qpic(num_obj_classes=2, num_verbs=3)
    sample = DetDataSample(metainfo=dict(img_shape=(30, 80), ori_shape=(120, 160),
                                         scale_factor=(0.5, 0.25)))
    outputs = {  # (layers, batch, queries, ...); only the last layer counts
        "obj_logits": torch.tensor([[[[0.0, 0.0, 0.0]]], [[[math.log(3.0), 0.0, 0.0]]]]),
        "verb_logits": torch.tensor([[[[9.0, 9.0, 9.0]]], [[[0.0, 0.0, math.log(3.0)]]]]),
        "sub_boxes": torch.tensor([[[[0.1, 0.1, 0.1, 0.1]]], [[[0.5, 0.5, 0.5, 0.5]]]]),
        "obj_boxes": torch.tensor([[[[0.1, 0.1, 0.1, 0.1]]], [[[0.9, 0.1, 0.4, 0.4]]]]),
    }
    pred = model.predict(outputs, [sample])[0].pred_instances
    # Subject: x 0.25..0.75 of 160 px, y 0.25..0.75 of 120 px.
    torch.testing.assert_close(pred.sub_bboxes, torch.tensor([[40.0, 30.0, 120.0, 90.0]]))
    # Object: x 0.7..1.1 and y -0.1..0.3, clipped to the 160 x 120 image.
    torch.testing.assert_close(pred.obj_bboxes, torch.tensor([[112.0, 0.0, 160.0, 36.0]]))
    # Softmax over (3, 1, 1): object label 0 with 3/5; verb scores sigmoid (1/2, 1/2, 3/4)
    # times the object score.
    assert pred.obj_labels.tolist() == [0]
    torch.testing.assert_close(pred.obj_scores, torch.tensor([0.6]))
    torch.testing.assert_close(pred.verb_scores, torch.tensor([[0.3, 0.3, 0.45]]))


def stand_in(cfg, data_root):
    cfg.work_dir = str(data_root.parent / "work")
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].update(batch_size=2, num_workers=0, persistent_workers=False)
        cfg[loader].dataset.data_root = str(data_root)
        for step in cfg[loader].dataset.pipeline:  # paper-scale resizing, shrunk for the CPU
            if step.type == "RandomChoiceResize":
                step.scales = [(160, 128), (192, 160)]
            elif step.type == "Resize":
                step.scale = (160, 128)
    cfg.val_evaluator.data_root = str(data_root)
    cfg.num_verbs = 6
    cfg.model.num_verbs = 6
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].dataset.num_verbs = 6
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("config", EMBEDDED + PAPER)
def test_configs_build_and_run_one_iteration(config, tiny_data):
    cfg = stand_in(Config.fromfile(REPO / config), Path(tiny_data))
    runner = Runner.from_cfg(cfg)
    next(hook for hook in runner.hooks if isinstance(hook, DropKeyHook)).before_run(runner)
    optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    batch = next(iter(runner.build_dataloader(cfg.train_dataloader)))
    runner.model.train()
    losses = runner.model.train_step(batch, optim_wrapper)
    assert torch.isfinite(losses["loss"]) and "loss_aux" in losses
    runner.model.eval()
    outputs = runner.model.val_step(batch)
    assert outputs[0].pred_instances.verb_scores.shape == (cfg.model.num_queries, 6)

    variant = get_variant(cfg.dropkey.variant)
    layers = {name: module.dropkey for name, module in runner.model.named_modules()
              if hasattr(module, "dropkey")}
    depth = cfg.model.encoder.num_layers
    assert sorted(layers) == sorted(f"{stack}.layers.{i}.self_attn.attn"
                                    for stack in ("encoder", "decoder") for i in range(depth))
    for stack in ("encoder", "decoder"):
        ratios = [layers[f"{stack}.layers.{i}.self_attn.attn"].drop_ratio for i in range(depth)]
        assert {layers[f"{stack}.layers.{i}.self_attn.attn"].method
                for i in range(depth)} == {variant.method}
        if variant.schedule == "linear_decrease":
            assert ratios[0] == pytest.approx(0.1) and ratios[-1] == 0.0
            assert ratios == sorted(ratios, reverse=True)
        elif variant.schedule == "linear_increase":
            assert ratios[0] == 0.0 and ratios[-1] == pytest.approx(0.1)
        else:
            assert ratios == [pytest.approx(variant.drop_ratio)] * depth


@pytest.mark.slow
def test_train_and_test_through_the_tools(run_tool, shortest_epochs, tmp_path):
    config = "configs/hoi/qpic-mini_dropkey-dec_embedded.py"
    work = tmp_path / "run"
    epochs = shortest_epochs(REPO / config)  # warm-up, then at least one epoch of cosine
    quick = [f"train_cfg.max_epochs={epochs}", "train_dataloader.dataset.indices=32",
             "val_dataloader.dataset.indices=20", NO_TENSORBOARD]
    trained = run_tool("train.py", config, "--work-dir", work, "--cfg-options", *quick)
    assert trained.returncode == 0, trained.stderr[-3000:]
    report = read_report(work / "report.json")
    assert report["task"] == "hoi" and report["primary_metric"] == "hoi/default_full"
    metrics = report["metrics"]
    assert {f"hoi/{m}_{s}" for m in ("default", "ko") for s in ("full", "rare", "non_rare")} \
        <= set(metrics)
    assert 0.0 <= metrics["hoi/default_full"] <= 1.0
    names = [layer["name"] for layer in report["attention_layers"]]
    assert len(names) == 6 and all(".self_attn." in name for name in names)
    # no val_interval or checkpoint interval given: the last epoch is evaluated and saved anyway
    tested = run_tool("test.py", config, work / f"epoch_{epochs}.pth", "--work-dir",
                      tmp_path / "test", "--cfg-options", "val_dataloader.dataset.indices=20",
                      NO_TENSORBOARD)
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert read_report(tmp_path / "test/report.json")["metrics"]["hoi/default_full"] == \
        pytest.approx(metrics["hoi/default_full"])


@pytest.mark.slow
def test_missing_image_stops_training_with_a_clear_error(run_tool, tmp_path, tiny_data):
    root = tmp_path / "broken"
    shutil.copytree(tiny_data, root)
    (root / "images/test2015/HICO_test2015_00000002.jpg").unlink()
    options = [f"{key}={root}/" for key in (
        "data_root", "train_dataloader.dataset.data_root", "val_dataloader.dataset.data_root",
        "test_dataloader.dataset.data_root", "val_evaluator.data_root")]
    result = run_tool("train.py", EMBEDDED[3], "--work-dir", tmp_path / "work", "--cfg-options",
                      *options, NO_TENSORBOARD)  # fails while the dataloaders are built
    assert result.returncode == 2, result.stderr[-2000:]
    assert "test_hico.json: [1].file_name: image not found" in result.stderr
    assert not (tmp_path / "work/report.json").exists()
