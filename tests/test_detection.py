"""Detection task: generated COCO data, input checks, deformable attention left untouched, and
every detection config trained for one iteration (plus one evaluation) on a tiny generated
stand-in."""
import copy
import json
import shutil
from functools import partial
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from dropkey_core import inject_dropkey
from tasks.common import DataFormatError, get_variant, read_report
from tasks.common.embedded_data import is_complete, prepare_embedded
from tasks.detection import CheckedCocoDataset, CheckedCocoMetric
from tasks.detection import generate as shapes
from tasks.detection.generate import CATEGORIES, annotation_path

REPO = Path(__file__).resolve().parents[1]
EMBEDDED_METHODS = ["none", "attndrop", "dropkey-const", "dropkey-dec", "dropkey-inc"]
COCO_METHODS = ["none", "attndrop", "dropkey-dec"]
TINY = 64  # stand-in image side in pixels
tiny_generate = partial(shapes.generate, num_train=2, num_val=2, image_size=TINY)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return prepare_embedded(tmp_path_factory.mktemp("shapes") / "detection", tiny_generate)


@pytest.fixture
def tiny_generator(monkeypatch):
    """Datasets with ``generate_if_missing`` write the tiny stand-in instead of the full set."""
    monkeypatch.setattr(shapes, "generate", tiny_generate)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------ the data
def test_generator_is_deterministic_and_writes_valid_coco(tmp_path):
    from pycocotools.coco import COCO

    for name in ("a", "b"):
        shapes.generate(tmp_path / name, num_train=12, num_val=12, image_size=TINY)
    first = annotation_path(tmp_path / "a", "val")
    assert first.read_bytes() == annotation_path(tmp_path / "b", "val").read_bytes()
    image = "val/00011.png"
    assert (tmp_path / "a" / image).read_bytes() == (tmp_path / "b" / image).read_bytes()
    # each split draws from its own seed
    assert first.read_bytes() != annotation_path(tmp_path / "a", "train").read_bytes()

    data = json.loads(first.read_text())
    # The COCO detection schema: sections, fields and their types.
    assert {"images", "annotations", "categories"} <= set(data)
    assert len(data["categories"]) >= 3
    assert all(isinstance(c["id"], int) and isinstance(c["name"], str) for c in data["categories"])
    for image in data["images"]:
        assert {"id", "file_name", "width", "height"} <= set(image)
        assert (image["width"], image["height"]) == (TINY, TINY)
        assert (tmp_path / "a/val" / image["file_name"]).is_file()
    category_ids = {c["id"] for c in data["categories"]}
    for ann in data["annotations"]:
        assert {"id", "image_id", "category_id", "bbox", "area", "iscrowd"} <= set(ann)
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= TINY and y + h <= TINY
        assert 0 < ann["area"] <= w * h and ann["category_id"] in category_ids
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])

    coco = COCO(str(first))
    per_image = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert len(per_image) == 12 and min(per_image) >= 1 and max(per_image) <= 6
    sides = [max(a["bbox"][2:]) for a in data["annotations"]]
    assert min(sides) < TINY / 5 and max(sides) > TINY / 3  # several scales
    assert {a["category_id"] for a in data["annotations"]} == category_ids


def build_dataset(root, split="train", **kwargs):
    return CheckedCocoDataset(
        data_root=str(root), ann_file=f"annotations/instances_{split}.json",
        data_prefix=dict(img=f"{split}/"), metainfo=dict(classes=[c["name"] for c in CATEGORIES]),
        pipeline=[], **kwargs)


def test_dataset_generates_the_whole_missing_set(tmp_path, tiny_generator):
    root = tmp_path / "detection"
    dataset = build_dataset(root, generate_if_missing=True)
    assert len(dataset) == 2 and is_complete(root)
    assert annotation_path(root, "val").is_file()  # both splits, before the metric reads val
    boxes = dataset[0]["instances"]
    assert boxes and all(0 <= i["bbox_label"] < 3 for i in boxes)


def test_generate_command_writes_a_complete_set(tmp_path, monkeypatch, capsys):
    out = tmp_path / "detection"
    monkeypatch.setattr("sys.argv", ["generate", "--out", str(out), "--num-train", "2",
                                     "--num-val", "1", "--image-size", str(TINY)])
    shapes.main()
    assert is_complete(out) and len(list((out / "val").iterdir())) == 1
    assert str(annotation_path(out, "train")) in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:  # a complete set is left as it is
        shapes.main()
    assert done.value.code == 0 and len(list((out / "val").iterdir())) == 1


def corrupt(root: Path, change) -> Path:
    path = annotation_path(root, "train")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def _set_box(box):
    def change(data):
        data["annotations"][0]["bbox"] = box
    return change


