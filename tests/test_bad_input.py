"""Bad data files and config values: each is one ``DataFormatError`` naming the file and the field,
raised when the data set, the metric or the model is built (before any training), and through the
tools exit code 2 with one line ``error: <file>: <field>: <problem>``, no report and no checkpoint.
"""
import importlib.util
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dropkey_core.hash_mask import HashMask
from dropkey_core.masks import sample_keep_mask
from tasks.classification.datasets import DigitsDataset, ImageFolderDataset
from tasks.classification.generate import generate as generate_class_folders
from tasks.common.checkpoint import check_fits_model
from tasks.common.files import DataFormatError
from tasks.detection.datasets import check_coco_detection
from tasks.hoi.hico import load_correspondence, load_hoi_file
from tasks.hoi.metric import HoiMetric
from tasks.mesh.body_model import (NUM_VERTICES, SMPL_PARENTS, check_smpl_arrays,
                                   load_h36m_regressor, load_smpl_file)
from tasks.mesh.datasets import MeshDataset, load_spin_npz
from tasks.mesh.model import load_mean_params

REPO = Path(__file__).resolve().parents[1]
NO_TENSORBOARD = "visualizer.vis_backends=None"
HICO_VERBS = 3
PERSON, CUP = 1, 47  # COCO ids


def eval_hoi_tool():
    """tools/eval_hoi.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("eval_hoi", REPO / "tools/eval_hoi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_image(path, width=20, height=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 20, 200)).save(path)
    return path


# ------------------------------------------------------------------------------ class folders
@pytest.fixture
def class_folders(tmp_path):
    return generate_class_folders(tmp_path / "folders", size=8, per_class=1)


def test_val_split_missing_a_class_folder_is_refused(class_folders):
    shutil.rmtree(class_folders / "val/3")
    with pytest.raises(DataFormatError, match=r"val: class folders: differ from those of .*"
                                              r"train: missing \['3'\], extra \[\]"):
        ImageFolderDataset(str(class_folders), split="val", image_size=8)
    assert len(ImageFolderDataset(str(class_folders), split="train", image_size=8)) == 10


def test_val_split_with_an_extra_class_folder_is_refused(class_folders):
    shutil.copytree(class_folders / "val/3", class_folders / "val/x")
    with pytest.raises(DataFormatError, match=r"missing \[\], extra \['x'\]"):
        ImageFolderDataset(str(class_folders), split="val", image_size=8)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n broken", b"not an image at all"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_empty_or_corrupt_images_are_refused_when_the_folder_is_built(class_folders, split,
                                                                      content):
    image = next((class_folders / split / "5").iterdir())
    image.write_bytes(content)
    with pytest.raises(DataFormatError, match=f"{split}: image: unreadable image .*{image.name}"):
        ImageFolderDataset(str(class_folders), split=split, image_size=8)


# --------------------------------------------------------------------------------------- COCO
def coco(width=20, height=10):
    return {"images": [{"id": 1, "file_name": "a.png", "width": width, "height": height}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5],
                             "area": 25, "iscrowd": 0}],
            "categories": [{"id": 3, "name": "car"}]}


def test_coco_image_smaller_than_its_entry_is_refused(tmp_path):
    write_image(tmp_path / "a.png", 20, 10)
    check_coco_detection("val.json", coco(20, 10), str(tmp_path))
    with pytest.raises(DataFormatError, match=r"val.json: images\[0\].width/height: 40x10, but "
                                              r"the image a.png is 20x10"):
        check_coco_detection("val.json", coco(40, 10), str(tmp_path))


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff garbage"])
def test_coco_empty_or_corrupt_image_is_refused(tmp_path, content):
    (tmp_path / "a.png").write_bytes(content)
    with pytest.raises(DataFormatError, match=r"val.json: images\[0\].file_name: unreadable"):
        check_coco_detection("val.json", coco(), str(tmp_path))


def test_coco_category_id_given_as_a_list_is_refused():
    data = coco()
    data["annotations"][0]["category_id"] = [3]
    with pytest.raises(DataFormatError, match=r"annotations\[0\].category_id: has type list"):
        check_coco_detection("val.json", data)


# --------------------------------------------------------------------------------------- HICO
def hico_entry(object_id=CUP, verb=1, file_name="a.png"):
    return {"file_name": file_name,
            "annotations": [{"bbox": [0, 0, 5, 5], "category_id": PERSON},
                            {"bbox": [6, 0, 9, 5], "category_id": object_id}],
            "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": verb}]}


def write_hico(root, test_entries=None, train_entries=None, correspondence=None):
    annotations = root / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    (annotations / "test_hico.json").write_text(json.dumps(test_entries or [hico_entry()]))
    (annotations / "trainval_hico.json").write_text(json.dumps(train_entries or [hico_entry()]))
    np.save(annotations / "corre_hico.npy",
            np.ones((HICO_VERBS, 80)) if correspondence is None else correspondence)
    write_image(root / "images/a.png")
    return root


@pytest.mark.parametrize("where", ["annotations", "hoi_annotation"])
def test_hico_category_ids_given_as_lists_are_refused(tmp_path, where):
    entry = hico_entry()
    entry[where][-1]["category_id"] = [entry[where][-1]["category_id"]]
    path = tmp_path / "test_hico.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(DataFormatError, match=rf"test_hico.json: \[0\].{where}\[\d\].category_id:"
                                              r" unknown (object|verb) id \["):
        load_hoi_file(path, HICO_VERBS)


def test_hico_predictions_with_list_category_ids_are_refused(tmp_path):
    evaluate_files = eval_hoi_tool().evaluate_files
    root = write_hico(tmp_path)
    prediction = {"file_name": "a.png",
                  "predictions": [{"bbox": [0, 0, 5, 5], "category_id": PERSON},
                                  {"bbox": [6, 0, 9, 5], "category_id": [CUP]}],
                  "hoi_prediction": [{"subject_id": 0, "object_id": 1, "category_id": 1,
                                      "score": 0.5}]}
    (tmp_path / "pred.json").write_text(json.dumps([prediction]))
    annotations = root / "annotations"
    with pytest.raises(DataFormatError, match=r"pred.json: \[0\].predictions\[1\].category_id: "
                                              r"unknown object id \[47\]"):
        evaluate_files(annotations / "test_hico.json", annotations / "trainval_hico.json",
                       annotations / "corre_hico.npy", tmp_path / "pred.json")


def test_correspondence_with_fewer_verbs_than_the_annotations_stops_the_metric_build(tmp_path):
    root = write_hico(tmp_path, test_entries=[hico_entry(verb=3)],
                      correspondence=np.ones((2, 80)))
    with pytest.raises(DataFormatError, match=r"test_hico.json: \[0\].hoi_annotation\[0\]."
                                              r"category_id: unknown verb id 3 \(expected 1..2, "
                                              r"the verbs of .*corre_hico.npy\)"):
        HoiMetric(data_root=str(root))
    write_hico(tmp_path, test_entries=[hico_entry(verb=2)], train_entries=[hico_entry(verb=3)],
               correspondence=np.ones((2, 80)))
    with pytest.raises(DataFormatError, match="trainval_hico.json: .* unknown verb id 3"):
        HoiMetric(data_root=str(root))
    write_hico(tmp_path, correspondence=np.ones((3, 80)))
    assert HoiMetric(data_root=str(root)).correspondence.shape == (3, 80)


@pytest.mark.parametrize("content, problem", [
    (b"", "correspondence: cannot be read"),
    (b"\x93NUMPY garbage", "correspondence: cannot be read"),
    (np.array([["yes"] * 80] * 3), "correspondence: expected numbers, got an array of <U3"),
    (np.ones((3, 79)), r"correspondence: has shape \(3, 79\), expected \(\*, 80\)"),
    (np.full((3, 80), 0.5), "correspondence: values must be 0 or 1"),
    (np.full((3, 80), np.nan), "correspondence: has non-finite values"),
])
def test_bad_correspondence_files_are_refused(tmp_path, content, problem):
    path = tmp_path / "corre_hico.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    with pytest.raises(DataFormatError, match=f"corre_hico.npy: {problem}"):
        load_correspondence(path)


@pytest.mark.parametrize("content", [b"", b"GIF89a\x01"])
def test_hico_dataset_refuses_an_empty_or_corrupt_image_when_built(tmp_path, content):
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope
    import tasks.hoi  # noqa: F401  (registers the dataset)

    root = write_hico(tmp_path)
    (root / "images/a.png").write_bytes(content)
    with DefaultScope.overwrite_default_scope("mmdet"), pytest.raises(
            DataFormatError, match=r"test_hico.json: \[0\].file_name: unreadable image"):
        DATASETS.build(dict(type="HicoDetDataset", data_root=str(root), num_verbs=HICO_VERBS,
                            ann_file="annotations/test_hico.json", data_prefix=dict(img="images/"),
                            test_mode=True, pipeline=[]))


def test_eval_hoi_writes_null_not_nan_when_no_triplet_is_non_rare(tmp_path, monkeypatch, capsys):
    eval_hoi = eval_hoi_tool()
    root = write_hico(tmp_path)  # one training instance of the one triplet: it is rare
    prediction = {"file_name": "a.png", "predictions": hico_entry()["annotations"],
                  "hoi_prediction": [{"subject_id": 0, "object_id": 1, "category_id": 1,
                                      "score": 0.5}]}
    (tmp_path / "pred.json").write_text(json.dumps([prediction]))
    annotations, out = root / "annotations", tmp_path / "metrics.json"
    monkeypatch.setattr("sys.argv", [
        "eval_hoi.py", "--gt", str(annotations / "test_hico.json"),
        "--train", str(annotations / "trainval_hico.json"),
        "--corr", str(annotations / "corre_hico.npy"), "--pred", str(tmp_path / "pred.json"),
        "--out", str(out)])
    eval_hoi.main()
    printed = capsys.readouterr().out
    assert "Non-rare n/a" in printed and "mAP_non_rare: no triplet to average over" in printed
    metrics = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(name))
    assert metrics["mAP_non_rare"] is None and metrics["mAP_rare"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------- mesh
def write_spin(root, count=2, **changes):
    """A valid SPIN npz of ``count`` samples, with its images, changed by ``changes``."""
    names = [f"img{i}.png" for i in range(count)]
    for name in names:
        write_image(root / name, 32, 32)
    data = {"imgname": np.array(names), "center": np.full((count, 2), 16.0),
            "scale": np.full(count, 0.16), "pose": np.zeros((count, 72)),
            "shape": np.zeros((count, 10))}
    data.update(changes)
    np.savez(root / "ann.npz", **data)
    return root / "ann.npz"


@pytest.mark.parametrize("changes, problem", [
    (dict(pose=np.array([["0.1"] * 72] * 2)), "pose: expected numbers, got an array of <U3"),
    (dict(center=np.array([[1.0, np.inf]] * 2)), "center: has non-finite values"),
    (dict(imgname=np.array("img0.png")), r"imgname: has shape \(\), expected \(N\)"),
    (dict(imgname=np.array([1, 2])), "imgname: expected strings, got int64"),
    (dict(gender=np.array([0, 1])), "gender: expected strings"),
])
def test_spin_arrays_of_the_wrong_kind_are_refused(tmp_path, changes, problem):
    path = write_spin(tmp_path, **changes)
    with pytest.raises(DataFormatError, match=f"ann.npz: {problem}"):
        load_spin_npz(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip"])
def test_empty_or_corrupt_npz_is_refused(tmp_path, content):
    (tmp_path / "ann.npz").write_bytes(content)
    with pytest.raises(DataFormatError, match="ann.npz: annotation file: cannot be read"):
        load_spin_npz(tmp_path / "ann.npz")
    with pytest.raises(DataFormatError, match="ann.npz: mean_params: cannot be read"):
        load_mean_params(str(tmp_path / "ann.npz"))


def test_mesh_dataset_refuses_an_empty_image_when_built(tmp_path):
    write_spin(tmp_path)
    MeshDataset(str(tmp_path), "ann.npz")
    (tmp_path / "img1.png").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"ann.npz: imgname\[1\]: unreadable image"):
        MeshDataset(str(tmp_path), "ann.npz")


@pytest.mark.parametrize("joint_map, problem", [
    ([0] * 23 + [24], "expected a list of SMPL joint indices"),
    ("0123", "expected a list"),
    ([0, 0] + [-1] * 22, "names an SMPL joint twice"),
])
def test_bad_joint_maps_are_refused(tmp_path, joint_map, problem):
    write_spin(tmp_path, S=np.zeros((2, 24, 4)))
    with pytest.raises(DataFormatError, match=f"<config>: joint_map: {problem}"):
        MeshDataset(str(tmp_path), "ann.npz", joint_map=joint_map)


def test_mean_params_of_strings_are_refused(tmp_path):
    np.savez(tmp_path / "mean.npz", pose=np.array(["x"] * 144), shape=np.zeros(10))
    with pytest.raises(DataFormatError, match="mean.npz: pose: expected numbers"):
        load_mean_params(str(tmp_path / "mean.npz"))


def smpl_arrays(**changes):
    """Arrays with SMPL's layout (values are irrelevant to the checks)."""
    data = {"v_template": np.zeros((NUM_VERTICES, 3)), "shapedirs": np.zeros((NUM_VERTICES, 3, 10)),
            "posedirs": np.zeros((NUM_VERTICES, 3, 207), np.float32),
            "J_regressor": np.zeros((24, NUM_VERTICES)), "weights": np.zeros((NUM_VERTICES, 24)),
            "kintree_table": np.array([[4294967295, *SMPL_PARENTS[1:]], list(range(24))]),
            "f": np.array([[0, 1, 2], [2, 3, NUM_VERTICES - 1]])}
    data.update(changes)
    return data


