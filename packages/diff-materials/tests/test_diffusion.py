"""The joint process: the wrapped-normal score normaliser against its limits, the training loss, and the sampler,
which must reproduce a crystal exactly when it is given that crystal's exact denoiser."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from diff_materials.data import CrystalDataset, collate_crystals
from diff_materials.diffusion import (
    MASK_TYPE,
    CrystalDiffusion,
    CrystalDiffusionConfig,
    CrystalObjective,
    Guidance,
    _range_log_prob,
    sample_crystals,
    score_norm,
)
from diff_materials.lattice import normalise_lattice
from diff_materials.metrics import match_rms
from diff_materials.models import CrystalDenoiser, CrystalDenoiserConfig, EncoderConfig
from diff_materials.orbit import orbit_score
from diffcore.manifolds import torus
from diffcore.rng import seeded
from torch import nn


def test_score_norm_is_the_gaussian_one_for_small_sigma_and_vanishes_towards_uniform():
    s = torch.tensor([0.005, 0.02, 0.1], dtype=torch.float64)
    assert torch.allclose(score_norm(s, 0.005, 0.5), 1 / s**2, rtol=1e-3)
    # at sigma = 0.5 the wrapped normal is within exp(-2 pi^2 sigma^2) of uniform: its score is tiny
    big = float(score_norm(torch.tensor(0.5, dtype=torch.float64), 0.005, 0.5))
    assert big == pytest.approx(2 * (2 * math.pi) ** 2 * math.exp(-4 * math.pi**2 * 0.25), rel=0.05)


def test_score_norm_agrees_with_monte_carlo():
    g = torch.Generator().manual_seed(0)
    sigma = 0.3
    x = torus.wrapped_normal_sample(torch.zeros(200000, 1, dtype=torch.float64), sigma, g)
    mc = float((torus.wrapped_normal_score(x, torch.zeros_like(x), sigma) ** 2).mean())
    assert float(score_norm(torch.tensor(sigma, dtype=torch.float64), 0.005, 0.5)) == pytest.approx(
        mc, rel=0.02
    )


class Oracle(nn.Module):
    """The exact denoiser of a data set of one crystal: the true lattice noise, the true (normalised) wrapped
    normal score towards its coordinates, and its atom types."""

    def __init__(self, crystal, diffusion: CrystalDiffusion):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.config = EncoderConfig()
        self.encoder.lattice_mean = torch.tensor([4.0, 4.0, 4.0, 0, 0, 0], dtype=torch.float64)
        self.encoder.lattice_std = torch.ones(6, dtype=torch.float64)
        self.w = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.diffusion = diffusion
        n = torch.tensor([crystal.num_atoms])
        lat = torch.tensor(crystal.lattice)[None]
        self.x0 = normalise_lattice(lat, n, self.encoder.lattice_mean, self.encoder.lattice_std)
        self.frac0 = torch.tensor(crystal.frac)
        self.types0 = torch.tensor(crystal.numbers - 1)

    def forward(self, frac, x, types, t, num_atoms, properties=None, property_mask=None):
        b = len(num_atoms)
        tq = t.double()
        alpha = self.diffusion.lattice_schedule.alpha(tq)[:, None]
        sigma = self.diffusion.lattice_schedule.sigma(tq)[:, None]
        eps = (x - alpha * self.x0) / sigma
        sig = self.diffusion.frac_sigma(tq).repeat_interleave(num_atoms)[:, None]
        frac0 = self.frac0.repeat(b, 1)
        score = torus.wrapped_normal_score(frac, frac0, sig) / self.diffusion.score_norm(sig).sqrt()
        logits = torch.full((len(frac), MASK_TYPE + 1), -30.0, dtype=torch.float64)
        logits[torch.arange(len(frac)), self.types0.repeat(b)] = 30.0
        return {"frac": score, "lattice": eps, "types": logits}


@pytest.mark.parametrize("task, step_lr", [("csp", 0.0), ("csp", 1e-5), ("gen", 0.0)])
def test_the_sampler_reproduces_the_crystal_of_an_exact_denoiser(perovskites, task, step_lr):
    c = perovskites[0]
    diffusion = CrystalDiffusion(CrystalDiffusionConfig(task=task))
    oracle = Oracle(c, diffusion)
    types = torch.tensor(np.tile(c.numbers - 1, 3))
    out = sample_crystals(oracle, diffusion, [5, 5, 5], types=types, steps=100, step_lr=step_lr,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    for s in out:
        assert np.allclose(s.lattice @ s.lattice.T, c.lattice @ c.lattice.T, atol=1e-6)
        assert sorted(s.numbers.tolist()) == sorted(c.numbers.tolist())
        rms = match_rms(s, c)
        assert rms is not None and rms < 0.02  # the last step leaves sigma_min = 0.005 of coordinate noise


def test_the_sampler_names_missing_types_for_structure_prediction():
    diffusion = CrystalDiffusion(CrystalDiffusionConfig(task="csp"))
    model = CrystalDenoiser(CrystalDenoiserConfig(hidden=8, layers=1, num_freqs=2))
    with pytest.raises(ValueError, match=r"types: .*\(5,\)"):
        sample_crystals(model, diffusion, [5], steps=2)
    with pytest.raises(ValueError, match="num_atoms"):
        sample_crystals(model, diffusion, [0], steps=2)


def test_objective_is_small_for_the_exact_denoiser_and_order_one_for_a_random_one(perovskites):
    c = perovskites[0]
    # the Oracle knows the crystal's own coordinates: DiffCSP's one-crystal target is what it predicts
    diffusion = CrystalDiffusion(CrystalDiffusionConfig(task="gen", frac_target="crystal"))
    batch = collate_crystals([CrystalDataset([c] * 8)[i] for i in range(8)])
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    g = torch.Generator().manual_seed(0)
    _, logs = CrystalObjective(diffusion)(Oracle(c, diffusion), batch, g)
    assert float(logs["loss_lattice"]) < 1e-10 and float(logs["loss_frac"]) < 1e-10
    assert float(logs["loss_types"]) < 1e-6
    with seeded(0):
        model = CrystalDenoiser(
            CrystalDenoiserConfig(hidden=8, layers=1, num_freqs=2, lattice_mean=[4, 4, 4, 0, 0, 0])
        ).double()
    _, logs = CrystalObjective(diffusion)(model, batch, g)
    # an untrained network predicts ~0: the loss is the targets' mean square, 1 for eps and, for the centred
    # normalised score, about (N - 1) / N = 0.8 averaged over t (less where sigma is large and wraps)
    assert 0.3 < float(logs["loss_lattice"]) < 3 and 0.1 < float(logs["loss_frac"]) < 3
    assert abs(float(logs["loss_types"]) - math.log(100)) < 1.5  # near-uniform logits over 100 elements


def _type_spy(seen: dict) -> type[nn.Module]:
    """A tiny denoiser class that records the atom types and times it is called with into ``seen``."""

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = CrystalDenoiser(CrystalDenoiserConfig(hidden=8, layers=1, num_freqs=2))
            self.encoder = self.inner.encoder

        def forward(self, frac, x, types, t, n, *a):
            seen["types"], seen["t"] = types, t
            return self.inner(frac, x, types, t, n, *a)

    return Spy


def test_csp_fraction_keeps_the_types_of_some_crystals_clean(perovskites):
    diffusion = CrystalDiffusion(CrystalDiffusionConfig(task="gen"))
    batch = collate_crystals([CrystalDataset(perovskites[:64])[i] for i in range(64)])
    seen = {}
    Spy = _type_spy(seen)

    for fraction in (0.0, 1.0):
        CrystalObjective(diffusion, csp_fraction=fraction)(Spy(), batch, torch.Generator().manual_seed(0))
        masked = (seen["types"] == MASK_TYPE).reshape(64, 5).float().mean(1)
        if fraction == 1.0:
            assert masked.sum() == 0
        else:  # the log-linear schedule masks a fraction t of the atoms
            assert float((masked - seen["t"]).abs().mean()) < 0.2


def test_range_log_prob_prefers_predictions_inside_the_range():
    low, high = torch.tensor([0.0]), torch.tensor([1.0])
    inside = _range_log_prob(torch.tensor([[0.5]]), low, high, 0.1)
    outside = _range_log_prob(torch.tensor([[2.0]]), low, high, 0.1)
    assert float(inside) == pytest.approx(0.0, abs=1e-3) and float(outside) < -10
    open_top = _range_log_prob(torch.tensor([[5.0]]), low, torch.tensor([float("nan")]), 0.1)
    assert float(open_top) == pytest.approx(0.0, abs=1e-6)


def test_classifier_guidance_moves_samples_towards_the_target(perovskites):
    """A 'predictor' that reads the lattice size: guidance towards large values must give larger cells."""
    diffusion = CrystalDiffusion(CrystalDiffusionConfig(task="csp"))
    cfg = CrystalDenoiserConfig(hidden=8, layers=1, num_freqs=2, lattice_mean=[4, 4, 4, 0, 0, 0])
    model = CrystalDenoiser(cfg).eval()

    class Size(nn.Module):
        config = dataclasses.replace(cfg, property_mean=[0.0], property_std=[1.0])

        def forward(self, frac, x, types, t, n):
            return x[:, :3].mean(-1, keepdim=True)

    c = perovskites[0]
    types = torch.tensor(np.tile(c.numbers - 1, 16))
    vols = {}
    for scale in (0.0, 2.0):
        g = Guidance(predictor=Size(), target_low=torch.tensor([3.0]), target_high=torch.tensor([float("nan")]),
                     predictor_scale=scale)  # fmt: skip
        out = sample_crystals(model, diffusion, [5] * 16, types=types, steps=20, guidance=g,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
        vols[scale] = np.mean([np.trace(s.lattice) for s in out])
    assert vols[2.0] > vols[0.0] + 1.0


def _orbit_score(frac_t, frac0, sigma, perms, grid=256):
    """The exact score at ``frac_t`` (N, 3) of a data set holding one crystal ``frac0`` (N, 3) at every
    translation and every order of its same-type atoms (``perms`` (P, N)): the posterior-weighted mean of the
    wrapped-normal scores over the orbit, the translation integrated on a grid, one axis at a time."""
    c = torch.arange(grid, dtype=torch.float64) / grid
    u = frac_t[None, :, :, None] - frac0[perms][..., None] - c  # (P, N, 3, G)
    lp = torus.wrapped_normal_log_prob(u[..., None], torch.zeros_like(u[..., None]), sigma)  # (P, N, 3, G)
    sc = torus.wrapped_normal_score(u[..., None], torch.zeros_like(u[..., None]), sigma)[..., 0]
    lp = lp.sum(1)  # (P, 3, G)
    w_c = torch.softmax(lp, -1)
    w_p = torch.softmax(torch.logsumexp(lp, -1).sum(-1), 0)  # (P,)
    return (w_p[:, None, None] * (w_c[:, None] * sc).sum(-1)).sum(0)


class OrbitOracle(Oracle):
    """The exact denoiser of the translation- and permutation-invariant data set of one crystal: what a
    translation-invariant, permutation-equivariant network trained on that crystal should learn."""

    def __init__(self, crystal, diffusion):
        super().__init__(crystal, diffusion)
        import itertools

        z = crystal.numbers
        perms = [
            p for p in itertools.permutations(range(len(z))) if all(z[q] == z[i] for i, q in enumerate(p))
        ]
        self.perms = torch.tensor(perms)

    def forward(self, frac, x, types, t, num_atoms, properties=None, property_mask=None):
        out = super().forward(frac, x, types, t, num_atoms)
        scores, start = [], 0
        for b, n in enumerate(num_atoms.tolist()):
            sig = float(self.diffusion.frac_sigma(t[b].double()))
            s = _orbit_score(frac[start : start + n].double(), self.frac0, sig, self.perms)
            scores.append(s / self.diffusion.score_norm(torch.tensor(sig, dtype=torch.float64)).sqrt())
            start += n
        return out | {"frac": torch.cat(scores)}


def test_the_orbit_score_is_centred_and_equals_the_crystal_score_at_low_noise(perovskites):
    c = perovskites[0]
    f0 = torch.tensor(c.frac)
    oracle = OrbitOracle(c, CrystalDiffusion())
    g = torch.Generator().manual_seed(0)
    ft = torus.wrapped_normal_sample(f0 + 0.3, 0.02, g)  # a translated copy: the orbit score does not care
    s = _orbit_score(ft, f0, 0.02, oracle.perms)
    assert float(s.sum(0).abs().max()) < 1e-6 * float(s.abs().max())
    own = torus.wrapped_normal_score(ft, f0 + 0.3, 0.02)
    assert torch.allclose(s, own - own.mean(0), rtol=1e-3, atol=1e-3 * float(own.abs().max()))
    # at sigma = 0.5 the orbit is spread over the whole cell: the score is tiny next to the crystal's own
    big = _orbit_score(torus.wrapped_normal_sample(f0, 0.5, g), f0, 0.5, oracle.perms)
    assert float(big.abs().max()) < 0.05


def test_the_sampler_builds_the_crystal_from_the_translation_invariant_exact_score(perovskites):
    """Unlike :class:`Oracle`, this score does not know where the crystal sits nor which oxygen is which, as a
    trained network does not: the sampler must still assemble a valid perovskite (site assignment at high t)."""
    c = perovskites[0]
    diffusion = CrystalDiffusion(CrystalDiffusionConfig(task="csp"))
    types = torch.tensor(np.tile(c.numbers - 1, 3))
    out = sample_crystals(OrbitOracle(c, diffusion), diffusion, [5] * 3, types=types, steps=60,
                          generator=torch.Generator().manual_seed(2))  # fmt: skip
    for s in out:
        rms = match_rms(s, c)
        assert rms is not None and rms < 0.05


@pytest.mark.parametrize("sigma", [0.04, 0.1, 0.3, 0.5])
def test_orbit_score_equals_the_sum_over_the_orbit(perovskites, sigma):
    """:func:`orbit_score` (pairwise tables, adaptive grid, float32) against the plain sum over permutations and
    a fine translation grid (``_orbit_score``): same-type swaps for clean types, all 120 orders where every
    type is masked, and the orders that keep the two unmasked atoms' types otherwise."""
    import itertools

    c = perovskites[0]
    f0 = torch.tensor(c.frac)
    z = torch.tensor(c.numbers - 1)
    g = torch.Generator().manual_seed(0)
    ft = torus.wrapped_normal_sample(f0 + 0.3, sigma, g)
    every = list(itertools.permutations(range(5)))
    seen_some = z.clone()
    seen_some[[1, 3, 4]] = MASK_TYPE  # atoms 0 (A) and 2 (an X) seen
    cases = [
        (None, [p for p in every if all(z[q] == z[i] for i, q in enumerate(p))]),
        (torch.full((5,), MASK_TYPE), every),
        (seen_some, [p for p in every if z[p[0]] == z[0] and z[p[2]] == z[2]]),
    ]
    for seen, perms in cases:
        want = _orbit_score(ft, f0, sigma, torch.tensor(perms), grid=1024)
        got = orbit_score(ft[None].float(), f0[None].float(), torch.tensor([sigma]), z[None],
                          None if seen is None else seen[None], MASK_TYPE)[0]  # fmt: skip
        assert got.dtype == torch.float32
        assert float((got.double() - want).abs().max()) < 1e-4 * float(want.abs().max()) + 1e-6
    # the permutations matter: with every type masked the orbit is larger and the score smaller
    assert len(cases[1][1]) == 120 and len(cases[0][1]) == 6


