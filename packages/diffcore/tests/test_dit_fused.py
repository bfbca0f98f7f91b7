"""DiT's fused form (``nn/dit_fused.py``) against the paper's block (``nn/dit.py``): the same parameters,
state-dict keys and initialisation, the same outputs and gradients.

- CPU, float64: the deferred-residual form (``forward_fused``, ``FusedDiTBlock.forward_deferred``, the final
  layer taking the last pending residual) with each kernel's plain-torch reference, against the plain DiT.
- CPU, Triton's interpreter (a subprocess with ``TRITON_INTERPRET=1``): the fused DiT runs its real Triton
  adaLN and attention kernels (cuBLASLt has no CPU path, so the MLP is plain), eagerly and traced by
  ``torch.compile(fullgraph=True)``, against the plain DiT in float32.
- GPU (marked ``gpu``): every kernel, float32 and bfloat16 autocast, eager and compiled; LoRA adapters apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
from collections.abc import Iterator

import pytest
import torch
from diffcore.kernels import _custom_ops, adaln, attention, mlp
from diffcore.nn import dit, dit_fused
from diffcore.nn.attention import Attention
from diffcore.nn.dit import DiT, DiTBlock, DiTConfig, FinalLayer, Mlp, dit_config
from diffcore.nn.dit_fused import FusedAttention, FusedDiTBlock, FusedFinalLayer, FusedMlp
from diffcore.rng import seeded
from torch import nn

HAS_TRITON = importlib.util.find_spec("triton") is not None


def cuda(test):
    """A GPU test: marked ``gpu`` and skipped without CUDA."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


def tiny(**kw) -> DiTConfig:
    base = dict(input_size=(8, 8), patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4)
    return DiTConfig(**{**base, "num_classes": 10, **kw})


def fused_and_plain(cfg: DiTConfig, dtype: torch.dtype = torch.float32) -> tuple[DiT, DiT]:
    """A fused and a plain DiT of ``cfg`` with the same random weights (none left at adaLN-Zero's zeros)."""
    with seeded(0):
        fused = DiT(dataclasses.replace(cfg, fused_kernels=True)).to(dtype)
        with torch.no_grad():
            for p in fused.parameters():
                p.normal_(std=0.05)
    plain = DiT(dataclasses.replace(cfg, fused_kernels=False)).to(dtype)
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().float(), ref.detach().float()
    return float((a - ref).abs().max() / ref.abs().max())


@contextlib.contextmanager
def counting_fused_ops() -> Iterator[dict[str, int]]:
    """Count the eager calls of the fused ops (through their entry points, ``_custom_ops.EAGER``)."""
    adaln._define_ops(), attention._define_ops(), mlp.register()
    saved = dict(_custom_ops.EAGER)
    counts = dict.fromkeys(saved, 0)

    def counted(name: str):
        def call(*args):
            counts[name] += 1
            return saved[name](*args)

        return call

    _custom_ops.EAGER.update({name: counted(name) for name in saved})
    try:
        yield counts
    finally:
        _custom_ops.EAGER.update(saved)


@pytest.mark.parametrize("kw", [{}, {"qk_norm": True, "pos_embed": "rope", "learn_sigma": True}])
def test_fused_layers_keep_the_plain_parameters_keys_and_initialisation(kw) -> None:
    cfg = tiny(**kw)
    with seeded(0):
        fused = DiT(dataclasses.replace(cfg, fused_kernels=True))
    with seeded(0):
        plain = DiT(dataclasses.replace(cfg, fused_kernels=False))
    assert type(plain.blocks[0]) is DiTBlock and type(plain.final_layer) is FinalLayer
    assert type(plain.blocks[0].attn) is Attention and type(plain.blocks[0].mlp) is Mlp
    assert all(type(b) is FusedDiTBlock for b in fused.blocks) and type(fused.final_layer) is FusedFinalLayer
    assert type(fused.blocks[0].attn) is FusedAttention and type(fused.blocks[0].mlp) is FusedMlp
    got, want = fused.state_dict(), plain.state_dict()
    assert list(got) == list(want)
    for key in want:  # the same draws from the RNG in the same order: one seed gives one model
        assert torch.equal(got[key], want[key]), key
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(1.0)
    fused.load_state_dict(plain.state_dict(), strict=True)  # a checkpoint of either form loads into the other
    assert all(torch.equal(a, b) for a, b in zip(fused.state_dict().values(), plain.state_dict().values()))


