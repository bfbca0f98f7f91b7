"""Safety guidance on a Gaussian mixture whose conditional scores are exact.

Condition ``y``: 0 = the safe concept ``N(-2, 0.3^2)``, 1 = the banned concept ``N(2, 0.3^2)``, 2 = the generic
prompt and the unconditional model, their 50/50 mixture. Sampling the generic prompt puts half the mass on the
banned mode; safety guidance against ``y = 1`` must remove it and leave the safe mode as it was."""

from __future__ import annotations

import diffcore
import pytest
import torch
from diffcore.alignment import SafetyGuidance
from diffcore.guidance.wrappers import ClassifierFreeGuidance
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.predictions import PathCoefficients, from_x0_eps
from diffcore.paths.schedules import get as get_schedule

SCHEDULE = get_schedule("vp-cosine")
SAFE, BANNED, GENERIC = 0, 1, 2
MIXTURES = [
    GaussianMixture(torch.tensor([1.0]), torch.tensor([[-2.0]]), torch.tensor([[0.09]])),
    GaussianMixture(torch.tensor([1.0]), torch.tensor([[2.0]]), torch.tensor([[0.09]])),
    GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-2.0], [2.0]]), torch.full((2, 1), 0.09)),
]


def conditional_net(prediction: str = "eps"):
    """The exact conditional network: row ``i`` is the mixture ``MIXTURES[y_i]``'s exact prediction."""

    def net(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = t.double()
        out = torch.zeros_like(x, dtype=torch.float64)
        c = PathCoefficients.at(SCHEDULE, t, 2)
        for k, mix in enumerate(MIXTURES):
            x0, eps = mix.x0_eps(x, SCHEDULE, t)
            rows = (y == k)[:, None]
            out = torch.where(rows, from_x0_eps(x0, eps, prediction, c), out)
        return out.to(x.dtype)

    return net


def draw(den, y: int, n: int = 2000) -> torch.Tensor:
    noise = torch.randn(n, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return diffcore.sample(den, noise, "ddim", steps=40, cond={"y": torch.full((n,), y)})[:, 0]


def concept_posterior(x: torch.Tensor, t, x0: torch.Tensor) -> torch.Tensor:
    """The exact ``q = P(banned | x_t) = 0.5 p_{t,banned}(x) / p_{t,generic}(x)``."""
    return 0.5 * torch.exp(
        MIXTURES[BANNED].log_prob(x, SCHEDULE, t) - MIXTURES[GENERIC].log_prob(x, SCHEDULE, t)
    )


def banned_rate(samples: torch.Tensor) -> float:
    return float((samples > 0).double().mean())


def test_posterior_weighted_safety_removes_the_banned_mode_and_keeps_the_rest_exactly():
    """With the exact concept posterior the guided estimate is that of ``p_t(x | not banned)`` = the safe component:
    the banned mass goes from one half to at most 2 % and the safe mode keeps its mean and spread."""
    den = diffcore.Denoiser(conditional_net(), SCHEDULE, "eps")
    uncond, concept = {"y": torch.full((1,), GENERIC)}, {"y": torch.full((1,), BANNED)}
    plain = draw(den, GENERIC)
    safe = draw(SafetyGuidance(den, uncond, concept, concept_prob=concept_posterior), GENERIC)
    assert 0.45 < banned_rate(plain) < 0.55
    assert banned_rate(safe) <= 0.02
    reference = draw(den, SAFE)  # the safe concept drawn by its own conditional model, same sampler
    kept = safe[safe < 0]
    assert float(kept.mean()) == pytest.approx(float(reference.mean()), abs=0.05)
    assert float(kept.std()) == pytest.approx(float(reference.std()), rel=0.1)


def test_plain_negative_guidance_lowers_the_banned_mass_but_bends_the_rest():
    """The documented cost of a constant scale: ``(p_u / p_S)^mu`` grows in the safe mode's far tail."""
    den = diffcore.Denoiser(conditional_net(), SCHEDULE, "eps")
    uncond, concept = {"y": torch.full((1,), GENERIC)}, {"y": torch.full((1,), BANNED)}
    safe = draw(SafetyGuidance(den, uncond, concept, safety_scale=2.0), GENERIC)
    assert banned_rate(safe) < 0.1
    assert float(safe[safe < 0].mean()) < -3.0  # pushed past the safe mode at -2
    sld = draw(SafetyGuidance(den, uncond, concept, safety_scale=50.0, threshold=1.0), GENERIC)
    assert banned_rate(sld) < 0.3 and float(sld[sld < 0].mean()) == pytest.approx(-2.0, abs=0.2)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_without_safety_it_is_classifier_free_guidance_and_stays_a_decomposition_of_x_t(prediction):
    den = diffcore.Denoiser(conditional_net(prediction), SCHEDULE, prediction)
    x = torch.randn(6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.full((6,), GENERIC)
    uncond, concept = {"y": torch.full((1,), SAFE)}, {"y": torch.full((1,), BANNED)}
    off = SafetyGuidance(den, uncond, concept, scale=3.0, safety_scale=0.0)
    torch.testing.assert_close(
        off.x0_eps(x, 0.4, y=y), ClassifierFreeGuidance(den, 3.0, uncond).x0_eps(x, 0.4, y=y)
    )
    x0, eps = SafetyGuidance(den, uncond, concept, scale=3.0, safety_scale=1.5).x0_eps(x, 0.4, y=y)
    c = den.coefficients(0.4, x)
    torch.testing.assert_close(c.alpha * x0 + c.sigma * eps, x)
    # the formula, branch by branch: e_u + w ((e_p - e_u) - mu (e_S - e_u))
    e_p, e_u, e_s = (den.eps(x, 0.4, y=torch.full((6,), k)) for k in (GENERIC, SAFE, BANNED))
    torch.testing.assert_close(eps, e_u + 3.0 * ((e_p - e_u) - 1.5 * (e_s - e_u)))


def test_safety_acts_only_inside_its_interval_and_refuses_bad_settings():
    den = diffcore.Denoiser(conditional_net(), SCHEDULE, "eps")
    x, y = torch.randn(3, 1, dtype=torch.float64), torch.full((3,), GENERIC)
    uncond, concept = {"y": torch.full((1,), GENERIC)}, {"y": torch.full((1,), BANNED)}
    warm = SafetyGuidance(den, uncond, concept, safety_scale=3.0, interval=(0.0, 0.5))
    torch.testing.assert_close(warm.x0_eps(x, 0.8, y=y), den.x0_eps(x, 0.8, y=y))
    assert not torch.allclose(warm.x0_eps(x, 0.3, y=y)[1], den.x0_eps(x, 0.3, y=y)[1])
    with pytest.raises(ValueError, match="safety_scale"):
        SafetyGuidance(den, uncond, concept, safety_scale=-1.0)
    with pytest.raises(ValueError, match="concept"):
        SafetyGuidance(den, uncond, {})
    with pytest.raises(ValueError, match="concept_prob, threshold"):
        SafetyGuidance(den, uncond, concept, threshold=0.0, concept_prob=concept_posterior)
