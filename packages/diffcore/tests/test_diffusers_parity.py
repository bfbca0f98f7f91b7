"""Parity with diffusers' scheduler loops on the same model, beta table and timesteps.

Setup. The model is the exact eps-predictor of a Gaussian mixture. diffusers indexes its beta table by a
discrete timestep ``k = 0..T-1`` whose ``alphas_cumprod[k]`` is ``abar`` after ``k + 1`` noising steps, so
``k <-> t = (k + 1) / T`` on diffcore's :class:`~diffcore.paths.schedules.DiscreteVP` (whose table point ``i``
sits at ``t = i / T``). Our grid is ``[(k + 1) / T for k in scheduler.timesteps] + [0]``: diffusers' last
step goes to ``abar = 1`` (``set_alpha_to_one`` / ``final_sigmas_type="zero"``), our ``t = 0``.

Differences that remain, and why the tolerance is 1e-4 relative:

- diffusers keeps ``betas`` and ``alphas_cumprod`` in float32 and its DPM/UniPC ``sigmas`` in float32.
  We build our table from the *effective* betas of diffusers' float32 ``alphas_cumprod`` (so the tables
  agree to float64 rounding) and compute in float64; diffusers' float32 ``lambda`` / ``h`` leave ~1e-6.
- Euler / Heun: diffusers works in "VE units" ``x / alpha`` and ``sigma / alpha`` and interpolates sigma
  linearly between integer timesteps; diffcore's Euler/Heun integrate the ODE in ``t`` of the schedule at
  hand. The two agree exactly on the EDM path (``alpha = 1``, ``sigma = t sigma_max``), so the comparison
  runs our samplers on ``EDM(sigma_max = sigmas[0])`` with ``t_i = sigma_i / sigma_max`` taken from the
  scheduler, and the model is the mixture's eps-predictor as a function of that sigma. diffusers' Euler
  also steps in float32.
- DPM-Solver++(3M): diffusers weights the second divided difference by ``I_2 / h^2``, half of the Taylor
  weight (see :func:`diffcore.sampling.dpm_solver.multistep_weights`); parity runs ``d2_weight="diffusers"``,
  and the last test shows how much the default differs.
- diffusers' UniPC "bh1" returns NaN on a last step to sigma = 0 (``B(h) = -inf`` times 0); its bh1 runs
  end at ``t = 1 / T`` (``final_sigmas_type="sigma_min"``) here. Ours takes that step at first order.
- diffusers lowers the multistep order on the last steps of runs shorter than 15 steps, and UniPC always
  (``lower_order_final``); our samplers follow the same rule.
"""

from __future__ import annotations

import diffcore
import pytest
import torch
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.schedules import EDM, DiscreteVP

diffusers = pytest.importorskip("diffusers")

T = 1000
GM = GaussianMixture.random(4, 3, spread=1.5, seed=3)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def diffusers_betas() -> torch.Tensor:
    """The linear DDPM table as diffusers stores it (float32)."""
    return torch.linspace(1e-4, 0.02, T, dtype=torch.float32)


def matching_schedule(scheduler) -> DiscreteVP:
    """diffcore's table from the effective betas of diffusers' float32 ``alphas_cumprod``."""
    abar = scheduler.alphas_cumprod.to(torch.float64)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return DiscreteVP(1 - abar / prev, name="diffusers-linear")


def noise(n: int = 64) -> torch.Tensor:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def vp_grid(timesteps: torch.Tensor, final: float = 0.0) -> torch.Tensor:
    """diffusers' timestep ``k`` is ``t = (k + 1) / T``; the loop ends at ``t = 0`` (or ``final``)."""
    times = [(int(k) + 1) / T for k in timesteps] + [final]
    return torch.tensor(times, dtype=torch.float64)


