"""IGSO(3): normalisation, score, sampling, small-sigma limit and the reverse SDE, against independent answers."""

import math

import numpy as np
import pytest
import torch
from diffcore.manifolds import igso3, so3
from scipy import integrate, stats

SIGMAS = [0.1, 0.3, 0.7, 1.0, 1.5, 2.0]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors in long Python loops: thread hand-offs cost more than they save on a shared CPU.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def table():
    return igso3.igso3_table(0.05, 2.0, 128, 2048)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_angle_density_integrates_to_one(sigma):
    p = lambda w: math.exp(float(igso3.angle_log_density(torch.tensor(w), sigma)))  # noqa: E731
    total, _ = integrate.quad(p, 0, math.pi, points=[sigma, 3 * sigma], limit=200)
    assert total == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("sigma", [0.5, 0.8, 1.0, 1.5])
def test_closed_form_matches_series_where_both_are_accurate(sigma):
    w = torch.linspace(1e-3, math.pi - 1e-3, 200, dtype=torch.float64)
    s = torch.full_like(w, sigma)
    lf_series, d_series = igso3._log_f_series(w, s)
    lf_closed, d_closed = igso3._log_f_closed_form(w, s)
    torch.testing.assert_close(lf_closed, lf_series, atol=1e-7, rtol=0)
    torch.testing.assert_close(d_closed, d_series, atol=1e-6, rtol=1e-8)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_score_matches_finite_differences(sigma):
    w = torch.linspace(0.01, math.pi - 0.01, 60, dtype=torch.float64)
    h = 1e-5
    fd = (igso3.log_f(w + h, sigma) - igso3.log_f(w - h, sigma)) / (2 * h)
    torch.testing.assert_close(igso3.dlog_f_domega(w, sigma), fd, rtol=1e-5, atol=1e-5)
    # Symmetry f(w) = f(2 pi - w): the score vanishes at pi and at 0.
    ends = igso3.dlog_f_domega(torch.tensor([0.0, math.pi], dtype=torch.float64), sigma)
    torch.testing.assert_close(ends, torch.zeros(2, dtype=torch.float64), atol=1e-6, rtol=0)


def test_score_is_riemannian_gradient_in_body_frame():
    g = torch.Generator().manual_seed(0)
    r0 = so3.random_rotations(20, g, torch.float64)
    rt = r0 @ so3.exp_map(igso3.sample(torch.full((20,), 0.5), g))
    s = igso3.score(rt, r0, 0.5)
    h = 1e-6
    for k in range(3):
        e = torch.zeros(20, 3, dtype=torch.float64)
        e[:, k] = h
        lp = lambda r: igso3.log_f(so3.geodesic_distance(r0, r), 0.5)  # noqa: E731
        fd = (lp(rt @ so3.exp_map(e)) - lp(rt @ so3.exp_map(-e))) / (2 * h)
        torch.testing.assert_close(s[:, k], fd, atol=1e-5, rtol=1e-5)


def test_score_from_rotvec_finite_at_identity():
    v = torch.tensor([[0.0, 0.0, 0.0], [1e-9, 0.0, 0.0]], dtype=torch.float64)
    s = igso3.score_from_rotvec(v, 0.2)
    assert torch.isfinite(s).all() and s.abs().max() < 1e-6


def _angle_cdf(sigma: float):
    w = np.linspace(0, math.pi, 20001)
    dens = np.exp(igso3.angle_log_density(torch.from_numpy(w), sigma).numpy())
    dens[0] = 0.0
    cdf = integrate.cumulative_trapezoid(dens, w, initial=0)
    return lambda x: np.interp(x, w, cdf / cdf[-1])


