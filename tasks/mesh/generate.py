"""Generate the embedded mesh-recovery data: the generated body, posed, shaped and rendered.

    python -m tasks.mesh.generate --out data/generated/mesh [--body-model-out DIR]

Writes ``images/<split>_<index>.png`` (96 px renders: part colours shaded by surface normal and
depth) and ``train.npz`` / ``test.npz`` in SPIN's layout (``imgname``, ``center``, ``scale``,
``pose``, ``shape``, ``S``, ``part``, ``gender``), deterministic for the split seeds. The body
(:mod:`tasks.mesh.procedural_body`) and the training split's mean pose and shape
(:func:`generated_mean_params`) are not files of the set: the model computes both itself, so it
needs no data on disk. ``--body-model-out`` writes the body as an SMPL model folder.
"""
from __future__ import annotations

import argparse
import colorsys
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from tasks.common.embedded_data import prepare_embedded
from tasks.common.files import write_atomic

from .body_model import SMPL_JOINT_NAMES, BodyModel
from .procedural_body import generate_body_model, generated_body, write_body_model

IMAGE_SIZE = 96
FOCAL_LENGTH = 260.0
SPLITS = {"train": 1000, "test": 250}
SPLIT_SEEDS = {"train": 1, "test": 2}
BBOX_PADDING = 1.2   # SPIN: scale = padded box side / 200
# Per-joint Euler-angle ranges in degrees (SMPL's local axes: x flexion, y twist, z sideways).
JOINT_RANGES = {
    "left_hip": [(-70, 25), (-15, 15), (-10, 35)], "right_hip": [(-70, 25), (-15, 15), (-35, 10)],
    "left_knee": [(0, 100), (0, 0), (0, 0)], "right_knee": [(0, 100), (0, 0), (0, 0)],
    "spine1": [(-10, 25), (-15, 15), (-10, 10)], "spine2": [(-10, 15), (-10, 10), (-8, 8)],
    "spine3": [(-10, 15), (-10, 10), (-8, 8)], "neck": [(-15, 20), (-25, 25), (-10, 10)],
    "head": [(-15, 15), (-20, 20), (-10, 10)],
    "left_ankle": [(-20, 20), (-10, 10), (-10, 10)],
    "right_ankle": [(-20, 20), (-10, 10), (-10, 10)],
    "left_collar": [(-5, 5), (-10, 10), (-5, 15)], "right_collar": [(-5, 5), (-10, 10), (-15, 5)],
    "left_shoulder": [(-30, 30), (-70, 30), (-80, 40)],
    "right_shoulder": [(-30, 30), (-30, 70), (-40, 80)],
    "left_elbow": [(0, 0), (-120, 0), (0, 0)], "right_elbow": [(0, 0), (0, 120), (0, 0)],
    "left_wrist": [(-20, 20), (-10, 10), (-20, 20)],
    "right_wrist": [(-20, 20), (-10, 10), (-20, 20)],
}


def sample_poses(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 72) axis-angle poses: the global orientation faces the camera (yaw within
    ±90°, pitch and roll within ±10°) and every body joint moves within :data:`JOINT_RANGES`."""
    poses = np.zeros((count, 24, 3))
    for joint, ranges in JOINT_RANGES.items():
        low, high = np.array(ranges, dtype=np.float64).T
        euler = rng.uniform(low, high, size=(count, 3))
        poses[:, SMPL_JOINT_NAMES.index(joint)] = Rotation.from_euler(
            "xyz", euler, degrees=True).as_rotvec()
    view = rng.uniform([-10, -90, -10], [10, 90, 10], size=(count, 3))
    to_camera = Rotation.from_euler("x", 180, degrees=True)  # SMPL y-up -> camera y-down
    poses[:, 0] = (to_camera * Rotation.from_euler("xyz", view, degrees=True)).as_rotvec()
    return poses.reshape(count, 72)


def sample_parameters(rng: np.random.Generator, count: int):
    """(count, 72) float32 poses, (count, 10) float32 betas and (count, 3) camera-frame offsets
    in metres; drawn before the split's images, so they depend on its seed alone."""
    poses = sample_poses(rng, count)
    shapes = np.clip(rng.normal(0.0, 1.0, (count, 10)), -2.5, 2.5)
    offsets = rng.uniform([-0.25, -0.15, 4.6], [0.25, 0.15, 6.2], size=(count, 3))
    return poses.astype(np.float32), shapes.astype(np.float32), offsets


def mean_pose(poses: np.ndarray) -> np.ndarray:
    """(72,) per-joint rotation mean (chordal L2) of (N, 72) axis-angle poses; averaging the
    axis-angle vectors themselves would break near 180° (e.g. the camera-facing orientation)."""
    per_joint = poses.reshape(len(poses), 24, 3)
    return np.concatenate([Rotation.from_rotvec(per_joint[:, j]).mean().as_rotvec()
                           for j in range(24)]).astype(np.float32)


