"""Mesh task: metrics on hand-built cases, the generated body, the SMPL loader, the data files."""
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.spatial.transform import Rotation

from tasks.common import DataFormatError
from tasks.mesh.body_model import (BodyModel, SMPL_PARENTS, generate_body_model, load_smpl_file,
                                   write_body_model)
from tasks.mesh.datasets import MeshDataset, load_spin_npz
from tasks.mesh.generate import generate
from tasks.mesh.metrics import MeshMetric, mpjpe, pa_mpjpe, pve


@pytest.fixture(scope="module")
def body_model():
    return generate_body_model()


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("mesh"), counts={"train": 6, "test": 4})


def _points(n=3, joints=17, seed=0):
    return np.random.default_rng(seed).normal(0.0, 0.3, (n, joints, 3))


# -------------------------------------------------------------------------------------- metrics
def test_identical_inputs_give_zero():
    x = _points()
    assert np.allclose(mpjpe(x, x), 0) and np.allclose(pve(x, x), 0)
    assert np.allclose(pa_mpjpe(x, x), 0, atol=1e-6)


def test_similarity_copy_is_removed_by_procrustes_only():
    x = _points()
    rotation = Rotation.from_euler("xyz", [30, -50, 70], degrees=True).as_matrix()
    y = 1.7 * x @ rotation.T + np.array([0.4, -0.2, 3.0])
    assert np.all(pa_mpjpe(x, y) < 1e-6)
    assert np.all(mpjpe(x, y) > 100)


def test_known_offset_gives_known_error():
    x = _points()
    assert np.allclose(mpjpe(x + [0.03, 0.0, 0.04], x), 50.0)   # 5 cm -> 50 mm
    assert np.allclose(pve(x + [0.0, 0.02, 0.0], x), 20.0)


def test_reflection_is_not_a_rotation():
    x = _points()
    mirrored = x * np.array([-1.0, 1.0, 1.0])
    assert np.all(pa_mpjpe(mirrored, x) > 50)
    # ... while any proper rotation of the mirror image is still not aligned for free:
    turned = mirrored @ Rotation.from_euler("y", 180, degrees=True).as_matrix().T
    assert np.allclose(pa_mpjpe(turned, x), pa_mpjpe(mirrored, x), atol=1e-6)


def test_errors_are_per_sample_and_keep_the_input_kind():
    x = _points(n=4)
    y = x.copy()
    y[2, :, 0] += 0.01
    out = mpjpe(torch.as_tensor(y), torch.as_tensor(x))
    assert torch.is_tensor(out) and out.shape == (4,)
    assert np.allclose(out.numpy(), [0, 0, 10, 0])
    assert isinstance(pa_mpjpe(x, y), np.ndarray)
    with pytest.raises(ValueError, match="shape"):
        mpjpe(x, x[:, :5])


@pytest.mark.parametrize("root, expected", [("pelvis", 20.0), ("mid_hip", 0.0)])
def test_metric_root_alignment_conventions(root, expected):
    gt = torch.as_tensor(_points(n=2), dtype=torch.float32)
    pred = gt + torch.tensor([0.5, 0.1, -0.2])        # a global shift: removed by any root
    pred[:, 0] += torch.tensor([0.0, 0.02, 0.0])      # the H36M pelvis alone is 2 cm off
    samples = [{"pred_joints": pred[i], "gt_joints": gt[i], "pred_vertices": pred[i],
                "gt_vertices": gt[i], "baseline_joints": gt[0]} for i in range(2)]
    metric = MeshMetric(root_alignment=root)
    metric.process({}, samples)
    out = metric.compute_metrics(metric.results)
    assert out["mpjpe"] == pytest.approx(expected, abs=1e-3)
    assert out["baseline_pa_mpjpe"] > 0 and out["pa_mpjpe"] < out["baseline_pa_mpjpe"]
    with pytest.raises(ValueError, match="root_alignment"):
        MeshMetric(root_alignment="neck")


# ---------------------------------------------------------------------------------- body model
def test_generated_body_has_smpl_layout(body_model):
    assert body_model["v_template"].shape == (6890, 3)
    assert body_model["shapedirs"].shape == (6890, 3, 10)
    assert body_model["posedirs"].shape == (6890, 3, 207)
    assert body_model["J_regressor_h36m"].shape == (17, 6890)
    assert np.allclose(body_model["weights"].sum(axis=1), 1)
    assert list(body_model["kintree_table"][1]) == list(range(24))
    assert list(body_model["kintree_table"][0, 1:]) == list(SMPL_PARENTS[1:])
    faces = body_model["f"]
    assert faces.max() == 6889 and np.unique(faces).size == 6890
    # Joints regressed from the template are the skeleton the body was built around.
    assert np.allclose(body_model["J_regressor"] @ body_model["v_template"], body_model["J"])


