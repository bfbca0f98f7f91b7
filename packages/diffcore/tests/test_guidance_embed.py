"""Guidance-scale conditioning of DiT and MMDiT (LCM Sec. 4.2; FLUX's guidance embedding).

Checked: with ``guidance_embed`` off nothing changes (parameters, checkpoints written before the option
existed, outputs, FLOPs); with it on, ``w`` is required, validated, and enters exactly as an extra term of the
conditioning vector, zero at initialisation (a student built from a teacher starts as the teacher); save /
load round trip; one graph under ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from diffcore.nn.dit import DiT, DiTConfig, GuidanceEmbedder
from diffcore.nn.flops import forward_cost
from diffcore.nn.mmdit import MMDiT, MMDiTConfig


def dit_config(**kw) -> DiTConfig:
    base = dict(
        input_size=(8, 8), patch_size=2, in_channels=3, hidden_size=32, depth=2, num_heads=4, num_classes=5
    )
    return DiTConfig(**{**base, **kw})


def mmdit_config(**kw) -> MMDiTConfig:
    base = dict(input_size=(8, 8), patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                pooled_dim=12, context_dim=20)  # fmt: skip
    return MMDiTConfig(**{**base, **kw})


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter (zero-initialised ones included) so outputs depend on all of them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def inputs(kind: str, b: int = 3) -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(1)
    t = torch.rand(b, generator=g)
    if kind == "dit":
        return (torch.randn(b, 3, 8, 8, generator=g), t), {"y": torch.tensor([0, 4, 5])[:b]}
    cond = {
        "context": torch.randn(b, 6, 20, generator=g),
        "context_mask": torch.ones(b, 6, dtype=torch.bool),
        "pooled": torch.randn(b, 12, generator=g),
    }
    return (torch.randn(b, 4, 8, 8, generator=g), t), cond


BUILD = {"dit": (DiT, dit_config), "mmdit": (MMDiT, mmdit_config)}


def build(kind: str, **kw) -> torch.nn.Module:
    cls, config = BUILD[kind]
    torch.manual_seed(0)
    return cls(config(**kw))


KINDS = ["dit", "mmdit"]


@pytest.mark.parametrize("kind", KINDS)
def test_default_off_has_no_guidance_parameters_and_refuses_w(kind):
    model = build(kind)
    assert model.w_embedder is None
    assert not any(name.startswith("w_embedder") for name, _ in model.named_parameters())
    on = build(kind, guidance_embed=True)
    extra = set(on.state_dict()) - set(model.state_dict())
    assert extra and all(k.startswith("w_embedder.") for k in extra)
    assert set(model.state_dict()) <= set(on.state_dict())
    args, cond = inputs(kind)
    with pytest.raises(ValueError, match=r"w: this .* takes no guidance scale"):
        model(*args, **cond, w=torch.ones(3))


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_written_before_the_option_loads_and_gives_the_same_output(kind, tmp_path):
    model = randomize(build(kind)).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("guidance_embed", "guidance_max"):
        config.pop(key, None)  # as written before the option existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = type(model).from_pretrained(tmp_path).eval()
    assert loaded.config.guidance_embed is False
    args, cond = inputs(kind)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*args, **cond), model(*args, **cond), rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_w_enters_as_an_added_conditioning_term(kind):
    """``model_on(x, t, w)`` equals ``model_off(x, t)`` whose time embedding is shifted by ``w_embedder(w)``:
    the guidance embedding is exactly one more term of the conditioning vector, and nothing else changes."""
    on = randomize(build(kind, guidance_embed=True, guidance_max=6.0)).eval()
    off = build(kind).eval()
    missing, unexpected = off.load_state_dict(on.state_dict(), strict=False)
    assert not missing and all(k.startswith("w_embedder.") for k in unexpected)
    args, cond = inputs(kind)
    w = torch.tensor([1.0, 2.5, 6.0])
    shift = on.w_embedder(w)
    hook = off.t_embedder.register_forward_hook(lambda _m, _i, out: out + shift)
    with torch.no_grad():
        expected = off(*args, **cond)
        hook.remove()
        got = on(*args, **cond, w=w)
        plain = off(*args, **cond)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert (got - plain).abs().max() > 1e-3  # w matters once the embedding is trained (randomised here)
    with torch.no_grad():
        other = on(*args, **cond, w=torch.tensor([4.0, 2.5, 6.0]))
    assert (other[0] - got[0]).abs().max() > 1e-4  # per-sample: only sample 0's scale changed
    torch.testing.assert_close(other[1:], got[1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_a_student_built_from_a_teacher_starts_as_the_teacher_at_every_w(kind):
    teacher = randomize(build(kind)).eval()
    student = type(teacher)(replace(teacher.config, guidance_embed=True)).eval()
    student.load_state_dict(teacher.state_dict(), strict=False)
    args, cond = inputs(kind)
    with torch.no_grad():
        ref = teacher(*args, **cond)
        for scale in (0.0, 1.0, 7.5):
            torch.testing.assert_close(student(*args, **cond, w=torch.full((3,), scale)), ref, rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_flops_unchanged_when_off_and_grow_by_the_embedder_when_on(kind):
    args, cond = inputs(kind)
    off, on = build(kind), build(kind, guidance_embed=True)
    w = torch.full((3,), 2.0)
    base = forward_cost(off, *args, **cond)
    with_w = forward_cost(on, *args, **cond, w=w)
    embed = forward_cost(on.w_embedder, w)
    assert base.params == with_w.params - embed.params
    assert with_w.flops - base.flops == embed.flops  # the addition itself is not a counted FLOP
    assert embed.flops > 0


@pytest.mark.parametrize("kind", KINDS)
def test_missing_or_misshapen_w_is_refused(kind):
    model = build(kind, guidance_embed=True)
    args, cond = inputs(kind)
    with pytest.raises(ValueError, match=r"w: this .* embeds the guidance scale .* shape \(3,\)"):
        model(*args, **cond)
    with pytest.raises(ValueError, match=r"w: expected a real tensor of shape \(3,\)"):
        model(*args, **cond, w=torch.ones(3, 1))
    with pytest.raises(ValueError, match=r"w: expected a real tensor of shape \(3,\)"):
        model(*args, **cond, w=torch.ones(2))


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_guidance_max_must_be_positive(bad):
    with pytest.raises(ValueError, match="guidance_max"):
        dit_config(guidance_embed=True, guidance_max=bad)
    with pytest.raises(ValueError, match="guidance_max"):
        mmdit_config(guidance_max=bad)
    with pytest.raises(ValueError, match="guidance_max"):
        GuidanceEmbedder(8, bad)


def test_embedding_uses_the_time_features_of_w_over_guidance_max():
    emb = randomize(GuidanceEmbedder(16, 8.0))
    w = torch.tensor([0.0, 4.0, 8.0])
    torch.testing.assert_close(emb(w), emb.embedder(w / 8.0))


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_round_trip_with_guidance(kind, tmp_path):
    model = randomize(build(kind, guidance_embed=True, guidance_max=5.0)).eval()
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path).eval()
    assert loaded.config.guidance_embed and loaded.config.guidance_max == 5.0
    args, cond = inputs(kind)
    w = torch.tensor([1.0, 3.0, 5.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(*args, **cond, w=w), model(*args, **cond, w=w), rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_backward_trace_as_one_graph_with_w(kind):
    """fullgraph=True fails on any graph break; aot_eager also traces the backward without codegen."""
    torch._dynamo.reset()
    model = randomize(build(kind, guidance_embed=True))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    args, cond = inputs(kind)
    w = torch.tensor([1.0, 2.0, 3.0])
    out = compiled(*args, **cond, w=w)
    torch.testing.assert_close(out, model(*args, **cond, w=w), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert model.w_embedder.embedder.mlp[2].weight.grad is not None


def test_lcm_objective_trains_the_guidance_embedding_of_a_dit_student():
    """LCM (Luo et al. 2023, Sec. 4.2) on a DiT student with ``guidance_embed``: the objective passes ``w`` to
    the student, the zero-initialised embedding receives a gradient, and after a few steps the student's output
    depends on ``w``."""
    from diffcore.distill import ConsistencyParameterization, LatentConsistencyDistillation
    from diffcore.paths.denoiser import Denoiser

    teacher_net = randomize(build("dit")).eval().requires_grad_(False)
    teacher = Denoiser(teacher_net, "rectified-flow", "velocity")
    student = DiT(replace(teacher_net.config, guidance_embed=True))
    student.load_state_dict(teacher_net.state_dict(), strict=False)
    param = ConsistencyParameterization("rectified-flow", "velocity")
    obj = LatentConsistencyDistillation(
        param,
        teacher=teacher,
        uncond={"y": torch.tensor([5])},
        guidance_range=(1.0, 4.0),
        num_points=10,
        skip=2,
    )
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    batch = {"x": torch.randn(8, 3, 8, 8, generator=g), "y": torch.randint(0, 5, (8,), generator=g)}
    for _ in range(3):
        loss, _ = obj(student, batch, generator=g)
        opt.zero_grad()
        loss.backward()
        assert student.w_embedder.embedder.mlp[2].weight.grad.abs().sum() > 0
        opt.step()
    args, cond = inputs("dit")
    with torch.no_grad():
        a = student(*args, **cond, w=torch.full((3,), 1.0))
        b = student(*args, **cond, w=torch.full((3,), 4.0))
    assert (a - b).abs().max() > 1e-5
