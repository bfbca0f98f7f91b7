"""Tests of LoRA through PEFT (diffcore.nn.lora) on a linear layer, the U-Net and the DiT."""

from __future__ import annotations

import json

import pytest
import torch
from diffcore.nn.dit import DiT, DiTConfig
from diffcore.nn.lora import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
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
from diffcore.nn.unet import UNet, UNetConfig
from safetensors.torch import load_file
from torch import nn

pytest.importorskip("peft")


def randomize_zero_params(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    cfg = UNetConfig(
        in_channels=3, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
        attention_levels=(1,), num_heads=2, num_groups=8, context_dim=8,
    )  # fmt: skip
    model = UNet(cfg)
    randomize_zero_params(model, seed)
    return model.eval()


def tiny_dit(seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    cfg = DiTConfig(input_size=(8, 8), patch_size=2, in_channels=3, hidden_size=32, depth=2, num_heads=4)
    model = DiT(DiTConfig(**{**cfg.__dict__, "num_classes": 3}))
    randomize_zero_params(model, seed)
    return model.eval()


def unet_call(model: nn.Module) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    x, t, ctx = (
        torch.randn(2, 3, 8, 8, generator=gen),
        torch.rand(2, generator=gen),
        torch.randn(2, 4, 8, generator=gen),
    )
    return model(x, t, context=ctx)


def dit_call(model: nn.Module) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return model(torch.randn(2, 3, 8, 8, generator=gen), torch.rand(2, generator=gen), y=torch.tensor([0, 2]))


BACKBONES = [(tiny_unet, unet_call), (tiny_dit, dit_call)]


def randomize_lora_b(model: nn.Module, adapter: str, seed: int) -> None:
    """Give an adapter non-zero B so that it changes the output (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and f".{adapter}." in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))


def test_default_targets_are_attention_and_mlp_projections() -> None:
    targets = find_lora_targets(tiny_dit())
    assert "blocks.0.attn.qkv.qkv" in targets and "blocks.1.mlp.fc2" in targets
    assert not any("embedder" in t or "modulation" in t or "final_layer" in t for t in targets)
    unet_targets = find_lora_targets(tiny_unet())
    assert any(t.endswith("attn2.kv") for t in unet_targets)
    assert not any("time_embed" in t or "emb_layers" in t for t in unet_targets)


@pytest.mark.parametrize(("build", "call"), BACKBONES)
def test_fresh_adapter_leaves_output_unchanged(build, call) -> None:
    model = build()
    before = call(model)
    add_lora(model, rank=4, alpha=8)
    assert torch.equal(call(model), before)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and {id(p) for p in trainable} == {id(p) for p in lora_parameters(model, "default")}


@pytest.mark.parametrize(("build", "call"), BACKBONES)
def test_training_changes_only_lora_parameters(build, call) -> None:
    model = build().train()
    add_lora(model, rank=4)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    out_before = call(model).detach()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        call(model).square().mean().backward()
        opt.step()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in base_before.items())
    assert any(not torch.equal(params[n], v) for n, v in lora_before.items() if "lora_B" in n)
    assert not torch.allclose(call(model), out_before)


@pytest.mark.parametrize(("build", "call"), BACKBONES)
def test_merge_matches_unmerged_and_unmerge_restores_base(build, call) -> None:
    model = build()
    base_out = call(model)
    base_weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    add_lora(model, rank=4)
    randomize_lora_b(model, "default", seed=3)
    adapted = call(model)
    assert not torch.allclose(adapted, base_out)
    merge_lora(model)
    torch.testing.assert_close(call(model), adapted, rtol=1e-4, atol=1e-5)
    moved = [n for n, p in model.named_parameters() if "base_layer" in n and n.endswith("weight")]
    assert moved
    unmerge_lora(model)
    torch.testing.assert_close(call(model), adapted, rtol=1e-4, atol=1e-5)
    set_adapters(model, [])
    torch.testing.assert_close(call(model), base_out, rtol=1e-4, atol=1e-5)
    for name, p in model.named_parameters():
        plain = name.replace(".base_layer", "")
        if plain in base_weights:
            torch.testing.assert_close(p.detach(), base_weights[plain], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("build", "call"), BACKBONES)
def test_save_load_roundtrip_in_peft_format(build, call, tmp_path) -> None:
    model = build()
    add_lora(model, rank=4, alpha=2)
    randomize_lora_b(model, "default", seed=5)
    adapted = call(model)
    save_lora(model, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG_NAME).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 2
    keys = list(load_file(str(tmp_path / "adapter" / ADAPTER_WEIGHTS_NAME)))
    assert keys and all(k.startswith("base_model.model.") and ".lora_" in k for k in keys)
    assert not any(".default." in k for k in keys)  # PEFT strips the adapter name on disk

    fresh = build()
    load_lora(fresh, tmp_path / "adapter", adapter_name="style")
    assert adapter_names(fresh) == ["style"]
    # Same weights; matmuls on freshly loaded buffers may round differently in the last bit.
    torch.testing.assert_close(call(fresh), adapted, rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in fresh.parameters())


def test_saved_adapter_loads_with_peft_itself(tmp_path) -> None:
    peft = pytest.importorskip("peft")
    model = tiny_dit()
    add_lora(model, rank=4)
    randomize_lora_b(model, "default", seed=6)
    adapted = dit_call(model)
    save_lora(model, tmp_path)
    peft_model = peft.PeftModel.from_pretrained(tiny_dit(), str(tmp_path))
    torch.testing.assert_close(dit_call(peft_model), adapted, rtol=0, atol=0)


def test_two_weighted_adapters_equal_linear_combination_of_deltas() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5))
    w, b = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    add_lora(model, rank=2, alpha=4, target_modules=["0"], adapter_name="a")
    add_lora(model, rank=3, alpha=3, target_modules=["0"], adapter_name="b")
    randomize_lora_b(model, "a", seed=1)
    randomize_lora_b(model, "b", seed=2)
    layer = model[0]
    delta_a = (4 / 2) * layer.lora_B["a"].weight @ layer.lora_A["a"].weight
    delta_b = (3 / 3) * layer.lora_B["b"].weight @ layer.lora_A["b"].weight
    x = torch.randn(7, 6)
    w1, w2 = 0.7, -0.4
    set_adapters(model, ["a", "b"], weights=[w1, w2])
    expected = x @ (w + w1 * delta_a + w2 * delta_b).T + b
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
    merge_lora(model)
    torch.testing.assert_close(layer.base_layer.weight, w + w1 * delta_a + w2 * delta_b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
    unmerge_lora(model)
    torch.testing.assert_close(layer.base_layer.weight, w, rtol=0, atol=1e-6)
    set_adapters(model, ["b"])
    torch.testing.assert_close(model(x), x @ (w + delta_b).T + b, rtol=1e-5, atol=1e-6)


def test_adapter_name_errors_and_delete() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    add_lora(model, rank=2, target_modules=["0"], adapter_name="a")
    with pytest.raises(ValueError, match="already exists"):
        add_lora(model, rank=2, target_modules=["0"], adapter_name="a")
    with pytest.raises(ValueError, match="'zz' is not in the model"):
        set_adapters(model, ["zz"])
    with pytest.raises(ValueError, match="weights: expected 1"):
        set_adapters(model, ["a"], weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="rank"):
        add_lora(model, rank=0, target_modules=["0"], adapter_name="b")
    with pytest.raises(ValueError, match="target_modules"):
        add_lora(nn.Sequential(nn.Conv1d(2, 2, 1)), rank=2)
    delete_lora(model, "a")
    assert adapter_names(model) == [] and not lora_parameters(model)


def test_mmdit_default_targets_and_fresh_adapter() -> None:
    from diffcore.nn.mmdit import MMDiT, mmdit_config

    torch.manual_seed(0)
    model = MMDiT(mmdit_config(2, input_size=(8, 8), in_channels=4, pooled_dim=8, context_dim=16)).eval()
    randomize_zero_params(model)
    targets = find_lora_targets(model)
    assert "blocks.0.x_in.qkv.qkv" in targets and "blocks.0.c_out.mlp.fc2" in targets
    assert not any("modulation" in t or "embedder" in t for t in targets)
    gen = torch.Generator().manual_seed(0)
    x, ctx, pooled = (
        torch.randn(2, 4, 8, 8, generator=gen),
        torch.randn(2, 3, 16, generator=gen),
        torch.randn(2, 8),
    )
    t = torch.rand(2, generator=gen)
    before = model(x, t, context=ctx, pooled=pooled)
    add_lora(model, rank=2)
    # B = 0 adds exact zeros; the joint attention may still pick another kernel for the new buffers.
    torch.testing.assert_close(model(x, t, context=ctx, pooled=pooled), before, rtol=1e-5, atol=1e-5)
    randomize_lora_b(model, "default", seed=1)
    assert not torch.allclose(model(x, t, context=ctx, pooled=pooled), before)
