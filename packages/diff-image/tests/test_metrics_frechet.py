"""The optional Inception FID guard (the Frechet distance itself is tested in diffcore)."""

import importlib.util

import pytest
import torch
from diff_image.metrics.frechet import inception_fid


@pytest.mark.skipif(importlib.util.find_spec("torchmetrics") is not None, reason="torchmetrics is installed")
def test_inception_fid_without_torchmetrics_tells_how_to_install(tmp_path):
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ImportError, match=r"diff-image\[fid\]"):
        inception_fid(x, x, tmp_path / "weights.pth")
