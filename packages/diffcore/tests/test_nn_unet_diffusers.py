"""The U-Net (diffcore.nn.unet) against diffusers' ``UNet2DConditionModel`` with copied weights.

The two are the same network (latent diffusion's U-Net with linear ``proj_in`` / ``proj_out``, diffusers'
``use_linear_projection=True``) and agree to float32 rounding wherever their inputs mean the same thing:

- time: ours takes ``t`` in [0, 1] and embeds ``1000 t`` (``[cos, sin]``, max period 1e4); diffusers embeds the
  timestep it is given with ``flip_sin_to_cos=True, freq_shift=0``, so it gets ``1000 t``;
- classes: our table has ``num_classes + 1`` rows (the last is the null class), diffusers' ``num_class_embeds``;
- the pooled vector: ours is ``Linear -> SiLU -> Linear`` added to the time embedding, diffusers'
  ``class_embed_type="projection"`` (a ``TimestepEmbedding`` of the vector);
- ADM's scale-shift norm (``use_scale_shift_norm``) is diffusers' ``resnet_time_scale_shift="scale_shift"``.

Where they differ, by design, nothing is compared: ``dims=1`` (diffusers' model is 2-D only); ``context=None``
(our cross-attention is skipped, diffusers' attends to the image tokens themselves); a context whose tokens
are all padding (ours gives exactly the no-context output, diffusers' additive -10000 mask attends uniformly
to the padding). SD's own checkpoints lay ``proj_in`` / ``proj_out`` out as 1x1 convolutions (SD 1.x), a
reshape of the same weights.
"""

from __future__ import annotations

import re

import pytest
import torch
from diffcore.nn.unet import UNet, UNetConfig, heads_for_channels

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.usefixtures("one_thread")


def _diffusers_model(c: UNetConfig, classes: bool, pooled: bool) -> torch.nn.Module:
    levels = range(len(c.channel_mult))
    channels = [c.model_channels * m for m in c.channel_mult]
    options = {}
    if classes:
        options["num_class_embeds"] = c.num_classes + 1
    if pooled:
        options.update(class_embed_type="projection", projection_class_embeddings_input_dim=c.pooled_dim)
    return diffusers.UNet2DConditionModel(
        in_channels=c.in_channels,
        out_channels=c.resolved_out_channels,
        down_block_types=tuple("CrossAttnDownBlock2D" if lv in c.attention_levels else "DownBlock2D" for lv in levels),
        up_block_types=tuple("CrossAttnUpBlock2D" if lv in c.attention_levels else "UpBlock2D" for lv in reversed(levels)),
        block_out_channels=tuple(channels),
        layers_per_block=c.num_res_blocks,
        norm_num_groups=c.num_groups,
        cross_attention_dim=c.context_dim,
        attention_head_dim=tuple(heads_for_channels(c, ch) for ch in channels),  # diffusers: heads per level
        transformer_layers_per_block=tuple(c.depth_at(lv) for lv in levels),
        use_linear_projection=True,
        resnet_time_scale_shift="scale_shift" if c.use_scale_shift_norm else "default",
        **options,
    ).eval()  # fmt: skip


RES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_norm": "norm2",
       "out_layers.2": "conv2", "skip": "conv_shortcut"}  # fmt: skip
BLOCK = {"norm1": "norm1", "attn1.qkv.qkv": "attn1.QKV", "attn1.proj": "attn1.to_out.0", "attn2.kv": "attn2.KV", "norm2": "norm2", "attn2.q": "attn2.to_q",
         "attn2.proj": "attn2.to_out.0", "norm3": "norm3", "ff.proj_in": "ff.net.0.proj",
         "ff.proj_out": "ff.net.2"}  # fmt: skip


def _layer_name(layer: str, rest: str, res: str, attn: str) -> str:
    """Our ``layers.<i>.<rest>`` inside a block as diffusers' name, given where its ResBlock / attention live."""
    if rest.startswith(("norm.", "proj_in.", "proj_out.")):
        return f"{attn}.{rest}"
    m = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", rest)
    if m:
        return f"{attn}.transformer_blocks.{m[1]}.{BLOCK[m[2]]}.{m[3]}"
    m = re.match(r"(.+)\.(weight|bias)$", rest)
    return f"{res}.{RES[m[1]]}.{m[2]}"


def copy_weights(ours: UNet, theirs: torch.nn.Module) -> None:
    """Load our state dict into diffusers' model (our fused q/k/v and k/v split into to_q, to_k, to_v)."""
    c = ours.config
    per_level = c.num_res_blocks
    mapped: dict[str, torch.Tensor] = {}
    for key, value in ours.state_dict().items():
        name = _translate(key, per_level)
        for fused, parts in ((".QKV.", ("to_q", "to_k", "to_v")), (".KV.", ("to_k", "to_v"))):
            if fused in name:
                for part, chunk in zip(parts, value.chunk(len(parts))):
                    mapped[name.replace(fused[:-1], "." + part)] = chunk
                break
        else:
            mapped[name] = value
    theirs.load_state_dict(mapped, strict=True)


