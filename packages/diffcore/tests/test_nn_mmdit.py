"""MMDiT (SD3): joint attention with and without text context, masks, persistence, parameter parity."""

import copy

import pytest
import torch
from diffcore.nn.flops import count_parameters
from diffcore.nn.mmdit import MMDiT, MMDiTConfig, mmdit_config
from diffcore.pretrained import load_pretrained


def tiny_config(**kw) -> MMDiTConfig:
    base = dict(
        input_size=(8, 8),
        patch_size=2,
        in_channels=4,
        hidden_size=32,
        depth=3,
        num_heads=4,
        pooled_dim=12,
        context_dim=20,
    )
    return MMDiTConfig(**{**base, **kw})


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def inputs(b=2, m=5):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, 4, 8, 8, generator=g)
    return x, torch.rand(b, generator=g), torch.randn(b, m, 20, generator=g), torch.randn(b, 12, generator=g)


def test_zero_output_at_init_with_and_without_context():
    model = MMDiT(tiny_config(qk_norm=True))
    x, t, ctx, pooled = inputs()
    assert torch.equal(model(x, t), torch.zeros_like(x))
    assert torch.equal(model(x, t, ctx, pooled=pooled), torch.zeros_like(x))


@pytest.mark.parametrize(
    "input_size,patch_size,pos_embed",
    [((8, 8), 2, "sincos"), ((8, 8), 2, "rope"), ((2, 4, 4), (1, 2, 2), "rope"), ((16,), 4, "sincos")],
    ids=["2d", "2d-rope", "3d-rope", "1d"],
)
def test_shapes_with_and_without_t5_context(input_size, patch_size, pos_embed):
    model = randomize(MMDiT(tiny_config(input_size=input_size, patch_size=patch_size, pos_embed=pos_embed)))
    x = torch.randn(2, 4, *input_size)
    _, t, ctx, pooled = inputs()
    for kwargs in (
        {},
        {"pooled": pooled},
        {"context": ctx, "pooled": pooled},
        {"context": torch.zeros_like(ctx)},
    ):
        out = model(x, t, **kwargs)
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_no_context_equals_fully_masked_context():
    model = randomize(MMDiT(tiny_config(qk_norm=True)))
    x, t, ctx, pooled = inputs()
    masked = model(x, t, ctx, torch.zeros(2, 5, dtype=torch.bool), pooled)
    torch.testing.assert_close(masked, model(x, t, pooled=pooled), rtol=1e-5, atol=1e-5)
    # A zero context is real (if uninformative) tokens: it changes the output.
    assert not torch.allclose(model(x, t, torch.zeros_like(ctx), pooled=pooled), model(x, t, pooled=pooled))


def test_padded_context_with_mask_equals_unpadded_context():
    model = randomize(MMDiT(tiny_config()))
    x, t, ctx, pooled = inputs()
    lengths = [5, 2]
    mask = torch.arange(5)[None] < torch.tensor(lengths)[:, None]
    out = model(x, t, ctx, mask, pooled)
    for b, m in enumerate(lengths):
        ref = model(x[b : b + 1], t[b : b + 1], ctx[b : b + 1, :m], pooled=pooled[b : b + 1])
        torch.testing.assert_close(out[b : b + 1], ref, rtol=1e-5, atol=1e-5)


def test_pooled_and_context_both_condition_the_output():
    model = randomize(MMDiT(tiny_config()))
    x, t, ctx, pooled = inputs()
    base = model(x, t, ctx, pooled=pooled)
    assert not torch.allclose(base, model(x, t, ctx, pooled=pooled + 1))
    assert not torch.allclose(base, model(x, t, ctx + 1, pooled=pooled))


def test_last_block_is_context_pre_only():
    model = MMDiT(tiny_config())
    assert all(b.c_out is not None for b in model.blocks[:-1])
    assert model.blocks[-1].c_out is None


def test_save_and_load_roundtrip(tmp_path):
    model = randomize(MMDiT(tiny_config(pos_embed="rope", qk_norm=True)))
    model.save_pretrained(tmp_path / "mmdit")
    loaded = load_pretrained(tmp_path / "mmdit")
    assert isinstance(loaded, MMDiT) and loaded.config == model.config
    x, t, ctx, pooled = inputs()
    torch.testing.assert_close(loaded(x, t, ctx, pooled=pooled), model(x, t, ctx, pooled=pooled))


def test_gradient_checkpointing_gives_the_same_gradients():
    model = randomize(MMDiT(tiny_config()))
    ckpt = copy.deepcopy(model)
    ckpt.gradient_checkpointing = True
    x, t, ctx, pooled = inputs()
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    for m in (model, ckpt):
        m.train()
        m(x, t, ctx, mask, pooled).pow(2).sum().backward()
    for (name, p), q in zip(model.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_forward_traces_as_one_graph():
    torch._dynamo.reset()
    model = randomize(MMDiT(tiny_config(depth=2, qk_norm=True)))
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    x, t, ctx, pooled = inputs()
    mask = torch.tensor([[True] * 5, [True, False, False, False, False]])
    torch.testing.assert_close(compiled(x, t, ctx, mask, pooled), model(x, t, ctx, mask, pooled))


def test_bad_inputs_raise_naming_the_argument():
    model = MMDiT(tiny_config())
    x, t, ctx, _ = inputs()
    with pytest.raises(ValueError, match="context:"):
        model(x, t, torch.randn(2, 5, 19))
    with pytest.raises(ValueError, match="context_mask: given without"):
        model(x, t, context_mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="context_mask: expected bool"):
        model(x, t, ctx, torch.ones(2, 5))
    with pytest.raises(ValueError, match="pooled"):
        model(x, t, pooled=torch.randn(2, 11))


def test_sd3_medium_parameter_count_equals_diffusers():
    """Same layout as SD3-medium (depth 24): exactly as many parameters as diffusers' implementation."""
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        ours = MMDiT(mmdit_config(24))
        theirs = diffusers.SD3Transformer2DModel(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            num_layers=24,
            attention_head_dim=64,
            num_attention_heads=24,
            joint_attention_dim=4096,
            caption_projection_dim=1536,
            pooled_projection_dim=2048,
            out_channels=16,
            pos_embed_max_size=192,
        )
    assert count_parameters(ours) == count_parameters(theirs)
    assert abs(count_parameters(ours) / 2.0e9 - 1) < 0.02