def test_orbit_score_of_a_large_crystal_averages_over_translations_only():
    """Above ``MAX_ATOMS`` atoms (``N!`` orders) only the translations are averaged: the identity's orbit."""
    from diff_materials.orbit import MAX_ATOMS

    g = torch.Generator().manual_seed(1)
    n = MAX_ATOMS + 2
    f0 = torch.rand(n, 3, generator=g, dtype=torch.float64)
    ft = torus.wrapped_normal_sample(f0 + 0.2, 0.1, g)
    want = _orbit_score(ft, f0, 0.1, torch.arange(n)[None], grid=1024)
    got = orbit_score(ft[None], f0[None], torch.tensor([0.1]), torch.zeros(1, n, dtype=torch.long))[0]
    assert torch.allclose(got, want, atol=1e-6 * float(want.abs().max()))


def test_the_orbit_target_is_what_a_translation_and_permutation_invariant_network_should_learn(perovskites):
    """On a data set of one crystal the orbit target is the exact invariant score (:class:`OrbitOracle`) at
    every t: its loss is ~0, while DiffCSP's one-crystal target stays far from it where sites are assigned
    (the variance an invariant network can never fit)."""
    c = perovskites[0]
    batch = collate_crystals([CrystalDataset([c] * 16)[i] for i in range(16)])
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    losses = {}
    for target in ("orbit", "crystal"):
        diffusion = CrystalDiffusion(
            CrystalDiffusionConfig(task="csp", frac_target=target, focus_fraction=1.0)
        )
        g = torch.Generator().manual_seed(0)
        _, logs = CrystalObjective(diffusion)(OrbitOracle(c, diffusion), batch, g)
        losses[target] = float(logs["loss_frac"])
    assert losses["orbit"] < 1e-6
    assert losses["crystal"] > 0.1
    with pytest.raises(ValueError, match="frac_target"):
        CrystalDiffusionConfig(frac_target="mean")