BAD_INPUTS = {
    "box outside": (_set_box([TINY - 5, 0, 20, 10]), r"annotations\[0\]\.bbox: .* outside"),
    "zero width": (_set_box([1, 1, 0, 10]), r"annotations\[0\]\.bbox: non-positive size"),
    "unknown category": (lambda d: d["annotations"][0].update(category_id=99),
                         r"annotations\[0\]\.category_id: unknown category id 99"),
    "missing field": (lambda d: d["images"][1].pop("width"), r"images\[1\]\.width: missing"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_annotations_name_file_and_field(case, tiny_root, tmp_path):
    change, message = BAD_INPUTS[case]
    root = copy_tree(tiny_root, tmp_path / "data")
    path = corrupt(root, change)
    with pytest.raises(DataFormatError, match=message) as err:
        build_dataset(root)
    assert err.value.path == str(path)


def test_missing_image_and_malformed_json(tiny_root, tmp_path):
    root = copy_tree(tiny_root, tmp_path / "data")
    (root / "train/00001.png").unlink()
    missing = r"images\[1\]\.file_name: image .*00001.png not found"
    with pytest.raises(DataFormatError, match=missing):
        build_dataset(root)
    annotation_path(root, "train").write_text('{"images": [')
    malformed = r"instances_train.json: line 1 column \d+: malformed"
    with pytest.raises(DataFormatError, match=malformed):
        build_dataset(root)


def test_metric_checks_its_annotation_file(tiny_root, tmp_path):
    root = copy_tree(tiny_root, tmp_path / "data")
    ann_file = annotation_path(root, "val")
    assert CheckedCocoMetric(ann_file=str(ann_file), metric="bbox")._coco_api is not None
    data = json.loads(ann_file.read_text())
    data["annotations"][0]["bbox"] = [1, 1, -3, 10]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"instances_val.json: annotations\[0\]\.bbox: "
                                              "non-positive size"):
        CheckedCocoMetric(ann_file=str(ann_file), metric="bbox")
    with pytest.raises(DataFormatError, match="missing.json: annotations file: file not found"):
        CheckedCocoMetric(ann_file=str(root / "missing.json"), metric="bbox")


@pytest.mark.slow
def test_train_tool_rejects_bad_data_without_report(run_tool, tiny_root, tmp_path):
    root = copy_tree(tiny_root, tmp_path / "data")
    corrupt(root, lambda d: d["annotations"][-1].update(category_id=7))
    work_dir = tmp_path / "work"
    config = REPO / "configs/detection/dino-tiny_dropkey-dec_embedded.py"
    result = run_tool("train.py", config, "--work-dir", work_dir, "--cfg-options",
                      f"train_dataloader.dataset.data_root={root}/", timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "instances_train.json" in last and "category_id: unknown category id 7" in last
    assert not (work_dir / "report.json").exists()


# ---------------------------------------------------------------------- deformable attention
def test_deformable_attention_is_reported_untouched():
    from mmdet.models.layers import DeformableDetrTransformerDecoder

    decoder = DeformableDetrTransformerDecoder(num_layers=2, post_norm_cfg=None, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=32, num_heads=4, batch_first=True),
        cross_attn_cfg=dict(embed_dims=32, num_heads=4, num_levels=1, batch_first=True),
        ffn_cfg=dict(embed_dims=32, feedforward_channels=64)))
    layers = {l.name: l for l in inject_dropkey(decoder, 0.2, method="dropkey")}
    assert {n for n, l in layers.items() if l.method == "dropkey"} == {
        "layers.0.self_attn.attn", "layers.1.self_attn.attn"}
    assert {n for n, l in layers.items() if l.method == "untouched"} == {
        "layers.0.cross_attn", "layers.1.cross_attn"}
    assert "no softmax over keys" in layers["layers.0.cross_attn"].note


# -------------------------------------------------------------------------------- the configs
def small_pipelines(cfg):
    """Pipelines at the stand-in's size (the COCO recipe resizes to 800 px)."""
    resize = dict(type="Resize", scale=(TINY, TINY), keep_ratio=True)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        pipeline = loader.dataset.pipeline
        if loader is cfg.train_dataloader:
            pipeline = [dict(type="LoadImageFromFile"),
                        dict(type="LoadAnnotations", with_bbox=True), resize,
                        dict(type="PackDetInputs")]
        loader.dataset.pipeline = [resize if step["type"] == "Resize" else step
                                   for step in pipeline]


