"""The generated body: a procedural stand-in for SMPL in SMPL's layout, needing no licence.

A set of closed tubes (torso, head, limbs, hands, feet) around a 24-joint SMPL skeleton, with
SMPL's 6890 vertices (smplx's extra joints index vertices up to 6787), linear blend skinning
weights, shape blend shapes (finite differences of the body builder along ten measurements),
pose blend shapes (joints bulge when they bend), a joint regressor whose rows average the vertex
ring around each joint, and a 17-joint H36M-style evaluation regressor. It passes the checks of
a real SMPL file (:mod:`tasks.mesh.body_model`), and written to disk smplx loads it unchanged.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from tasks.common.files import write_atomic

from .body_model import (GENDER_FILES, H36M_REGRESSOR_NAME, NUM_VERTICES, SMPL_PARENTS, BodyModel,
                         check_h36m_regressor, check_smpl_arrays)

GENERATED_BODY = "<generated body>"  # names the generated body in DataFormatErrors

# Rest pose in SMPL's frame (metres): x to the body's left, y up, z forward; arms out (T-pose).
_REST_JOINTS = np.array([
    [0.00, 0.00, 0.00], [0.09, -0.08, 0.00], [-0.09, -0.08, 0.00], [0.00, 0.11, -0.01],
    [0.10, -0.48, 0.01], [-0.10, -0.48, 0.01], [0.00, 0.24, -0.01], [0.10, -0.88, -0.02],
    [-0.10, -0.88, -0.02], [0.00, 0.31, -0.01], [0.11, -0.93, 0.11], [-0.11, -0.93, 0.11],
    [0.00, 0.51, -0.01], [0.07, 0.43, -0.01], [-0.07, 0.43, -0.01], [0.00, 0.60, 0.02],
    [0.17, 0.45, -0.01], [-0.17, 0.45, -0.01], [0.43, 0.45, -0.01], [-0.43, 0.45, -0.01],
    [0.67, 0.45, -0.01], [-0.67, 0.45, -0.01], [0.76, 0.45, -0.01], [-0.76, 0.45, -0.01],
])
_MIRROR = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22)


@dataclass
class Key:
    """A station along a tube's axis: its centre, cross-section radii and skinning weights.

    ``at`` is ``(joint_a, joint_b, t)``: the point ``J[a] + t (J[b] - J[a])`` (t may exceed 1);
    ``offset`` is added in metres. ``joint`` marks the station whose vertex ring defines that
    joint in the regressor.
    """
    at: tuple
    radii: tuple
    weights: Dict[int, float]
    offset: tuple = (0.0, 0.0, 0.0)
    joint: Optional[int] = None


@dataclass
class Tube:
    name: str
    group: str          # torso, head or limb: which shape parameters scale its radii
    around: int         # vertices per ring
    rings: tuple        # rings between consecutive keys (the first key's ring included)
    side: tuple         # direction of the first cross-section radius
    keys: list = field(default_factory=list)


def _left_tubes() -> list[Tube]:
    return [
        Tube("left_thigh", "limb", 20, (26,), (1, 0, 0), [
            Key((1, 4, 0.0), (0.080, 0.085), {0: 0.25, 1: 0.75}, joint=1),
            Key((1, 4, 1.0), (0.055, 0.058), {1: 0.5, 4: 0.5}, joint=4)]),
        Tube("left_shin", "limb", 18, (26,), (1, 0, 0), [
            Key((4, 7, 0.0), (0.054, 0.056), {1: 0.4, 4: 0.6}),
            Key((4, 7, 1.0), (0.038, 0.040), {4: 0.6, 7: 0.4}, joint=7)]),
        Tube("left_foot", "limb", 14, (5, 6), (1, 0, 0), [
            Key((7, 10, 0.0), (0.040, 0.036), {4: 0.3, 7: 0.7}),
            Key((7, 10, 1.0), (0.045, 0.025), {7: 0.5, 10: 0.5}, joint=10),
            Key((7, 10, 1.0), (0.035, 0.018), {10: 1.0}, offset=(0.0, -0.015, 0.08))]),
        Tube("left_shoulder", "limb", 16, (8,), (0, 0, 1), [
            Key((13, 16, 0.0), (0.050, 0.060), {9: 0.5, 13: 0.5}, joint=13),
            Key((13, 16, 1.0), (0.055, 0.055), {13: 0.5, 16: 0.5}, joint=16)]),
        Tube("left_upper_arm", "limb", 16, (20,), (0, 0, 1), [
            Key((16, 18, 0.0), (0.050, 0.050), {13: 0.3, 16: 0.7}),
            Key((16, 18, 1.0), (0.038, 0.038), {16: 0.5, 18: 0.5}, joint=18)]),
        Tube("left_forearm", "limb", 14, (20,), (0, 0, 1), [
            Key((18, 20, 0.0), (0.038, 0.038), {16: 0.4, 18: 0.6}),
            Key((18, 20, 1.0), (0.028, 0.025), {18: 0.6, 20: 0.4}, joint=20)]),
        Tube("left_hand", "limb", 12, (5, 5), (0, 0, 1), [
            Key((20, 22, 0.0), (0.028, 0.020), {18: 0.3, 20: 0.7}),
            Key((20, 22, 1.0), (0.040, 0.015), {20: 0.5, 22: 0.5}, joint=22),
            Key((20, 22, 2.0), (0.030, 0.012), {22: 1.0})]),
    ]


def _mirrored(tube: Tube) -> Tube:
    keys = [Key((_MIRROR[k.at[0]], _MIRROR[k.at[1]], k.at[2]), k.radii,
                {_MIRROR[j]: w for j, w in k.weights.items()},
                (-k.offset[0], k.offset[1], k.offset[2]),
                None if k.joint is None else _MIRROR[k.joint]) for k in tube.keys]
    return Tube(tube.name.replace("left", "right"), tube.group, tube.around, tube.rings,
                tube.side, keys)


def _tubes() -> list[Tube]:
    torso = Tube("torso", "torso", 54, (5, 7, 7, 4, 7, 5), (1, 0, 0), [
        Key((0, 0, 0.0), (0.130, 0.095), {0: 1.0}, offset=(0.0, -0.09, 0.0)),
        Key((0, 0, 0.0), (0.160, 0.110), {0: 1.0}, joint=0),
        Key((3, 3, 0.0), (0.145, 0.105), {0: 0.3, 3: 0.7}, joint=3),
        Key((6, 6, 0.0), (0.150, 0.110), {3: 0.3, 6: 0.7}, joint=6),
        Key((9, 9, 0.0), (0.165, 0.110), {6: 0.3, 9: 0.7}, joint=9),
        Key((9, 12, 0.6), (0.170, 0.095), {9: 0.8, 12: 0.2}),
        Key((12, 12, 0.0), (0.055, 0.050), {9: 0.3, 12: 0.7}, joint=12)])
    head = Tube("head", "head", 34, (5, 5, 6, 4), (1, 0, 0), [
        Key((12, 15, 0.0), (0.050, 0.050), {12: 0.8, 15: 0.2}),
        Key((12, 15, 0.5), (0.070, 0.080), {12: 0.3, 15: 0.7}),
        Key((15, 15, 0.0), (0.085, 0.100), {15: 1.0}, joint=15),
        Key((15, 15, 0.0), (0.085, 0.095), {15: 1.0}, offset=(0.0, 0.08, 0.0)),
        Key((15, 15, 0.0), (0.050, 0.055), {15: 1.0}, offset=(0.0, 0.14, 0.0))])
    left = _left_tubes()
    return [torso, head, *left, *[_mirrored(t) for t in left]]


# Shape parameters: one measurement each, applied to the rest joints and the tube radii.
_LEG = [4, 5, 7, 8, 10, 11]
_UPPER = [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]
_ARM = [18, 19, 20, 21, 22, 23]


def _shaped_skeleton(betas: np.ndarray):
    """Joints and per-group radius scales of the body with measurements ``betas`` (10,)."""
    b = np.asarray(betas, dtype=np.float64)
    joints = _REST_JOINTS.copy()
    joints[_LEG, 1] = joints[1, 1] + (joints[_LEG, 1] - joints[1, 1]) * (1 + 0.06 * b[2])
    for side in (16, 17):
        arm = [j for j in _ARM if np.sign(joints[j, 0]) == np.sign(joints[side, 0])]
        joints[arm, 0] = joints[side, 0] + (joints[arm, 0] - joints[side, 0]) * (1 + 0.06 * b[3])
    joints[[6, 9] + _UPPER, 1] *= 1 + 0.05 * b[4]
    joints[_UPPER[1:], 0] += np.sign(joints[_UPPER[1:], 0]) * 0.015 * b[5]
    joints[[1, 2] + _LEG, 0] += np.sign(joints[[1, 2] + _LEG, 0]) * 0.012 * b[7]
    joints *= 1 + 0.05 * b[0]
    scales = {"torso": np.array([1 + 0.03 * b[0] + 0.10 * b[1], 1 + 0.03 * b[0] + 0.10 * b[1]
                                 + 0.08 * b[6]]),
              "head": np.full(2, 1 + 0.03 * b[0] + 0.08 * b[8]),
              "limb": np.full(2, 1 + 0.03 * b[0] + 0.08 * b[1] + 0.12 * b[9])}
    return joints, scales


def _frame(direction: np.ndarray, side: np.ndarray):
    direction = direction / np.linalg.norm(direction)
    first = side - side @ direction * direction
    first /= np.linalg.norm(first)
    return first, np.cross(direction, first)


def _build_tube(tube: Tube, joints: np.ndarray, scales: dict):
    """Vertices, faces (local indices), per-vertex skinning weights and ring bookkeeping."""
    centres = [joints[a] + t * (joints[b] - joints[a]) + np.array(off)
               for (a, b, t), off in ((k.at, k.offset) for k in tube.keys)]
    side = np.array(tube.side, dtype=np.float64)
    angles = 2 * np.pi * np.arange(tube.around) / tube.around
    ring_vertices, ring_weights, key_ring = [], [], {}
    for seg, count in enumerate(tube.rings):
        k0, k1 = tube.keys[seg], tube.keys[seg + 1]
        direction = centres[seg + 1] - centres[seg]
        last = seg == len(tube.rings) - 1
        for step in range(count + 1 if last else count):
            s = step / count
            centre = (1 - s) * centres[seg] + s * centres[seg + 1]
            radii = ((1 - s) * np.array(k0.radii) + s * np.array(k1.radii)) * scales[tube.group]
            first, second = _frame(direction, side)
            ring = (centre + np.cos(angles)[:, None] * radii[0] * first
                    + np.sin(angles)[:, None] * radii[1] * second)
            weights = np.zeros(24)
            for j, w in k0.weights.items():
                weights[j] += (1 - s) * w
            for j, w in k1.weights.items():
                weights[j] += s * w
            if step == 0:
                key_ring[seg] = len(ring_vertices)
            if last and step == count:
                key_ring[seg + 1] = len(ring_vertices)
            ring_vertices.append(ring)
            ring_weights.append(weights)
    rings = np.stack(ring_vertices)                                    # (R, A, 3)
    num_rings, around = rings.shape[:2]
    axis_start = centres[1] - centres[0]
    axis_end = centres[-1] - centres[-2]
    cap_start = centres[0] - axis_start / np.linalg.norm(axis_start) * 0.5 * min(tube.keys[0].radii)
    cap_end = centres[-1] + axis_end / np.linalg.norm(axis_end) * 0.5 * min(tube.keys[-1].radii)
    vertices = np.concatenate([rings.reshape(-1, 3), cap_start[None], cap_end[None]])
    weights = np.concatenate([np.repeat(np.stack(ring_weights), around, axis=0),
                              ring_weights[0][None], ring_weights[-1][None]])

    idx = np.arange(num_rings * around).reshape(num_rings, around)
    nxt = np.roll(idx, -1, axis=1)
    a, b, c, d = idx[:-1], nxt[:-1], idx[1:], nxt[1:]
    faces = [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)]
    start, end = num_rings * around, num_rings * around + 1
    faces.append(np.stack([np.full(around, start), nxt[0], idx[0]], -1))
    faces.append(np.stack([np.full(around, end), idx[-1], nxt[-1]], -1))
    return vertices, np.concatenate(faces), weights, key_ring, around


def _build_body(betas: np.ndarray):
    """All tubes of the body with measurements ``betas``: vertices, faces, weights, rings."""
    joints, scales = _shaped_skeleton(betas)
    vertices, faces, weights, rings, offset = [], [], [], {}, 0
    for tube in _tubes():
        v, f, w, key_ring, around = _build_tube(tube, joints, scales)
        for key_index, ring in key_ring.items():
            rings[tube.name, key_index] = offset + ring * around + np.arange(around)
        vertices.append(v)
        faces.append(f + offset)
        weights.append(w)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(faces), np.concatenate(weights), rings


def _regressor(rows: list, num_vertices: int) -> np.ndarray:
    """Rows that average the given vertex sets (each a list of index arrays)."""
    out = np.zeros((len(rows), num_vertices))
    for r, sets in enumerate(rows):
        for indices in sets:
            out[r, indices] += 1.0 / (len(sets) * len(indices))
    return out


def generate_body_model() -> dict:
    """The generated body in SMPL's pickle layout, plus ``J_regressor_h36m`` (17, 6890); the
    arrays are the caller's own copies."""
    return {key: value.copy() for key, value in _build_body_model().items()}


