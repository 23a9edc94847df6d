"""Mesh task: metrics, loss and rotations on hand-built cases, the generated body, the SMPL
loader, the model's body and mean parameters, the data files."""
import math
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.spatial.transform import Rotation

import tasks.mesh.datasets as mesh_datasets
import tasks.mesh.generate as mesh_generate
from tasks.common import DataFormatError
from tasks.common.embedded_data import COMPLETE_MARKER
from tasks.mesh.body_model import SMPL_PARENTS, BodyModel, load_smpl_file
from tasks.mesh.datasets import MeshDataset, load_spin_npz
from tasks.mesh.generate import generate, generated_mean_params, mean_pose
from tasks.mesh.metric import MeshMetric, mpjpe, pa_mpjpe, pve
from tasks.mesh.model import (MeshTransformer, load_mean_params, rot6d_to_rotmat,
                              rotmat_to_rot6d)
from tasks.mesh.procedural_body import (_REST_JOINTS, generate_body_model, generated_body,
                                       write_body_model)

TINY_COUNTS = {"train": 6, "test": 4}
TINY_MODEL = dict(embed_dim=32, num_heads=2, encoder_depth=1, decoder_depth=1)


@pytest.fixture(scope="module")
def body_model():
    return generate_body_model()


@pytest.fixture(scope="module")
def generated_model():
    """The embedded configs' model (generated body, generated mean parameters), made small."""
    return MeshTransformer(**TINY_MODEL)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("mesh"), counts=TINY_COUNTS)


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


# ------------------------------------------------------------------------- rotations and loss
def test_6d_holds_the_first_two_columns_row_by_row():
    matrix = torch.arange(9.0).view(3, 3)
    assert rotmat_to_rot6d(matrix).tolist() == [0.0, 1.0, 3.0, 4.0, 6.0, 7.0]
    # Gram-Schmidt: the first column is normalised, the second loses its part along the first.
    rotation = rot6d_to_rotmat(torch.tensor([2.0, 1.0, 0.0, 1.0, 0.0, 0.0]))
    assert torch.allclose(rotation, torch.eye(3))


def test_rotation_matrix_survives_the_6d_round_trip():
    matrices = torch.as_tensor(Rotation.random(50, random_state=0).as_matrix(), dtype=torch.float32)
    assert torch.allclose(rot6d_to_rotmat(rotmat_to_rot6d(matrices)), matrices, atol=1e-6)


def test_any_6d_vector_gives_a_proper_rotation():
    rotations = rot6d_to_rotmat(torch.randn(200, 6, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), torch.eye(3).expand(200, 3, 3),
                          atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(200), atol=1e-5)


def test_loss_terms_match_hand_computed_values(generated_model):
    """One sample whose every term is off by a known amount; a constant shift of the prediction,
    a zero-confidence joint and an unknown pelvis show where each term looks."""
    joints = torch.zeros(1, 24, 3)
    joints[0, 1, 0] = 0.3                              # one joint 0.3 m off along x
    shift = torch.tensor([0.0, 0.0, 5.0])              # depth only: rooted terms and 2D ignore it
    mesh = {"vertices": torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]) + shift,
            "joints": joints + shift}
    quarter_turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    gt_rotmats = torch.eye(3).repeat(1, 24, 1, 1)
    gt_rotmats[0, 5] = quarter_turn                    # 4 entries off by 1
    gt = {"rotmats": gt_rotmats, "vertices": torch.zeros(1, 2, 3), "joints": torch.zeros(1, 24, 3)}
    joints3d = torch.cat([torch.zeros(1, 24, 3), torch.ones(1, 24, 1)], dim=-1)
    joints3d[0, 2, :3], joints3d[0, 2, 3] = 9.0, 0.0   # unconfident: ignored
    keypoints2d = torch.zeros(1, 24, 3)
    keypoints2d[0, 0, 2] = 1.0                         # only the pelvis is annotated in 2D
    samples = {"joints3d": joints3d, "keypoints2d": keypoints2d, "betas": torch.ones(1, 10)}
    params = {"rotmats": torch.eye(3).repeat(1, 24, 1, 1), "betas": torch.zeros(1, 10),
              "camera": torch.tensor([[2.0, 0.1, -0.1]])}   # scale 2, shift (0.1, -0.1)
    losses = generated_model.loss(params, mesh, gt, samples)     # default weights
    expected = {
        "loss_vertices": 1.0 / 6,               # |1 - 0| over 2 vertices x 3 coordinates
        "loss_joints3d": 0.3 / 72,              # 24 joints x 3, joint 2 masked out
        "loss_keypoints2d": (0.2 + 0.2) / 48,   # pelvis projects to 2 x (0.1, -0.1)
        "loss_pose": 4.0 / 216,                 # 24 rotations x 9 entries
        "loss_betas": 0.01 * 1.0,
    }
    assert {k: v.item() for k, v in losses.items()} == pytest.approx(expected)
    samples["joints3d"][0, 0, 3] = 0.0          # unknown pelvis: no rooted 3D joint is known
    assert generated_model.loss(params, mesh, gt, samples)["loss_joints3d"].item() == 0.0


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
    assert np.allclose(body_model["J_regressor"] @ body_model["v_template"], _REST_JOINTS)


