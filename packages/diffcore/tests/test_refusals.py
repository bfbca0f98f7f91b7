"""Bad input is refused with a message that names it: non-finite noise, guidance scales and network outputs
(checked once at the end of sampling, or per step in the debug mode), times outside [0, 1], unknown sampler
options. Sampling loops stay free of host-device synchronisation: the end check is one read after the loop."""

from __future__ import annotations

import math
import warnings

import diffcore
import pytest
import torch
from diffcore.guidance.wrappers import ClassifierFreeGuidance, ClassifierGuidance
from diffcore.paths import schedules
from diffcore.paths.analytic import GaussianMixture
from diffcore.sampling.sample import CHECK_FINITE_ENV, NonFiniteError

GM = GaussianMixture.random(6, components=2, seed=0)


def _noise(b: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 6, generator=torch.Generator().manual_seed(seed))


def _den(schedule: str = "vp-cosine", prediction: str = "eps") -> diffcore.Denoiser:
    return GM.denoiser(schedule, prediction)


# ------------------------------------------------------------------ non-finite values


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "heun"])
def test_non_finite_noise_is_refused_naming_the_noise(bad, sampler):
    noise = _noise()
    noise[1, 2] = bad
    with pytest.raises(NonFiniteError, match=r"noise holds 1 non-finite") as info:
        diffcore.sample(_den(), noise, sampler=sampler, steps=4)
    assert isinstance(info.value, ValueError)
    assert info.value.samples is not None and info.value.samples.shape == noise.shape  # nothing lost
    with pytest.raises(NonFiniteError, match=r"noise holds 1 non-finite"):
        diffcore.sample(_den(), noise, sampler=sampler, steps=4, check_finite="step")


def test_non_finite_x_start_and_conditioning_are_named():
    x_start = GM.sample(4, torch.Generator().manual_seed(1)).float()
    x_start[0, 0] = math.nan
    with pytest.raises(NonFiniteError, match="x_start holds 1 non-finite"):
        diffcore.sample(_den(), _noise(), sampler="ddim", steps=3, t_start=0.5, x_start=x_start)

    def net(x, t, scale):
        return x * scale

    den = diffcore.Denoiser(net, "vp-cosine", "eps")
    scale = torch.ones(4, 1)
    scale[2] = math.inf
    with pytest.raises(NonFiniteError, match=r"cond\['scale'\] holds 1 non-finite"):
        diffcore.sample(den, _noise(), sampler="ddim", steps=3, cond={"scale": scale})


@pytest.mark.parametrize("scale", [math.nan, math.inf])
def test_non_finite_guidance_scale_is_refused_before_sampling(scale):
    calls = []

    def net(x, t, y=None):
        calls.append(t)
        return torch.zeros_like(x)

    den = diffcore.Denoiser(net, "vp-cosine", "eps")
    with pytest.raises(ValueError, match="guidance: expected a finite guidance scale"):
        diffcore.sample(den, _noise(), steps=3, cond={"y": 1}, guidance=scale, uncond={"y": 0})
    with pytest.raises(ValueError, match="scale: expected a finite guidance scale"):
        ClassifierFreeGuidance(den, scale=scale, uncond={"y": 0})
    with pytest.raises(ValueError, match="scale: expected a finite guidance scale"):
        ClassifierGuidance(den, lambda x, t: x.sum(), scale=scale)
    assert not calls  # refused before any network evaluation


def _nan_below(t_bad: float):
    """A network that is exact (zero eps for N(0, I) data under VP) until ``t < t_bad``, then returns NaN."""

    def net(x, t):
        out = torch.zeros_like(x)
        return torch.where(t[:, None] < t_bad, torch.full_like(out, math.nan), out)

    return net


def test_network_returning_nan_is_refused_and_the_debug_mode_names_the_step():
    den = diffcore.Denoiser(_nan_below(0.45), "vp-cosine", "eps")
    grid = torch.linspace(1.0, 0.0, 11, dtype=torch.float64)  # 1.0, 0.9, ..., 0.1, 0.0
    with pytest.raises(NonFiniteError, match="inputs were finite, so the network") as info:
        diffcore.sample(den, _noise(), sampler="ddim", grid=grid)
    assert "check_finite='step'" in str(info.value) and info.value.step is None
    assert bool(torch.isnan(info.value.samples).all())
    # the first evaluation below 0.45 is at t = 0.4, the start of step 6 (1.0 -> 0.9 is step 0)
    with pytest.raises(NonFiniteError, match=r"step 6 \(t = 0\.4 -> 0\.3\)") as info:
        diffcore.sample(den, _noise(), sampler="ddim", grid=grid, check_finite="step")
    assert info.value.step == 6 and "x0 estimate" in str(info.value)


def test_debug_mode_from_the_environment(monkeypatch):
    den = diffcore.Denoiser(_nan_below(0.45), "vp-cosine", "eps")
    grid = torch.linspace(1.0, 0.0, 11, dtype=torch.float64)
    monkeypatch.setenv(CHECK_FINITE_ENV, "step")
    with pytest.raises(NonFiniteError, match="step 6") as info:
        diffcore.sample(den, _noise(), sampler="euler", grid=grid)
    assert info.value.step == 6
    monkeypatch.setenv(CHECK_FINITE_ENV, "off")
    assert bool(torch.isnan(diffcore.sample(den, _noise(), sampler="euler", grid=grid)).all())
    monkeypatch.setenv(CHECK_FINITE_ENV, "sometimes")
    with pytest.raises(
        ValueError, match=f"{CHECK_FINITE_ENV} \\(environment\\): expected one of end, step, off"
    ):
        diffcore.sample(den, _noise(), sampler="euler", grid=grid)
    with pytest.raises(ValueError, match="check_finite: expected one of"):
        diffcore.sample(den, _noise(), sampler="euler", grid=grid, check_finite="always")