def test_smpl_kintree_parents_out_of_range_are_refused():
    check_smpl_arrays(smpl_arrays(), "SMPL_NEUTRAL.pkl")
    for parent in (24, -1, 5):  # joint 5's parent must be one of the joints 0..4
        table = smpl_arrays()["kintree_table"]
        table[0, 5] = parent
        with pytest.raises(DataFormatError, match=f"SMPL_NEUTRAL.pkl: kintree_table: joint 5 has "
                                                  f"parent {parent}; a parent must be a joint"):
            check_smpl_arrays(smpl_arrays(kintree_table=table), "SMPL_NEUTRAL.pkl")


@pytest.mark.parametrize("changes, problem", [
    (dict(f=np.array([[0, 1, NUM_VERTICES]])), "f: face indices must be vertex indices"),
    (dict(v_template=np.full((NUM_VERTICES, 3), "0")), "v_template: expected numbers"),
    (dict(weights=np.full((NUM_VERTICES, 24), np.nan)), "weights: has non-finite values"),
    (dict(shapedirs=[[1, 2], [3]]), "shapedirs: not an array"),
])
def test_smpl_arrays_of_the_wrong_kind_are_refused(changes, problem):
    with pytest.raises(DataFormatError, match=f"SMPL_NEUTRAL.pkl: {problem}"):
        check_smpl_arrays(smpl_arrays(**changes), "SMPL_NEUTRAL.pkl")