def test_training_times_put_the_focus_share_in_the_site_assignment_window():
    g = torch.Generator().manual_seed(0)
    for focus in (0.0, 0.5):
        d = CrystalDiffusion(CrystalDiffusionConfig(focus_fraction=focus, focus_low=0.55, focus_high=0.9))
        t = d.training_times(40000, g, "cpu")
        assert float(t.min()) >= 1e-3 and float(t.max()) <= 1
        inside = float(((t >= 0.55) & (t <= 0.9)).float().mean())
        assert inside == pytest.approx(focus + (1 - focus) * 0.35 / 0.999, abs=0.01)
    with pytest.raises(ValueError, match="focus_fraction"):
        CrystalDiffusionConfig(focus_fraction=1.5)
    with pytest.raises(ValueError, match="focus_low, focus_high"):
        CrystalDiffusionConfig(focus_low=0.9, focus_high=0.5)


def test_the_lattice_step_clips_its_clean_estimate_to_the_training_range():
    """Near t = 1 the clean-lattice estimate (x_t - sigma eps) / alpha divides by alpha ~ 0: an error of 0.1 in
    eps is hundreds of standard deviations in x0 (cells of hundreds of A^3 per atom after a short run). With
    the training data's bound the estimate stays inside it; without one (old networks) nothing changes."""
    from diff_materials.diffusion import _lattice_step
    from diffcore.paths.schedules import get as get_schedule

    schedule = get_schedule("vp-cosine")
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    eps = x + 0.1  # the exact eps at t ~ 1 is x itself
    free = _lattice_step(schedule, x, eps, 0.995, 0.0, None)
    clipped = _lattice_step(schedule, x, eps, 0.995, 0.0, None, bound=3.0)
    assert free.abs().max() > 10 and clipped.abs().max() <= 3.0
    assert torch.equal(
        _lattice_step(schedule, x, x, 0.5, 0.0, None, bound=100.0),
        _lattice_step(schedule, x, x, 0.5, 0.0, None),
    )


