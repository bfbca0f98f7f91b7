"""Improved precision / recall (Kynkaanniemi et al. 2019): identical, disjoint and partial overlaps."""

import pytest
import torch
from diff_image.metrics.precision_recall import knn_radii, precision_recall


def test_identical_sets_give_one():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    pr = precision_recall(x, x.clone(), k=3)
    assert pr.precision == 1.0 and pr.recall == 1.0


def test_disjoint_sets_give_zero():
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(300, 8, generator=g), torch.randn(300, 8, generator=g) + 50.0
    pr = precision_recall(real, fake)
    assert pr.precision == 0.0 and pr.recall == 0.0


def test_mode_collapse_keeps_precision_but_loses_recall():
    g = torch.Generator().manual_seed(2)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0]])
    real = torch.cat([c + 0.5 * torch.randn(400, 2, generator=g) for c in centres])
    fake = centres[0] + 0.5 * torch.randn(400, 2, generator=g)  # covers one of the two modes
    pr = precision_recall(real, fake, k=5, block=128)
    assert pr.precision > 0.95
    assert pr.recall == pytest.approx(0.5, abs=0.05)


def test_knn_radii_against_brute_force():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    d = torch.cdist(x, x)
    expected = d.sort(dim=1).values[:, 3]
    assert torch.allclose(knn_radii(x, k=3, block=7), expected)
    with pytest.raises(ValueError, match="k"):
        knn_radii(x, k=50)
