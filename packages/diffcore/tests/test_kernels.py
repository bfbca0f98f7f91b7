"""diffcore.kernels (adaLN and attention in Triton, the MLP through cuBLASLt's GELU epilogues) against plain torch.

On CPU the Triton kernels run in Triton's interpreter (a subprocess with ``TRITON_INTERPRET=1``); on a
GPU every kernel runs for real against a float32 or float64 reference. The DiT built on them is checked
against the plain DiT in ``test_dit_fused.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest
import torch
from diffcore.kernels.adaln import adaln_modulate, adaln_reference
from diffcore.kernels.mlp import gelu_mlp, gelu_mlp_reference
from torch import nn

HAS_TRITON = importlib.util.find_spec("triton") is not None


def cuda(test):
    """A GPU test: marked ``gpu`` and skipped without CUDA."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


def adaln_inputs(
    b: int, n: int, d: int, dtype: torch.dtype, device: str, seed: int = 0
) -> list[torch.Tensor]:
    gen = torch.Generator(device).manual_seed(seed)
    x, y = (torch.randn(b, n, d, device=device, dtype=dtype, generator=gen) for _ in range(2))
    mod = 0.5 * torch.randn(b, 1, 6 * d, device=device, dtype=dtype, generator=gen)
    # Per-sample vectors as a block makes them: strided chunks of one modulation output.
    gate, shift, scale = mod[..., :d], mod[..., d : 2 * d], mod[..., 2 * d : 3 * d]
    return [t.requires_grad_() for t in (x, y)] + [t.detach().requires_grad_() for t in (gate, shift, scale)]


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.float() - ref.float()).abs().max() / ref.float().abs().max())


def test_adaln_checks_its_inputs() -> None:
    x, y, gate, shift, scale = adaln_inputs(2, 5, 8, torch.float32, "cpu")
    with pytest.raises(ValueError, match="residual and gate"):
        adaln_modulate(x, shift, scale, residual=y)
    with pytest.raises(ValueError, match="shift"):
        adaln_modulate(x, shift[:1], scale)
    with pytest.raises(ValueError, match="residual"):
        adaln_modulate(x, shift, scale, residual=y[:, :3], gate=gate)
    with pytest.raises(ValueError, match="x: expected"):
        adaln_modulate(x[0], shift, scale)


def test_adaln_cpu_path_is_layernorm_then_modulate() -> None:
    x, y, gate, shift, scale = (t.detach() for t in adaln_inputs(2, 5, 8, torch.float64, "cpu"))
    x_new, h = adaln_modulate(x, shift, scale, residual=y, gate=gate)
    expect = x + gate * y
    torch.testing.assert_close(x_new, expect)
    normed = (expect - expect.mean(-1, keepdim=True)) / torch.sqrt(
        expect.var(-1, unbiased=False, keepdim=True) + 1e-6
    )
    torch.testing.assert_close(h, normed * (1 + scale) + shift)
    # (B, D) per-sample vectors broadcast like (B, 1, D).
    _, h2 = adaln_modulate(x, shift[:, 0], scale[:, 0], residual=y, gate=gate[:, 0])
    torch.testing.assert_close(h2, h)


