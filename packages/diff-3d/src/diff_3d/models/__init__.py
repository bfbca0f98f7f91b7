"""Networks of diff-3d: the two splat autoencoders (DiffGS's Gaussian functions, L3DG's voxel VAE) and the latent
denoiser built on diffcore's DiT blocks. Every network is a :class:`diffcore.pretrained.PretrainedModel`."""

from diff_3d.models.denoiser import LatentDiT, LatentDiTConfig, split_words
from diff_3d.models.diffgs import DiffGSAutoencoder, DiffGSConfig, GaussianFields, SetEncoder
from diff_3d.models.l3dg import L3DGConfig, VoxelVAE
from diff_3d.models.layout import FEATURES

__all__ = [
    "FEATURES",
    "DiffGSAutoencoder",
    "DiffGSConfig",
    "GaussianFields",
    "L3DGConfig",
    "LatentDiT",
    "LatentDiTConfig",
    "SetEncoder",
    "VoxelVAE",
    "split_words",
]
