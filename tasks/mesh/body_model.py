"""SMPL body models: SMPL's layout and its checks, a chumpy-free loader of real SMPL ``.pkl``
files, and the decoder that turns SMPL parameters into vertices and joints.

Real SMPL files and the generated body (:mod:`tasks.mesh.procedural_body`) pass the same checks
(:func:`check_smpl_arrays`, :func:`check_h36m_regressor`) before :class:`BodyModel` uses them.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch
import torch.nn as nn

from tasks.common.files import DataFormatError, load_arrays, numeric_array

NUM_VERTICES = 6890
SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand")
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# Human3.6M's 17 evaluation joints, in the order of the usual J_regressor_h36m.npy.
H36M_JOINT_NAMES = (
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "spine", "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist",
    "right_shoulder", "right_elbow", "right_wrist")
SMPL_REQUIRED_KEYS = {
    "v_template": (NUM_VERTICES, 3), "shapedirs": (NUM_VERTICES, 3, None),
    "posedirs": (NUM_VERTICES, 3, 207), "J_regressor": (24, NUM_VERTICES),
    "weights": (NUM_VERTICES, 24), "kintree_table": (2, 24), "f": (None, 3),
}
H36M_REGRESSOR_NAME = "J_regressor_h36m.npy"
GENDER_FILES = {"neutral": "SMPL_NEUTRAL.pkl", "male": "SMPL_MALE.pkl", "female": "SMPL_FEMALE.pkl"}


# ------------------------------------------------------------------------- chumpy-free loading
class _ChumpyArray:
    """Stands in for ``chumpy.Ch`` while unpickling; its state holds the array as ``x``."""

    def __setstate__(self, state):
        self.state = state


class _SparseMatrix:
    """Stands in for scipy's compressed sparse matrices of any scipy version while unpickling."""

    kind = "csc_matrix"

    def __setstate__(self, state):
        self.state = state


_SPARSE_STAND_INS = {name: type(f"_{name}", (_SparseMatrix,), {"kind": name})
                     for name in ("csc_matrix", "csr_matrix")}


_NUMPY_ARRAY_MODULE = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
_SAFE_GLOBALS = {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
                 ("__builtin__", "object"), ("builtins", "object"),
                 ("__builtin__", "set"), ("builtins", "set"),
                 ("_codecs", "encode")}  # protocol-2 pickles written by Python 3 encode bytes


class SMPLUnpickler(pickle.Unpickler):
    """Unpickles SMPL model files with numpy only: chumpy and scipy.sparse classes become
    stand-ins and any other global is refused, so no code from the file runs."""

    def find_class(self, module, name):
        if module.startswith("chumpy"):
            return _ChumpyArray
        if module.startswith("scipy.sparse") and name in _SPARSE_STAND_INS:
            return _SPARSE_STAND_INS[name]
        if module.split(".")[0] == "numpy":
            if name in ("_reconstruct", "scalar"):
                return super().find_class(_NUMPY_ARRAY_MODULE, name)
            if name in ("ndarray", "dtype"):
                return getattr(np, name)
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in an SMPL file")


def _plain(value, path, key):
    if isinstance(value, _ChumpyArray):
        if not isinstance(value.state, dict) or "x" not in value.state:
            raise DataFormatError(path, key, "chumpy expression without a stored array")
        return np.asarray(value.state["x"])
    if isinstance(value, _SparseMatrix):
        import scipy.sparse as sp
        state = value.state
        try:
            matrix = getattr(sp, value.kind)((state["data"], state["indices"], state["indptr"]),
                                             shape=state["_shape"])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise DataFormatError(path, key, f"malformed sparse matrix: {err!r}") from None
        return matrix.toarray()
    return value


def check_smpl_arrays(data: dict, source) -> dict:
    """``data`` with its required arrays as numpy arrays, if it has SMPL's layout: the shapes of
    :data:`SMPL_REQUIRED_KEYS` holding finite numbers, at least 10 shape components, a
    kinematic tree in which every joint's parent precedes it (the root's is ignored, as smplx
    does) and faces indexing the vertices; otherwise a DataFormatError naming ``source`` and
    the key."""
    if not isinstance(data, dict):
        raise DataFormatError(source, "<root>", f"expected a dict, got {type(data).__name__}")
    for key, shape in SMPL_REQUIRED_KEYS.items():
        if key not in data:
            raise DataFormatError(source, key, "missing")
    data = {**data, **{key: numeric_array(data[key], source, key, shape)
                       for key, shape in SMPL_REQUIRED_KEYS.items()}}
    if data["shapedirs"].shape[-1] < 10:
        raise DataFormatError(source, "shapedirs", "needs at least 10 shape components")
    parents = data["kintree_table"][0, 1:]
    bad = np.flatnonzero((parents < 0) | (parents >= np.arange(1, len(parents) + 1))
                         | (parents != np.round(parents)))
    if bad.size:
        joint = int(bad[0]) + 1
        raise DataFormatError(source, "kintree_table", f"joint {joint} has parent "
                              f"{data['kintree_table'][0, joint].item()}; a parent must be a joint "
                              f"in 0..{joint - 1}")
    faces = data["f"]
    if ((faces < 0) | (faces >= NUM_VERTICES) | (faces != np.round(faces))).any():
        raise DataFormatError(source, "f", f"face indices must be vertex indices in "
                              f"0..{NUM_VERTICES - 1}")
    return data