def run_diffusers_vp(scheduler, steps: int, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
    """The standard scheduler loop with the exact eps-model evaluated at ``t = (k + 1) / T``."""
    scheduler.set_timesteps(steps)
    den = GM.denoiser(matching_schedule(scheduler), "eps")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    x = x * scheduler.init_noise_sigma
    for k in scheduler.timesteps:
        eps = den.eps(x, (int(k) + 1) / T)
        kwargs = {"generator": gen} if gen is not None else {}
        x = scheduler.step(eps, k, x, **kwargs).prev_sample
    return x


def run_ours(sampler: str, scheduler, x: torch.Tensor, seed: int | None = None, **options) -> torch.Tensor:
    den = GM.denoiser(matching_schedule(scheduler), "eps")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    spec = diffcore.sampling.get(sampler)
    final = 1 / T if getattr(scheduler.config, "final_sigmas_type", "zero") == "sigma_min" else 0.0
    grid = vp_grid(scheduler.timesteps, final)
    return spec.fn(den, x, grid, cond={}, generator=gen, callback=None, **options)


def assert_parity(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-4) -> None:
    err = float((ours - theirs.to(torch.float64)).norm() / theirs.norm())
    assert err < rtol, f"relative difference {err:.2e}"


def common(**kw) -> dict:
    return {"num_train_timesteps": T, "trained_betas": diffusers_betas().numpy(), **kw}


@pytest.mark.parametrize("steps", [10, 25])
def test_ddim(steps):
    sch = diffusers.DDIMScheduler(**common(clip_sample=False, set_alpha_to_one=True))
    theirs = run_diffusers_vp(sch, steps, noise())
    assert_parity(run_ours("ddim", sch, noise()), theirs)


@pytest.mark.parametrize("steps", [20, 1000])
def test_ddpm_same_noise(steps):
    """Both loops draw ``torch.randn(x.shape)`` from the same generator at every step but the last."""
    sch = diffusers.DDPMScheduler(**common(clip_sample=False, variance_type="fixed_small"))
    theirs = run_diffusers_vp(sch, steps, noise(), seed=11)
    assert_parity(run_ours("ddpm", sch, noise(), seed=11, variance="small"), theirs)


@pytest.mark.parametrize("steps", [8, 20])
@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_dpmpp_2m(steps, solver_type):
    sch = diffusers.DPMSolverMultistepScheduler(**common(solver_order=2, solver_type=solver_type))
    theirs = run_diffusers_vp(sch, steps, noise())
    assert_parity(run_ours("dpmpp_2m", sch, noise(), solver_type=solver_type), theirs)


@pytest.mark.parametrize("steps", [8, 20])
def test_dpmpp_3m(steps):
    sch = diffusers.DPMSolverMultistepScheduler(**common(solver_order=3))
    theirs = run_diffusers_vp(sch, steps, noise())
    assert_parity(run_ours("dpmpp_3m", sch, noise(), d2_weight="diffusers"), theirs)
    # the Taylor-consistent default differs from diffusers by more than the tolerance, but only a little
    ours = run_ours("dpmpp_3m", sch, noise())
    rel = float((ours - theirs).norm() / theirs.norm())
    assert 1e-4 < rel < 0.05


@pytest.mark.parametrize("steps", [6, 10, 20])
@pytest.mark.parametrize("order, variant", [(2, "bh2"), (2, "bh1"), (3, "bh2"), (1, "bh1")])
def test_unipc(steps, order, variant):
    # diffusers' bh1 multiplies B(h) = -inf by 0 on a last step to sigma = 0 (NaN); it ends at t = 1 / T then
    final = "zero" if variant == "bh2" else "sigma_min"
    sch = diffusers.UniPCMultistepScheduler(
        **common(solver_order=order, solver_type=variant, final_sigmas_type=final)
    )
    theirs = run_diffusers_vp(sch, steps, noise())
    assert_parity(run_ours("unipc", sch, noise(), order=order, variant=variant), theirs)


def test_unipc_without_corrector_and_noise_prediction():
    sch = diffusers.UniPCMultistepScheduler(**common(solver_order=2, disable_corrector=list(range(20))))
    theirs = run_diffusers_vp(sch, 12, noise())
    assert_parity(run_ours("unipc", sch, noise(), order=2, use_corrector=False), theirs)


# ---- Euler / Heun: "VE units" (see the module docstring) --------------------------------------


def run_diffusers_ve(scheduler, steps: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The scheduler loop with the mixture's eps as a function of the scheduler's own sigma; returns the
    samples and the distinct sigmas visited (the grid)."""
    scheduler.set_timesteps(steps)
    sigmas = torch.unique_consecutive(scheduler.sigmas.to(torch.float64))
    den = GM.denoiser(EDM(sigma_max=float(sigmas[0])), "eps")
    x = x * scheduler.init_noise_sigma
    for k in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, k)
        sigma = float(scheduler.sigmas[scheduler.step_index])
        eps = den.eps(x_in.to(torch.float64) * (sigma**2 + 1) ** 0.5, sigma / float(sigmas[0]))
        x = scheduler.step(eps, k, x).prev_sample
    return x, sigmas


@pytest.mark.parametrize(
    "sampler, cls", [("euler", "EulerDiscreteScheduler"), ("heun", "HeunDiscreteScheduler")]
)
@pytest.mark.parametrize("steps", [10, 30])
def test_euler_and_heun_in_ve_units(sampler, cls, steps):
    sch = getattr(diffusers, cls)(**common())
    theirs, sigmas = run_diffusers_ve(sch, steps, noise())
    den = GM.denoiser(EDM(sigma_max=float(sigmas[0])), "eps")
    grid = (sigmas / sigmas[0]).clamp(0, 1)
    grid[0] = 1.0
    x = noise() * float(sch.init_noise_sigma)
    ours = diffcore.sampling.get(sampler).fn(den, x, grid, cond={}, generator=None, callback=None)
    assert_parity(ours, theirs)