@pytest.mark.skipif(not HAS_TRITON, reason="needs Triton")
def test_adaln_triton_kernels_in_the_interpreter(triton_interpreter) -> None:
    """The Triton forward and backward (interpreted on CPU) against autograd through the reference: an odd
    token count (a partial last chunk), a width that is not a power of two, with and without residual."""
    triton_interpreter(
        """
        import torch
        from diffcore.kernels import adaln as fa
        from diffcore.kernels._custom_ops import EAGER
        from diffcore.kernels.adaln import adaln_reference
        fa._define_ops()
        torch.manual_seed(0)
        b, n, d = 3, 37, 48
        # The custom op (what torch.compile sees) and the eager autograd.Function (what eager calls run).
        for op in (torch.ops.diffcore.adaln_forward, EAGER["adaln_forward"]):
            for res, use_x_new in ((False, False), (True, True), (True, False)):
                x = torch.randn(b, n, d, requires_grad=True)
                y = torch.randn(b, n, d, requires_grad=True) if res else None
                gate = torch.randn(b, 1, 6 * d)[..., :d].requires_grad_() if res else None
                shift = torch.randn(b, 1, d, requires_grad=True)
                scale = torch.randn(b, d, requires_grad=True)
                x_new, h, mean, _ = op(x, y, gate, shift, scale, 1e-6)
                xr, hr = adaln_reference(x, shift, scale, y, gate)
                assert torch.allclose(h, hr, atol=1e-5), (h - hr).abs().max()
                gh, gx = torch.randn_like(hr), torch.randn_like(xr)
                ins = [t for t in (x, y, gate, shift, scale) if t is not None]
                loss_ref = (hr * gh).sum() + ((xr * gx).sum() if use_x_new else 0)
                loss = (h * gh).sum() + ((x_new * gx).sum() if use_x_new else 0)
                for a, r in zip(torch.autograd.grad(loss, ins), torch.autograd.grad(loss_ref, ins)):
                    assert a.shape == r.shape and torch.allclose(a, r, atol=1e-4), (op, (a - r).abs().max())
            if op is EAGER["adaln_forward"]:
                assert not mean.requires_grad  # saved statistics get no gradient buffers
        # The eager Function keeps no reference cycle to its outputs: they die with their last user.
        import gc, weakref
        gc.disable()
        x_new, h, mean, rstd = EAGER["adaln_forward"](x, y, gate, shift, scale, 1e-6)
        alive = weakref.ref(h)
        loss = h.sum() + x_new.sum()
        del x_new, h, mean, rstd, loss
        assert alive() is None
        gc.enable()
        print("ok")
        """
    )


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("residual", [False, True])
def test_adaln_on_gpu_matches_float32(dtype: torch.dtype, residual: bool) -> None:
    ins = adaln_inputs(4, 200, 1152, dtype, "cuda")
    x, y, gate, shift, scale = ins
    res = (y, gate) if residual else (None, None)
    used = [x, shift, scale] + ([y, gate] if residual else [])
    x_new, h = adaln_modulate(x, shift, scale, *res)
    grads = [torch.randn_like(h), torch.randn_like(h)]
    got = torch.autograd.grad([h, x_new] if residual else [h], used, grads[: 1 + residual])
    ref_ins = [t.detach().double().requires_grad_() for t in ins]
    rx, ry, rgate, rshift, rscale = ref_ins
    r_new, rh = adaln_reference(rx, rshift, rscale, *((ry, rgate) if residual else (None, None)))
    ref_used = [rx, rshift, rscale] + ([ry, rgate] if residual else [])
    ref = torch.autograd.grad(
        [rh, r_new] if residual else [rh], ref_used, [g.double() for g in grads[: 1 + residual]]
    )
    tol = 1e-5 if dtype == torch.float32 else 1.5e-2
    assert rel_err(h, rh) < tol and rel_err(x_new, r_new) < tol
    for a, r in zip(got, ref, strict=True):
        assert a.shape == r.shape and a.dtype == dtype
        assert rel_err(a, r) < tol


