"""diffusers model folders <-> our DiT, MMDiT and U-Net (diffcore.interop.diffusers), both directions.

The U-Net is latent diffusion's (linear ``proj_in`` / ``proj_out``: diffusers' ``use_linear_projection=True``);
our class table's last row is the null class; the pooled vector is diffusers' ``class_embed_type="projection"``;
ADM's scale-shift norm is ``resnet_time_scale_shift="scale_shift"``. Nothing is compared where the two differ by
design: ``dims=1``, ``context=None`` (ours skips cross-attention), a context of padding only (ours gives the
no-context output, diffusers' additive mask attends uniformly to the padding).

Each round trip goes through the folder on disk, read by the other side's own loader (diffusers'
``from_pretrained``; our :func:`load_diffusers_model`), with every weight random (the zero-initialised layers
too), and compares outputs on the same inputs: diffusers' ``timestep`` is ``1000 t``.
"""

from __future__ import annotations

import json

import pytest
import torch
from diffcore.interop.diffusers import (
    DIFFUSERS_WEIGHTS_NAME,
    diffusers_config_from,
    load_diffusers_model,
    save_diffusers_model,
)
from diffcore.nn import DiT, DiTConfig
from diffcore.nn.mmdit import MMDiT, MMDiTConfig
from diffcore.nn.unet import UNet, UNetConfig

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = dict(rtol=1e-4, atol=1e-4)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (norms' affine parameters near 1, the rest small), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                0.3 * torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5 + (p.ndim == 1) * 0.1
            )
    return model.eval()


def dit_config(**kw) -> DiTConfig:
    base = dict(input_size=(8, 8), patch_size=2, in_channels=3, hidden_size=32, depth=2, num_heads=4,
                num_classes=5, learn_sigma=True, time_freq_shift=1.0, pos_embed_axes="xy")  # fmt: skip
    return DiTConfig(**{**base, **kw})


def dit_outputs(ours, theirs, seed=1):
    g = torch.Generator().manual_seed(seed)
    x, t, y = torch.randn(3, 3, 8, 8, generator=g), torch.tensor([0.0, 0.4, 1.0]), torch.tensor([1, 4, 5])
    with torch.no_grad():
        return ours(x, t, y), theirs(x, timestep=1000 * t, class_labels=y).sample


@pytest.mark.parametrize("learn_sigma", [True, False])
def test_dit_exports_to_a_folder_diffusers_loads_with_the_same_outputs(tmp_path, learn_sigma):
    ours = randomize(DiT(dit_config(learn_sigma=learn_sigma)))
    save_diffusers_model(ours, tmp_path)
    theirs = diffusers.DiTTransformer2DModel.from_pretrained(tmp_path).eval()
    a, b = dit_outputs(ours, theirs)
    assert float(a.abs().mean()) > 0.05  # every path reaches the output
    torch.testing.assert_close(a, b, **TOL)


def test_dit_loads_from_a_diffusers_folder_with_the_same_outputs(tmp_path):
    theirs = diffusers.DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=3,
        sample_size=16, patch_size=4, num_embeds_ada_norm=7,
    )  # fmt: skip
    randomize(theirs, seed=2)
    with torch.no_grad():  # diffusers' DiT has one embedder per block; a converted checkpoint shares one
        first = theirs.transformer_blocks[0].norm1.emb
        for block in theirs.transformer_blocks[1:]:
            block.norm1.emb.load_state_dict(first.state_dict())
    theirs.save_pretrained(tmp_path)
    ours = load_diffusers_model(tmp_path)
    assert isinstance(ours, DiT) and ours.config.patch_size == (4, 4) and ours.config.num_classes == 7
    g = torch.Generator().manual_seed(1)
    x, t, y = torch.randn(2, 4, 16, 16, generator=g), torch.tensor([0.1, 0.9]), torch.tensor([0, 7])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, y), theirs(x, timestep=1000 * t, class_labels=y).sample, **TOL)


def test_dit_with_different_embedders_per_block_is_refused_naming_the_tensor(tmp_path):
    theirs = diffusers.DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=3, num_layers=2, sample_size=8, patch_size=2,
        num_embeds_ada_norm=5,
    )  # fmt: skip
    randomize(theirs)
    theirs.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"transformer_blocks\.1\.norm1\.emb.*differs"):
        load_diffusers_model(tmp_path)


def mmdit_config(**kw) -> MMDiTConfig:
    base = dict(input_size=(8, 8), patch_size=2, in_channels=4, hidden_size=32, depth=3, num_heads=4,
                pooled_dim=12, context_dim=20, pos_embed_axes="xy")  # fmt: skip
    return MMDiTConfig(**{**base, **kw})


def mmdit_outputs(ours, theirs, seed=1):
    g = torch.Generator().manual_seed(seed)
    x, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 5, 20, generator=g)
    pooled, t = torch.randn(2, 12, generator=g), torch.tensor([0.05, 0.7])
    with torch.no_grad():
        ref = theirs(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=1000 * t)
        return ours(x, t, ctx, pooled=pooled), ref.sample