def test_generated_body_poses_and_shapes_like_a_body(tmp_path, body_model):
    import smplx

    write_body_model(tmp_path)
    assert smplx.SMPL(str(tmp_path)).v_template.shape == (6890, 3)  # smplx reads it unchanged
    body = BodyModel.from_dir(tmp_path)
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
    assert BodyModel.from_dir(tmp_path)(torch.eye(3).repeat(1, 24, 1, 1),
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
    # The generated body passes the same checks on its way into the model.
    with pytest.raises(DataFormatError, match="<generated body>: weights: missing"):
        generated_body(broken)
    short = dict(body_model, J_regressor_h36m=body_model["J_regressor_h36m"][:14])
    with pytest.raises(DataFormatError, match=r"<generated body>: J_regressor_h36m: has shape"):
        generated_body(short)


# ------------------------------------------------------------------- the model's body and means
def test_model_defaults_equal_the_generated_body_and_means_read_from_files(tmp_path,
                                                                           generated_model):
    """body_model_dir=None and mean_params=None give what the real-file path gives for the
    generated body written as an SMPL folder and its means written as SPIN's npz."""
    write_body_model(tmp_path / "smpl")
    rotmats, betas = load_mean_params(None)
    np.savez(tmp_path / "smpl_mean_params.npz", pose=rotmat_to_rot6d(rotmats).numpy().ravel(),
             shape=betas.numpy())
    from_files = MeshTransformer(body_model_dir=str(tmp_path / "smpl"),
                                 mean_params=str(tmp_path / "smpl_mean_params.npz"), **TINY_MODEL)
    generated = generated_model.body.state_dict()
    assert generated.keys() == from_files.body.state_dict().keys()
    assert all(torch.equal(value, from_files.body.state_dict()[name])
               for name, value in generated.items())
    assert torch.equal(generated_model.body.h36m_regressor, from_files.body.h36m_regressor)
    assert torch.allclose(generated_model.mean_rot6d, from_files.mean_rot6d, atol=1e-6)
    assert torch.equal(generated_model.mean_betas, from_files.mean_betas)


def test_generated_means_are_those_of_the_training_split(tiny_set, monkeypatch):
    monkeypatch.setitem(mesh_generate.SPLITS, "train", TINY_COUNTS["train"])
    pose, betas = generated_mean_params()
    with np.load(tiny_set / "train.npz") as npz:
        assert np.array_equal(pose, mean_pose(npz["pose"]))
        assert np.array_equal(betas, npz["shape"].mean(axis=0))


def test_mean_pose_averages_rotations_not_axis_angle_vectors():
    poses = np.zeros((2, 72))
    poses[:, 3] = [math.pi - 0.1, -(math.pi - 0.1)]   # joint 1: 0.2 rad apart across a half turn
    poses[:, 8] = [0.2, -0.2]                         # joint 2: 0.2 rad either side of rest
    mean = mean_pose(poses).reshape(24, 3)
    assert np.abs(mean[1]) == pytest.approx([math.pi, 0.0, 0.0], abs=1e-5)  # not the identity
    assert np.abs(np.delete(mean, 1, axis=0)).max() < 1e-6


@pytest.mark.parametrize("arrays, field", [
    (dict(pose=np.zeros(72), shape=np.zeros(10)), "pose: has 72 values, expected 144"),
    (dict(pose=np.zeros(144)), "shape: missing"),
])
def test_bad_mean_params_name_file_and_key(tmp_path, arrays, field):
    np.savez(tmp_path / "means.npz", **arrays)
    with pytest.raises(DataFormatError, match=f"means.npz: {field}"):
        load_mean_params(tmp_path / "means.npz")


# ---------------------------------------------------------------------------------------- data
def test_generated_set_is_spin_style_and_deterministic(tiny_set, tmp_path):
    data = load_spin_npz(tiny_set / "train.npz")
    assert data["pose"].shape == (6, 72) and data["S"].shape == (6, 24, 4)
    again = generate(tmp_path, counts=TINY_COUNTS)
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


def test_dataset_generates_a_missing_set_once_and_only_when_asked(tmp_path, monkeypatch):
    calls = []

    def tiny_generate(out):
        calls.append(out)
        generate(out, counts=TINY_COUNTS)

    monkeypatch.setattr(mesh_datasets, "generate", tiny_generate)
    with pytest.raises(DataFormatError, match="train.npz: annotation file: not found"):
        MeshDataset(str(tmp_path / "mesh"), "train.npz")
    assert not (tmp_path / "mesh").exists()
    assert len(MeshDataset(str(tmp_path / "mesh"), "train.npz", generate_if_missing=True)) == 6
    assert len(MeshDataset(str(tmp_path / "mesh"), "test.npz", generate_if_missing=True)) == 4
    assert len(calls) == 1 and (tmp_path / "mesh" / COMPLETE_MARKER).is_file()


def test_command_line_prepares_the_set_and_writes_the_body_folder(tmp_path, monkeypatch):
    for split, count in TINY_COUNTS.items():
        monkeypatch.setitem(mesh_generate.SPLITS, split, count)
    monkeypatch.setattr(sys, "argv", ["generate", "--out", str(tmp_path / "mesh"),
                                      "--body-model-out", str(tmp_path / "smpl")])
    mesh_generate.main()
    assert (tmp_path / "mesh" / COMPLETE_MARKER).is_file()  # written through prepare_embedded
    assert len(load_spin_npz(tmp_path / "mesh" / "test.npz")["imgname"]) == TINY_COUNTS["test"]
    assert BodyModel.from_dir(tmp_path / "smpl").layers["neutral"].v_template.shape == (6890, 3)