@pytest.mark.parametrize("sigma", [0.1, 0.2345, 0.5, 1.5])
def test_sampled_angles_follow_density(table, sigma):
    omega = table.sample_angle(torch.full((10000,), sigma), torch.Generator().manual_seed(1)).numpy()
    assert stats.kstest(omega, _angle_cdf(sigma)).pvalue > 1e-3
    # Histogram chi-square on 20 equal-probability bins.
    edges = np.quantile(omega, np.linspace(0, 1, 21))
    cdf = _angle_cdf(sigma)
    expected = np.diff(cdf(edges)) * len(omega)
    observed = np.histogram(omega, edges)[0]
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(0.999, 19)


def test_sampled_axes_are_isotropic(table):
    v = igso3.sample(torch.full((10000,), 0.8), torch.Generator().manual_seed(2), table)
    axis = v / v.norm(dim=-1, keepdim=True)
    assert axis.mean(0).abs().max() < 0.03
    torch.testing.assert_close(
        axis.T @ axis / 10000, torch.eye(3, dtype=torch.float64) / 3, atol=0.02, rtol=0
    )


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.05])
def test_small_sigma_is_gaussian_on_the_rotation_vector(sigma):
    # For small sigma the rotation vector is ~ N(0, sigma^2 I_3): the angle has the chi-3 (Maxwell) law.
    w = torch.linspace(0.05 * sigma, 4 * sigma, 50, dtype=torch.float64)
    maxwell = torch.from_numpy(stats.maxwell.logpdf(w.numpy(), scale=sigma))
    torch.testing.assert_close(igso3.angle_log_density(w, sigma), maxwell, atol=5 * sigma**2, rtol=0)


def test_table_cache_on_disk_and_in_memory(tmp_path):
    a = igso3.igso3_table(0.1, 1.5, 16, 256, cache_dir=str(tmp_path))
    files = list(tmp_path.glob("igso3_*.npz"))
    assert len(files) == 1
    assert igso3.igso3_table(0.1, 1.5, 16, 256, cache_dir=str(tmp_path)) is a
    b = igso3.IGSO3Table.load(files[0])
    np.testing.assert_array_equal(a.cdf, b.cdf)
    assert (np.diff(a.cdf, axis=1) >= 0).all() and np.allclose(a.cdf[:, -1], 1.0)


