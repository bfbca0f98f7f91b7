"""LoRA files between diffusers models and ours (diffcore.interop.lora), checked by outputs.

Each test puts a LoRA with random (non-zero) ``B`` on one side, writes it with that side's own tools (peft's
state dict, diffusers' ``save_lora_adapter``, our :func:`save_lora_file`), reads it with the other side's
(our :func:`load_lora_file`; diffusers' ``load_lora_adapter`` and, for kohya files, its converter
``StableDiffusionPipeline.lora_state_dict``), and compares the two adapted models' outputs at 1e-4.
"""

from __future__ import annotations

import pytest
import torch
from diffcore.interop.diffusers import load_diffusers_model, save_diffusers_model
from diffcore.interop.lora import load_lora_file, read_lora_layers, save_lora_file
from diffcore.nn.lora import add_lora, lora_parameters
from diffcore.nn.mmdit import MMDiT, MMDiTConfig
from diffcore.nn.unet import UNet, UNetConfig

diffusers = pytest.importorskip("diffusers")
peft = pytest.importorskip("peft")

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = dict(rtol=1e-4, atol=1e-4)
UNET = UNetConfig(in_channels=4, out_channels=4, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                  attention_levels=(0, 1), num_heads=2, num_groups=8, context_dim=12, use_scale_shift_norm=False)  # fmt: skip


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                0.3 * torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5 + (p.ndim == 1) * 0.1
            )
    return model.eval()


def randomize_lora(model: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.copy_(0.5 * torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5)


def unet_pair(tmp_path):
    """Our random U-Net and diffusers' copy of it, read from the folder ours wrote."""
    ours = randomize(UNet(UNET))
    save_diffusers_model(ours, tmp_path / "base", sample_size=8)
    return ours, diffusers.UNet2DConditionModel.from_pretrained(tmp_path / "base").eval()


def unet_outputs(ours, theirs):
    g = torch.Generator().manual_seed(2)
    x, t, ctx = (
        torch.randn(2, 4, 8, 8, generator=g),
        torch.tensor([0.3, 0.8]),
        torch.randn(2, 5, 12, generator=g),
    )
    with torch.no_grad():
        return ours(x, t, context=ctx), theirs(x, 1000 * t, encoder_hidden_states=ctx).sample


def test_peft_adapter_of_a_diffusers_unet_loads_onto_ours(tmp_path):
    """peft's own LoRA (rank 4, alpha 8, a per-layer rank and alpha through its patterns) on diffusers' U-Net,
    saved as peft saves it, gives our U-Net the same outputs; q, k and v become one fused LoRA of rank 12."""
    ours, theirs = unet_pair(tmp_path)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0", "ff.net.2"],
                             rank_pattern={"ff.net.2": 2}, alpha_pattern={"ff.net.2": 6})  # fmt: skip
    theirs = peft.inject_adapter_in_model(config, theirs)
    randomize_lora(theirs)
    folder = tmp_path / "peft"
    folder.mkdir()
    state = peft.get_peft_model_state_dict(theirs)
    from safetensors.torch import save_file

    save_file({f"base_model.model.{k}": v for k, v in state.items()}, folder / "adapter_model.safetensors")
    config.save_pretrained(str(folder))
    before, _ = unet_outputs(ours, theirs)
    load_lora_file(ours, folder)
    out, ref = unet_outputs(ours, theirs)
    assert float((out - before).abs().max()) > 1e-2  # the adapter changes the output
    torch.testing.assert_close(out, ref, **TOL)
    qkv = ours.encoder.input_blocks[1].layers[1].blocks[0].attn1.qkv.qkv
    assert qkv.lora_A["default"].weight.shape[0] == 12


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_our_unet_lora_loads_into_diffusers_with_its_own_loader(tmp_path, fmt):
    ours, theirs = unet_pair(tmp_path)
    add_lora(ours, rank=3, alpha=6)  # every attention / MLP projection, the fused ones included
    randomize_lora(ours)
    file = save_lora_file(ours, tmp_path / "lora.safetensors", format=fmt)
    if fmt == "kohya":  # diffusers' own conversion of kohya keys, then its loader
        state, alphas = diffusers.StableDiffusionPipeline.lora_state_dict(str(file))
        theirs.load_lora_adapter(state, network_alphas=alphas, prefix="unet")
    else:
        theirs.load_lora_adapter(str(file), prefix="unet")
    out, ref = unet_outputs(ours, theirs)
    torch.testing.assert_close(out, ref, **TOL)
    # the base weights of the adapted model export unchanged, and the adapter loads back onto them
    save_diffusers_model(ours, tmp_path / "base")
    again = load_diffusers_model(tmp_path / "base")
    load_lora_file(again, file)
    torch.testing.assert_close(unet_outputs(again, theirs)[0], out, **TOL)


def mmdit_pair(tmp_path):
    ours = randomize(MMDiT(MMDiTConfig(input_size=(8, 8), patch_size=2, in_channels=4, hidden_size=32, depth=2,
                                       num_heads=4, pooled_dim=12, context_dim=20, pos_embed_axes="xy")))  # fmt: skip
    save_diffusers_model(ours, tmp_path / "base")
    return ours, diffusers.SD3Transformer2DModel.from_pretrained(tmp_path / "base").eval()


def mmdit_outputs(ours, theirs):
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 5, 20, generator=g)
    pooled, t = torch.randn(2, 12, generator=g), torch.tensor([0.05, 0.7])
    with torch.no_grad():
        ref = theirs(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=1000 * t)
        return ours(x, t, ctx, pooled=pooled), ref.sample


