"""Frechet distance against Gaussian closed forms and a scipy reference, singular covariances included."""

import numpy as np
import pytest
import torch
from diffcore.metrics.frechet import frechet_distance, frechet_distance_from_statistics, gaussian_statistics
from scipy import linalg


def _random_spd(d, rng):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_one_dimensional_closed_form():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    fd = frechet_distance_from_statistics(
        np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])
    )
    assert fd == pytest.approx(9.0 + 1.0, rel=1e-12)


def test_commuting_covariances_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))  # same eigenvectors, so S1 and S2 commute
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance_from_statistics(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("d", [2, 10, 64])
def test_general_covariances_match_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, mu2, s1, s2 = rng.normal(size=d), rng.normal(size=d), _random_spd(d, rng), _random_spd(d, rng)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance_from_statistics(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance_from_statistics(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_empirical_features_converge_to_population_value():
    rng = np.random.default_rng(1)
    d = 4
    s1, s2 = _random_spd(d, rng), _random_spd(d, rng)
    mu2 = np.full(d, 0.5)
    x = rng.multivariate_normal(np.zeros(d), s1, size=100_000)
    y = rng.multivariate_normal(mu2, s2, size=100_000)
    truth = frechet_distance_from_statistics(np.zeros(d), s1, mu2, s2)
    assert frechet_distance(torch.from_numpy(x), y) == pytest.approx(truth, rel=0.03)
    _, cov = gaussian_statistics(x)
    assert cov.shape == (d, d) and np.allclose(cov, s1, atol=0.05)


def test_errors_name_the_bad_argument():
    with pytest.raises(ValueError, match="features_b"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="features_a"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_singular_covariances_fewer_samples_than_dimensions():
    # 5 samples in 16 dimensions: both covariances have rank 4. The distance of a set to itself is 0, to a
    # shifted copy exactly the squared shift (the covariances are equal), with no warning or complex round-off.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 16))
    shift = rng.normal(size=16)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-6)


def test_the_modality_packages_use_this_one_implementation():
    import importlib

    for module, name in [
        ("diff_image.metrics.frechet", "frechet_distance"),
        ("diff_audio.metrics.features", "frechet_distance"),
        ("diff_timeseries.metrics", "frechet_distance"),
    ]:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        assert getattr(mod, name) is frechet_distance, module
    try:
        from diff_video.metrics.frechet import frechet_distance as video_fd
    except ImportError:
        return
    assert video_fd is frechet_distance_from_statistics
