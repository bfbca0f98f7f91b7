"""Inpainting, colorization and SDEdit with exact denoisers."""

import pytest
import torch
from diffcore.editing.inpainting import ChannelMean, Mask, colorize, inpaint, sdedit
from diffcore.paths import schedules
from diffcore.paths.analytic import GaussianMixture

GM = GaussianMixture(
    torch.tensor([0.5, 0.5]), torch.tensor([[-1.5, -1.5], [1.5, 1.5]]), torch.full((2, 2), 0.15)
)


def _exact_conditional(x1: float):
    lp = torch.log(GM.weights) - 0.5 * (x1 - GM.means[:, 0]) ** 2 / GM.variances[:, 0]
    r = torch.softmax(lp - 0.5 * torch.log(GM.variances[:, 0]), 0)
    mean = (r * GM.means[:, 1]).sum()
    std = ((r * (GM.variances[:, 1] + GM.means[:, 1] ** 2)).sum() - mean**2).sqrt()
    return float(mean), float(std)


def test_repaint_keeps_known_entries_and_approaches_the_exact_conditional():
    den = GM.denoiser(schedules.get("vp-cosine"), "eps")
    n = 1000
    known = torch.stack([torch.full((n,), 0.5), torch.zeros(n)], 1).double()
    mask = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    mean, std = _exact_conditional(0.5)
    errors = []
    for resample in (1, 8):
        g = torch.Generator().manual_seed(0)
        out = inpaint(
            den,
            known,
            mask,
            torch.randn(n, 2, generator=g, dtype=torch.float64),
            30,
            resample=resample,
            generator=g,
        )
        assert torch.equal(out[:, 0], known[:, 0])  # known entries kept exactly
        errors.append(abs(float(out[:, 1].mean()) - mean) + abs(float(out[:, 1].std()) - std))
    assert errors[1] < 0.5 * errors[0]  # resampling harmonises the generated part
    assert errors[1] < 0.5


def test_inpainting_changes_only_the_unknown_region():
    gm = GaussianMixture.random(16, components=3, seed=0)
    den = gm.denoiser("rectified-flow", "velocity")
    x = gm.sample(4, torch.Generator().manual_seed(1)).reshape(4, 1, 4, 4)
    mask = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    mask[..., 1:3, 1:3] = 0
    net = gm.network("rectified-flow", "velocity")
    from diffcore import Denoiser

    den = Denoiser(lambda z, t: net(z.reshape(4, 16), t).reshape(z.shape), "rectified-flow", "velocity")
    out = inpaint(den, x, mask, torch.randn(4, 1, 4, 4, dtype=torch.float64), 10, eta=0.0)
    assert torch.equal(out * mask, x * mask)
    assert float(((out - x) * (1 - mask)).abs().sum()) > 0


def test_colorization_keeps_the_gray_image():
    gm = GaussianMixture.random(12, components=2, seed=5)
    net = gm.network("vp-cosine", "eps")
    from diffcore import Denoiser

    den = Denoiser(lambda z, t: net(z.reshape(len(z), 12), t).reshape(z.shape), "vp-cosine", "eps")
    rgb = gm.sample(3, torch.Generator().manual_seed(0)).reshape(3, 3, 2, 2)
    gray = ChannelMean(1).measure(rgb)
    out = colorize(den, gray, torch.randn(3, 3, 2, 2, dtype=torch.float64), 20)
    torch.testing.assert_close(out.mean(1, keepdim=True), gray)
    assert out.std(1).mean() > 0.01  # colour was generated, not left gray


def test_sdedit_interpolates_between_keeping_and_ignoring_the_input():
    den = GM.denoiser("rectified-flow", "velocity")
    x = torch.tensor([[3.0, -3.0]], dtype=torch.float64).repeat(64, 1)  # far from both modes
    noise = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sdedit(den, x, 0.0, noise), x)
    near = sdedit(den, x, 0.02, noise, steps=5)
    assert float((near - x).abs().max()) < 0.2
    far = sdedit(den, x, 1.0, noise, steps=30)
    assert float((far - x).norm(dim=1).mean()) > 2.0
    with pytest.raises(ValueError, match="strength"):
        sdedit(den, x, 1.5, noise)


def test_mask_rejects_non_binary_values():
    with pytest.raises(ValueError, match="mask"):
        Mask(torch.tensor([0.5]))