def test_a_fused_dit_runs_the_plain_blocks_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernels cannot run, the fused DiT runs the paper's forward: the deferred form is never entered."""

    def refuse(*args, **kwargs):
        raise AssertionError("the deferred-residual form ran on the CPU")

    fused, plain = fused_and_plain(tiny())
    monkeypatch.setattr(FusedDiTBlock, "forward_deferred", refuse)
    x, t, y = torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([1, 3])
    torch.testing.assert_close(fused(x, t, y), plain(x, t, y), rtol=0, atol=0)
    h, c = torch.randn(2, 16, 64), torch.randn(2, 64)
    torch.testing.assert_close(fused.blocks[0](h, c), plain.blocks[0](h, c), rtol=0, atol=0)


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize(
    "kw,controlled",
    [({}, False), ({}, True), ({"pos_embed": "rope", "qk_norm": True, "learn_sigma": True}, True)],
    ids=["sincos", "sincos-control", "rope-qknorm-control"],
)
def test_deferred_residual_form_equals_the_paper_block(
    monkeypatch: pytest.MonkeyPatch, kw: dict, controlled: bool, checkpointing: bool
) -> None:
    """The fused form's own code (each residual add moved into the next adaLN step, the last one into the final
    layer; a control residual forcing the pending add) with the kernels' plain-torch references, in float64:
    outputs and every gradient equal the plain DiT's to rounding."""
    monkeypatch.setattr(dit, "triton_runs_on", lambda t: True)  # take the fused path on the CPU ...
    monkeypatch.setattr(dit_fused, "triton_runs_on", lambda t: True)  # ... (the kernels fall back themselves)
    fused, plain = fused_and_plain(tiny(gradient_checkpointing=checkpointing, **kw), torch.float64)
    calls = []
    deferred = fused._fused_forward
    fused._fused_forward = lambda *a: calls.append(1) or deferred(*a)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64)
    t, y = torch.rand(3, generator=g, dtype=torch.float64), torch.tensor([0, 9, 10])
    control = [torch.randn(3, 16, 64, generator=g, dtype=torch.float64)] if controlled else None

    def run(model: DiT) -> list[torch.Tensor]:
        xg = x.clone().requires_grad_()
        out = model.train()(xg, t, y, control=control)
        return [out, *torch.autograd.grad(out.square().sum(), [xg, *model.parameters()])]

    got, want = run(fused), run(plain)
    assert calls == [1] and want[0].abs().max() > 0.1  # the fused form ran, on a non-trivial output
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-12)
    names = ["x", *(n for n, _ in plain.named_parameters())]
    for name, a, b in zip(names, got[1:], want[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.skipif(not HAS_TRITON, reason="needs Triton")
def test_fused_dit_with_triton_kernels_in_the_interpreter(triton_interpreter) -> None:
    """The real Triton adaLN and attention kernels (interpreted on CPU) inside the fused DiT, eager and compiled
    (``fullgraph``: the custom ops trace without a graph break), against the plain DiT; the kernels are counted,
    so a fused DiT that silently ran plain torch ops would fail."""
    triton_interpreter(
        """
        import dataclasses
        import torch
        from diffcore.kernels import _custom_ops, adaln, attention, triton_runs_on
        from diffcore.nn.dit import DiT, DiTConfig
        from torch._dynamo.backends.registry import lookup_backend

        assert triton_runs_on(torch.zeros(1))  # the interpreter runs the kernels on float32 CPU tensors ...
        assert not triton_runs_on(torch.zeros(1, dtype=torch.bfloat16))  # ... (numpy has no bfloat16)
        adaln._define_ops(); attention._define_ops()
        counts = {"adaln_forward": 0, "qkv_attention": 0}
        for name in counts:
            op = _custom_ops.EAGER[name]
            def counted(*a, op=op, name=name):
                counts[name] += 1
                return op(*a)
            _custom_ops.EAGER[name] = counted
        torch.manual_seed(0)
        for pos_embed, control_blocks in (("sincos", 1), ("rope", 0)):
            cfg = DiTConfig(input_size=(8, 8), patch_size=2, in_channels=4, hidden_size=64, depth=2,
                            num_heads=4, num_classes=10, pos_embed=pos_embed)
            fused = DiT(cfg)
            with torch.no_grad():
                for p in fused.parameters():
                    p.normal_(std=0.05)
            plain = DiT(dataclasses.replace(cfg, fused_kernels=False))
            plain.load_state_dict(fused.state_dict())
            x, t, y = torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([1, 10])
            control = [0.1 * torch.randn(2, 16, 64)] * control_blocks

            def run(model, params):
                xg = x.clone().requires_grad_()
                out = model(xg, t, y, control=control)
                return [out, *torch.autograd.grad(out.square().sum(), [xg, *params])]

            want = run(plain, list(plain.parameters()))
            counts.update(adaln_forward=0, qkv_attention=0)
            got = run(fused, list(fused.parameters()))
            # 2 adaLN steps a block + the final layer's; Triton attention only without RoPE.
            assert counts == {"adaln_forward": 5, "qkv_attention": 2 if pos_embed == "sincos" else 0}, counts
            checks = [got]
            if pos_embed == "sincos":  # (tracing takes ~20 s here: once)
                traced = set()

                def backend(graph, example_inputs):  # aot_eager, noting what the graph calls
                    traced.update(str(node.target) for node in graph.graph.nodes)
                    return lookup_backend("aot_eager")(graph, example_inputs)

                compiled = torch.compile(fused, fullgraph=True, backend=backend)
                checks.append(run(compiled, list(fused.parameters())))
                assert {"diffcore.adaln_forward", "diffcore.qkv_attention"} <= traced, traced
            for results in checks:
                for a, b in zip(results, want, strict=True):
                    assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5), (
                        pos_embed, (a - b).abs().max())
        print("ok")
        """
    )


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_dit_matches_the_plain_dit_on_gpu(dtype: torch.dtype) -> None:
    """Outputs and all gradients, eager and compiled (``fullgraph``), with every kernel counted.

    Tolerances (largest error over the largest reference value). float32: 2e-3. Triton's ``tl.dot`` rounds the
    float32 attention operands to TF32 (10-bit mantissa, unit roundoff 4.9e-4) in the forward and backward, while
    SDPA and the linears compute in float32; emulating that rounding on the CPU for this model and these weights
    gives 3.4e-5 (outputs and every gradient), and the adaLN kernel's float32 reductions add ~1e-6. bfloat16: 3e-2,
    as before the split: both forms round to bfloat16 (unit roundoff 3.9e-3) at different points (the kernels keep
    each adaLN step in float32 and round once; the plain block rounds ``gate * y`` and then the sum); the same
    structural difference measured on the CPU under bf16 autocast is 8e-3. A wrong residual, gate or modulation
    is an O(1) error.
    """
    torch._dynamo.reset()
    cfg = dit_config("S", 2, depth=2, hidden_size=128, num_heads=4, input_size=(16, 16), num_classes=10)
    fused, plain = (m.cuda() for m in fused_and_plain(cfg))
    g = torch.Generator("cuda").manual_seed(0)
    x = torch.randn(4, 4, 16, 16, device="cuda", generator=g)
    t, y = torch.rand(4, device="cuda", generator=g), torch.arange(4, device="cuda")
    control = [0.1 * torch.randn(4, 64, 128, device="cuda", generator=g)]

    def run(model: nn.Module, params: list[torch.Tensor], ctrl=None) -> list[torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = model(x, t, y, control=ctrl)
        return [out, *torch.autograd.grad(out.float().square().mean(), params)]

    with counting_fused_ops() as counts:
        got = run(fused, list(fused.parameters()))
    # 2 adaLN steps a block + the final layer's; Triton attention a block; cuBLASLt's MLP in bf16 only.
    assert counts == {"adaln_forward": 5, "qkv_attention": 2, "gelu_mlp": 2 if dtype == torch.bfloat16 else 0}
    want = run(plain, list(plain.parameters()))
    tol = 2e-3 if dtype == torch.float32 else 3e-2
    for a, r in zip(got, want, strict=True):
        assert a.shape == r.shape and rel_err(a, r) < tol
    compiled = torch.compile(fused, fullgraph=True)
    for a, r in zip(run(compiled, list(fused.parameters())), got, strict=True):
        assert rel_err(a, r) < tol
    for a, r in zip(
        run(fused, list(fused.parameters()), control), run(plain, list(plain.parameters()), control)
    ):
        assert rel_err(a, r) < tol


@cuda
def test_lora_adapters_apply_with_fused_kernels_on_gpu() -> None:
    """PEFT LoRA layers on q/k/v, the attention projection and the MLP are not bypassed by the fused paths:
    a fused DiT with adapters matches the unfused one with the same adapters, and differs from the base."""
    pytest.importorskip("peft")
    from diffcore.nn.lora import add_lora

    cfg = dit_config("S", 2, depth=2, hidden_size=128, num_heads=2, input_size=(8, 8), num_classes=10)
    torch.manual_seed(0)
    fused = DiT(cfg).cuda()
    for p in fused.parameters():
        nn.init.normal_(p, std=0.05)
    plain = DiT(dataclasses.replace(cfg, fused_kernels=False)).cuda()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(4, 4, 8, 8, device="cuda")
    t, y = torch.rand(4, device="cuda"), torch.arange(4, device="cuda")

    def run(model: nn.Module) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model(x, t, y).float()

    base = run(fused)
    add_lora(fused, rank=4)
    with torch.no_grad():  # non-zero B, as after training
        for name, p in fused.named_parameters():
            if "lora_B" in name:
                p.normal_()
    add_lora(plain, rank=4)
    plain.load_state_dict(fused.state_dict())
    adapted = run(fused)
    assert rel_err(adapted, base) > 0.1
    assert rel_err(adapted, run(plain)) < 3e-2