def test_table_save_is_atomic_and_appends_npz_as_numpy_does(tmp_path, monkeypatch):
    small = igso3.IGSO3Table.build(0.1, 1.5, 4, 32)
    small.save(tmp_path / "table")
    assert [p.name for p in tmp_path.iterdir()] == ["table.npz"]
    before = (tmp_path / "table.npz").read_bytes()

    def dies_half_way(file, **arrays):
        with open(file, "wb") as f:
            f.write(b"PK half a zip")
        raise OSError("no space left on device")

    monkeypatch.setattr(np, "savez", dies_half_way)
    with pytest.raises(OSError, match="no space left"):
        igso3.IGSO3Table.build(0.1, 1.5, 4, 64).save(tmp_path / "table.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["table.npz"]  # no temporary file left behind
    assert (tmp_path / "table.npz").read_bytes() == before
    monkeypatch.undo()
    np.testing.assert_array_equal(igso3.IGSO3Table.load(tmp_path / "table.npz").cdf, small.cdf)


def test_score_norm_matches_monte_carlo(table):
    v = igso3.sample(torch.full((20000,), 0.4), torch.Generator().manual_seed(3), table)
    mc = igso3.score_from_rotvec(v, 0.4).pow(2).sum(-1).mean().sqrt()
    assert float(table.score_norm_at(0.4)) == pytest.approx(float(mc), rel=0.02)


def test_bad_arguments_name_parameter(table):
    with pytest.raises(ValueError, match="sigma"):
        table.sample_angle(torch.tensor([5.0]))
    with pytest.raises(ValueError, match="sigma"):
        igso3.log_f(torch.tensor([1.0]), -1.0)
    with pytest.raises(ValueError, match="kind"):
        igso3.SO3VESchedule(kind="linear")
    with pytest.raises(ValueError, match="t: expected"):
        igso3.SO3VESchedule().sigma(1.5)


@pytest.mark.parametrize("kind", ["logarithmic", "geometric"])
def test_schedule_ends_and_diffusion_coefficient(kind):
    sch = igso3.SO3VESchedule(0.1, 1.5, kind)
    assert float(sch.sigma(0.0)) == pytest.approx(0.1)
    assert float(sch.sigma(1.0)) == pytest.approx(1.5)
    t = torch.linspace(0.01, 0.99, 20, dtype=torch.float64)
    h = 1e-6
    d_var = (sch.sigma(t + h) ** 2 - sch.sigma(t - h) ** 2) / (2 * h)
    torch.testing.assert_close(sch.diffusion_coefficient(t) ** 2, d_var, rtol=1e-6, atol=0)


def test_forward_random_walk_reaches_marginal(table):
    # Brownian motion R <- R exp(g sqrt(dt) z) from IGSO(3)(sigma_min) has marginal IGSO(3)(sigma(t)).
    sch = igso3.SO3VESchedule()
    g = torch.Generator().manual_seed(4)
    n, steps = 4000, 200
    r = so3.exp_map(igso3.sample(torch.full((n,), sch.sigma_min), g, table))
    dt = 1.0 / steps
    for i in range(steps):
        gt = sch.diffusion_coefficient(torch.tensor(i * dt + dt / 2))
        r = r @ so3.exp_map(gt * math.sqrt(dt) * torch.randn(n, 3, generator=g, dtype=torch.float64))
    omega = so3.rotation_angle(r).numpy()
    assert stats.kstest(omega, _angle_cdf(sch.sigma_max)).pvalue > 1e-3


def _reverse_sde_mean_angle(table, steps: int, n: int = 2000) -> float:
    sch = igso3.SO3VESchedule()
    g = torch.Generator().manual_seed(5)
    r = so3.exp_map(igso3.sample(torch.full((n,), sch.sigma_max), g, table))
    dt = 1.0 / steps
    for i in range(steps, 0, -1):
        t = torch.tensor(i * dt, dtype=torch.float64)
        s = igso3.score_from_rotvec(so3.log_map(r), sch.sigma(t))
        r = igso3.reverse_step(r, s, t, dt, sch, g)
    return float(so3.rotation_angle(r).mean())


def test_reverse_sde_with_exact_score_recovers_point_mass(table):
    # Data = the identity: the marginal at t is IGSO(3)(sigma(t)) around I, with a known score, so the
    # reverse walk must end at IGSO(3)(sigma_min), up to the first-order Euler-Maruyama bias.
    sigma_min = igso3.SO3VESchedule().sigma_min
    expected = integrate.quad(
        lambda w: w * math.exp(float(igso3.angle_log_density(torch.tensor(w), sigma_min))), 0, math.pi
    )[0]
    err_coarse = abs(_reverse_sde_mean_angle(table, 100) - expected)
    err_fine = abs(_reverse_sde_mean_angle(table, 400) - expected)
    assert err_fine < 0.5 * err_coarse  # converges as the step shrinks (measured: 0.030 -> 0.007)
    assert err_fine < 0.08 * expected


def test_forward_marginal_batched_shapes_and_score(table):
    sch = igso3.SO3VESchedule()
    g = torch.Generator().manual_seed(6)
    r0 = so3.random_rotations(12, g, torch.float32).reshape(3, 4, 3, 3)
    t = torch.tensor([[0.0], [0.5], [1.0]])  # one time per protein, broadcast over its 4 residues
    rt, s = igso3.forward_marginal(r0, t, sch, g, table)
    assert rt.shape == (3, 4, 3, 3) and s.shape == (3, 4, 3) and rt.dtype == torch.float32
    torch.testing.assert_close(
        s, igso3.score(rt.double(), r0.double(), sch.sigma(t)).float(), atol=1e-3, rtol=1e-3
    )
    # Noise grows with t: mean displacement angle at t=1 exceeds that at t=0.
    angle = so3.geodesic_distance(r0.double(), rt.double())
    assert angle[2].mean() > angle[0].mean()
