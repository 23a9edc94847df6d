"""A METRO / FastMETRO-style mesh regressor with SMPL-parameter queries.

CNN backbone -> image feature tokens -> transformer encoder (timm ViT blocks) -> transformer
decoder (``nn.TransformerDecoderLayer``) whose queries are one token per SMPL joint rotation plus
one for the shape and one for the camera -> SMPL pose (6D rotations), betas and a weak-perspective
camera, decoded into vertices and joints by smplx. Predictions start at the mean parameters
(the heads are zero-initialised), as in HMR/SPIN. DropKey is injected into the encoder's and the
decoder's attention by the config's ``DropKeyHook``; nothing here depends on it. Monte-Carlo
evaluation (:mod:`tasks.common.monte_carlo`) averages the regressed parameters of its stochastic
passes (6D rotations, betas, camera) and decodes the mean as it decodes one pass: a mean of 6D
vectors still gives a rotation through Gram-Schmidt, a mean of rotation matrices is none.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from tasks.common.files import DataFormatError, load_arrays, numeric_array
from tasks.common.monte_carlo import MonteCarloModel

from .body_model import BodyModel
from .generate import generated_mean_params
from .procedural_body import generated_body

NUM_SMPL_JOINTS = 24
LOSS_TERMS = ("vertices", "joints3d", "keypoints2d", "pose", "betas")


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt (Zhou et al. 2019); the 6 numbers are the first
    two columns of the matrix, row by row, as in SPIN's mean parameters."""
    columns = x.unflatten(-1, (3, 2))
    first = F.normalize(columns[..., 0], dim=-1)
    second = F.normalize(columns[..., 1] - (first * columns[..., 1]).sum(-1, keepdim=True) * first,
                         dim=-1)
    return torch.stack([first, second, torch.cross(first, second, dim=-1)], dim=-1)


def rotmat_to_rot6d(rotmat: torch.Tensor) -> torch.Tensor:
    return rotmat[..., :2].flatten(-2)


def axis_angle_to_rotmat(pose: torch.Tensor) -> torch.Tensor:
    """(B, 72) axis-angle -> (B, 24, 3, 3)."""
    from smplx.lbs import batch_rodrigues

    return batch_rodrigues(pose.reshape(-1, 3)).view(pose.shape[0], NUM_SMPL_JOINTS, 3, 3)