def part_colours(num_parts: int = 24) -> np.ndarray:
    """Distinct, fixed RGB colours in [0, 1]: hues spread over the wheel, two brightness levels."""
    return np.array([colorsys.hsv_to_rgb((i * 7 % num_parts) / num_parts, 0.85,
                                         1.0 if i % 2 else 0.7) for i in range(num_parts)])


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(normals, faces[:, i], face_normals)
    return normals / (np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12)


def render(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
           size: int = IMAGE_SIZE, focal: float = FOCAL_LENGTH) -> np.ndarray:
    """A (size, size, 3) uint8 render of a camera-frame mesh by z-buffered point splatting.

    Vertices and face centroids are splatted (the mesh is dense enough at these sizes to leave
    no holes); colour = part colour x (0.35 + 0.65 Lambert) x depth cue (nearer is brighter).
    """
    normals = vertex_normals(vertices, faces)
    points = np.concatenate([vertices, vertices[faces].mean(axis=1)])
    point_normals = np.concatenate([normals, normals[faces].mean(axis=1)])
    point_labels = np.concatenate([labels, labels[faces[:, 0]]])
    u = np.round(focal * points[:, 0] / points[:, 2] + size / 2 - 0.5).astype(int)
    v = np.round(focal * points[:, 1] / points[:, 2] + size / 2 - 0.5).astype(int)
    inside = (u >= 0) & (u < size) & (v >= 0) & (v < size)
    depth = points[:, 2]
    near, far = depth.min(), depth.max()
    view = -points / np.linalg.norm(points, axis=1, keepdims=True)
    lambert = np.clip((point_normals * view).sum(axis=1), 0.0, 1.0)
    cue = 1.0 - 0.5 * (depth - near) / max(far - near, 1e-6)
    colour = part_colours()[point_labels] * ((0.35 + 0.65 * lambert) * cue)[:, None]

    order = np.argsort(-depth[inside])  # far to near: nearer points overwrite
    image = np.full((size, size, 3), 0.12) + rng.normal(0.0, 0.03, (size, size, 3))
    image[v[inside][order], u[inside][order]] = colour[inside][order]
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def generated_mean_params() -> tuple[np.ndarray, np.ndarray]:
    """The (72,) axis-angle mean pose and (10,) mean betas of the generated training split,
    the model's starting point (as SPIN's ``smpl_mean_params.npz`` is for real data)."""
    poses, shapes, _ = sample_parameters(np.random.default_rng(SPLIT_SEEDS["train"]),
                                         SPLITS["train"])
    return mean_pose(poses), shapes.mean(axis=0)


@torch.no_grad()
def generate_split(out: Path, split: str, count: int, body: BodyModel, faces: np.ndarray,
                   labels: np.ndarray, seed: int) -> None:
    from smplx.lbs import batch_rodrigues

    rng = np.random.default_rng(seed)
    poses, shapes, offsets = sample_parameters(rng, count)
    rotmats = batch_rodrigues(torch.as_tensor(poses).view(-1, 3))
    decoded = body(rotmats.view(count, 24, 3, 3), torch.as_tensor(shapes))
    root = decoded["joints"][:, :1].numpy()
    vertices = decoded["vertices"].numpy() - root + offsets[:, None]
    joints = decoded["joints"].numpy() - root + offsets[:, None]

    def project(points):
        return FOCAL_LENGTH * points[..., :2] / points[..., 2:] + IMAGE_SIZE / 2 - 0.5

    names, centres, scales = [], [], []
    for index in range(count):
        image = render(vertices[index], faces, labels, rng)
        name = f"images/{split}_{index:05d}.png"
        write_atomic(out / name, _png(image))
        corners = project(vertices[index])
        low, high = corners.min(axis=0), corners.max(axis=0)
        names.append(name)
        centres.append((low + high) / 2)
        scales.append(BBOX_PADDING * (high - low).max() / 200.0)
    ones = np.ones((count, 24, 1))
    write_atomic(out / f"{split}.npz", _npz(
        imgname=np.array(names), center=np.array(centres, dtype=np.float32),
        scale=np.array(scales, dtype=np.float32), pose=poses, shape=shapes,
        S=np.concatenate([joints, ones], -1).astype(np.float32),
        part=np.concatenate([project(joints), ones], -1).astype(np.float32),
        gender=np.array(["n"] * count)))


def generate(out, counts: dict = SPLITS) -> Path:
    """Write the whole data set into the empty directory ``out`` (``counts``: images per split);
    :func:`~tasks.common.embedded_data.prepare_embedded` makes it appear complete or not at all."""
    out = Path(out)
    model = generate_body_model()
    body = generated_body(model)
    labels = model["weights"].argmax(axis=1)
    faces = model["f"].astype(np.int64)
    for split in ("train", "test"):
        generate_split(out, split, counts[split], body, faces, labels, SPLIT_SEEDS[split])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/generated/mesh", help="output directory")
    parser.add_argument("--body-model-out", default=None,
                        help="also write the generated body as an SMPL model folder here")
    args = parser.parse_args()
    print(f"data set complete in {prepare_embedded(args.out, generate)}")
    if args.body_model_out is not None:
        print(f"wrote the generated body to {write_body_model(args.body_model_out)}")


if __name__ == "__main__":
    main()