@pytest.mark.parametrize("content", [b"", b"\x80\x02}q\x00(X", pickle.dumps([1, 2])[:-1],
                                     b"\x80\x02cnumpy\nndarray\nq\x00)\x81q\x01."])
def test_empty_or_corrupt_smpl_pickles_are_refused(tmp_path, content):
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=r"SMPL_NEUTRAL.pkl: (pickle|<root>): "):
        load_smpl_file(path)


@pytest.mark.parametrize("content", [b"", np.array(["a"] * 3)])
def test_empty_or_string_h36m_regressor_is_refused(tmp_path, content):
    path = tmp_path / "J_regressor_h36m.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    with pytest.raises(DataFormatError, match="J_regressor_h36m.npy: J_regressor_h36m: "
                                              "(cannot be read|expected numbers)"):
        load_h36m_regressor(path)


# ------------------------------------------------------------------------------ config values
@pytest.mark.parametrize("build, field", [
    (lambda root: DigitsDataset(split="test"), "dataset.split: digits split must be"),
    (lambda root: DigitsDataset(max_shift=-1), r"dataset.max_shift: expected an integer >= 0"),
    (lambda root: ImageFolderDataset(str(root / "folders"), image_size=0),
     r"dataset.image_size: expected an integer >= 1, got 0"),
    (lambda root: MeshDataset(str(root), "ann.npz", input_size=16.5),
     r"dataset.input_size: expected an integer >= 1, got 16.5"),
    (lambda root: MeshDataset(str(root), "ann.npz", scale_jitter=float("nan")),
     r"dataset.scale_jitter: expected a number >= 0 and < 1, got nan"),
    (lambda root: MeshDataset(str(root), "ann.npz", shift_jitter="0.1"),
     r"dataset.shift_jitter: expected a number >= 0 and < 1, got '0.1'"),
    (lambda root: HoiMetric(data_root=str(write_hico(root)), max_hois=0),
     r"val_evaluator.max_hois: expected an integer >= 1, got 0"),
])
def test_bad_dataset_and_metric_settings_are_refused(tmp_path, build, field):
    generate_class_folders(tmp_path / "folders", size=8, per_class=1)
    write_spin(tmp_path)
    with pytest.raises(DataFormatError, match=f"<config>: {field}"):
        build(tmp_path)