def load_mean_params(path: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean rotations (24, 3, 3) and betas (10,) from SPIN's ``smpl_mean_params.npz`` (``pose``:
    144 6D values, ``shape``: at least 10 betas); None: those of the generated training split,
    computed from its seed (:func:`~tasks.mesh.generate.generated_mean_params`)."""
    if path is None:
        pose, betas = generated_mean_params()
        return axis_angle_to_rotmat(torch.as_tensor(pose)[None])[0], torch.as_tensor(betas)
    arrays = load_arrays(path, "mean_params", npz=True)
    for key in ("pose", "shape"):
        if key not in arrays:
            raise DataFormatError(path, key, "missing")
    pose, betas = (torch.as_tensor(numeric_array(arrays[key], path, key),
                                   dtype=torch.float32).flatten() for key in ("pose", "shape"))
    if pose.numel() != NUM_SMPL_JOINTS * 6:
        raise DataFormatError(path, "pose", f"has {pose.numel()} values, expected "
                              f"{NUM_SMPL_JOINTS * 6}")
    if betas.numel() < 10:
        raise DataFormatError(path, "shape", f"has {betas.numel()} values, expected 10")
    return rot6d_to_rotmat(pose.view(NUM_SMPL_JOINTS, 6)), betas[:10]


def _cnn_trunk(name: str, stages: int) -> nn.Sequential:
    """A torchvision ResNet (no pretrained weights) up to ``layer{stages}``."""
    import torchvision

    net = torchvision.models.get_model(name, weights=None)
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                         *[getattr(net, f"layer{i}") for i in range(1, stages + 1)])


@MODELS.register_module()
class MeshTransformer(MonteCarloModel, BaseModel):
    """Image -> SMPL pose, shape and camera, through image tokens and parameter queries.

    Args:
        body_model_dir: SMPL model folder (see :meth:`BodyModel.from_dir`); None: the generated
            body, built in memory (:mod:`tasks.mesh.procedural_body`).
        mean_params: SPIN's ``smpl_mean_params.npz`` (see :func:`load_mean_params`); None: the
            mean pose and shape of the generated training split, computed from its seed.
        backbone, backbone_stages: torchvision ResNet and how many of its stages to keep.
        loss_weights: weights of ``vertices`` (L1, root-relative), ``joints3d`` (L1,
            root-relative), ``keypoints2d`` (L1 of the projected joints), ``pose`` (MSE of the
            rotation matrices) and ``betas`` (MSE).

    Neither default reads a file, so the model builds before (and without) any data set.
    """

    def __init__(self, body_model_dir: Optional[str] = None, mean_params: Optional[str] = None,
                 input_size: int = 64, backbone: str = "resnet18", backbone_stages: int = 2,
                 embed_dim: int = 128, num_heads: int = 4, encoder_depth: int = 2,
                 decoder_depth: int = 3, mlp_ratio: float = 2.0, drop_path_rate: float = 0.0,
                 loss_weights=None, data_preprocessor=None, init_cfg=None):
        from timm.models.vision_transformer import Block

        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.body = (generated_body() if body_model_dir is None
                     else BodyModel.from_dir(body_model_dir))
        mean_rotmats, mean_betas = load_mean_params(mean_params)
        self.register_buffer("mean_rot6d", rotmat_to_rot6d(mean_rotmats))
        self.register_buffer("mean_betas", mean_betas)
        self.register_buffer("mean_camera", torch.tensor([1.0, 0.0, 0.0]))
        self.loss_weights = dict(vertices=1.0, joints3d=1.0, keypoints2d=1.0, pose=1.0,
                                 betas=0.01, **(loss_weights or {}))
        unknown = set(self.loss_weights) - set(LOSS_TERMS)
        if unknown:
            raise KeyError(f"unknown loss terms {sorted(unknown)}; expected {LOSS_TERMS}")

        self.backbone = _cnn_trunk(backbone, backbone_stages)
        with torch.no_grad():
            features = self.backbone.eval()(torch.zeros(1, 3, input_size, input_size))
        self.backbone.train()
        channels, tokens = features.shape[1], features.shape[2] * features.shape[3]
        self.input_proj = nn.Linear(channels, embed_dim)
        self.image_pos = nn.Parameter(torch.randn(1, tokens, embed_dim) * 0.02)
        rates = torch.linspace(0, drop_path_rate, encoder_depth).tolist()
        self.encoder = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=rate)
            for rate in rates])
        self.encoder_norm = nn.LayerNorm(embed_dim)
        self.queries = nn.Parameter(torch.randn(1, NUM_SMPL_JOINTS + 2, embed_dim) * 0.02)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(embed_dim, num_heads, int(embed_dim * mlp_ratio),
                                       dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True),
            decoder_depth, norm=nn.LayerNorm(embed_dim))
        self.pose_head = nn.Linear(embed_dim, 6)
        self.shape_head = nn.Linear(embed_dim, 10)
        self.camera_head = nn.Linear(embed_dim, 3)
        for head in (self.pose_head, self.shape_head, self.camera_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def regress_parameters(self, inputs: torch.Tensor) -> dict:
        """The network's outputs for an image batch: 6D joint rotations (B, 24, 6), betas
        (B, 10) and camera (B, 3)."""
        tokens = self.input_proj(self.backbone(inputs).flatten(2).transpose(1, 2))
        memory = self.encoder_norm(self.encoder(tokens + self.image_pos))
        queries = self.decoder(self.queries.expand(inputs.shape[0], -1, -1), memory)
        return {"rot6d": self.mean_rot6d + self.pose_head(queries[:, :NUM_SMPL_JOINTS]),
                "betas": self.mean_betas + self.shape_head(queries[:, NUM_SMPL_JOINTS]),
                "camera": self.mean_camera + self.camera_head(queries[:, NUM_SMPL_JOINTS + 1])}

    @staticmethod
    def smpl_parameters(params: dict) -> dict:
        """:meth:`regress_parameters`' output with the 6D rotations as matrices (B, 24, 3, 3)."""
        return {"rotmats": rot6d_to_rotmat(params["rot6d"]), "betas": params["betas"],
                "camera": params["camera"]}

    def regress(self, inputs: torch.Tensor) -> dict:
        """SMPL rotations (B, 24, 3, 3), betas (B, 10) and camera (B, 3) of an image batch."""
        return self.smpl_parameters(self.regress_parameters(inputs))

    def _ground_truth(self, samples: dict) -> dict:
        rotmats = axis_angle_to_rotmat(samples["pose"])
        with torch.no_grad():
            mesh = self.body(rotmats, samples["betas"], samples["gender"])
        return {"rotmats": rotmats, **mesh}

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = "tensor"):
        params = self.regress(inputs)
        if mode == "tensor":
            return params
        mesh = self.body(params["rotmats"], params["betas"])
        if mode == "loss":
            return self.loss(params, mesh, self._ground_truth(data_samples), data_samples)
        if mode == "predict":
            averaged = self.monte_carlo(lambda: self.regress_parameters(inputs))
            averaged_mesh = None
            if averaged is not None:
                averaged = self.smpl_parameters(averaged)
                averaged_mesh = self.body(averaged["rotmats"], averaged["betas"])
            return self.predict(mesh, self._ground_truth(data_samples), averaged_mesh)
        raise ValueError(f"unknown mode {mode!r}")

    def loss(self, params: dict, mesh: dict, gt: dict, samples: dict) -> dict:
        def rooted(points, joints):
            return points - joints[:, :1]

        joints3d, confidence3d = samples["joints3d"][..., :3], samples["joints3d"][..., 3:]
        confidence3d = confidence3d * confidence3d[:, :1]  # rooted on the pelvis: it must be known
        keypoints, confidence2d = samples["keypoints2d"][..., :2], samples["keypoints2d"][..., 2:]
        scale, shift = params["camera"][:, None, :1], params["camera"][:, None, 1:]
        projected = scale * (mesh["joints"][..., :2] + shift)
        losses = {
            "vertices": F.l1_loss(rooted(mesh["vertices"], mesh["joints"]),
                                  rooted(gt["vertices"], gt["joints"])),
            "joints3d": (confidence3d * (rooted(mesh["joints"], mesh["joints"])
                                         - rooted(joints3d, joints3d)).abs()).mean(),
            "keypoints2d": (confidence2d * (projected - keypoints).abs()).mean(),
            "pose": F.mse_loss(params["rotmats"], gt["rotmats"]),
            "betas": F.mse_loss(params["betas"], samples["betas"]),
        }
        return {f"loss_{name}": self.loss_weights[name] * value for name, value in losses.items()}

    def predict(self, mesh: dict, gt: dict, averaged_mesh: Optional[dict] = None) -> list[dict]:
        """Per sample: predicted and ground-truth H36M joints and vertices, and the joints of
        the mean-pose baseline, all in metres; with ``averaged_mesh`` (Monte-Carlo evaluation)
        also its joints and vertices as ``mc_pred_joints`` and ``mc_pred_vertices``."""
        baseline = self.body(rot6d_to_rotmat(self.mean_rot6d)[None], self.mean_betas[None])
        samples = [{"pred_joints": mesh["h36m_joints"][i], "gt_joints": gt["h36m_joints"][i],
                    "pred_vertices": mesh["vertices"][i], "gt_vertices": gt["vertices"][i],
                    "baseline_joints": baseline["h36m_joints"][0]}
                   for i in range(len(mesh["vertices"]))]
        if averaged_mesh is not None:
            for sample, joints, vertices in zip(samples, averaged_mesh["h36m_joints"],
                                                averaged_mesh["vertices"]):
                sample.update(mc_pred_joints=joints, mc_pred_vertices=vertices)
        return samples
