# ruff: noqa: F401  (this module only re-exports)
"""Neural-network backbones and layers: embeddings, attention, DiT, MMDiT, text encoders, cost counting.

Every backbone meets the network contract ``net(x_t, t, **cond) -> tensor shaped like x_t`` with
``t`` of shape ``(B,)`` in [0, 1] (0 = data, 1 = noise). The modules read as their papers write them;
DiT's fast form on CUDA (``DiTConfig.fused_kernels``) is ``dit_fused.py``, built on :mod:`diffcore.kernels`.
"""

from typing import Any

from diffcore.nn.attention import Attention, CrossAttention, QKVProjection, attend
from diffcore.nn.controlnet import (
    ConditionEncoder,
    ControlledModel,
    DiTControlNet,
    DiTControlNetConfig,
    MMDiTControlNet,
    MMDiTControlNetConfig,
    MultiControlNet,
    UNetControlNet,
    UNetControlNetConfig,
)
from diffcore.nn.dit import (
    DiT,
    DiT_B_2,
    DiT_B_4,
    DiT_B_8,
    DiT_L_2,
    DiT_L_4,
    DiT_L_8,
    DiT_S_2,
    DiT_S_4,
    DiT_S_8,
    DiT_XL_2,
    DiT_XL_4,
    DiT_XL_8,
    DiTBlock,
    DiTConfig,
    FinalLayer,
    Mlp,
    dit_config,
    modulate,
)
from diffcore.nn.dit_fused import FusedAttention, FusedDiTBlock, FusedFinalLayer, FusedMlp
from diffcore.nn.embeddings import (
    LabelEmbedder,
    PatchEmbed,
    RotaryEmbedding,
    TimestepEmbedder,
    apply_rope,
    drop_labels,
    grid_positions,
    sincos_pos_embed,
    timestep_embedding,
    unpatchify,
)
from diffcore.nn.flops import ForwardCost, count_parameters, forward_cost
from diffcore.nn.lora import (
    adapter_names,
    add_lora,
    delete_lora,
    find_lora_targets,
    load_lora,
    lora_parameters,
    merge_lora,
    save_lora,
    set_adapters,
    unmerge_lora,
)
from diffcore.nn.mmdit import MMDiT, MMDiTBlock, MMDiTConfig, mmdit_config
from diffcore.nn.text_encoders import CLIPTextEncoder, MultiTextEncoder, T5TextEncoder, TextEmbeddings
from diffcore.nn.unet import (
    UNet,
    UNetConfig,
    UNetEncoder,
    sd2_unet_config,
    sd15_unet_config,
    sdxl_unet_config,
)


def __getattr__(name: str) -> Any:
    """``diffcore.nn.GraphedCall``, which moved to :mod:`diffcore.kernels` in 0.2, with a deprecation warning."""
    if name != "GraphedCall":
        raise AttributeError(f"module 'diffcore.nn' has no attribute {name!r}")
    from diffcore import _moved
    from diffcore.kernels import GraphedCall

    _moved.warn_moved("diffcore.nn.GraphedCall", "diffcore.kernels.GraphedCall")
    return GraphedCall
