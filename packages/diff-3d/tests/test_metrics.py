"""Metrics against answers known in advance: PSNR by hand, SSIM against an independent reference (and
scikit-image when installed), Chamfer distances of shifted sets, MMD / COV / 1-NNA at their limits."""

import math

import numpy as np
import pytest
import torch
from diff_3d.data.primitives import Primitive
from diff_3d.metrics import chamfer_distance, chamfer_to_shape, generation_metrics, psnr, ssim


def test_psnr_of_a_uniform_error():
    a = torch.zeros(2, 4, 5, 3)
    b = a + 0.1
    torch.testing.assert_close(psnr(b, a), torch.full((2,), 20.0))


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of Wang et al. with scipy's Gaussian filter (sigma 1.5, truncate 3.5: an 11-tap window), border of
    5 pixels cropped: how scikit-image computes it with gaussian_weights=True."""
    from scipy.ndimage import gaussian_filter

    vals = []
    for c in range(x.shape[-1]):
        f = lambda z: gaussian_filter(z, 1.5, truncate=3.5)  # noqa: E731
        a, b = x[..., c], y[..., c]
        ma, mb = f(a), f(b)
        va, vb, cab = f(a * a) - ma * ma, f(b * b) - mb * mb, f(a * b) - ma * mb
        c1, c2 = 0.01**2, 0.03**2
        s = ((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))


def test_ssim_matches_the_reference_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 30, 3, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(24, 30, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert ssim(y, x).item() == pytest.approx(_ssim_reference(y.numpy(), x.numpy()), abs=1e-10)
    assert ssim(x, x).item() == pytest.approx(1.0)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 32, 3, generator=g, dtype=torch.float64)
    y = (x * 0.7 + 0.1).clamp(0, 1)
    want = metrics.structural_similarity(
        y.numpy(), x.numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
        channel_axis=-1,
    )  # fmt: skip
    assert ssim(y, x).item() == pytest.approx(want, abs=1e-6)


def test_chamfer_distance_of_a_shifted_copy_and_its_symmetry():
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(0))
    assert chamfer_distance(x, x).item() == 0.0
    # two single points at distance d: d^2 each way
    a, b = torch.zeros(1, 3), torch.tensor([[0.0, 0.3, 0.4]])
    assert chamfer_distance(a, b).item() == pytest.approx(2 * 0.25)
    y = torch.rand(70, 3, generator=torch.Generator().manual_seed(1))
    assert chamfer_distance(x, y).item() == pytest.approx(chamfer_distance(y, x).item())
    with pytest.raises(ValueError, match=r"x: expected a non-empty point set of shape \(N, 3\)"):
        chamfer_distance(torch.zeros(4, 2), y)


def test_chamfer_to_a_sphere_of_points_on_a_larger_sphere():
    d = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0))
    points = 0.6 * d / d.norm(dim=1, keepdim=True)  # sphere primitive has radius 0.5: every point 0.1 away
    assert chamfer_to_shape(points, Primitive("sphere")).item() == pytest.approx(2 * 0.01, rel=0.1)


def _clouds(n_sets: int, seed: int, offset: float = 0.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_sets):
        radius = 0.5 + 0.3 * torch.rand(1, generator=g)
        d = torch.randn(128, 3, generator=g)
        out.append(radius * d / d.norm(dim=1, keepdim=True) + offset)
    return out


def test_identical_sets_give_full_coverage_zero_mmd_and_1nna_zero():
    ref = _clouds(12, 0)
    m = generation_metrics(ref, [r.clone() for r in ref])
    assert m["mmd_cd"] == 0.0 and m["cov"] == 1.0
    assert m["one_nna"] == 0.0  # every shape's nearest neighbour is its twin in the other set


def test_far_apart_sets_give_1nna_one():
    m = generation_metrics(_clouds(8, 0, offset=10.0), _clouds(8, 1))
    assert m["one_nna"] == 1.0
    assert m["mmd_cd"] > 100


def test_two_samples_of_one_distribution_give_1nna_near_half():
    m = generation_metrics(torch.stack(_clouds(30, 2)), torch.stack(_clouds(30, 3)))  # stacked (B, N, 3)
    assert abs(m["one_nna"] - 0.5) < 0.2
    assert m["cov"] > 0.3
    assert math.isfinite(m["mmd_cd"])
