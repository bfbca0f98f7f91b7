"""Tests of ControlNet for the U-Net, the DiT and the MMDiT (diffcore.nn.controlnet)."""

from __future__ import annotations

import pytest
import torch
from diffcore.nn.controlnet import (
    ControlledModel,
    DiTControlNet,
    DiTControlNetConfig,
    MMDiTControlNet,
    MMDiTControlNetConfig,
    MultiControlNet,
    UNetControlNet,
    UNetControlNetConfig,
)
from diffcore.nn.dit import DiT, DiTConfig
from diffcore.nn.mmdit import MMDiT, MMDiTConfig
from diffcore.nn.unet import UNet, UNetConfig
from torch import nn

HINT = (8, 16)


def randomize_zero_params(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def tiny_unet() -> UNet:
    torch.manual_seed(0)
    cfg = UNetConfig(
        in_channels=3, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
        attention_levels=(1,), num_heads=2, num_groups=8, num_classes=4, context_dim=8,
    )  # fmt: skip
    model = UNet(cfg)
    randomize_zero_params(model)
    return model.eval()


def tiny_dit(pos_embed: str = "sincos") -> DiT:
    torch.manual_seed(0)
    cfg = DiTConfig(
        input_size=(8, 8), patch_size=2, in_channels=3, hidden_size=32, depth=3, num_heads=4,
        num_classes=4, pos_embed=pos_embed,
    )  # fmt: skip
    model = DiT(cfg)
    randomize_zero_params(model)
    return model.eval()


def tiny_mmdit(pos_embed: str = "sincos") -> MMDiT:
    torch.manual_seed(0)
    cfg = MMDiTConfig(
        input_size=(8, 8), patch_size=2, in_channels=3, hidden_size=32, depth=3, num_heads=4,
        pooled_dim=6, context_dim=10, qk_norm=True, pos_embed=pos_embed,
    )  # fmt: skip
    model = MMDiT(cfg)
    randomize_zero_params(model)
    return model.eval()


def mmdit_inputs(seed: int = 1) -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(seed)
    x, t = torch.randn(2, 3, 8, 8, generator=g), torch.rand(2, generator=g)
    kw = {
        "context": torch.randn(2, 5, 10, generator=g),
        "context_mask": torch.tensor([[True] * 5, [True, True, False, False, False]]),
        "pooled": torch.randn(2, 6, generator=g),
    }
    return (x, t, torch.randn(2, 2, 8, 8, generator=g)), kw


def mmdit_controlnet(base: MMDiT, num_blocks: int = 2) -> MMDiTControlNet:
    return MMDiTControlNet.from_mmdit(
        base, num_blocks=num_blocks, conditioning_channels=2, hint_channels=HINT
    )


def unet_inputs(seed: int = 1, downscale: int = 1) -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(seed)
    x, t = torch.randn(2, 3, 8, 8, generator=g), torch.rand(2, generator=g)
    cond = torch.randn(2, 2, 8 * downscale, 8 * downscale, generator=g)
    kw = {"y": torch.tensor([1, 3]), "context": torch.randn(2, 5, 8, generator=g)}
    return (x, t, cond), kw


def dit_inputs(seed: int = 1) -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(seed)
    x, t = torch.randn(2, 3, 8, 8, generator=g), torch.rand(2, generator=g)
    return (x, t, torch.randn(2, 2, 8, 8, generator=g)), {"y": torch.tensor([0, 2])}


def unet_controlnet(base: UNet, downscale: int = 1) -> UNetControlNet:
    return UNetControlNet.from_unet(
        base, conditioning_channels=2, hint_channels=HINT, hint_downscale=downscale
    )


def dit_controlnet(base: DiT, num_blocks: int = 2) -> DiTControlNet:
    return DiTControlNet.from_dit(base, num_blocks=num_blocks, conditioning_channels=2, hint_channels=HINT)


CASES = [
    (tiny_unet, unet_controlnet, unet_inputs),
    (tiny_dit, dit_controlnet, dit_inputs),
    (lambda: tiny_dit("rope"), dit_controlnet, dit_inputs),
    (tiny_mmdit, mmdit_controlnet, mmdit_inputs),
    (lambda: tiny_mmdit("rope"), mmdit_controlnet, mmdit_inputs),
]
TRAINABLE = [CASES[0], CASES[1], CASES[3]]


@pytest.mark.parametrize(("make_base", "make_cn", "inputs"), CASES)
def test_initial_output_equals_frozen_base_exactly(make_base, make_cn, inputs) -> None:
    base = make_base()
    (x, t, cond), kw = inputs()
    expected = base(x, t, **kw)
    model = ControlledModel(base, make_cn(base))
    assert torch.equal(model(x, t, control_cond=cond, **kw), expected)
    assert torch.equal(model(x, t, **kw), expected)
    assert not any(p.requires_grad for p in model.base.parameters())


def test_unet_controlnet_copies_the_encoder() -> None:
    base = tiny_unet()
    cn = unet_controlnet(base)
    for (name, p), (_, q) in zip(
        cn.encoder.state_dict().items(), base.encoder.state_dict().items(), strict=True
    ):
        assert torch.equal(p, q), name
    (x, t, cond), kw = unet_inputs()
    skips, mid = cn(x, t, cond, **kw)
    assert [s.shape[1] for s in skips] == base.skip_channels
    assert all(not s.any() for s in skips) and not mid.any()


def test_dit_controlnet_copies_embedders_and_first_blocks() -> None:
    base = tiny_dit()
    cn = dit_controlnet(base, num_blocks=2)
    assert len(cn.blocks) == 2
    for i in range(2):
        for k, v in base.blocks[i].state_dict().items():
            assert torch.equal(cn.blocks[i].state_dict()[k], v)
    assert torch.equal(cn.t_embedder.mlp[0].weight, base.t_embedder.mlp[0].weight)
    (x, t, cond), kw = dit_inputs()
    residuals = cn(x, t, cond, **kw)
    assert len(residuals) == 2 and residuals[0].shape == (2, 16, 32)


@pytest.mark.parametrize(("make_base", "make_cn", "inputs"), TRAINABLE)
def test_training_changes_only_the_copy(make_base, make_cn, inputs) -> None:
    base = make_base()
    cn = make_cn(base)
    model = ControlledModel(base, cn).train()
    assert not model.base.training and cn.training
    base_before = {k: v.clone() for k, v in base.state_dict().items()}
    cn_before = {k: v.clone() for k, v in cn.state_dict().items()}
    (x, t, cond), kw = inputs()
    base_out = base(x, t, **kw).detach()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in cn.parameters()}
    opt = torch.optim.Adam(trainable, lr=1e-2)
    target = torch.randn_like(base_out)
    for _ in range(3):
        opt.zero_grad()
        (model(x, t, control_cond=cond, **kw) - target).square().mean().backward()
        opt.step()
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in base_before.items())
    changed = [k for k, v in cn.state_dict().items() if not torch.equal(v, cn_before[k])]
    assert any("zero" in k for k in changed)  # the zero projections moved first
    assert any("blocks" in k for k in changed)  # and then the copied blocks
    assert not torch.allclose(model.eval()(x, t, control_cond=cond, **kw), base_out)