def check_h36m_regressor(regressor: np.ndarray, source) -> np.ndarray:
    return numeric_array(regressor, source, "J_regressor_h36m", (17, NUM_VERTICES))


def load_smpl_file(path) -> dict:
    """Read a real or generated SMPL ``.pkl`` into plain numpy arrays and check its layout."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "model file", "not found (SMPL model files are licensed: "
                              "download them from smpl.is.tue.mpg.de into the model folder)")
    with open(path, "rb") as f:
        try:
            raw = SMPLUnpickler(f, encoding="latin1").load()
        except Exception as err:  # noqa: BLE001 - any byte string reaches the unpickler, and
            # its opcodes fail in many ways (EOFError, KeyError, struct.error, ...); none runs code
            raise DataFormatError(path, "pickle", f"not a readable SMPL pickle: "
                                  f"{err or type(err).__name__}") from None
    if not isinstance(raw, dict):
        raise DataFormatError(path, "<root>", f"expected a dict, got {type(raw).__name__}")
    return check_smpl_arrays({key: _plain(value, path, key) for key, value in raw.items()}, path)


def load_h36m_regressor(path) -> np.ndarray:
    return check_h36m_regressor(load_arrays(path, "J_regressor_h36m", npz=False)[""], path)


# ------------------------------------------------------------------------------------ decoding
GENDERS = ("neutral", "male", "female")


class BodyModel(nn.Module):
    """smplx's SMPL layer(s) of one body plus the H36M evaluation regressor.

    ``smpl`` maps a gender of :data:`GENDERS` to SMPL arrays checked by :func:`check_smpl_arrays`
    (``neutral`` is required; ``male`` and ``female`` serve gendered ground truth, as 3DPW's
    evaluation does); ``h36m_regressor`` (17, 6890) is checked by :func:`check_h36m_regressor`.
    smplx builds its layers from the arrays unchanged, so real SMPL files need no chumpy.
    """

    def __init__(self, smpl: Mapping[str, dict], h36m_regressor: np.ndarray):
        import smplx
        from smplx.utils import Struct

        super().__init__()
        unknown = set(smpl) - set(GENDERS)
        if "neutral" not in smpl or unknown:
            raise ValueError(f"body model genders {sorted(smpl)}: need neutral, may have "
                             f"male and female")
        self.layers = nn.ModuleDict({  # smplx reads model_path only when given no data_struct
            gender: smplx.SMPLLayer(model_path=None, data_struct=Struct(**smpl[gender]),
                                    gender=gender, num_betas=10)
            for gender in GENDERS if gender in smpl})
        self.register_buffer("h36m_regressor",
                             torch.as_tensor(h36m_regressor, dtype=torch.float32),
                             persistent=False)

    @classmethod
    def from_dir(cls, model_dir) -> "BodyModel":
        """The body of a folder with ``SMPL_NEUTRAL.pkl`` (required), optionally
        ``SMPL_MALE.pkl`` and ``SMPL_FEMALE.pkl``, and ``J_regressor_h36m.npy``."""
        model_dir = Path(model_dir)
        smpl = {gender: load_smpl_file(model_dir / GENDER_FILES[gender]) for gender in GENDERS
                if gender == "neutral" or (model_dir / GENDER_FILES[gender]).is_file()}
        return cls(smpl, load_h36m_regressor(model_dir / H36M_REGRESSOR_NAME))

    def forward(self, rotmats: torch.Tensor, betas: torch.Tensor,
                genders: Optional[torch.Tensor] = None) -> dict:
        """Vertices (B, 6890, 3), SMPL joints (B, 24, 3) and H36M joints (B, 17, 3).

        ``rotmats`` (B, 24, 3, 3) holds the global orientation and the 23 body rotations;
        ``genders`` (B,) indexes :data:`GENDERS` (neutral where that model is missing).
        """
        vertices, joints = self._decode(self.layers["neutral"], rotmats, betas)
        if genders is not None:
            for index, gender in enumerate(GENDERS[1:], start=1):
                chosen = genders == index
                if gender in self.layers and chosen.any():
                    vertices[chosen], joints[chosen] = self._decode(
                        self.layers[gender], rotmats[chosen], betas[chosen])
        h36m = torch.einsum("jv,bvc->bjc", self.h36m_regressor, vertices)
        return {"vertices": vertices, "joints": joints, "h36m_joints": h36m}

    @staticmethod
    def _decode(layer, rotmats, betas):
        out = layer(betas=betas, global_orient=rotmats[:, :1], body_pose=rotmats[:, 1:])
        return out.vertices, out.joints[:, :24]
