"""Human mesh recovery: a METRO-style transformer regressing SMPL through smplx, SPIN-style data,
a generated SMPL-format body with rendered images, and MPJPE / PA-MPJPE / PVE in millimetres."""
from .datasets import MeshDataset
from .metric import MeshMetric, mpjpe, pa_mpjpe, pve
from .model import MeshTransformer

__all__ = ["MeshDataset", "MeshMetric", "MeshTransformer", "mpjpe", "pa_mpjpe", "pve"]