def test_generated_body_poses_and_shapes_like_a_body(tmp_path, body_model):
    import smplx

    write_body_model(tmp_path)
    assert smplx.SMPL(str(tmp_path)).v_template.shape == (6890, 3)  # smplx reads it unchanged
    body = BodyModel(tmp_path)
    rest = torch.eye(3).repeat(2, 24, 1, 1)
    bent = rest.clone()
    bent[1, 4] = torch.as_tensor(Rotation.from_euler("x", 90, degrees=True).as_matrix())
    out = body(bent, torch.zeros(2, 10))
    moved = (out["vertices"][1] - out["vertices"][0]).norm(dim=-1) > 0.01
    shin = torch.as_tensor(body_model["weights"][:, [4, 7, 10]].sum(1) > 0.5)
    assert moved[shin].float().mean() > 0.9 and moved[~shin].float().mean() < 0.1
    # The left ankle swings backwards (-z) when the left knee bends by +90 degrees about x.
    assert out["joints"][1, 7, 2] < out["joints"][0, 7, 2] - 0.3
    taller = body(rest[:1], torch.tensor([[2.0] + [0.0] * 9]))["vertices"][0]
    height = lambda v: v[:, 1].max() - v[:, 1].min()  # noqa: E731
    assert height(taller) > height(out["vertices"][0]) * 1.05


def _fake_real_smpl_file(path, model):
    """Pickle the model the way SMPL ships it: chumpy arrays and a scipy sparse regressor."""
    module = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x, self._dirty_vars = x, set()

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    module.Ch = Ch
    package = types.ModuleType("chumpy")
    package.ch = module
    sys.modules.update({"chumpy": package, "chumpy.ch": module})
    try:
        data = dict(model, shapedirs=Ch(model["shapedirs"]), v_template=Ch(model["v_template"]),
                    J_regressor=sp.csc_matrix(model["J_regressor"]), bs_style="lbs")
        path.write_bytes(pickle.dumps(data, protocol=2))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_real_smpl_files_load_without_chumpy(tmp_path, body_model):
    model = {k: v for k, v in body_model.items() if k != "J_regressor_h36m"}
    _fake_real_smpl_file(tmp_path / "SMPL_NEUTRAL.pkl", model)
    assert "chumpy" not in sys.modules
    loaded = load_smpl_file(tmp_path / "SMPL_NEUTRAL.pkl")
    for key in ("shapedirs", "v_template", "J_regressor"):
        assert isinstance(loaded[key], np.ndarray) and np.array_equal(loaded[key], model[key])
    np.save(tmp_path / "J_regressor_h36m.npy", body_model["J_regressor_h36m"])
    assert BodyModel(tmp_path)(torch.eye(3).repeat(1, 24, 1, 1),
                               torch.zeros(1, 10))["vertices"].shape == (1, 6890, 3)


def test_smpl_loader_refuses_code_and_bad_layouts(tmp_path, body_model):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"v_template": Exploit()}))
    with pytest.raises(DataFormatError, match="evil.pkl: pickle: .*print is not allowed"):
        load_smpl_file(tmp_path / "evil.pkl")
    broken = {k: v for k, v in body_model.items() if k != "weights"}
    (tmp_path / "broken.pkl").write_bytes(pickle.dumps(broken))
    with pytest.raises(DataFormatError, match="broken.pkl: weights: missing"):
        load_smpl_file(tmp_path / "broken.pkl")


# ---------------------------------------------------------------------------------------- data
def test_generated_set_is_spin_style_and_deterministic(tiny_set, tmp_path):
    data = load_spin_npz(tiny_set / "train.npz")
    assert data["pose"].shape == (6, 72) and data["S"].shape == (6, 24, 4)
    again = generate(tmp_path, counts={"train": 6, "test": 4})
    for split in ("train", "test"):
        with np.load(tiny_set / f"{split}.npz") as a, np.load(again / f"{split}.npz") as b:
            assert all(np.array_equal(a[k], b[k]) for k in a.files)
    item = MeshDataset(str(tiny_set), "test.npz", input_size=64)[1]
    assert item["inputs"].shape == (3, 64, 64) and item["inputs"].dtype == torch.uint8
    keypoints = item["data_samples"]["keypoints2d"]
    assert keypoints.shape == (24, 3) and keypoints[:, :2].abs().max() <= 1.0
    assert keypoints[0, :2].abs().max() < 0.5   # the pelvis is near the middle of the crop
    # The person is in the crop: the centre is brighter than the corners (background).
    image = item["inputs"].float()
    assert image[:, 24:40, 24:40].mean() > image[:, :8, :8].mean() + 20


@pytest.mark.parametrize("change, field", [
    (lambda d: d.pop("pose"), "pose: missing"),
    (lambda d: d.update(shape=np.zeros((6, 9))), "shape: has shape"),
    (lambda d: d.update(scale=-d["scale"]), "scale: must be positive"),
    (lambda d: d.update(gender=np.array(["x"] * 6)), "gender: unknown values"),
    (lambda d: d.update(S=np.zeros((5, 24, 4))), "S: has shape"),
])
def test_bad_annotation_files_name_file_and_key(tiny_set, tmp_path, change, field):
    with np.load(tiny_set / "train.npz") as npz:
        data = {k: npz[k] for k in npz.files}
    change(data)
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(DataFormatError, match=f"bad.npz: {field}"):
        load_spin_npz(tmp_path / "bad.npz")


def test_joint_map_must_match_the_stored_joints(tiny_set):
    with pytest.raises(DataFormatError, match="S: has 24 joints but joint_map has 14"):
        MeshDataset(str(tiny_set), "train.npz", joint_map=list(range(14)))
    mapped = MeshDataset(str(tiny_set), "train.npz", joint_map=[-1] * 23 + [0])[0]
    joints = mapped["data_samples"]["joints3d"]
    assert joints[0, 3] == 1 and joints[1:, 3].abs().sum() == 0