@lru_cache(maxsize=1)
def _build_body_model() -> dict:
    """The body, built once per process: building takes seconds, and one run may need it for
    its model and for its data set."""
    vertices, faces, weights, rings = _build_body(np.zeros(10))
    if len(vertices) != NUM_VERTICES:
        raise AssertionError(f"generated body has {len(vertices)} vertices, not {NUM_VERTICES}")
    shapedirs = np.stack([_build_body(np.eye(10)[i])[0] - vertices for i in range(10)], axis=-1)

    joint_rings = {}
    for tube in _tubes():
        for index, key in enumerate(tube.keys):
            if key.joint is not None:
                joint_rings[key.joint] = rings[tube.name, index]
    j_regressor = _regressor([[joint_rings[j]] for j in range(24)], NUM_VERTICES)

    # Pose blend shapes: vertices shared by a joint and its parent bulge outwards by
    # 1 cm x (3 - trace R_j) x mix, where trace R_j - 3 is the sum of the diagonal pose features.
    centre = weights @ (j_regressor @ vertices)
    radial = vertices - centre
    radial /= np.linalg.norm(radial, axis=1, keepdims=True) + 1e-9
    posedirs = np.zeros((NUM_VERTICES, 3, 207))
    for j in range(1, 24):
        mix = 4 * weights[:, j] * (1 - weights[:, j])
        for diagonal in (0, 4, 8):
            posedirs[:, :, (j - 1) * 9 + diagonal] = -0.01 * mix[:, None] * radial

    hip = {side: rings[f"{side}_thigh", 0] for side in ("left", "right")}
    h36m_sets = [
        [hip["left"], hip["right"]], [hip["right"]], [joint_rings[5]], [joint_rings[8]],
        [hip["left"]], [joint_rings[4]], [joint_rings[7]], [rings["torso", 3]],
        [rings["torso", 5]], [joint_rings[15]], [rings["head", 3]],
        [joint_rings[16]], [joint_rings[18]], [joint_rings[20]],
        [joint_rings[17]], [joint_rings[19]], [joint_rings[21]]]
    kintree = np.stack([np.array(SMPL_PARENTS), np.arange(24)]).astype(np.int64)
    kintree[0, 0] = 4294967295  # SMPL files store the root's parent as uint32 -1
    return {
        "v_template": vertices, "shapedirs": shapedirs, "posedirs": posedirs,
        "J_regressor": j_regressor, "weights": weights, "kintree_table": kintree,
        "f": faces.astype(np.uint32), "J": j_regressor @ vertices,
        "J_regressor_h36m": _regressor(h36m_sets, NUM_VERTICES),
    }


def generated_body(model: Optional[dict] = None) -> BodyModel:
    """The generated body (``model``, or :func:`generate_body_model`) as a :class:`BodyModel`,
    through the checks an SMPL file passes."""
    smpl = dict(generate_body_model() if model is None else model)
    h36m = smpl.pop("J_regressor_h36m")
    return BodyModel({"neutral": check_smpl_arrays(smpl, GENERATED_BODY)},
                     check_h36m_regressor(h36m, GENERATED_BODY))


def write_body_model(out_dir) -> Path:
    """Write the generated body as a model folder: ``SMPL_NEUTRAL.pkl`` (plain numpy arrays,
    loadable by smplx) and ``J_regressor_h36m.npy``, what ``BodyModel.from_dir`` reads."""
    out_dir = Path(out_dir)
    model = generate_body_model()
    h36m = model.pop("J_regressor_h36m")
    buffer = io.BytesIO()
    np.save(buffer, h36m)
    write_atomic(out_dir / H36M_REGRESSOR_NAME, buffer.getvalue())
    write_atomic(out_dir / GENDER_FILES["neutral"], pickle.dumps(model, protocol=4))
    return out_dir