def tiny_config(config, root, work_dir):
    cfg = Config.fromfile(REPO / "configs/detection" / config)
    cfg.work_dir = str(work_dir)
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    cfg.train_cfg.max_epochs, cfg.train_cfg.val_interval = 1, 1
    cfg.train_dataloader.batch_size = 2
    cfg.model.backbone.init_cfg = None
    cfg.model.bbox_head.num_classes = len(CATEGORIES)
    for split, loader in (("train", cfg.train_dataloader), ("val", cfg.val_dataloader)):
        loader.num_workers, loader.persistent_workers = 0, False
        loader.dataset.update(data_root=f"{root}/", ann_file=f"annotations/instances_{split}.json",
                              data_prefix=dict(img=f"{split}/"),
                              metainfo=dict(classes=[c["name"] for c in CATEGORIES]))
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    cfg.val_evaluator.ann_file = f"{root}/annotations/instances_val.json"
    cfg.test_evaluator = copy.deepcopy(cfg.val_evaluator)
    small_pipelines(cfg)
    return cfg


def check_report(report, label, stacks, deformable_cross_attention):
    variant = get_variant(label)
    assert report["variant"] == label and report["method"] == variant.method
    assert report["task"] == "detection"
    names = {f"coco/bbox_{k}" for k in ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "AR@100")}
    names |= {f"coco/{c['name']}_precision" for c in CATEGORIES}
    assert names <= set(report["metrics"]) and report["primary_metric"] == "coco/bbox_mAP"
    assert all(isinstance(v, float) for v in report["metrics"].values())
    untouched = [l for l in report["attention_layers"] if l["method"] == "untouched"]
    layers = [l for l in report["attention_layers"] if l["method"] != "untouched"]
    assert {l["method"] for l in layers} == {variant.method}
    for prefix, depth in zip(("encoder.", "decoder."), stacks):
        by_layer = {}
        for layer in layers:
            if layer["name"].startswith(prefix):
                index = int(layer["name"].split(".")[2])
                by_layer.setdefault(index, set()).add(layer["drop_ratio"])
        assert sorted(by_layer) == list(range(depth))
        assert all(len(r) == 1 for r in by_layer.values())  # self- and cross-attention agree
        ratios = [by_layer[i].pop() for i in range(depth)]
        if variant.schedule == "linear_decrease":  # each stack has its own schedule: 0.1 -> 0
            assert ratios[0] == pytest.approx(0.1) and ratios[-1] == 0
            assert ratios == sorted(ratios, reverse=True)
        elif variant.schedule == "linear_increase":
            assert ratios[0] == 0 and ratios[-1] == pytest.approx(0.1)
        else:
            assert ratios == [pytest.approx(variant.drop_ratio)] * depth
    decoder_layer_0 = {l["name"].split(".")[3] for l in layers
                       if l["name"].startswith("decoder.layers.0.")}
    if deformable_cross_attention:  # DINO: reported, left alone
        assert decoder_layer_0 == {"self_attn"}
        assert sorted(l["name"] for l in untouched) == [
            f"decoder.layers.{i}.cross_attn" for i in range(stacks[1])]
    else:
        assert decoder_layer_0 == {"self_attn", "cross_attn"} and not untouched


@pytest.mark.slow
@pytest.mark.parametrize("config", [f"dino-tiny_{m}_embedded.py" for m in EMBEDDED_METHODS
                                    if m != "dropkey-dec"]
                         + [f"detr-r50_{m}_coco.py" for m in COCO_METHODS])
def test_config_trains_one_iteration_and_evaluates(config, tmp_path, tiny_root, tiny_generator):
    embedded = config.endswith("_embedded.py")
    root = tmp_path / "generated" if embedded else tiny_root  # embedded configs generate their data
    cfg = tiny_config(config, root, tmp_path / "work")
    Runner.from_cfg(cfg).train()
    report = read_report(tmp_path / "work/report.json")
    assert report["iterations"] == 1
    check_report(report, config.split("_")[1], stacks=(3, 3) if embedded else (6, 6),
                 deformable_cross_attention=embedded)
    # COCO's "large" AP is left out where the generated shapes make it undefined (-1)
    assert ("coco/bbox_mAP_l" in report["metrics"]) != embedded


@pytest.mark.slow
def test_runner_trains_and_tests_on_a_fresh_data_root(tmp_path, tiny_generator):
    """The data set is generated while the train (or test) dataloader is built, before the
    evaluator reads the val annotation file."""
    config, root = "dino-tiny_dropkey-dec_embedded.py", tmp_path / "generated"
    Runner.from_cfg(tiny_config(config, root, tmp_path / "train")).train()
    trained = read_report(tmp_path / "train/report.json")
    check_report(trained, "dropkey-dec", stacks=(3, 3), deformable_cross_attention=True)

    shutil.rmtree(root)
    cfg = tiny_config(config, root, tmp_path / "test")
    cfg.load_from = str(tmp_path / "train/epoch_1.pth")
    metrics = Runner.from_cfg(cfg).test()
    assert is_complete(root)
    tested = read_report(tmp_path / "test/report.json")
    check_report(tested, "dropkey-dec", stacks=(3, 3), deformable_cross_attention=True)
    assert metrics["coco/bbox_mAP_50"] == pytest.approx(trained["metrics"]["coco/bbox_mAP_50"])
