"""DiffGS's parts: the set encoder's invariance, extraction at any budget, the autoencoder's shapes."""

import pytest
import torch
from diff_3d.extraction import extract_points, probability, refine_points
from diff_3d.models import DiffGSAutoencoder, DiffGSConfig


def tiny() -> DiffGSAutoencoder:
    torch.manual_seed(0)
    return DiffGSAutoencoder(DiffGSConfig(latent_tokens=4, latent_dim=8, width=32, heads=2, queries=64))


def test_the_set_encoder_ignores_the_order_of_the_gaussians():
    model = tiny().eval()
    x = torch.randn(2, 50, 14, generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    mean, logvar = model.posterior(x)
    mean_p, logvar_p = model.posterior(x[:, perm])
    torch.testing.assert_close(mean_p, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logvar_p, logvar, rtol=1e-5, atol=1e-5)
    # and it does depend on the set: another set gives another latent
    assert not torch.allclose(model.posterior(x.flip(0))[0], mean)


def sphere_distance(radius: float):
    """An exact unsigned distance to the sphere of ``radius``: a hand-built GauPF whose centres are that sphere."""
    return lambda x: (x.norm(dim=-1) - radius).abs()


@pytest.mark.parametrize("budget", [1, 37, 500])
def test_extraction_returns_the_budget_on_the_high_probability_surface(budget):
    g = torch.Generator().manual_seed(0)
    pts = extract_points(sphere_distance(0.5), 2, budget, refine_steps=2, keep_distance=0.01, generator=g)
    assert pts.shape == (2, budget, 3)
    assert float((pts.norm(dim=-1) - 0.5).abs().max()) < 1e-4
    # drawn among the probable candidates: spread over the sphere, not piled on one spot
    if budget == 500:
        assert float(pts[0].mean(0).norm()) < 0.1


def test_one_refinement_step_projects_onto_an_exact_distance_field():
    x = torch.tensor([[[0.9, 0.0, 0.0], [0.0, -0.2, 0.0], [0.3, 0.4, 0.0]]])
    out = refine_points(sphere_distance(0.5), x, steps=1, extent=1.0)
    torch.testing.assert_close(out.norm(dim=-1), torch.full((1, 3), 0.5))
    torch.testing.assert_close(out[0, 0], torch.tensor([0.5, 0.0, 0.0]))


def test_without_enough_probable_points_the_most_probable_are_taken():
    # nothing refines (0 steps) and nothing is within keep_distance: the closest candidates to the sphere win
    g = torch.Generator().manual_seed(0)
    pts = extract_points(
        sphere_distance(0.5), 1, 10, candidates=2000, refine_steps=0, keep_distance=1e-9, generator=g
    )
    cand = torch.rand((1, 2000, 3), generator=torch.Generator().manual_seed(0)) * 2 - 1
    best = torch.sort((cand[0].norm(dim=-1) - 0.5).abs()).values[:10]
    torch.testing.assert_close(torch.sort((pts[0].norm(dim=-1) - 0.5).abs()).values, best)


def test_probability_is_one_at_a_centre_and_falls_with_distance():
    d = torch.tensor([0.0, 0.01, 0.02])
    p = probability(d, 0.01)
    torch.testing.assert_close(p, torch.exp(torch.tensor([0.0, -0.5, -2.0])))
    with pytest.raises(ValueError, match="bandwidth"):
        probability(d, 0.0)


def test_the_autoencoder_decodes_any_budget_and_its_loss_is_finite():
    model = tiny()
    x = torch.randn(2, 40, 14, generator=torch.Generator().manual_seed(0)) * 0.3
    loss, logs = model.loss(x, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and set(logs) == {"gaupf", "gaucf", "scale", "rotation", "kl"}
    z = model.encode_latents(x)
    assert z.shape == (2, 8, 4)
    for budget in (3, 100):
        out = model.decode_latents(z, budget, torch.Generator().manual_seed(0), candidates=400)
        assert [o.shape for o in out] == [(budget, 14)] * 2
        torch.testing.assert_close(out[0][:, 3:7].norm(dim=-1), torch.ones(budget))
    with pytest.raises(ValueError, match="latents: expected"):
        model.decode_latents(torch.zeros(2, 4, 8), 5)
    with pytest.raises(ValueError, match="budget"):
        model.decode_latents(z, 0)