@pytest.mark.parametrize("max_size", [None, 16])
@pytest.mark.parametrize("qk_norm", [None, "rms_norm"])
def test_mmdit_loads_from_an_sd3_folder_and_exports_back(tmp_path, max_size, qk_norm):
    theirs = diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=3, attention_head_dim=8, num_attention_heads=4,
        joint_attention_dim=20, caption_projection_dim=32, pooled_projection_dim=12, out_channels=4,
        pos_embed_max_size=max_size, qk_norm=qk_norm,
    )  # fmt: skip
    randomize(theirs, seed=3)
    theirs.save_pretrained(tmp_path / "theirs")
    ours = load_diffusers_model(tmp_path / "theirs")
    assert isinstance(ours, MMDiT) and ours.config.qk_norm == (qk_norm is not None)
    a, b = mmdit_outputs(ours, theirs)
    assert float(a.abs().mean()) > 0.05
    torch.testing.assert_close(a, b, **TOL)
    save_diffusers_model(ours, tmp_path / "back")
    again = diffusers.SD3Transformer2DModel.from_pretrained(tmp_path / "back").eval()
    assert again.config.pos_embed_max_size == max_size
    torch.testing.assert_close(mmdit_outputs(ours, again)[1], a, **TOL)


def test_mmdit_exports_to_a_folder_diffusers_loads_with_the_same_outputs(tmp_path):
    ours = randomize(MMDiT(mmdit_config(qk_norm=True)), seed=4)
    save_diffusers_model(ours, tmp_path)
    theirs = diffusers.SD3Transformer2DModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(*mmdit_outputs(ours, theirs), **TOL)


UNET = dict(in_channels=3, out_channels=4, model_channels=16, channel_mult=(1, 2), num_res_blocks=2,
            attention_levels=(1,), num_heads=2, num_groups=8, context_dim=12)  # fmt: skip
UNET_CASES = {
    "sd-like": dict(use_scale_shift_norm=False),
    "adm-scale-shift": dict(use_scale_shift_norm=True, attention_levels=(0, 1)),
    "head-dim-depths": dict(channel_mult=(1, 2, 2), attention_levels=(1, 2), head_dim=8, transformer_depth=(0, 2, 1), num_res_blocks=1),
    "classes": dict(num_classes=5),
    "pooled": dict(pooled_dim=7),
}  # fmt: skip


def unet_outputs(ours, theirs, config: UNetConfig, seed=1):
    g = torch.Generator().manual_seed(seed)
    x, t = torch.randn(3, 3, 8, 8, generator=g), torch.tensor([0.0, 0.37, 1.0])
    context = torch.randn(3, 5, 12, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False, True, False, True, False]])
    cond, extra = {}, {}
    if config.num_classes is not None:
        cond["y"] = extra["class_labels"] = torch.tensor([0, 4, 5])  # 5: the null class
    if config.pooled_dim is not None:
        cond["pooled"] = extra["class_labels"] = torch.randn(3, 7, generator=g)
    with torch.no_grad():
        out = ours(x, t, context=context, context_mask=mask, **cond)
        ref = theirs(x, 1000 * t, encoder_hidden_states=context, encoder_attention_mask=mask.float(), **extra)
        unmasked = ours(x, t, context=context, **cond)
        ref_unmasked = theirs(x, 1000 * t, encoder_hidden_states=context, **extra).sample
    torch.testing.assert_close(unmasked, ref_unmasked, **TOL)
    assert not torch.allclose(out, unmasked, atol=1e-3)  # the mask matters, and both models agree on it
    return out, ref.sample


@pytest.mark.parametrize("case", UNET_CASES)
def test_unet_round_trips_through_a_unet2dconditionmodel_folder(tmp_path, case):
    config = UNetConfig(**{**UNET, **UNET_CASES[case]})
    ours = randomize(UNet(config))
    save_diffusers_model(ours, tmp_path / "theirs", sample_size=8)
    theirs = diffusers.UNet2DConditionModel.from_pretrained(tmp_path / "theirs").eval()
    out, ref = unet_outputs(ours, theirs, config)
    assert float(out.abs().mean()) > 0.1
    torch.testing.assert_close(out, ref, **TOL)
    randomize(theirs, seed=5)  # new weights on diffusers' side, read back by ours
    theirs.save_pretrained(tmp_path / "new")
    back = load_diffusers_model(tmp_path / "new")
    mine, read = diffusers_config_from(ours, 8), diffusers_config_from(back, 8)
    heads_mine, heads_read = mine.pop("attention_head_dim"), read.pop("attention_head_dim")
    assert mine == read  # the same layout; heads agree where there is attention
    assert all(heads_mine[lv] == heads_read[lv] for lv in config.attention_levels)
    torch.testing.assert_close(*unet_outputs(back, theirs, config), **TOL)