def _translate(key: str, per_level: int) -> str:
    fixed = {"encoder.time_embed.mlp.0": "time_embedding.linear_1", "encoder.time_embed.mlp.2": "time_embedding.linear_2",
             "encoder.class_embed.table": "class_embedding", "encoder.pooled_embed.0": "class_embedding.linear_1",
             "encoder.pooled_embed.2": "class_embedding.linear_2", "encoder.input_blocks.0.layers.0": "conv_in",
             "out.0": "conv_norm_out", "out.2": "conv_out"}  # fmt: skip
    stem, _, leaf = key.rpartition(".")
    if stem in fixed:
        return f"{fixed[stem]}.{leaf}"
    if m := re.match(r"encoder\.input_blocks\.(\d+)\.layers\.(\d+)\.(.+)$", key):
        level, index = divmod(int(m[1]) - 1, per_level + 1)
        if index == per_level:  # the level's downsampling
            return f"down_blocks.{level}.downsamplers.0.{m[3]}"
        base = f"down_blocks.{level}"
        return _layer_name(m[2], m[3], f"{base}.resnets.{index}", f"{base}.attentions.{index}")
    if m := re.match(r"encoder\.middle_block\.layers\.(\d+)\.(.+)$", key):
        i = int(m[1])
        res = f"mid_block.resnets.{0 if i == 0 else 1}"
        return _layer_name(m[1], m[2], res, "mid_block.attentions.0")
    if m := re.match(r"output_blocks\.(\d+)\.layers\.(\d+)\.(.+)$", key):
        up, index = divmod(int(m[1]), per_level + 1)
        base = f"up_blocks.{up}"
        if m[3].startswith("conv."):  # the level's upsampling
            return f"{base}.upsamplers.0.{m[3]}"
        return _layer_name(m[2], m[3], f"{base}.resnets.{index}", f"{base}.attentions.{index}")
    raise AssertionError(f"unmapped key {key}")


def _random_unet(config: UNetConfig, seed: int = 0) -> UNet:
    """Every parameter random (the zero-initialised output layers and the norms' affine parameters too)."""
    torch.manual_seed(seed)
    model = UNet(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                0.3 * torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5 + (p.ndim == 1) * 0.1
            )
    return model


CONFIGS = {
    "sd-like": dict(use_scale_shift_norm=False),
    "adm-scale-shift": dict(use_scale_shift_norm=True, attention_levels=(0, 1)),
    "head-dim-depths": dict(channel_mult=(1, 2, 2), attention_levels=(1, 2), head_dim=8, transformer_depth=(0, 2, 1), num_res_blocks=1),
    "classes": dict(num_classes=5),
    "pooled": dict(pooled_dim=7),
}  # fmt: skip


@pytest.mark.parametrize("case", CONFIGS)
def test_unet_matches_diffusers_unet2dconditionmodel_with_copied_weights(case):
    config = UNetConfig(
        **{
            "in_channels": 3, "out_channels": 4, "model_channels": 16, "channel_mult": (1, 2), "num_res_blocks": 2,
            "attention_levels": (1,), "num_heads": 2, "num_groups": 8, "context_dim": 12, **CONFIGS[case],
        }
    )  # fmt: skip
    ours = _random_unet(config)
    theirs = _diffusers_model(
        config, classes=config.num_classes is not None, pooled=config.pooled_dim is not None
    )
    copy_weights(ours, theirs)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 8, 8, generator=g)
    t = torch.tensor([0.0, 0.37, 1.0])
    context = torch.randn(3, 5, 12, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False, True, False, True, False]])
    cond, extra = {}, {}
    if config.num_classes is not None:
        cond["y"] = extra["class_labels"] = torch.tensor([0, 4, 5])  # 5: the null class
    if config.pooled_dim is not None:
        cond["pooled"] = extra["class_labels"] = torch.randn(3, 7, generator=g)
    with torch.no_grad():
        out = ours(x, t, context=context, context_mask=mask, **cond)
        ref = theirs(
            x, 1000 * t, encoder_hidden_states=context, encoder_attention_mask=mask.float(), **extra
        ).sample
        unmasked = ours(x, t, context=context, **cond)
        ref_unmasked = theirs(x, 1000 * t, encoder_hidden_states=context, **extra).sample
    assert float(out.abs().mean()) > 0.1  # every path reaches the output
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unmasked, ref_unmasked, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, unmasked, atol=1e-3)  # the mask matters, and both models agree on it