@pytest.mark.parametrize(("make_base", "make_cn", "inputs"), TRAINABLE)
def test_multi_control_scales(make_base, make_cn, inputs) -> None:
    base = make_base()
    cn1, cn2 = make_cn(base), make_cn(base)
    randomize_zero_params(cn1, seed=1)
    randomize_zero_params(cn2, seed=2)
    (x, t, cond1), kw = inputs(seed=1)
    (_, _, cond2), _ = inputs(seed=2)
    alone = ControlledModel(base, cn1)(x, t, control_cond=cond1, **kw)
    assert not torch.allclose(alone, base(x, t, **kw))
    both = ControlledModel(base, [cn1, cn2], scales=[1.0, 0.0])
    assert torch.equal(both(x, t, control_cond=[cond1, cond2], **kw), alone)
    # Residuals are the scaled sum of the single-ControlNet residuals.
    multi = MultiControlNet([cn1, cn2], scales=[0.5, -2.0])
    r1, r2, r = cn1(x, t, cond1, **kw), cn2(x, t, cond2, **kw), multi(x, t, [cond1, cond2], **kw)
    flat = (lambda res: [*res[0], res[1]]) if isinstance(r, tuple) else list
    for a, b, c in zip(flat(r1), flat(r2), flat(r), strict=True):
        torch.testing.assert_close(c, 0.5 * a - 2.0 * b)
    both.scales = [0.0, 0.0]
    assert torch.equal(both(x, t, control_cond=[cond1, cond2], **kw), base(x, t, **kw))


def test_dit_controlnets_of_different_depths_combine() -> None:
    base = tiny_dit()
    shallow, deep = dit_controlnet(base, 1), dit_controlnet(base, 3)
    randomize_zero_params(shallow, 1)
    randomize_zero_params(deep, 2)
    (x, t, cond), kw = dit_inputs()
    r = MultiControlNet([shallow, deep])(x, t, [cond, cond], **kw)
    rs, rd = shallow(x, t, cond, **kw), deep(x, t, cond, **kw)
    assert len(r) == 3
    torch.testing.assert_close(r[0], rs[0] + rd[0])
    torch.testing.assert_close(r[2], rd[2])


@pytest.mark.parametrize("kind", ["unet", "dit", "mmdit"])
def test_save_load_roundtrip(kind, tmp_path) -> None:
    if kind == "unet":
        cn, ((x, t, cond), kw) = unet_controlnet(tiny_unet(), downscale=2), unet_inputs(downscale=2)
        cls = UNetControlNet
    elif kind == "mmdit":
        cn, ((x, t, cond), kw) = mmdit_controlnet(tiny_mmdit()), mmdit_inputs()
        cls = MMDiTControlNet
    else:
        cn, ((x, t, cond), kw) = dit_controlnet(tiny_dit()), dit_inputs()
        cls = DiTControlNet
    randomize_zero_params(cn, seed=4)
    cn.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path)
    assert loaded.config == cn.config
    out, out_loaded = cn(x, t, cond, **kw), loaded(x, t, cond, **kw)
    flat = (lambda res: [*res[0], res[1]]) if kind == "unet" else list
    for a, b in zip(flat(out), flat(out_loaded), strict=True):
        assert torch.equal(a, b)


