"""Mutated annotation files of every format: each load is clean or a DataFormatError.

Hypothesis changes one part of a valid file (a JSON value replaced, deleted or duplicated; an
array replaced by one of another shape or kind; the file's bytes cut or flipped; a folder or an
image removed or broken). Any other exception is a traceback the user would see, and fails the
test. A clean load must satisfy the format's invariants, checked here independently of the
loader, so a bad file that loads (a silent success) fails the test too.
"""
import copy
import json
import math
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tasks.classification.datasets import ImageFolderDataset
from tasks.common.files import DataFormatError, load_json
from tasks.detection.datasets import BOX_TOLERANCE, check_coco_detection
from tasks.hoi.hico import NUM_OBJECT_CLASSES
from tasks.hoi.metric import HoiMetric
from tasks.mesh.body_model import (NUM_VERTICES, SMPL_PARENTS, SMPL_REQUIRED_KEYS,
                                   check_smpl_arrays, load_smpl_file)
from tasks.mesh.datasets import MeshDataset

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-100, 10 ** 12) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=4)


def clean_or_refused(load):
    """``load()``'s result, or None when it raises a DataFormatError (anything else escapes)."""
    try:
        return load()
    except DataFormatError:
        return None


def json_paths(value, prefix=()):
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, child in children:
        yield from json_paths(child, prefix + (key,))


def mutate_json(data, value):
    """One JSON value of ``data`` replaced, deleted or duplicated (drawn by ``value``)."""
    data = copy.deepcopy(data)
    path = value.draw(st.sampled_from(list(json_paths(data))))
    if not path:
        return value.draw(JSON_VALUES)
    *parents, key = path
    container = data
    for step in parents:
        container = container[step]
    action = value.draw(st.sampled_from(["replace", "delete", "duplicate"]))
    if action == "replace":
        container[key] = value.draw(JSON_VALUES)
    elif action == "delete":
        del container[key]
    elif isinstance(container, list):
        container.insert(key, copy.deepcopy(container[key]))
    else:
        container[key + "_"] = copy.deepcopy(container[key])
    return data


def mutate_bytes(content: bytes, value) -> bytes:
    """``content`` cut short, or with a run of bytes overwritten."""
    if value.draw(st.booleans()):
        return content[:value.draw(st.integers(0, len(content) - 1))]
    start = value.draw(st.integers(0, len(content) - 1))
    return content[:start] + value.draw(st.binary(min_size=1, max_size=8)) + content[start + 8:]


def write_image(path, width=20, height=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 20, 200)).save(path)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------------------- COCO
COCO = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10},
                   {"id": 2, "file_name": "b.png", "width": 12, "height": 12}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5],
                         "area": 25, "iscrowd": 0},
                        {"id": 2, "image_id": 2, "category_id": 4, "bbox": [0.5, 2, 11, 3.5],
                         "area": 38.5, "iscrowd": 0}],
        "categories": [{"id": 3, "name": "car"}, {"id": 4, "name": "bus"}]}


def assert_valid_coco(data, image_dir):
    images = {image["id"]: image for image in data["images"]}
    assert len(images) == len(data["images"])
    for image in data["images"]:
        with Image.open(image_dir / image["file_name"]) as opened:
            assert opened.size == (image["width"], image["height"])
    categories = {category["id"] for category in data["categories"]}
    assert len({ann["id"] for ann in data["annotations"]}) == len(data["annotations"])
    for ann in data["annotations"]:
        image = images[ann["image_id"]]
        assert ann["category_id"] in categories and ann["iscrowd"] in (0, 1)
        assert is_number(ann["area"]) and ann["area"] >= 0
        x, y, w, h = ann["bbox"]
        assert all(is_number(v) for v in (x, y, w, h)) and w > 0 and h > 0
        assert x >= -BOX_TOLERANCE and x + w <= image["width"] + BOX_TOLERANCE
        assert y >= -BOX_TOLERANCE and y + h <= image["height"] + BOX_TOLERANCE


@SETTINGS
@given(value=st.data())
def test_mutated_coco_files_load_cleanly_or_are_refused(value):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image(root / "a.png", 20, 10)
        write_image(root / "b.png", 12, 12)
        path = root / "val.json"
        if value.draw(st.integers(0, 4)) == 0:  # sometimes the file's bytes, else its values
            path.write_bytes(mutate_bytes(json.dumps(COCO).encode(), value))
        else:
            path.write_text(json.dumps(mutate_json(COCO, value)))
        try:
            data = load_json(path, "annotations file")
            check_coco_detection(path, data, str(root))
        except DataFormatError:
            return
        assert_valid_coco(data, root)


