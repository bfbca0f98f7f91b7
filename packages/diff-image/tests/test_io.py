"""PNG grids and per-image PNGs, [-1, 1] <-> uint8 conversion, atomic JSON metrics."""

import json
import math

import numpy as np
import pytest
import torch
from diff_image.io import (
    from_uint8,
    make_grid,
    read_png,
    read_pngs,
    save_grid,
    save_images,
    save_metrics_json,
    to_uint8,
)
from PIL import Image


def test_conversion_endpoints_and_exact_round_trip():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0, -3.0]).view(1, 1, 1, 6)
    assert to_uint8(x).ravel().tolist() == [0, 64, 128, 255, 255, 0]  # 63.75 -> 64, 127.5 -> 128 (half-even)
    u = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    assert np.array_equal(to_uint8(from_uint8(u)[None])[0], u)


def test_per_image_pngs_round_trip(tmp_path):
    images = torch.rand(3, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1
    paths = save_images(images, tmp_path / "samples", prefix="s_", start_index=10)
    assert [p.name for p in paths] == ["s_00010.png", "s_00011.png", "s_00012.png"]
    back = read_pngs(tmp_path / "samples")
    assert back.shape == (3, 3, 5, 7)
    assert torch.equal(torch.from_numpy(to_uint8(back)), torch.from_numpy(to_uint8(images)))
    assert (back - images).abs().max() <= 1 / 127.5 + 1e-6
    grey = torch.rand(2, 1, 4, 4) * 2 - 1
    save_images(grey, tmp_path / "grey")
    assert read_png(tmp_path / "grey" / "00000.png").shape == (1, 4, 4)
    assert not list(tmp_path.rglob("*.tmp"))


def test_grid_layout(tmp_path):
    images = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 0.0, 1.0, 0.5, -0.5)])
    grid = make_grid(images, nrow=3, padding=1, pad_value=7)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    assert (grid[0] == 7).all() and (grid[1:5, 1:5] == 0).all() and (grid[1:5, 11:15] == 255).all()
    assert (grid[6:10, 11:15] == 7).all()  # sixth tile is empty padding
    path = save_grid(images, tmp_path / "grid.png", nrow=3, padding=1, pad_value=7)
    assert np.array_equal(np.asarray(Image.open(path)), grid)


def test_metrics_json(tmp_path):
    metrics = {
        "fd": np.float64(1.5),
        "acc": torch.tensor(0.25),
        "n": np.int64(3),
        "per_class": np.array([1.0, 2.0]),
        "nan": math.nan,
        "nested": {"ok": True},
    }
    path = save_metrics_json(metrics, tmp_path / "out" / "metrics.json")
    data = json.loads(path.read_text())
    assert data == {
        "fd": 1.5,
        "acc": 0.25,
        "n": 3,
        "per_class": [1.0, 2.0],
        "nan": None,
        "nested": {"ok": True},
    }
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
    with pytest.raises(TypeError, match="metrics"):
        save_metrics_json({"x": object()}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
