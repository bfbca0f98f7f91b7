"""Networks: the SE(3)-equivariant IPA frame denoiser and the taxonomy-conditioned sequence transformer."""

from diff_protein.models.ipa import FrameDenoiser, FrameDenoiserConfig, InvariantPointAttention

__all__ = ["FrameDenoiser", "FrameDenoiserConfig", "InvariantPointAttention"]