def test_bad_hico_num_verbs_is_refused(tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope
    import tasks.hoi  # noqa: F401  (registers the dataset)

    root = write_hico(tmp_path)
    with DefaultScope.overwrite_default_scope("mmdet"), pytest.raises(
            DataFormatError, match=r"<config>: dataset.num_verbs: expected an integer >= 1"):
        DATASETS.build(dict(type="HicoDetDataset", data_root=str(root), num_verbs=True,
                            ann_file="annotations/test_hico.json", data_prefix=dict(img="images/"),
                            test_mode=True, pipeline=[]))


# ----------------------------------------------------------------------------------- extreme p
SHAPE = (2, 2, 64, 256)  # 65536 entries


def dropped_fractions(drop_ratio):
    generator = torch.Generator().manual_seed(0)
    reference = 1 - sample_keep_mask(SHAPE, drop_ratio, generator=generator).float().mean()
    hashed = 1 - HashMask(12345, drop_ratio).keep_mask(SHAPE).float().mean()
    return reference.item(), hashed.item()


@pytest.mark.parametrize("drop_ratio", [1 - 2 ** -17, 1 - 2 ** -18, 1 - 1e-9, 1.0])
def test_both_samplers_drop_everything_at_ratios_that_quantise_to_one(drop_ratio):
    assert dropped_fractions(drop_ratio) == (1.0, 1.0)


@pytest.mark.parametrize("drop_ratio", [0.0, 2 ** -18, 1e-9])
def test_both_samplers_keep_everything_at_ratios_that_quantise_to_zero(drop_ratio):
    assert dropped_fractions(drop_ratio) == (0.0, 0.0)


def test_samplers_agree_just_below_the_top_quantisation_step():
    # p = 1 - 2**-10: 64 of 65536 entries kept on average (binomial sd 8) by both samplers
    kept = [round((1 - fraction) * 65536) for fraction in dropped_fractions(1 - 2 ** -10)]
    assert all(24 <= k <= 104 for k in kept), kept


# --------------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_that_does_not_fit_the_model_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    check_fits_model({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
                     model, "fits.pth")
    other = torch.nn.Sequential(torch.nn.Linear(4, 2)).state_dict()
    with pytest.raises(DataFormatError, match=r"other.pth: state_dict: does not fit the model of "
                                              r"the config: 5 missing keys \(e.g. 1.bias\), 1 keys "
                                              r"of another shape \(e.g. 0.weight\)"):
        check_fits_model({"state_dict": other}, model, "other.pth")
    with pytest.raises(DataFormatError, match=r"1 unexpected keys \(e.g. head.weight\)"):
        check_fits_model({"state_dict": {**model.state_dict(), "head.weight": torch.zeros(1)}},
                         model, "extra.pth")


