"""Every metric against a known answer."""

import math

import numpy as np
import pytest
from diff_timeseries import baselines, metrics
from diff_timeseries.data.synthetic import synthetic_set


def test_crps_of_gaussian_samples_matches_the_closed_form():
    rng = np.random.default_rng(0)
    samples = rng.normal(1.0, 2.0, size=(200_000, 1))
    for y in (1.0, -2.0, 4.5):
        assert metrics.crps(samples, np.array([y])) == pytest.approx(
            metrics.crps_gaussian(1.0, 2.0, y), rel=0.01
        )


def test_crps_of_a_point_forecast_is_the_absolute_error_and_is_never_negative():
    assert metrics.crps(np.full((5, 3), 2.0), np.array([1.0, 2.0, 5.0])) == pytest.approx((1 + 0 + 3) / 3)
    assert metrics.crps_gaussian(0.0, 1.0, 0.0) == pytest.approx((math.sqrt(2) - 1) / math.sqrt(math.pi))


def test_mse_wape_and_mase_on_hand_computed_values():
    assert metrics.mse(np.array([1.0, 3.0]), np.array([0.0, 0.0])) == 5.0
    assert metrics.wape(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    history = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 2.0])  # seasonal (m=2) naive errors 0,0,0,1 -> scale 0.25
    assert metrics.mase(np.array([1.0]), np.array([1.5]), history, period=2) == pytest.approx(2.0)


def test_dtw_aligns_warped_series_at_zero_cost_where_euclidean_cannot():
    assert metrics.dtw(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.0, 1.0, 2.0, 2.0])) == 0.0
    assert metrics.dtw(np.array([0.0, 1.0]), np.array([1.0, 3.0])) == pytest.approx(1 + 2)  # diagonal path
    batch = metrics.dtw(np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([[0.0, 1.0], [0.0, 0.0]]))
    np.testing.assert_allclose(batch, [0.0, 2.0])


def test_mrr_at_10_on_known_rankings_and_with_nan():
    sim = np.eye(3)
    assert metrics.mrr_at_k(sim) == 1.0
    sim = np.array([[0.1, 0.9, 0.5], [0.0, 1.0, 0.0], [0.3, 0.2, 0.1]])  # ranks 3, 1, 3
    assert metrics.mrr_at_k(sim) == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    assert metrics.mrr_at_k(sim, k=2) == pytest.approx(1 / 3)
    with_nan = np.array([[np.nan, 0.0], [np.nan, 1.0]])  # the first's correct item is NaN: scores 0
    assert metrics.mrr_at_k(with_nan) == pytest.approx(0.5)
    assert metrics.mrr_at_k(np.ones((4, 4))) == pytest.approx(1 / 2.5)  # all tied: rank 1 + 3/2


def test_frechet_distance_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(100_000, 2))
    b = rng.normal([1.0, 0.0], [2.0, 1.0], size=(100_000, 2))
    # |mu|^2 + sum (s_a - s_b)^2 for diagonal covariances: 1 + (1 - 2)^2 + 0
    assert metrics.frechet_distance(a, b) == pytest.approx(2.0, abs=0.05)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_acf_of_an_ar1_process_decays_as_phi_to_the_lag():
    rng = np.random.default_rng(0)
    x = np.zeros((64, 400))
    for t in range(1, 400):
        x[:, t] = 0.7 * x[:, t - 1] + rng.standard_normal(64)
    np.testing.assert_allclose(metrics.acf(x, 3).mean(0), [0.7, 0.49, 0.343], atol=0.03)
    noise = rng.standard_normal((64, 400))
    assert metrics.acf_distance(x, noise, 3) == pytest.approx((0.7 + 0.49 + 0.343) / 3, abs=0.03)


def test_spectral_distance_is_zero_for_one_set_and_large_for_different_frequencies():
    t = np.arange(64)
    slow = np.stack([np.sin(2 * np.pi * t / 16 + p) for p in np.linspace(0, 3, 8)])
    fast = np.stack([np.sin(2 * np.pi * t / 4 + p) for p in np.linspace(0, 3, 8)])
    assert metrics.spectral_distance(slow, slow) == pytest.approx(0.0, abs=1e-9)
    assert metrics.spectral_distance(slow, fast) > 0.95


def test_caption_adherence_of_real_series_is_high_and_of_shuffled_series_low():
    values, _, specs = synthetic_set(60, 96, seed=5)
    targets = [s.attributes() for s in specs]
    real = metrics.caption_adherence(values[:, 0], targets)
    shuffled = metrics.caption_adherence(values[::-1, 0], targets)
    assert real["trend"] >= 0.95 and real["all"] >= 0.8
    assert shuffled["trend"] < 0.6 and shuffled["all"] < 0.3


def test_seasonal_naive_repeats_the_last_season_and_linear_interpolation_fills_between():
    history = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    paths = baselines.seasonal_naive_paths(history, 4, 3, samples=5)
    np.testing.assert_allclose(paths, np.tile([1.0, 2.0, 3.0, 1.0], (5, 1)))  # no in-sample error: no spread
    filled = baselines.linear_interpolation(np.array([0.0, np.nan, 4.0]), np.array([True, False, True]))
    np.testing.assert_allclose(filled, [0.0, 2.0, 4.0])


def test_ets_and_arima_forecast_a_trend_with_the_right_slope():
    history = 0.5 * np.arange(60) + np.random.default_rng(0).normal(0, 0.1, 60)
    for fn in (baselines.ets_paths, baselines.arima_paths):
        median = np.median(fn(history, 5, 1, samples=200), 0)
        np.testing.assert_allclose(median, 0.5 * np.arange(60, 65), atol=0.6)
