"""The fused sampler steps (the conversion of the network output folded into the update through
``Denoiser.estimate``, one multiply-add per step) against the unfused formulas, and the number of aten
operations they launch per step."""

from __future__ import annotations

import itertools
from collections import Counter

import diffcore
import pytest
import torch
from diffcore.paths.denoiser import DenoiserBase
from diffcore.paths.predictions import PREDICTIONS, PathCoefficients, affine_x0_eps, from_x0_eps, to_x0_eps
from diffcore.sampling.steps import grid_points, phi, step_length
from torch.utils._python_dispatch import TorchDispatchMode

SCHEDULES = ("vp-cosine", "rectified-flow", "edm")


def _network(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A smooth nonlinear 'network' of any parameterisation (its kind only changes what it means)."""
    return torch.tanh(x) * (0.5 + t.reshape(-1, *([1] * (x.ndim - 1))))


def _noise(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)


# ---- the unfused reference loops (the formulas before fusion, written out) ---------------------


def _velocity(den, x, p):
    x0, eps = den.x0_eps(x, p.t)
    return from_x0_eps(x0, eps, "velocity", PathCoefficients(p.alpha, p.sigma, p.d_alpha, p.d_sigma)), x0


def _ref_euler(den, x, grid):
    for cur, nxt in itertools.pairwise(grid_points(den.schedule, grid)):
        v, x0 = _velocity(den, x, cur)
        x = x0 if nxt.is_data else x + (nxt.t - cur.t) * v
    return x


def _ref_heun(den, x, grid):
    for cur, nxt in itertools.pairwise(grid_points(den.schedule, grid)):
        d, x0 = _velocity(den, x, cur)
        h = nxt.t - cur.t
        if nxt.is_data:
            x = x0
        else:
            d_next, _ = _velocity(den, x + h * d, nxt)
            x = x + (0.5 * h) * (d + d_next)
    return x


def _ref_ddim(den, x, grid):
    for cur, nxt in itertools.pairwise(grid_points(den.schedule, grid)):
        x0, eps = den.x0_eps(x, cur.t)
        x = x0 if nxt.is_data else nxt.alpha * x0 + nxt.sigma * eps  # Song et al. 2021, Eq. 12 (eta = 0)
    return x


def _ref_dpmpp_2m(den, x, grid):
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2), first order on the first and last steps."""
    pts = grid_points(den.schedule, grid)
    prev = None
    steps = len(pts) - 1
    for i, (s, t) in enumerate(itertools.pairwise(pts)):
        x0 = den.x0(x, s.t)
        if t.is_data:
            x = x0
        else:
            h = step_length(s, t)
            d = x0
            if prev is not None and i < steps - 1:
                r = (s.lam - prev[0].lam) / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev[1]
            x = (t.sigma / s.sigma) * x + (t.alpha * phi(0, h)) * d
        prev = (s, x0)
    return x


REFERENCES = {"euler": _ref_euler, "heun": _ref_heun, "ddim": _ref_ddim, "dpmpp_2m": _ref_dpmpp_2m}


@pytest.mark.parametrize("sampler", sorted(REFERENCES))
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_fused_equals_unfused(sampler: str, prediction: str, schedule: str) -> None:
    den = diffcore.Denoiser(_network, schedule, prediction=prediction)
    grid = diffcore.sampling.grids.make("uniform", den.schedule, 6)
    x = float(den.schedule.sigma(grid[:1].to(torch.float64))) * _noise()
    fused = diffcore.sample(den, _noise(), sampler, 6, grid=grid)
    ref = REFERENCES[sampler](den, x, grid)
    torch.testing.assert_close(fused, ref, rtol=1e-10, atol=1e-10)


class _Wrapped(DenoiserBase):
    """A wrapper that only implements ``x0_eps`` (like guidance): its estimate is its ``x0``."""

    def __init__(self, inner: DenoiserBase) -> None:
        self.inner, self.schedule = inner, inner.schedule

    def x0_eps(self, x, t, **cond):
        return self.inner.x0_eps(x, t, **cond)


@pytest.mark.parametrize("sampler", sorted(REFERENCES))
@pytest.mark.parametrize("prediction", ["eps", "velocity"])
def test_fused_generic_wrapper_equals_unfused(sampler: str, prediction: str) -> None:
    den = _Wrapped(diffcore.Denoiser(_network, "vp-linear", prediction=prediction))
    x_t = _noise()
    est = den.estimate(x_t, 0.4)
    x0, eps = den.x0_eps(x_t, 0.4)
    assert torch.equal(est.out, x0)  # a wrapper hands over its x0; eps is read off x_t = alpha x0 + sigma eps
    torch.testing.assert_close(est.eps, eps, rtol=1e-12, atol=1e-12)
    grid = diffcore.sampling.grids.make("uniform", den.schedule, 6)
    x = float(den.schedule.sigma(grid[:1].to(torch.float64))) * _noise()
    fused = diffcore.sample(den, _noise(), sampler, 6, grid=grid)
    torch.testing.assert_close(fused, REFERENCES[sampler](den, x, grid), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("sampler", ["euler", "heun", "ddim", "dpmpp_2m"])
def test_fused_low_precision_matches_float64(sampler: str, dtype: torch.dtype) -> None:
    """Fused steps in float32 / half precision stay within that precision of the float64 run."""
    den = diffcore.Denoiser(_network, "vp-cosine", prediction="v")
    ref = diffcore.sample(den, _noise(), sampler, 8)
    got = diffcore.sample(den, _noise().to(dtype), sampler, 8)
    assert got.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(got.double(), ref, rtol=tol, atol=tol)


def test_affine_map_matches_conversions() -> None:
    """``affine_x0_eps`` solves the parameterisation's definition: converting its (x0, eps) back gives ``out``."""
    x, out = _noise(), torch.tanh(_noise()) + 0.3
    c = PathCoefficients(0.6, 0.8, -0.7, 0.5)
    for prediction in PREDICTIONS:
        f = affine_x0_eps(prediction, c)
        x0, eps = f.x0_x * x + f.x0_out * out, f.eps_x * x + f.eps_out * out
        torch.testing.assert_close(0.6 * x0 + 0.8 * eps, x)  # x_t = alpha x0 + sigma eps
        torch.testing.assert_close(from_x0_eps(x0, eps, prediction, c), out)
        got = to_x0_eps(out, prediction, x, c)
        torch.testing.assert_close(got[0], x0)
        torch.testing.assert_close(got[1], eps)
        k_x, k_out = f.fold(0.3, -1.2, 2.0)
        torch.testing.assert_close(k_x * x + k_out * out, 0.3 * x - 1.2 * x0 + 2.0 * eps)


# ---- aten operations per step ---------------------------------------------------------------------


class _CountOps(TorchDispatchMode):
    """Counts the aten operations on state-shaped tensors (the ones that launch batch-sized kernels on a
    device) dispatched while active; host-side schedule arithmetic on the CPU grid is not counted."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.shape = shape
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [a for a in (*args, out) if isinstance(a, torch.Tensor)]
        if any(a.shape == self.shape for a in tensors):
            self.ops[str(func.overloadpacket)] += 1
        return out


def _half_network(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.5 * x  # one aten op, the benchmark's identity-cost network


def _ops_per_step(sampler: str, prediction: str, schedule: str) -> float:
    den = diffcore.Denoiser(_half_network, schedule, prediction=prediction)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    counts = []
    for steps in (10, 20):
        with _CountOps(noise.shape) as mode:
            diffcore.sample(den, noise, sampler, steps)
        counts.append(sum(mode.ops.values()))
    return (counts[1] - counts[0]) / 10


# (sampler, network calls per step, aten ops per step besides the network): Euler and DDIM one fused
# multiply-add (2 ops), Heun one for the predictor and, for the corrector x + h/2 (d + d') written as
# (x + x_euler)/2 + h/2 d', a three-term sum over x, the predictor's state and its network output (2 + 3),
# DPM-Solver++(2M) the x0 estimate (2) and a three-term sum (3).
BOUNDS = [("euler", 1, 2), ("ddim", 1, 2), ("heun", 2, 5), ("dpmpp_2m", 1, 5)]


@pytest.mark.parametrize(("sampler", "nfe", "bound"), BOUNDS)
@pytest.mark.parametrize(("prediction", "schedule"), [("eps", "vp-linear"), ("velocity", "rectified-flow")])
def test_aten_ops_per_step(sampler: str, nfe: int, bound: int, prediction: str, schedule: str) -> None:
    per_step = _ops_per_step(sampler, prediction, schedule)
    assert per_step <= nfe + bound, f"{sampler}: {per_step} aten ops per step, expected <= {nfe + bound}"


def test_euler_step_is_network_plus_one_multiply_add() -> None:
    """The per-step count of an eps-model Euler step, op by op: the network's mul, then mul + add_."""
    den = diffcore.Denoiser(_half_network, "vp-linear", prediction="eps")
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    totals = []
    for steps in (10, 11):
        with _CountOps(noise.shape) as mode:
            diffcore.sample(den, noise, "euler", steps)
        totals.append(mode.ops)
    extra = Counter(totals[1])
    extra.subtract(totals[0])
    assert +extra == Counter({"aten.mul": 2, "aten.add_": 1})
    assert -extra == Counter()