# ------------------------------------------------------------------------- through the tools
def assert_refused(result, work_dir, message):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert lines[-1].startswith("error: ") and message in lines[-1], lines[-3:]
    assert "Traceback" not in result.stderr
    assert not (work_dir / "report.json").exists() and not list(work_dir.glob("**/*.pth"))


@pytest.mark.slow
def test_test_tool_refuses_another_models_checkpoint(run_tool, tmp_path):
    checkpoint = tmp_path / "detector.pth"
    torch.save({"meta": {}, "state_dict": {"backbone.conv1.weight": torch.zeros(8, 3, 7, 7),
                                           "bbox_head.fc_cls.bias": torch.zeros(81)}}, checkpoint)
    work = tmp_path / "work"
    result = run_tool("test.py", "configs/classification/vit-mini_none_embedded.py", checkpoint,
                      "--work-dir", work, "--cfg-options", NO_TENSORBOARD)
    assert_refused(result, work, "detector.pth: state_dict: does not fit the model of the config"
                                 ": ")
    assert "2 unexpected keys (e.g. backbone.conv1.weight)" in result.stderr


@pytest.mark.slow
def test_train_tool_refuses_a_val_split_missing_a_class_folder(run_tool, tmp_path):
    root = generate_class_folders(tmp_path / "folders", size=8, per_class=1)
    shutil.rmtree(root / "val/7")
    work = tmp_path / "work"
    options = [f"{loader}.{key}" for loader in ("train_dataloader", "val_dataloader",
                                                "test_dataloader")
               for key in (f"dataset.data_root={root}", "num_workers=0",
                           "persistent_workers=False")]
    result = run_tool("train.py", "configs/classification/deit-s_none_imagenet.py",
                      "--work-dir", work, "--cfg-options", *options, NO_TENSORBOARD)
    assert_refused(result, work, "val: class folders: differ from those of")


