"""DiT: shapes over 1D/2D/3D, adaLN-Zero, CFG null class, persistence, checkpointing, control, compile, cost."""

import copy
import time

import pytest
import torch
from diffcore.nn.dit import DiT, DiT_XL_2, DiTConfig, dit_config
from diffcore.nn.flops import count_parameters, forward_cost
from diffcore.pretrained import load_pretrained


def tiny_config(**kw) -> DiTConfig:
    base = dict(
        input_size=(8, 8), patch_size=2, in_channels=3, hidden_size=32, depth=2, num_heads=4, num_classes=5
    )
    return DiTConfig(**{**base, **kw})


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter (zero-initialised ones included) so outputs are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize(
    "input_size,patch_size,pos_embed",
    [
        ((16,), 4, "sincos"),
        ((8, 8), 2, "sincos"),
        ((8, 8), 2, "rope"),
        ((4, 8, 8), (1, 2, 2), "sincos"),
        ((4, 8, 8), (2, 4, 4), "rope"),
    ],
    ids=["1d", "2d", "2d-rope", "3d-spacetime", "3d-rope"],
)
@pytest.mark.parametrize("learn_sigma", [False, True])
def test_output_shape_for_1d_2d_3d_inputs(input_size, patch_size, pos_embed, learn_sigma):
    model = randomize(
        DiT(
            tiny_config(
                input_size=input_size, patch_size=patch_size, pos_embed=pos_embed, learn_sigma=learn_sigma
            )
        )
    )
    x = torch.randn(2, 3, *input_size)
    out = model(x, torch.rand(2), torch.tensor([0, 4]))
    assert out.shape == (2, 6 if learn_sigma else 3, *input_size)
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_adaln_zero_gives_exactly_zero_output_and_identity_blocks_at_init():
    model = DiT(tiny_config(qk_norm=True))
    x, t, y = torch.randn(4, 3, 8, 8), torch.rand(4), torch.tensor([0, 1, 2, 5])
    assert torch.equal(model(x, t, y), torch.zeros_like(x))
    h, c = torch.randn(4, 16, 32), torch.randn(4, 32)
    assert torch.equal(model.blocks[0](h, c), h)


def test_gradients_reach_every_block_after_two_steps():
    torch.manual_seed(0)
    model = DiT(tiny_config())
    x, t, y = torch.randn(4, 3, 8, 8), torch.rand(4), torch.tensor([0, 1, 2, 3])
    target = torch.randn_like(x)
    losses = []
    for _ in range(3):
        model.zero_grad()
        loss = (model(x, t, y) - target).pow(2).mean()
        loss.backward()
        losses.append(loss.item())
        with torch.no_grad():  # plain SGD step
            for p in model.parameters():
                p -= 0.1 * p.grad
    # adaLN-Zero: step 1 moves the output layer, step 2 the gates; from the third backward on, the
    # gradient reaches attention, MLP and embedders.
    for name in [
        "blocks.0.attn.qkv.qkv.weight",
        "blocks.1.mlp.fc1.weight",
        "x_embedder.proj.weight",
        "t_embedder.mlp.0.weight",
        "blocks.0.modulation.weight",
    ]:
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    assert losses[2] < losses[1] < losses[0]


def test_null_class_is_the_unconditional_branch():
    model = randomize(DiT(tiny_config()))
    x, t = torch.randn(3, 3, 8, 8), torch.rand(3)
    null = torch.full((3,), model.null_class)
    assert model.null_class == 5
    torch.testing.assert_close(model(x, t), model(x, t, null))
    assert not torch.allclose(model(x, t, torch.tensor([0, 1, 2])), model(x, t, null))
    # A CFG batch [cond; uncond] gives per-sample results independent of its partner.
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([torch.tensor([0, 1, 2]), null]))
    torch.testing.assert_close(both[3:], model(x, t), rtol=1e-5, atol=1e-5)


def test_unconditional_model_rejects_labels():
    model = DiT(tiny_config(num_classes=0))
    assert model.y_embedder is None
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(1, 3, 8, 8), torch.rand(1), torch.tensor([0]))


def test_save_and_load_roundtrip_gives_equal_outputs(tmp_path):
    model = randomize(
        DiT(tiny_config(input_size=(4, 8, 8), patch_size=(1, 2, 2), pos_embed="rope", qk_norm=True))
    )
    model.save_pretrained(tmp_path / "dit")
    loaded = load_pretrained(tmp_path / "dit")
    assert isinstance(loaded, DiT) and loaded.config == model.config
    assert loaded.config.patch_size == (1, 2, 2)
    x, t, y = torch.randn(2, 3, 4, 8, 8), torch.rand(2), torch.tensor([1, 5])
    torch.testing.assert_close(loaded(x, t, y), model(x, t, y))


