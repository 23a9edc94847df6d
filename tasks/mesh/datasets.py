"""SPIN-style preprocessed mesh-recovery data (3DPW, Human3.6M, or the generated set).

An annotation file is an npz with, for N samples:

* ``imgname`` (N,) image paths relative to ``img_prefix``;
* ``center`` (N, 2) person box centre in pixels and ``scale`` (N,) box side / 200 px;
* ``pose`` (N, 72) SMPL axis-angle pose (global orientation in the camera frame first) and
  ``shape`` (N, 10) SMPL betas;
* optional ``S`` (N, K, 4) 3D joints in metres with confidence, ``part`` (N, K, 3) 2D joints in
  pixels with confidence, and ``gender`` (N,) ``m``/``f``/``n``.

``S`` and ``part`` are in SMPL's 24-joint order unless ``joint_map`` says, for each of their K
joints, which SMPL joint it is (``-1``: not an SMPL joint, ignored).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from tasks.common.embedded_data import prepare_embedded
from tasks.common.files import (DataFormatError, check_setting, load_arrays, numeric_array,
                                read_image_size)

from .generate import generate

GENDER_CODES = {"n": 0, "neutral": 0, "m": 1, "male": 1, "f": 2, "female": 2}
REQUIRED_KEYS = {"imgname": (), "center": (2,), "scale": (), "pose": (72,), "shape": (10,)}
OPTIONAL_KEYS = {"S": (None, 4), "part": (None, 3), "gender": ()}


def load_spin_npz(path) -> dict:
    """Read and validate a SPIN-style npz; errors name the file and the key."""
    path = Path(path)
    data = load_arrays(path, "annotation file", npz=True)
    for key in REQUIRED_KEYS:
        if key not in data:
            raise DataFormatError(path, key, "missing")
    specs = {**REQUIRED_KEYS, **{k: v for k, v in OPTIONAL_KEYS.items() if k in data}}
    count = len(data["imgname"]) if data["imgname"].ndim == 1 else -1
    if count == 0:
        raise DataFormatError(path, "imgname", "no samples")
    for key, tail in specs.items():
        shape = data[key].shape
        if len(shape) != 1 + len(tail) or shape[0] != count or any(
                t is not None and t != s for t, s in zip(tail, shape[1:])):
            wanted = ", ".join(["N"] + ["K" if t is None else str(t) for t in tail])
            raise DataFormatError(path, key, f"has shape {shape}, expected ({wanted}) with N the "
                                  "number of imgname entries")
        if key in ("imgname", "gender"):
            if data[key].dtype.kind != "U":
                raise DataFormatError(path, key, f"expected strings, got {data[key].dtype}")
        else:
            numeric_array(data[key], path, key)
    if (data["scale"] <= 0).any():
        raise DataFormatError(path, "scale", "must be positive")
    if "gender" in data:
        unknown = set(np.unique(data["gender"]).tolist()) - set(GENDER_CODES)
        if unknown:
            raise DataFormatError(path, "gender", f"unknown values {sorted(unknown)}; "
                                  f"expected one of {sorted(GENDER_CODES)}")
    return data


def crop_matrix(center: np.ndarray, box: float, size: int) -> np.ndarray:
    """The 2x3 affine map from image pixels to a ``size`` crop of the ``box``-wide square."""
    zoom = size / box
    return np.array([[zoom, 0.0, size / 2 - zoom * center[0]],
                     [0.0, zoom, size / 2 - zoom * center[1]]], dtype=np.float64)


@DATASETS.register_module()
class MeshDataset(Dataset):
    """Crops of the person, SMPL targets and joints in SMPL order.

    Items are ``{"inputs": (3, S, S) uint8, "data_samples": {...}}`` where the sample holds
    ``pose`` (72), ``betas`` (10), ``gender`` (index into ``GENDERS``), ``joints3d`` (24, 4)
    camera-frame metres with confidence and ``keypoints2d`` (24, 3) in crop coordinates scaled to
    [-1, 1] with confidence. Training crops jitter the box (``scale_jitter``, ``shift_jitter``,
    fractions of its side), which changes no 3D target.

    Every image header is read when the data set is built, so a missing or broken image
    stops the run before training. ``generate_if_missing=True`` writes the generated data set
    (:mod:`tasks.mesh.generate`) to ``data_root`` first unless a complete one is there.
    """

    def __init__(self, data_root: str, ann_file: str, img_prefix: str = "", input_size: int = 64,
                 joint_map: Optional[Sequence[int]] = None, scale_jitter: float = 0.0,
                 shift_jitter: float = 0.0, generate_if_missing: bool = False):
        check_setting("dataset.input_size", input_size, integer=True, minimum=1)
        for name, jitter in (("scale_jitter", scale_jitter), ("shift_jitter", shift_jitter)):
            check_setting(f"dataset.{name}", jitter, minimum=0, below=1)
        root = Path(data_root)
        if generate_if_missing:
            prepare_embedded(root, generate)
        self.ann_path = root / ann_file
        self.data = load_spin_npz(self.ann_path)
        self.img_root = root / img_prefix
        checked = set()  # video frames hold several people: each image is checked once
        for index, name in enumerate(self.data["imgname"].tolist()):
            if name not in checked:
                read_image_size(self.img_root / name, self.ann_path, f"imgname[{index}]")
                checked.add(name)
        self.input_size = input_size
        self.scale_jitter, self.shift_jitter = scale_jitter, shift_jitter
        self.joint_map = self._check_joint_map(joint_map)

    def _check_joint_map(self, joint_map):
        if joint_map is not None:
            values = list(joint_map) if isinstance(joint_map, (list, tuple)) else None
            if values is None or not all(isinstance(v, int) and not isinstance(v, bool)
                                         and -1 <= v < 24 for v in values):
                raise DataFormatError("<config>", "joint_map", f"expected a list of SMPL joint "
                                      f"indices 0..23 or -1, got {joint_map!r}")
            known = [v for v in values if v >= 0]
            if len(set(known)) != len(known):
                raise DataFormatError("<config>", "joint_map", "names an SMPL joint twice")
        for key in ("S", "part"):
            if key not in self.data:
                continue
            count = self.data[key].shape[1]
            if joint_map is None and count != 24:
                raise DataFormatError(self.ann_path, key, f"has {count} joints: give joint_map "
                                      "to say which SMPL joint each one is")
            if joint_map is not None and len(joint_map) != count:
                raise DataFormatError(self.ann_path, key, f"has {count} joints but joint_map "
                                      f"has {len(joint_map)} entries")
        return None if joint_map is None else np.asarray(joint_map, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.data["imgname"])

    def _to_smpl_order(self, joints: np.ndarray) -> np.ndarray:
        if self.joint_map is None:
            return joints.astype(np.float32)
        out = np.zeros((24, joints.shape[1]), dtype=np.float32)
        known = self.joint_map >= 0
        out[self.joint_map[known]] = joints[known]
        return out

    def __getitem__(self, index: int) -> dict:
        path = self.img_root / str(self.data["imgname"][index])
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataFormatError(self.ann_path, f"imgname[{index}]", f"cannot read {path}")
        box = 200.0 * float(self.data["scale"][index])
        center = self.data["center"][index].astype(np.float64)
        if self.scale_jitter or self.shift_jitter:
            box *= 1.0 + np.random.uniform(-self.scale_jitter, self.scale_jitter)
            center = center + np.random.uniform(-self.shift_jitter, self.shift_jitter, 2) * box
        matrix = crop_matrix(center, box, self.input_size)
        crop = cv2.warpAffine(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), matrix,
                              (self.input_size, self.input_size), flags=cv2.INTER_LINEAR)

        keypoints = np.zeros((24, 3), dtype=np.float32)
        if "part" in self.data:
            keypoints = self._to_smpl_order(self.data["part"][index])
            keypoints[:, :2] = (keypoints[:, :2] @ matrix[:, :2].T + matrix[:, 2]) \
                / self.input_size * 2.0 - 1.0
        joints3d = (self._to_smpl_order(self.data["S"][index]) if "S" in self.data
                    else np.zeros((24, 4), dtype=np.float32))
        gender = GENDER_CODES[str(self.data["gender"][index])] if "gender" in self.data else 0
        sample = {
            "pose": torch.as_tensor(self.data["pose"][index], dtype=torch.float32),
            "betas": torch.as_tensor(self.data["shape"][index], dtype=torch.float32),
            "gender": gender,
            "joints3d": torch.from_numpy(joints3d),
            "keypoints2d": torch.from_numpy(keypoints),
        }
        return {"inputs": torch.from_numpy(crop).permute(2, 0, 1).contiguous(),
                "data_samples": sample}