@pytest.mark.slow
def test_train_tool_refuses_a_short_correspondence_before_training(run_tool, tmp_path):
    from tasks.common.embedded_data import prepare_embedded
    from tasks.hoi.generate import generate

    root = prepare_embedded(tmp_path / "hoi", lambda out: generate(out, num_train=8, num_test=4))
    corr = root / "annotations/corre_hico.npy"
    np.save(corr, np.load(corr)[:2])
    work = tmp_path / "work"
    options = [f"{key}={root}/" for key in (
        "data_root", "train_dataloader.dataset.data_root", "val_dataloader.dataset.data_root",
        "test_dataloader.dataset.data_root", "val_evaluator.data_root")]
    result = run_tool("train.py", "configs/hoi/qpic-mini_none_embedded.py", "--work-dir", work,
                      "--cfg-options", *options, NO_TENSORBOARD)
    assert_refused(result, work, "unknown verb id")
    assert "the verbs of" in result.stderr and "Epoch(train)" not in result.stderr


@pytest.mark.slow
def test_train_tool_refuses_a_validation_image_smaller_than_its_entry(run_tool, tmp_path):
    from tasks.common.embedded_data import prepare_embedded
    from tasks.detection.generate import generate

    root = prepare_embedded(tmp_path / "shapes",
                            lambda out: generate(out, num_train=2, num_val=2, image_size=64))
    image = json.loads((root / "annotations/instances_val.json").read_text())["images"][1]
    write_image(root / "val" / image["file_name"], 32, 32)
    work = tmp_path / "work"
    options = [f"{key}={root}/" for key in ("train_dataloader.dataset.data_root",
                                            "val_dataloader.dataset.data_root",
                                            "test_dataloader.dataset.data_root")]
    result = run_tool("train.py", "configs/detection/dino-tiny_none_embedded.py", "--work-dir",
                      work, "--cfg-options", *options,
                      f"val_evaluator.ann_file={root}/annotations/instances_val.json",
                      f"test_evaluator.ann_file={root}/annotations/instances_val.json",
                      NO_TENSORBOARD)
    assert_refused(result, work, "instances_val.json: images[1].width/height: 64x64, but the "
                                 f"image {image['file_name']} is 32x32")


def tool_arguments(config, *cfg_options):
    """The arguments tools/train.py parses for CONFIG [--cfg-options ...]."""
    import argparse

    from tasks.common.cli import add_common_arguments
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    add_common_arguments(parser)
    return parser.parse_args([str(config), "--work-dir", "unused",
                              *(["--cfg-options", *cfg_options] if cfg_options else [])])


@pytest.mark.parametrize("make, cfg_options, field", [
    (lambda d: d / "missing.py", (), "config: file not found"),
    (lambda d: (d / "broken.py").write_text("x = [\n") and d / "broken.py", (),
     "line 1: invalid Python"),
    (lambda d: REPO / "configs/classification/vit-mini_none_embedded.py",
     ("train_cfg.max_epochs=0",), "train_cfg.max_epochs: 0 is not a positive whole number"),
    (lambda d: REPO / "configs/classification/vit-mini_none_embedded.py",
     ("train_cfg.max_epochs=2.5",), "train_cfg.max_epochs: 2.5 is not a positive whole number"),
])
def test_config_errors_are_one_line_before_any_runner(tmp_path, make, cfg_options, field):
    from tasks.common.cli import load_config
    config = make(tmp_path)
    with pytest.raises(DataFormatError, match=field) as err:
        load_config(tool_arguments(config, *cfg_options))
    assert err.value.path == str(config)