@cuda
def test_cublaslt_gelu_epilogue_is_the_tanh_gelu() -> None:
    from diffcore.kernels import cublaslt

    assert cublaslt.available()
    gen = torch.Generator("cuda").manual_seed(0)
    x = torch.randn(300, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
    w = torch.randn(256, 64, device="cuda", dtype=torch.bfloat16, generator=gen) / 8
    bias = torch.randn(256, device="cuda", dtype=torch.bfloat16, generator=gen)
    out, aux = cublaslt.linear_gelu_aux(x, w, bias)
    h = x.float() @ w.float().t() + bias.float()
    assert rel_err(aux, h) < 1e-2
    assert rel_err(out, torch.nn.functional.gelu(h, approximate="tanh")) < 1e-2
    grad_out = torch.randn(300, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
    w2 = torch.randn(64, 256, device="cuda", dtype=torch.bfloat16, generator=gen) / 16
    grad_h, grad_b = cublaslt.matmul_dgelu_bgrad(grad_out, w2, aux)
    hr = aux.float().requires_grad_()
    (ref,) = torch.autograd.grad(
        torch.nn.functional.gelu(hr, approximate="tanh"), hr, grad_out.float() @ w2.float()
    )
    assert rel_err(grad_h, ref) < 1.5e-2
    assert rel_err(grad_b, ref.sum(0)) < 1.5e-2
    assert rel_err(cublaslt.matmul_dgelu(grad_out, w2, aux), ref) < 1.5e-2


@cuda
def test_gelu_mlp_on_gpu_matches_float32() -> None:
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(96, 384).cuda(), nn.Linear(384, 96).cuda()
    params = [fc1.weight, fc1.bias, fc2.weight, fc2.bias]
    x = torch.randn(3, 70, 96, device="cuda")
    grad = torch.randn(3, 70, 96, device="cuda")
    xb = x.to(torch.bfloat16).requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = gelu_mlp(xb, fc1, fc2)
    assert out.dtype == torch.bfloat16 and out.shape == x.shape
    got = [out, *torch.autograd.grad(out, [xb, *params], grad)]
    xr = xb.detach().float().requires_grad_()
    ref_out = gelu_mlp_reference(xr, fc1, fc2)
    ref = [ref_out, *torch.autograd.grad(ref_out, [xr, *params], grad)]
    for a, r in zip(got, ref, strict=True):
        assert a.shape == r.shape
        assert rel_err(a, r) < 2e-2
    assert all(g.dtype == torch.float32 for g in got[2:])  # float32 parameters get float32 gradients


def test_head_split() -> None:
    from diffcore.kernels.attention import head_split

    assert head_split(72) == (64, 16) and head_split(64) == (64, 0) and head_split(96) == (64, 32)
    assert head_split(16) == (16, 0) and head_split(40) == (32, 16) and head_split(130) == (128, 16)
    with pytest.raises(ValueError, match="head_dim"):
        head_split(8)


@pytest.mark.skipif(not HAS_TRITON, reason="needs Triton")
def test_qkv_attention_triton_kernels_in_the_interpreter(triton_interpreter) -> None:
    """Forward and backward (interpreted on CPU) against SDPA: a head dimension with a padded tail, one
    without, and token counts that leave partial query and key blocks."""
    triton_interpreter(
        """
        import torch
        from diffcore.kernels import attention as fa
        fa._define_ops()
        torch.manual_seed(0)
        from diffcore.kernels._custom_ops import EAGER
        cases = [(2, 37, 2, 24), (1, 20, 3, 16), (1, 33, 2, 40)]
        # The custom op (what torch.compile sees) and the eager autograd.Function (what eager calls run).
        for op, (b, n, h, dh) in [(o, c) for o in (torch.ops.diffcore.qkv_attention, EAGER["qkv_attention"]) for c in cases]:
            qkv = torch.randn(b, n, 3, h, dh, requires_grad=True)
            out, lse = op(qkv)
            assert op is not EAGER["qkv_attention"] or not lse.requires_grad
            ref = fa.qkv_attention_reference(qkv)
            assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()
            g = torch.randn_like(ref)
            (got,) = torch.autograd.grad(out, qkv, g)
            (expect,) = torch.autograd.grad(ref, qkv, g)
            assert torch.allclose(got, expect, atol=1e-5), (got - expect).abs().max()
        print("ok")
        """
    )


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("head_dim", [72, 64])
def test_qkv_attention_on_gpu_matches_float32(dtype: torch.dtype, head_dim: int) -> None:
    from diffcore.kernels.attention import qkv_attention, qkv_attention_reference

    gen = torch.Generator("cuda").manual_seed(0)
    qkv = torch.randn(3, 200, 3, 4, head_dim, device="cuda", dtype=dtype, generator=gen).requires_grad_()
    out = qkv_attention(qkv)
    grad = torch.randn_like(out)
    (got,) = torch.autograd.grad(out, qkv, grad)
    ref_in = qkv.detach().double().requires_grad_()
    ref = qkv_attention_reference(ref_in)
    (expect,) = torch.autograd.grad(ref, ref_in, grad.double())
    assert out.dtype == dtype and got.shape == qkv.shape
    assert rel_err(out, ref) < 1e-2 and rel_err(got, expect) < 2e-2


OLD_PATHS = {
    "diffcore.nn.fused_adaln": "diffcore.kernels.adaln",
    "diffcore.nn.fused_attention": "diffcore.kernels.attention",
    "diffcore.nn.fused_mlp": "diffcore.kernels.mlp",
    "diffcore.nn.cublaslt": "diffcore.kernels.cublaslt",
    "diffcore.nn._custom_ops": "diffcore.kernels._custom_ops",
    "diffcore.nn.cuda_graphs": "diffcore.kernels.cuda_graphs",
}
if HAS_TRITON:  # (the kernels' module imports Triton)
    OLD_PATHS["diffcore.nn._attention_kernels"] = "diffcore.kernels._attention_triton"


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_old_import_paths_of_the_kernels_warn_and_give_the_moved_module(old: str) -> None:
    new = OLD_PATHS[old]
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    package, _, name = old.rpartition(".")
    sys.modules.pop(old, None)
    delattr(sys.modules[package], name)  # (the first import left it as an attribute of diffcore.nn)
    with pytest.warns(DeprecationWarning, match=new):
        exec(f"from {package} import {name} as found", scope := {})
    assert scope["found"] is module


def test_graphed_call_from_diffcore_nn_warns_and_is_the_kernels_class() -> None:
    import diffcore.nn
    from diffcore.kernels import GraphedCall

    with pytest.warns(DeprecationWarning, match="diffcore.kernels.GraphedCall"):
        assert diffcore.nn.GraphedCall is GraphedCall
    with pytest.raises(AttributeError, match="no attribute 'Graphed'"):
        diffcore.nn.Graphed
