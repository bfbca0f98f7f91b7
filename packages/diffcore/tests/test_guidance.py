"""Guidance wrappers against their formulas and against exact Bayes on a Gaussian mixture."""

import diffcore
import pytest
import torch
from diffcore.guidance.wrappers import ClassifierFreeGuidance, ClassifierGuidance
from diffcore.paths.analytic import GaussianMixture


class CountingNet:
    """eps-network whose output depends on the class label y (B,) in a known way."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t, y):
        self.calls += 1
        return 0.3 * x + y.to(x.dtype)[:, None] * 0.1 + t[:, None].to(x.dtype)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "velocity"])
def test_cfg_equals_the_formula_in_one_forward(prediction):
    net = CountingNet()
    den = diffcore.Denoiser(net, "vp-cosine", prediction)
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.arange(5)
    null = torch.full((5,), 10)
    cfg = ClassifierFreeGuidance(den, scale=3.0, uncond={"y": null})
    net.calls = 0
    x0_g, eps_g = cfg.x0_eps(x, 0.4, y=y)
    assert net.calls == 1
    x0_c, eps_c = den.x0_eps(x, 0.4, y=y)
    x0_u, eps_u = den.x0_eps(x, 0.4, y=null)
    torch.testing.assert_close(eps_g, eps_u + 3.0 * (eps_c - eps_u))
    torch.testing.assert_close(x0_g, x0_u + 3.0 * (x0_c - x0_u))


def test_cfg_scale_one_and_interval_use_the_conditional_model():
    net = CountingNet()
    den = diffcore.Denoiser(net, "rectified-flow", "velocity")
    x, y = torch.randn(4, 2), torch.arange(4)
    for cfg, t in [
        (ClassifierFreeGuidance(den, 1.0, {"y": torch.zeros(1, dtype=torch.long)}), 0.5),
        (ClassifierFreeGuidance(den, 4.0, {"y": torch.zeros(1, dtype=torch.long)}, interval=(0.2, 0.6)), 0.9),
    ]:
        torch.testing.assert_close(cfg.x0_eps(x, t, y=y), den.x0_eps(x, t, y=y))


def test_cfg_rescale_matches_conditional_std_when_phi_is_one():
    den = diffcore.Denoiser(CountingNet(), "vp-cosine", "eps")
    x, y = torch.randn(3, 50, dtype=torch.float64), torch.arange(3)
    cfg = ClassifierFreeGuidance(den, 7.0, {"y": torch.full((1,), 9)}, rescale=1.0)
    x0_g, eps_g = cfg.x0_eps(x, 0.5, y=y)
    x0_c, _ = den.x0_eps(x, 0.5, y=y)
    torch.testing.assert_close(x0_g.std(1), x0_c.std(1))
    c = den.coefficients(0.5, x)
    torch.testing.assert_close(c.alpha * x0_g + c.sigma * eps_g, x)  # still a decomposition of x_t


def test_sample_accepts_a_guidance_scale():
    net = CountingNet()
    den = diffcore.Denoiser(net, "vp-cosine", "eps")
    noise = torch.randn(4, 2)
    out = diffcore.sample(
        den,
        noise,
        sampler="ddim",
        steps=3,
        cond={"y": torch.arange(4)},
        guidance=2.0,
        uncond={"y": torch.full((1,), 7)},
    )
    assert out.shape == noise.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="uncond"):
        diffcore.sample(den, noise, sampler="ddim", steps=3, cond={"y": torch.arange(4)}, guidance=2.0)


def test_classifier_guidance_with_the_exact_posterior_equals_the_conditional_score():
    """Bayes: grad log p_t(x | y=k) = grad log p_t(x) + grad log p(y=k | x_t)."""
    gm = GaussianMixture(
        torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), torch.full((2, 2), 0.2)
    )
    sched = diffcore.paths.schedules.get("vp-linear")
    k = 0

    def log_prob(x, t):
        a, s = sched.alpha(t.double())[:, None, None], sched.sigma(t.double())[:, None, None]
        mean, var = a * gm.means, a**2 * gm.variances + s**2
        logp = -0.5 * (((x[:, None, :] - mean) ** 2) / var + torch.log(var)).sum(-1) + torch.log(gm.weights)
        return torch.log_softmax(logp, -1)[:, k]

    guided = ClassifierGuidance(gm.denoiser(sched, "eps"), log_prob, scale=1.0)
    component = GaussianMixture.gaussian(gm.means[k], gm.variances[k])
    x = torch.randn(6, 2, dtype=torch.float64)
    for t in (0.2, 0.6):
        torch.testing.assert_close(guided.score(x, t), component.score(x, sched, t), rtol=1e-6, atol=1e-8)
