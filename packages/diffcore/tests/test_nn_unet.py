"""Tests of the ADM / Stable-Diffusion U-Net (diffcore.nn.unet)."""

from __future__ import annotations

import pytest
import torch
from diffcore.nn.unet import UNet, UNetConfig, sd2_unet_config, sd15_unet_config, sdxl_unet_config


def tiny_config(**overrides: object) -> UNetConfig:
    base = dict(
        in_channels=3,
        model_channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(1,),
        num_heads=2,
        num_groups=8,
    )
    base.update(overrides)
    return UNetConfig(**base)  # type: ignore[arg-type]


def randomize_zero_params(model: torch.nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised layers random weights so that every input path reaches the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def make(config: UNetConfig, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    model = UNet(config)
    randomize_zero_params(model, seed)
    return model.eval()


@pytest.mark.parametrize(
    ("dims", "shape", "out_channels"),
    [(1, (2, 3, 16), None), (1, (2, 3, 24), 5), (2, (2, 3, 8, 8), None), (2, (3, 3, 8, 12), 6)],
)
def test_output_shape_1d_2d(dims: int, shape: tuple[int, ...], out_channels: int | None) -> None:
    model = make(tiny_config(dims=dims, out_channels=out_channels))
    out = model(torch.randn(shape), torch.rand(shape[0]))
    expected_c = out_channels if out_channels is not None else shape[1]
    assert out.shape == (shape[0], expected_c, *shape[2:])
    assert torch.isfinite(out).all()


def test_output_is_zero_at_initialisation() -> None:
    model = UNet(tiny_config())
    out = model(torch.randn(2, 3, 8, 8), torch.rand(2))
    assert torch.equal(out, torch.zeros_like(out))


def test_three_levels_with_mid_attention_and_head_dim() -> None:
    model = make(
        tiny_config(channel_mult=(1, 2, 2), attention_levels=(0, 2), head_dim=8, transformer_depth=2)
    )
    x = torch.randn(2, 3, 16, 8)
    assert model(x, torch.rand(2)).shape == x.shape


def test_time_changes_output() -> None:
    model = make(tiny_config())
    x = torch.randn(2, 3, 8, 8)
    assert not torch.allclose(model(x, torch.full((2,), 0.1)), model(x, torch.full((2,), 0.9)))


def test_class_conditioning_and_null_class() -> None:
    model = make(tiny_config(num_classes=4))
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    out0 = model(x, t, y=torch.tensor([0, 0]))
    out1 = model(x, t, y=torch.tensor([1, 1]))
    assert not torch.allclose(out0, out1)
    # y=None is the null class, index num_classes, used for classifier-free guidance.
    torch.testing.assert_close(model(x, t), model(x, t, y=torch.tensor([4, 4])), rtol=0, atol=0)


def test_text_conditioning_changes_output() -> None:
    model = make(tiny_config(context_dim=10, pooled_dim=7))
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    ctx = torch.randn(2, 5, 10)
    base = model(x, t, context=ctx)
    assert not torch.allclose(base, model(x, t))
    assert not torch.allclose(base, model(x, t, context=torch.randn(2, 5, 10)))
    assert not torch.allclose(base, model(x, t, context=ctx, pooled=torch.randn(2, 7)))


def test_context_mask_ignores_padding_tokens() -> None:
    model = make(tiny_config(context_dim=10))
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    ctx = torch.randn(2, 6, 10)
    mask = torch.tensor([[True, True, True, False, False, False], [True, False, False, False, False, False]])
    out = model(x, t, context=ctx, context_mask=mask)
    ctx_changed_padding = torch.where(mask[..., None], ctx, 100 * torch.randn_like(ctx))
    torch.testing.assert_close(
        model(x, t, context=ctx_changed_padding, context_mask=mask), out, rtol=0, atol=1e-6
    )
    # Truncating to the real tokens only gives the same answer for element 0 (3 real tokens).
    out_trunc = model(x[:1], t[:1], context=ctx[:1, :3])
    torch.testing.assert_close(out_trunc, out[:1], rtol=1e-5, atol=1e-5)
    # A real token does matter.
    ctx_changed_real = ctx.clone()
    ctx_changed_real[:, 0] += 1.0
    assert not torch.allclose(model(x, t, context=ctx_changed_real, context_mask=mask), out)


def test_fully_masked_context_equals_no_context() -> None:
    model = make(tiny_config(context_dim=10))
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    out = model(x, t, context=torch.randn(2, 4, 10), context_mask=mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, model(x, t), rtol=0, atol=1e-6)


def test_gradient_checkpointing_gives_same_gradients() -> None:
    cfg = tiny_config(context_dim=10, num_classes=3)
    model = make(cfg).train()
    x, t, ctx, y = torch.randn(2, 3, 8, 8), torch.rand(2), torch.randn(2, 4, 10), torch.tensor([0, 2])

    def grads() -> list[torch.Tensor]:
        model.zero_grad()
        model(x, t, y=y, context=ctx).square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.gradient_checkpointing = True
    assert model.encoder.gradient_checkpointing
    ckpt = grads()
    for g0, g1 in zip(plain, ckpt, strict=True):
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-6)
    assert UNet(tiny_config(gradient_checkpointing=True)).gradient_checkpointing


def test_control_residuals_are_added() -> None:
    model = make(tiny_config())
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    skips, mid = model.encoder(x, model.encoder.embed(t))
    zero = ([torch.zeros_like(s) for s in skips], torch.zeros_like(mid))
    out = model(x, t)
    assert torch.equal(model(x, t, control=zero), out)
    assert len(skips) == len(model.skip_channels)
    assert [s.shape[1] for s in skips] == model.skip_channels
    bumped = ([torch.zeros_like(s) for s in skips], torch.ones_like(mid))
    assert not torch.allclose(model(x, t, control=bumped), out)
    with pytest.raises(ValueError, match="skip residuals"):
        model(x, t, control=(zero[0][:-1], zero[1]))


def test_save_load_roundtrip(tmp_path) -> None:
    cfg = tiny_config(dims=1, num_classes=3, context_dim=4, channel_mult=(1, 2, 2))
    model = make(cfg)
    model.save_pretrained(tmp_path / "unet")
    loaded = UNet.from_pretrained(tmp_path / "unet").eval()
    assert loaded.config == cfg
    x, t, y, ctx = torch.randn(2, 3, 16), torch.rand(2), torch.tensor([1, 2]), torch.randn(2, 3, 4)
    assert torch.equal(loaded(x, t, y=y, context=ctx), model(x, t, y=y, context=ctx))


def test_clear_errors() -> None:
    model = UNet(tiny_config(channel_mult=(1, 2, 2)))
    t = torch.rand(2)
    with pytest.raises(ValueError, match="expected 3 input channels, got 4"):
        model(torch.randn(2, 4, 8, 8), t)
    with pytest.raises(ValueError, match="divisible by the downsampling factor 4"):
        model(torch.randn(2, 3, 8, 6), t)
    with pytest.raises(ValueError, match="x: expected 4 dims"):
        model(torch.randn(2, 3, 8), t)
    with pytest.raises(ValueError, match="t: expected shape"):
        model(torch.randn(2, 3, 8, 8), torch.rand(3))
    with pytest.raises(ValueError, match="num_classes is None"):
        model(torch.randn(2, 3, 8, 8), t, y=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="context_dim is None"):
        model(torch.randn(2, 3, 8, 8), t, context=torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="num_groups"):
        UNetConfig(model_channels=20, num_groups=8)
    with pytest.raises(ValueError, match="dims"):
        UNetConfig(dims=3)
    with pytest.raises(ValueError, match="attention_levels"):
        UNetConfig(channel_mult=(1, 2), attention_levels=(2,))


@pytest.mark.parametrize(
    ("factory", "published"),
    [(sd15_unet_config, 859_520_964), (sd2_unet_config, 865_910_724), (sdxl_unet_config, 2_567_463_684)],
)
def test_stable_diffusion_shapes_match_published_parameter_counts(factory, published: int) -> None:
    with torch.device("meta"):
        model = UNet(factory())
    assert sum(p.numel() for p in model.parameters()) == published


def test_per_level_transformer_depth_and_roundtrip(tmp_path) -> None:
    cfg = tiny_config(
        channel_mult=(1, 2, 2), attention_levels=(1, 2), transformer_depth=(0, 2, 3), mid_transformer_depth=1
    )
    model = make(cfg)
    depths = [len(m.blocks) for m in model.modules() if type(m).__name__ == "SpatialTransformer"]
    # encoder: level 1 -> 2, level 2 -> 3; middle -> 1; decoder (2 blocks per level): 3, 3, 2, 2
    assert depths == [2, 3, 1, 3, 3, 2, 2]
    model.save_pretrained(tmp_path)
    loaded = UNet.from_pretrained(tmp_path)
    assert loaded.config == cfg and loaded.config.transformer_depth == (0, 2, 3)
    x, t = torch.randn(1, 3, 8, 8), torch.rand(1)
    assert torch.equal(loaded.eval()(x, t), model(x, t))
    with pytest.raises(ValueError, match="one depth per level"):
        tiny_config(transformer_depth=(1, 2, 3))
    with pytest.raises(ValueError, match="level 1 has attention but depth 0"):
        tiny_config(transformer_depth=(1, 0))


@pytest.mark.parametrize("dims", [1, 2])
def test_torch_compile_fullgraph_without_graph_breaks(dims: int) -> None:
    """The forward traces as one graph (fullgraph=True raises on a break) with class, text and mask
    conditioning, and the compiled module gives the eager output (aot_eager: tracing, not codegen)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    model = make(tiny_config(dims=dims, num_classes=5, context_dim=12))
    shape = (2, 3, 8, 8) if dims == 2 else (2, 3, 16)
    x, t = torch.randn(shape), torch.rand(2)
    cond = dict(
        y=torch.tensor([1, 5]),
        context=torch.randn(2, 7, 12),
        context_mask=torch.tensor([[True] * 7, [True] * 4 + [False] * 3]),
    )
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    out = torch.compile(model, backend=counter, fullgraph=True)(x, t, **cond)
    assert counter.frame_count == 1
    torch.testing.assert_close(out, model(x, t, **cond), rtol=1e-5, atol=1e-6)