# --------------------------------------------------------------------------------------- HICO
HICO_ENTRY = {"file_name": "a.png",
              "annotations": [{"bbox": [0, 0, 5, 5], "category_id": 1},
                              {"bbox": [6, 0, 9, 5], "category_id": 47}],
              "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 2}]}
HICO = [HICO_ENTRY, dict(HICO_ENTRY, file_name="b.png")]


def mutate_correspondence(value, path: Path):
    mask = np.ones((3, NUM_OBJECT_CLASSES))
    change = value.draw(st.sampled_from(["none", "shape", "strings", "value", "bytes"]))
    if change == "shape":
        mask = np.ones(value.draw(st.lists(st.integers(0, 81), min_size=0, max_size=3)))
    elif change == "strings":
        mask = mask.astype(str)
    elif change == "value":
        mask[value.draw(st.integers(0, 2)), 5] = value.draw(st.floats())
    np.save(path, mask)
    if change == "bytes":
        path.write_bytes(mutate_bytes(path.read_bytes(), value))


@SETTINGS
@given(value=st.data())
def test_mutated_hico_files_and_correspondence_load_cleanly_or_are_refused(value):
    with tempfile.TemporaryDirectory() as tmp:
        annotations = Path(tmp) / "annotations"
        annotations.mkdir()
        target = value.draw(st.sampled_from(["test_hico.json", "trainval_hico.json", "corr"]))
        for name in ("test_hico.json", "trainval_hico.json"):
            entries = mutate_json(HICO, value) if name == target else HICO
            (annotations / name).write_text(json.dumps(entries))
        np.save(annotations / "corre_hico.npy", np.ones((3, NUM_OBJECT_CLASSES)))
        if target == "corr":
            mutate_correspondence(value, annotations / "corre_hico.npy")
        metric = clean_or_refused(lambda: HoiMetric(data_root=tmp))
        if metric is None:
            return
        mask = metric.correspondence
        assert mask.ndim == 2 and mask.shape[1] == NUM_OBJECT_CLASSES and mask.dtype == bool
        raw = np.load(annotations / "corre_hico.npy")
        assert np.isin(raw, (0, 1)).all()
        for image in metric.ground_truth:
            assert isinstance(image.file_name, str) and image.file_name
            assert np.isfinite(image.boxes).all()
            assert (image.boxes[:, 2:] >= image.boxes[:, :2]).all()
            assert ((0 <= image.labels) & (image.labels < NUM_OBJECT_CLASSES)).all()
            assert ((image.hois[:, :2] >= 0) & (image.hois[:, :2] < len(image.boxes))).all()
            assert ((image.hois[:, 2] >= 0) & (image.hois[:, 2] < mask.shape[0])).all()


# ---------------------------------------------------------------------------------- SPIN npz
SPIN_SHAPES = {"imgname": (2,), "center": (2, 2), "scale": (2,), "pose": (2, 72),
               "shape": (2, 10), "S": (2, 24, 4), "part": (2, 24, 3), "gender": (2,)}


def valid_spin():
    return {"imgname": np.array(["a.png", "b.png"]), "center": np.full((2, 2), 16.0),
            "scale": np.full(2, 0.16), "pose": np.zeros((2, 72)), "shape": np.zeros((2, 10)),
            "S": np.zeros((2, 24, 4)), "part": np.full((2, 24, 3), 8.0),
            "gender": np.array(["m", "f"])}


@SETTINGS
@given(value=st.data())
def test_mutated_spin_npz_files_load_cleanly_or_are_refused(value):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image(root / "a.png", 32, 32)
        write_image(root / "b.png", 32, 32)
        data = valid_spin()
        key = value.draw(st.sampled_from(sorted(data)))
        change = value.draw(st.sampled_from(["delete", "shape", "strings", "numbers", "value",
                                             "bytes"]))
        if change == "delete":
            del data[key]
        elif change == "shape":
            shape = value.draw(st.lists(st.integers(0, 3), max_size=3))
            data[key] = np.zeros(shape, dtype=data[key].dtype)
        elif change == "strings":
            data[key] = data[key].astype(str)
        elif change == "numbers":
            data[key] = np.zeros(data[key].shape)
        elif change == "value" and data[key].dtype.kind == "f":
            data[key].flat[value.draw(st.integers(0, data[key].size - 1))] = value.draw(
                st.floats(min_value=-1e6, max_value=1e6) | st.just(np.nan) | st.just(np.inf))
        np.savez(root / "ann.npz", **data)
        if change == "bytes":
            (root / "ann.npz").write_bytes(mutate_bytes((root / "ann.npz").read_bytes(), value))
        dataset = clean_or_refused(lambda: MeshDataset(tmp, "ann.npz", input_size=16))
        if dataset is None:
            return
        for name, shape in SPIN_SHAPES.items():
            if name in dataset.data:
                assert dataset.data[name].shape == shape
                if name not in ("imgname", "gender"):
                    assert np.isfinite(dataset.data[name]).all()
        assert (dataset.data["scale"] > 0).all()
        for index in range(len(dataset)):
            assert dataset[index]["inputs"].shape == (3, 16, 16)


# ------------------------------------------------------------------------------ SMPL arrays
VALID_SMPL = {key: np.zeros([NUM_VERTICES if s is None else s for s in shape], np.float32)
              for key, shape in SMPL_REQUIRED_KEYS.items()}
VALID_SMPL["shapedirs"] = np.zeros((NUM_VERTICES, 3, 10), np.float32)
VALID_SMPL["kintree_table"] = np.array([[4294967295, *SMPL_PARENTS[1:]], list(range(24))])
VALID_SMPL["f"] = np.array([[0, 1, 2], [3, 4, NUM_VERTICES - 1]])


def assert_valid_smpl(data):
    for key, shape in SMPL_REQUIRED_KEYS.items():
        array = data[key]
        assert array.dtype.kind in "biuf" and array.ndim == len(shape)
        assert all(s is None or s == a for s, a in zip(shape, array.shape))
        assert np.isfinite(array).all()
    parents = data["kintree_table"][0, 1:]
    assert all(0 <= parent < joint for joint, parent in enumerate(parents.tolist(), start=1))
    assert ((data["f"] >= 0) & (data["f"] < NUM_VERTICES)).all()


@SETTINGS
@given(value=st.data())
def test_mutated_smpl_arrays_are_checked_or_refused(value):
    data = dict(VALID_SMPL)
    key = value.draw(st.sampled_from(sorted(data)))
    change = value.draw(st.sampled_from(["delete", "shape", "strings", "entry"]))
    if change == "delete":
        del data[key]
    elif change == "shape":
        data[key] = np.zeros(value.draw(st.lists(st.integers(0, 30), max_size=3)))
    elif change == "strings":
        data[key] = np.zeros((2, 3)).astype(str) if data[key].size > 1000 \
            else data[key].astype(str)
    else:
        data[key] = data[key].copy()
        if data[key].dtype.kind == "f":
            entry = value.draw(st.floats())
        else:
            entry = value.draw(st.integers(-30, NUM_VERTICES + 30))
        with np.errstate(over="ignore"):  # a float64 beyond float32 becomes infinity
            data[key][tuple(value.draw(st.integers(0, n - 1))
                            for n in data[key].shape[:2])] = entry
    checked = clean_or_refused(lambda: check_smpl_arrays(data, "SMPL_NEUTRAL.pkl"))
    if checked is not None:
        assert_valid_smpl(checked)


@SETTINGS
@given(value=st.data())
def test_mutated_smpl_pickles_load_cleanly_or_are_refused(value):
    small = {"v_template": np.zeros((3, 3)), "kintree_table": np.zeros((2, 24), np.int64),
             "f": np.array([[0, 1, 2]]), "bs_style": "lbs"}
    content = pickle.dumps(small, protocol=value.draw(st.integers(2, 5)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "SMPL_NEUTRAL.pkl"
        path.write_bytes(mutate_bytes(content, value))
        # the arrays are too small for SMPL, so any file that unpickles is refused by the checks
        with pytest.raises(DataFormatError, match="SMPL_NEUTRAL.pkl: "):
            load_smpl_file(path)


# ----------------------------------------------------------------------------- class folders
@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    from tasks.classification.generate import generate

    return generate(tmp_path_factory.mktemp("folders") / "digits", size=8, per_class=1)


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
@given(value=st.data())
def test_mutated_class_folders_load_cleanly_or_are_refused(class_folders, value):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "digits"
        shutil.copytree(class_folders, root)
        split = value.draw(st.sampled_from(["train", "val"]))
        folder = root / split / str(value.draw(st.integers(0, 9)))
        image = sorted(folder.iterdir())[0]
        change = value.draw(st.sampled_from(["remove folder", "empty folder", "extra folder",
                                             "image bytes", "image name"]))
        if change == "remove folder":
            shutil.rmtree(folder)
        elif change == "empty folder":
            image.unlink()
        elif change == "extra folder":
            shutil.copytree(folder, folder.with_name("extra"))
        elif change == "image bytes":
            image.write_bytes(mutate_bytes(image.read_bytes(), value))
        else:
            image.rename(image.with_suffix(value.draw(st.sampled_from([".txt", ".jpg", ""]))))
        datasets = clean_or_refused(lambda: [
            ImageFolderDataset(str(root), split=s, image_size=8) for s in ("train", "val")])
        if datasets is None:
            return
        train, val = datasets
        assert train.metainfo["classes"] == val.metainfo["classes"]
        for dataset in datasets:
            for index in range(len(dataset)):
                if clean_or_refused(lambda: dataset[index]) is None:
                    return  # a body broken behind an intact header: refused when read
                assert dataset[index]["inputs"].shape == (3, 8, 8)