def test_sd1_style_unet_with_convolution_projections_loads(tmp_path):
    """SD 1.x lays proj_in / proj_out out as 1x1 convolutions (``use_linear_projection=False``) and gives
    ``attention_head_dim`` as one number of heads: both read into our linear projections."""
    theirs = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8,
        cross_attention_dim=12, attention_head_dim=2, use_linear_projection=False,
    )  # fmt: skip
    randomize(theirs, seed=6)
    theirs.save_pretrained(tmp_path)
    ours = load_diffusers_model(tmp_path)
    assert ours.config.attention_levels == (0, 1) and ours.config.num_heads == 2
    g = torch.Generator().manual_seed(0)
    x, t, ctx = (
        torch.randn(2, 4, 8, 8, generator=g),
        torch.tensor([0.2, 0.8]),
        torch.randn(2, 3, 12, generator=g),
    )
    with torch.no_grad():
        ref = theirs(x, 1000 * t, encoder_hidden_states=ctx).sample
        torch.testing.assert_close(ours(x, t, context=ctx), ref, **TOL)


def test_settings_without_a_diffusers_counterpart_are_refused_before_writing(tmp_path):
    paper_dit = DiT(dit_config(time_freq_shift=0.0, pos_embed_axes="ij"))
    with pytest.raises(ValueError, match=r"time_freq_shift=0\.0 has no counterpart"):
        save_diffusers_model(paper_dit, tmp_path / "dit")
    assert not (tmp_path / "dit").exists()
    with pytest.raises(ValueError, match="mid_attention"):
        diffusers_config_from(UNet(UNetConfig(**{**UNET, "mid_attention": False})))
    with pytest.raises(ValueError, match="pooled_dim"):
        diffusers_config_from(MMDiT(mmdit_config(pooled_dim=0)))


def test_bad_diffusers_folders_are_refused_naming_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_diffusers_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "FluxTransformer2DModel"}))
    with pytest.raises(FileNotFoundError, match=DIFFUSERS_WEIGHTS_NAME):
        load_diffusers_model(tmp_path)
    save_diffusers_model(randomize(DiT(dit_config())), tmp_path / "dit")
    config = json.loads((tmp_path / "dit" / "config.json").read_text())
    (tmp_path / "dit" / "config.json").write_text(json.dumps({**config, "norm_type": "ada_norm_single"}))
    with pytest.raises(ValueError, match="norm_type='ada_norm_single'"):
        load_diffusers_model(tmp_path / "dit")
    (tmp_path / "dit" / "config.json").write_text(
        json.dumps({**config, "_class_name": "FluxTransformer2DModel"})
    )
    with pytest.raises(ValueError, match="_class_name='FluxTransformer2DModel'"):
        load_diffusers_model(tmp_path / "dit")


SD15_UNET = {"_class_name": "UNet2DConditionModel", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
             "cross_attention_dim": 768, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
             "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 64}  # fmt: skip
PUBLISHED = {
    "sd-1.5-unet": SD15_UNET,
    "sd-2.1-unet": {**SD15_UNET, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024,
                    "use_linear_projection": True, "sample_size": 96},
    "dit-xl-2-256": {"_class_name": "DiTTransformer2DModel", "num_attention_heads": 16, "attention_head_dim": 72,
                     "in_channels": 4, "out_channels": 8, "num_layers": 28, "sample_size": 32, "patch_size": 2,
                     "num_embeds_ada_norm": 1000},
    "sd3-medium": {"_class_name": "SD3Transformer2DModel", "sample_size": 128, "patch_size": 2, "in_channels": 16,
                   "num_layers": 24, "attention_head_dim": 64, "num_attention_heads": 24, "joint_attention_dim": 4096,
                   "caption_projection_dim": 1536, "pooled_projection_dim": 2048, "out_channels": 16,
                   "pos_embed_max_size": 192},
}  # fmt: skip


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_configs_map_every_tensor_of_the_full_size_model(name):
    """The configurations of SD 1.5's and SD 2.1's U-Nets, DiT-XL/2 and SD3-medium as published: the rename table
    covers each diffusers tensor exactly once with the right shape (built on the meta device: nothing allocated)."""
    from diffcore.interop.diffusers import _shapes, config_from_diffusers, renames_for

    cfg = PUBLISHED[name]
    with torch.device("meta"):
        theirs = getattr(diffusers, cfg["_class_name"]).from_config(cfg)
    their_shapes = {k: v.shape for k, v in theirs.state_dict().items() if k != "pos_embed.pos_embed"}
    ours = config_from_diffusers(cfg)
    shapes = _shapes(ours)
    covered: dict[str, torch.Size] = {}
    for r in renames_for(ours):
        for part in r.theirs:
            assert part not in covered, f"{part} mapped twice"
            covered[part] = shapes[r.ours]
        if r.op == "split":  # the parts stack along the first axis into ours
            assert sum(their_shapes[p][0] for p in r.theirs) == shapes[r.ours][0]
        elif r.op != "copies":
            assert their_shapes[r.theirs[0]].numel() == shapes[r.ours].numel(), r
    assert set(covered) == set(their_shapes)
    assert sum(s.numel() for s in shapes.values()) == sum(
        s.numel()
        for k, s in their_shapes.items()
        if ".norm1.emb." not in k or k.startswith("transformer_blocks.0.")
    )