def test_training_keeps_the_standardised_lattices_range_as_the_clip_bound():
    from diff_materials.data.generated import generate_crystals
    from diff_materials.pipeline import _statistics

    crystals = generate_crystals()[:20]
    stats = _statistics(crystals, [])
    lattice = torch.tensor(np.stack([c.lattice for c in crystals]), dtype=torch.float64)
    n = torch.tensor([c.num_atoms for c in crystals])
    z = normalise_lattice(lattice, n, torch.tensor(stats["lattice_mean"]), torch.tensor(stats["lattice_std"]))
    assert stats["lattice_bound"] == pytest.approx(float(z.abs().max()) + 1.0, rel=1e-6)


def test_the_polynomial_type_schedule_masks_a_fraction_t_to_the_power_of_the_atoms(perovskites):
    """``type_power = 3``: a share ``t^3`` of the atom types is masked in training (log-linear: ``t``), so types
    are decided early in sampling; the sampler unmasks along the same schedule."""
    config = CrystalDiffusionConfig(task="gen", type_schedule="polynomial", type_power=3.0)
    diffusion = CrystalDiffusion(config)
    t = torch.tensor([0.5, 0.9])
    assert torch.allclose(diffusion.type_schedule.alpha(t), 1 - t**3)
    batch = collate_crystals([CrystalDataset(perovskites[:64] * 8)[i] for i in range(512)])
    seen = {}
    Spy = _type_spy(seen)

    CrystalObjective(diffusion)(Spy(), batch, torch.Generator().manual_seed(0))
    masked = (seen["types"] == MASK_TYPE).reshape(512, 5).float().mean(1)
    # the mean masked share over the batch matches E[t^3] of the drawn times, not E[t]
    assert abs(float(masked.mean() - (seen["t"] ** 3).mean())) < 0.03
    assert float((seen["t"] - seen["t"] ** 3).mean()) > 0.1  # the two schedules differ by more than that here
    with pytest.raises(ValueError, match="type_power"):
        CrystalDiffusionConfig(type_power=0.0)
