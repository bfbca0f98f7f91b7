"""Networks of diff-video: the spacetime-patch DiT (on diffcore's DiT blocks), the small text encoder trained
with it, and the causal 3D VAE of latent video diffusion."""

from diff_video.models.dit import ATTENTIONS, VideoDiT, VideoDiTBlock, VideoDiTConfig, video_dit_config
from diff_video.models.text import TextConditioned, TextEncoder, TextEncoderConfig, caption_vocabulary
from diff_video.models.vae import CausalVAE, CausalVAEConfig

__all__ = [
    "ATTENTIONS",
    "CausalVAE",
    "CausalVAEConfig",
    "TextConditioned",
    "TextEncoder",
    "TextEncoderConfig",
    "VideoDiT",
    "VideoDiTBlock",
    "VideoDiTConfig",
    "caption_vocabulary",
    "video_dit_config",
]