def test_sd3_transformer_lora_saved_by_diffusers_loads_onto_our_mmdit_and_back(tmp_path):
    ours, theirs = mmdit_pair(tmp_path)
    theirs.add_adapter(peft.LoraConfig(r=4, lora_alpha=2, target_modules=["to_q", "to_v", "add_k_proj", "to_out.0",
                                                                          "norm_out.linear"]))  # fmt: skip
    randomize_lora(theirs)
    theirs.save_lora_adapter(tmp_path / "theirs")  # diffusers' own writer (with its metadata)
    file = tmp_path / "theirs" / "pytorch_lora_weights.safetensors"
    assert read_lora_layers(file)[0] == "diffusers"
    load_lora_file(ours, file)
    out, ref = mmdit_outputs(ours, theirs)
    torch.testing.assert_close(out, ref, **TOL)
    # ours written back is read by diffusers' loader onto a fresh transformer: the same outputs again
    save_lora_file(ours, tmp_path / "ours.safetensors")
    fresh = diffusers.SD3Transformer2DModel.from_pretrained(tmp_path / "base").eval()
    fresh.load_lora_adapter(str(tmp_path / "ours.safetensors"), prefix="transformer")
    torch.testing.assert_close(mmdit_outputs(ours, fresh)[1], out, **TOL)


def test_peft_folder_written_by_us_is_what_peft_reads(tmp_path):
    ours, theirs = unet_pair(tmp_path)
    add_lora(ours, rank=2, alpha=5)
    randomize_lora(ours, seed=4)
    folder = save_lora_file(ours, tmp_path / "peft", format="peft")
    config = peft.LoraConfig.from_pretrained(str(folder))
    theirs = peft.inject_adapter_in_model(config, theirs)
    from safetensors.torch import load_file

    state = {
        k.removeprefix("base_model.model."): v
        for k, v in load_file(folder / "adapter_model.safetensors").items()
    }
    result = peft.set_peft_model_state_dict(theirs, state)
    assert not result.unexpected_keys
    torch.testing.assert_close(*unet_outputs(ours, theirs), **TOL)


def test_bad_lora_files_are_refused_naming_the_key(tmp_path):
    from safetensors.torch import save_file

    ours = randomize(UNet(UNET))
    save_file(
        {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 3)},
        tmp_path / "a.safetensors",
    )
    with pytest.raises(ValueError, match="text-encoder"):
        load_lora_file(ours, tmp_path / "a.safetensors")
    save_file({"unet.down_blocks.9.attentions.0.proj_in.lora_A.weight": torch.zeros(2, 3),
               "unet.down_blocks.9.attentions.0.proj_in.lora_B.weight": torch.zeros(3, 2)}, tmp_path / "b.safetensors")  # fmt: skip
    with pytest.raises(ValueError, match=r"down_blocks\.9\.attentions\.0\.proj_in"):
        load_lora_file(ours, tmp_path / "b.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_lora_file(ours, tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="format: kohya files name U-Net layers"):
        mm = MMDiT(
            MMDiTConfig(input_size=(8, 8), hidden_size=32, depth=1, num_heads=4, pooled_dim=4, context_dim=8)
        )
        add_lora(mm, rank=2)
        save_lora_file(mm, tmp_path / "k.safetensors", format="kohya")


def test_peft_lora_on_diffusers_dit_loads_onto_our_dit_and_writes_back_for_peft(tmp_path):
    """diffusers' DiT has no LoRA loader of its own; peft's adapter on it, saved and loaded both ways."""
    from diffcore.nn import DiT, DiTConfig
    from safetensors.torch import load_file, save_file

    config = DiTConfig(input_size=(8, 8), patch_size=2, in_channels=3, hidden_size=32, depth=2, num_heads=4,
                       num_classes=5, time_freq_shift=1.0, pos_embed_axes="xy")  # fmt: skip
    ours = randomize(DiT(config))
    save_diffusers_model(ours, tmp_path / "base")
    theirs = diffusers.DiTTransformer2DModel.from_pretrained(tmp_path / "base").eval()
    lora = peft.LoraConfig(
        r=3, lora_alpha=4, target_modules=["to_k", "to_v", "ff.net.0.proj", "proj_out_2", "norm1.linear"]
    )
    theirs = peft.inject_adapter_in_model(lora, theirs)
    randomize_lora(theirs, seed=7)
    folder = tmp_path / "peft"
    folder.mkdir()
    save_file({f"base_model.model.{k}": v for k, v in peft.get_peft_model_state_dict(theirs).items()},
              folder / "adapter_model.safetensors")  # fmt: skip
    lora.save_pretrained(str(folder))
    load_lora_file(ours, folder)

    def outputs(model):
        x, t, y = (
            torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)),
            torch.tensor([0.2, 0.9]),
            torch.tensor([1, 5]),
        )
        with torch.no_grad():
            return (
                model(x, t, y)
                if isinstance(model, DiT)
                else model(x, timestep=1000 * t, class_labels=y).sample
            )

    torch.testing.assert_close(outputs(ours), outputs(theirs), **TOL)
    written = save_lora_file(ours, tmp_path / "back", format="peft")
    fresh = diffusers.DiTTransformer2DModel.from_pretrained(tmp_path / "base").eval()
    fresh = peft.inject_adapter_in_model(peft.LoraConfig.from_pretrained(str(written)), fresh)
    state = {
        k.removeprefix("base_model.model."): v
        for k, v in load_file(written / "adapter_model.safetensors").items()
    }
    assert not peft.set_peft_model_state_dict(fresh, state).unexpected_keys
    torch.testing.assert_close(outputs(fresh), outputs(ours), **TOL)
