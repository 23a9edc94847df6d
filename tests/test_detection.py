"""Detection task: generated COCO data, input checks, the ConditionalAttention adapter, and every
detection config trained for one iteration (plus one evaluation) on a tiny generated stand-in."""
import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from dropkey_core import inject_dropkey
from tasks.common import DataFormatError, build_runner, read_report
from tasks.detection import CATEGORIES, CheckedCocoDataset, generate_split
from tasks.detection.generate import SPLIT_SIZES, annotation_path

REPO = Path(__file__).resolve().parents[1]
EMBEDDED_METHODS = ["none", "attndrop", "dropkey-const", "dropkey-dec", "dropkey-inc"]
COCO_METHODS = ["none", "attndrop", "dropkey-dec"]
TINY = 64  # stand-in image side in pixels


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    generate_split(root, "train", 2, image_size=TINY)
    generate_split(root, "val", 2, image_size=TINY)
    return root


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------ the data
def test_generator_is_deterministic_and_writes_valid_coco(tmp_path):
    from pycocotools.coco import COCO

    first = generate_split(tmp_path / "a", "val", 12, image_size=TINY)
    second = generate_split(tmp_path / "b", "val", 12, image_size=TINY)
    assert first.read_bytes() == second.read_bytes()
    image = "val/00011.png"
    assert (tmp_path / "a" / image).read_bytes() == (tmp_path / "b" / image).read_bytes()
    assert first.read_bytes() != generate_split(tmp_path / "c", "train", 12, TINY).read_bytes()
    assert SPLIT_SIZES["train"] >= 600 and SPLIT_SIZES["val"] >= 150

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


def test_dataset_generates_missing_split(tmp_path):
    dataset = build_dataset(tmp_path, generate=dict(split="train", num_images=2, image_size=TINY))
    assert len(dataset) == 2 and annotation_path(tmp_path, "train").is_file()
    boxes = dataset[0]["instances"]
    assert boxes and all(0 <= i["bbox_label"] < 3 for i in boxes)


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


# ------------------------------------------------------------------------------- the adapter
@pytest.mark.parametrize("cross", [False, True])
def test_conditional_attention_adapter_matches_mmdet(cross):
    from mmdet.models.layers.transformer.utils import ConditionalAttention

    torch.manual_seed(0)
    attention = ConditionalAttention(32, 4, cross_attn=cross).eval()
    query, query_pos, ref_sine = torch.randn(3, 2, 5, 32).unbind(0)
    key, key_pos = torch.randn(2, 2, 7, 32).unbind(0)
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, -2:] = True
    inputs = dict(query=query, key=key if cross else query, query_pos=query_pos,
                  ref_sine_embed=ref_sine, key_pos=key_pos if cross else None,
                  key_padding_mask=padding if cross else None, is_first=True)
    expected = attention(**inputs)
    keys = list(attention.state_dict())

    layers = inject_dropkey(attention, 0.3, method="dropkey", schedule="constant")
    assert [l.type for l in layers] == [
        "mmdet.models.layers.transformer.utils.ConditionalAttention"]
    assert list(attention.state_dict()) == keys
    torch.testing.assert_close(attention(**inputs), expected, rtol=1e-5, atol=1e-5)
    attention.train()
    assert not torch.allclose(attention(**inputs), expected, atol=1e-4)


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
        if "generate" in loader.dataset:
            loader.dataset.generate = dict(split=split, num_images=2, image_size=TINY)
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    cfg.val_evaluator.ann_file = f"{root}/annotations/instances_val.json"
    cfg.test_evaluator = copy.deepcopy(cfg.val_evaluator)
    small_pipelines(cfg)
    return cfg


def check_report(report, method, stacks, deformable_cross_attention):
    assert report["method"] == method and report["task"] == "detection"
    names = {f"coco/bbox_{k}" for k in ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "AR@100")}
    names |= {f"coco/{c['name']}_precision" for c in CATEGORIES}
    assert names <= set(report["metrics"]) and report["primary_metric"] == "coco/bbox_mAP"
    assert all(isinstance(v, float) for v in report["metrics"].values())
    untouched = [l for l in report["attention_layers"] if l["method"] == "untouched"]
    layers = [l for l in report["attention_layers"] if l["method"] != "untouched"]
    expected = {"none": "none", "attndrop": "attn_drop"}.get(method, "dropkey")
    assert {l["method"] for l in layers} == {expected}
    for prefix, depth in zip(("encoder.", "decoder."), stacks):
        by_layer = {}
        for layer in layers:
            if layer["name"].startswith(prefix):
                index = int(layer["name"].split(".")[2])
                by_layer.setdefault(index, set()).add(layer["drop_ratio"])
        assert sorted(by_layer) == list(range(depth))
        assert all(len(r) == 1 for r in by_layer.values())  # self- and cross-attention agree
        ratios = [by_layer[i].pop() for i in range(depth)]
        if method.endswith("-dec"):  # each stack has its own schedule: 0.1 -> 0
            assert ratios[0] == pytest.approx(0.1) and ratios[-1] == 0
            assert ratios == sorted(ratios, reverse=True)
        elif method.endswith("-inc"):
            assert ratios[0] == 0 and ratios[-1] == pytest.approx(0.1)
        elif method == "none":
            assert ratios == [0.0] * depth
        else:
            assert ratios == [pytest.approx(0.1)] * depth
    decoder_layer_0 = {l["name"].split(".")[3] for l in layers
                       if l["name"].startswith("decoder.layers.0.")}
    if deformable_cross_attention:  # DINO: reported, left alone
        assert decoder_layer_0 == {"self_attn"}
        assert sorted(l["name"] for l in untouched) == [
            f"decoder.layers.{i}.cross_attn" for i in range(stacks[1])]
    else:
        assert decoder_layer_0 == {"self_attn", "cross_attn"} and not untouched


@pytest.mark.parametrize("config", [f"dino-tiny_{m}_embedded.py" for m in EMBEDDED_METHODS]
                         + [f"detr-r50_{m}_coco.py" for m in COCO_METHODS])
def test_config_trains_one_iteration_and_evaluates(config, tmp_path, tiny_root):
    embedded = config.endswith("_embedded.py")
    root = tmp_path / "generated" if embedded else tiny_root  # embedded configs generate their data
    cfg = tiny_config(config, root, tmp_path / "work")
    runner = build_runner(cfg)
    runner.train()
    report = read_report(tmp_path / "work/report.json")
    assert report["iterations"] == 1
    check_report(report, config.split("_")[1], stacks=(3, 3) if embedded else (6, 6),
                 deformable_cross_attention=embedded)
    # COCO's "large" AP is left out where the generated shapes make it undefined (-1)
    assert ("coco/bbox_mAP_l" in report["metrics"]) != embedded