def test_check_off_returns_what_the_sampler_computed():
    den = diffcore.Denoiser(_nan_below(2.0), "vp-cosine", "eps")  # NaN everywhere
    out = diffcore.sample(den, _noise(), sampler="ddim", steps=3, check_finite="off")
    assert bool(torch.isnan(out).all())


def test_finite_sampling_is_unchanged_by_the_check():
    den = _den()
    a = diffcore.sample(den, _noise(), sampler="dpmpp_2m", steps=5)
    b = diffcore.sample(den, _noise(), sampler="dpmpp_2m", steps=5, check_finite="off")
    c = diffcore.sample(den, _noise(), sampler="dpmpp_2m", steps=5, check_finite="step")
    assert torch.equal(a, b) and torch.equal(a, c)


def test_the_end_check_reads_nothing_on_the_meta_device():
    """The whole call runs on meta tensors (any read of a value would raise there): the loop never reads and
    the end check is skipped where values cannot be read (meta, or a CUDA graph being captured)."""
    den = diffcore.Denoiser(lambda x, t: 0.5 * x, "vp-cosine", "eps")
    out = diffcore.sample(den, torch.empty(3, 6, device="meta"), sampler="dpmpp_2m", steps=4)
    assert out.device.type == "meta"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_sampling_call_synchronises_once_for_its_end_check():
    den = diffcore.Denoiser(lambda x, t: 0.5 * x, "vp-cosine", "eps")
    noise = _noise().cuda()
    diffcore.sample(den, noise, sampler="dpmpp_2m", steps=6)  # warm up: grids and coefficients are cached
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            diffcore.sample(den, noise, sampler="dpmpp_2m", steps=6)
            checked = len(caught)
            caught.clear()
            diffcore.sample(den, noise, sampler="dpmpp_2m", steps=6, check_finite="off")
            unchecked = len(caught)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert unchecked == 0 and checked == 1


# ------------------------------------------------------------------ times outside [0, 1]


@pytest.mark.parametrize("t", [-0.1, 1.5, 2.0, math.nan, math.inf])
def test_times_outside_the_unit_interval_are_refused(t):
    calls = []

    def net(x, tt):
        calls.append(tt)
        return torch.zeros_like(x)

    den = diffcore.Denoiser(net, "vp-cosine", "eps")
    x = torch.randn(2, 3)
    for method in (den.x0, den.eps, den.velocity, den.score, den.x0_eps, den.estimate):
        with pytest.raises(ValueError, match=r"t: expected a time in \[0, 1\]"):
            method(x, t)
    assert not calls  # refused before the network runs
    for name in schedules.available():
        sched = schedules.get(name)
        for method in (
            sched.alpha,
            sched.sigma,
            sched.d_alpha,
            sched.d_sigma,
            sched.log_snr,
            sched.coefficients,
        ):
            with pytest.raises(ValueError, match=r"t: expected a time in \[0, 1\]"):
                method(t)
        with pytest.raises(ValueError, match=r"t: expected times in \[0, 1\]"):
            sched.alpha(torch.tensor([0.5, t]))


def test_per_sample_time_tensors_on_the_cpu_are_checked():
    den = _den()
    x = torch.randn(3, 6)
    den.x0(x, torch.tensor([0.0, 0.5, 1.0]))  # the edges themselves are times
    with pytest.raises(ValueError, match=r"got values such as \[1\.25\]"):
        den.x0(x, torch.tensor([0.0, 1.25, 1.0]))
    with pytest.raises(ValueError, match=r"t: expected times in \[0, 1\]"):
        schedules.get("rectified-flow").alpha(torch.tensor([math.nan]))
    with pytest.raises(TypeError, match="t: expected a float or a tensor of times"):
        schedules.get("rectified-flow").alpha("0.5")


def test_sample_refuses_start_and_end_outside_the_unit_interval():
    for t_start, t_end in ((1.5, 0.0), (1.0, -0.5), (math.nan, 0.0)):
        with pytest.raises(ValueError, match="t_start, t_end"):
            diffcore.sample(_den(), _noise(), steps=3, t_start=t_start, t_end=t_end)
    with pytest.raises(ValueError, match=r"grid: expected times in \[0, 1\]"):
        diffcore.sample(_den(), _noise(), grid=torch.tensor([1.2, 0.5, 0.0]))


# ------------------------------------------------------------------ unknown options


def test_unknown_sampler_option_is_named_against_the_public_signature():
    with pytest.raises(TypeError) as info:
        diffcore.sample(_den(), _noise(), sampler="ddim", steps=3, etaa=0.5)
    message = str(info.value)
    assert message.startswith("sample() got an unexpected keyword argument 'etaa'; did you mean 'eta'?")
    assert "Sampler 'ddim' takes eta" in message and "sample() itself takes sampler, steps, grid" in message
    assert "sample_ddim" not in message
    with pytest.raises(TypeError, match="did you mean 'grid'"):
        diffcore.sample(_den(), _noise(), sampler="euler", steps=3, gird="uniform")
    with pytest.raises(TypeError, match="Sampler 'euler' takes no options of its own"):
        diffcore.sample(_den(), _noise(), sampler="euler", steps=3, order=2)