def test_condition_at_higher_resolution_and_errors() -> None:
    base = tiny_unet()
    cn = unet_controlnet(base, downscale=2)
    (x, t, cond), kw = unet_inputs(downscale=2)
    assert len(cn(x, t, cond, **kw)[0]) == len(base.skip_channels)
    with pytest.raises(ValueError, match="control_cond: expected shape"):
        cn(x, t, cond[..., :8, :8], **kw)
    with pytest.raises(ValueError, match="hint_downscale"):
        UNetControlNetConfig(unet=base.config, hint_channels=(8, 16), hint_downscale=4)
    with pytest.raises(ValueError, match="num_blocks"):
        DiTControlNetConfig(dit=tiny_dit().config, num_blocks=5)
    with pytest.raises(TypeError, match="takes DiTControlNets"):
        ControlledModel(tiny_dit(), cn)
    with pytest.raises(ValueError, match="condition maps"):
        ControlledModel(base, [cn, cn])(x, t, control_cond=[cond], **kw)


def test_mmdit_controlnet_copies_both_streams_and_embedders() -> None:
    base = tiny_mmdit()
    cn = mmdit_controlnet(base, num_blocks=2)
    assert len(cn.blocks) == 2
    for i in range(2):
        for k, v in base.blocks[i].state_dict().items():  # image (x_*) and text (c_*) streams alike
            assert torch.equal(cn.blocks[i].state_dict()[k], v), k
    for name in ("x_embedder", "t_embedder", "pooled_embedder", "context_embedder"):
        for k, v in getattr(base, name).state_dict().items():
            assert torch.equal(getattr(cn, name).state_dict()[k], v), f"{name}.{k}"
    (x, t, cond), kw = mmdit_inputs()
    residuals = cn(x, t, cond, **kw)
    assert len(residuals) == 2 and residuals[0].shape == (2, 16, 32)
    assert all(not r.any() for r in residuals)
    # A copy of every block keeps the base's last block (context_pre_only: no text output).
    full = mmdit_controlnet(base, num_blocks=3)
    assert full.blocks[2].c_out is None and len(full(x, t, cond, **kw)) == 3


def test_mmdit_controlnet_residual_enters_after_its_block() -> None:
    """``control=[r]`` with ``r`` on the image tokens equals running block 0, adding ``r``, then the rest."""
    base = tiny_mmdit()
    (x, t, _), kw = mmdit_inputs()
    r = 0.3 * torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(5))
    handle = base.blocks[0].register_forward_hook(lambda module, args, out: (out[0] + r, out[1]))
    hooked = base(x, t, **kw)
    handle.remove()
    torch.testing.assert_close(base(x, t, control=[r], **kw), hooked)
    assert not torch.allclose(hooked, base(x, t, **kw))
    with pytest.raises(ValueError, match="control: got 4 residuals"):
        base(x, t, control=[r] * 4, **kw)


def test_mmdit_controlnet_without_text_and_errors() -> None:
    base = tiny_mmdit()
    cn = mmdit_controlnet(base)
    randomize_zero_params(cn, seed=3)
    (x, t, cond), _ = mmdit_inputs()
    out = ControlledModel(base, cn)(x, t, control_cond=cond)  # T5/context dropped at inference
    assert out.shape == x.shape and not torch.allclose(out, base(x, t))
    with pytest.raises(ValueError, match="control_cond: expected shape"):
        cn(x, t, cond[:, :1])
    with pytest.raises(ValueError, match="context:"):
        cn(x, t, cond, context=torch.randn(2, 5, 9))
    with pytest.raises(ValueError, match="num_blocks"):
        MMDiTControlNetConfig(mmdit=base.config, num_blocks=4)
    with pytest.raises(TypeError, match="takes MMDiTControlNets"):
        ControlledModel(base, dit_controlnet(tiny_dit()))
    with pytest.raises(TypeError, match="one kind"):
        MultiControlNet([cn, dit_controlnet(tiny_dit())])


def test_mmdit_controlled_model_compiles_without_graph_breaks() -> None:
    torch._dynamo.reset()
    base = tiny_mmdit()
    cn1, cn2 = mmdit_controlnet(base, 1), mmdit_controlnet(base, 2)
    randomize_zero_params(cn1, 1)
    randomize_zero_params(cn2, 2)
    model = ControlledModel(base, [cn1, cn2], scales=[0.7, 1.3])
    (x, t, cond), kw = mmdit_inputs()
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # fullgraph: a graph break raises
    out = compiled(x, t, control_cond=[cond, cond.flip(0)], **kw)
    torch.testing.assert_close(
        out, model(x, t, control_cond=[cond, cond.flip(0)], **kw), rtol=1e-5, atol=1e-5
    )
    out.sum().backward()
    assert cn1.cond_embedder.proj.weight.grad is not None
