"""diffusers' counterparts of our networks, built from our configs, for side-by-side benchmarks.

Imported by the benchmark scripts of ``benchmarks/<area>/``, which put ``benchmarks/`` on the path.
"""

from __future__ import annotations

from diffcore.nn.dit import DiTConfig
from torch import nn


def diffusers_dit(cfg: DiTConfig) -> nn.Module:
    """diffusers' ``DiTTransformer2DModel`` with the configuration of our DiT ``cfg`` (2D, square inputs)."""
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.hidden_size // cfg.num_heads,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        num_layers=cfg.depth,
        sample_size=cfg.input_size[0],
        patch_size=cfg.patch_size[0],
        num_embeds_ada_norm=cfg.num_classes,
        norm_type="ada_norm_zero",
    )