def test_gradient_checkpointing_gives_the_same_gradients():
    model = randomize(DiT(tiny_config()))
    ckpt = copy.deepcopy(model)
    ckpt.gradient_checkpointing = True
    x, t, y = torch.randn(2, 3, 8, 8), torch.rand(2), torch.tensor([0, 3])
    for m in (model, ckpt):
        m.train()
        m(x, t, y).pow(2).sum().backward()
    for (name, p), q in zip(model.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_control_residuals_are_added_after_the_first_blocks():
    model = randomize(DiT(tiny_config(depth=3)))
    x, t, y = torch.randn(2, 3, 8, 8), torch.rand(2), torch.tensor([0, 3])
    zeros = [torch.zeros(2, 16, 32)] * 2
    torch.testing.assert_close(model(x, t, y, control=zeros), model(x, t, y))
    residual = torch.randn(2, 16, 32)
    # Reference: run blocks by hand, adding the residual after block 0 only.
    with torch.no_grad():
        h = model.x_embedder(x) + model.pos_embed
        c = torch.nn.functional.silu(model.t_embedder(t) + model.y_embedder(y))
        h = model.blocks[0](h, c) + residual
        for block in model.blocks[1:]:
            h = block(h, c)
        ref = model.final_layer(h, c)
        out = model(x, t, y, control=[residual])
    from diffcore.nn.embeddings import unpatchify

    torch.testing.assert_close(out, unpatchify(ref, (4, 4), (2, 2), 3))
    with pytest.raises(ValueError, match="control"):
        model(x, t, y, control=[residual] * 4)


def test_other_resolution_uses_matching_positional_embedding():
    model = randomize(DiT(tiny_config()))
    out = model(torch.randn(2, 3, 12, 4), torch.rand(2), torch.tensor([0, 1]))
    assert out.shape == (2, 3, 12, 4)


def test_bad_inputs_raise_naming_the_argument():
    model = DiT(tiny_config())
    with pytest.raises(ValueError, match="x: expected"):
        model(torch.randn(2, 4, 8, 8), torch.rand(2))
    with pytest.raises(ValueError, match="t: expected"):
        model(torch.randn(2, 3, 8, 8), torch.rand(3))
    with pytest.raises(ValueError, match="patch_size"):
        tiny_config(input_size=(7, 8))
    with pytest.raises(ValueError, match="pos_embed"):
        tiny_config(pos_embed="learned")


def test_bf16_forward_runs_and_tracks_float32():
    model = randomize(DiT(tiny_config(pos_embed="rope", qk_norm=True)))
    x, t, y = torch.randn(2, 3, 8, 8), torch.rand(2), torch.tensor([0, 3])
    ref = model(x, t, y)
    out = copy.deepcopy(model).to(torch.bfloat16)(x.bfloat16(), t, y)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()


@pytest.mark.parametrize("fused_kernels", [False, True], ids=["plain", "fused-config-on-cpu"])
def test_forward_and_backward_trace_as_one_graph(fused_kernels):
    """fullgraph=True fails on any graph break; aot_eager also traces the backward without codegen. On the CPU
    a fused-kernel config runs the plain blocks, and traces as well."""
    torch._dynamo.reset()
    model = randomize(DiT(tiny_config(depth=1, pos_embed="rope", qk_norm=True, fused_kernels=fused_kernels)))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x, t, y = torch.randn(2, 3, 8, 8), torch.rand(2), torch.tensor([0, 3])
    out = compiled(x, t, y)
    torch.testing.assert_close(out, model(x, t, y), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    torch.testing.assert_close(compiled(x, t), model(x, t), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_inductor_fullgraph_matches_eager():
    torch._dynamo.reset()
    model = randomize(DiT(tiny_config(depth=1, fused_kernels=False))).eval()  # the paper's DiTBlock
    compiled = torch.compile(model, fullgraph=True)
    x, t, y = torch.randn(2, 3, 8, 8), torch.rand(2), torch.tensor([0, 3])
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, t, y), model(x, t, y), rtol=1e-4, atol=1e-4)


def test_dit_xl_2_parameters_and_macs_match_the_paper(record_property):
    """Peebles & Xie 2023, Table 4: DiT-XL/2 has 675M parameters and 118.6 Gflops (MACs) at 32x32x4."""
    start = time.perf_counter()
    with torch.device("meta"):
        model = DiT_XL_2(learn_sigma=True)
        x, t, y = torch.empty(1, 4, 32, 32), torch.empty(1), torch.zeros(1, dtype=torch.long)
    cost = forward_cost(model, x, t, y=y)
    assert cost.params == count_parameters(model)
    assert abs(cost.params / 675e6 - 1) < 0.01
    assert abs(cost.macs / 118.6e9 - 1) < 0.02
    assert cost.flops == 2 * cost.macs
    assert all(p.device.type == "meta" for p in model.parameters())  # counted, never allocated or run
    record_property("meta_cost_seconds", round(time.perf_counter() - start, 3))  # a measurement, not a bound


@pytest.mark.parametrize(
    "size,patch,gflops", [("S", 2, 6.06), ("B", 4, 5.56), ("L", 8, 5.01), ("XL", 4, 29.05)]
)
def test_other_paper_sizes_macs(size, patch, gflops):
    """Table 4 Gflops of a few more configurations (within 3%; patch-embed/attention bookkeeping differs)."""
    with torch.device("meta"):
        model = DiT(dit_config(size, patch, learn_sigma=True))
        x, t, y = torch.empty(1, 4, 32, 32), torch.empty(1), torch.zeros(1, dtype=torch.long)
    assert abs(forward_cost(model, x, t, y=y).macs / (gflops * 1e9) - 1) < 0.03
