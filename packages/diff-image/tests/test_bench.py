"""The benchmark runs end to end at a tiny size and reports what it wrote (the targets are measured by the
real ``diffuse bench image --quick`` and ``benchmarks/image/image_full.py``, recorded in the README)."""

import json

import pytest
from diff_image import bench as bench_mod
from diff_image.cli import modality


@pytest.mark.slow
def test_quick_bench_writes_metrics_and_grid(tmp_path, monkeypatch):
    tiny = bench_mod.BenchSettings(
        digits_steps=3, digits_width=32, digits_depth=1, digits_samples=30, device="cpu"
    )
    monkeypatch.setattr(bench_mod.BenchSettings, "quick", classmethod(lambda cls: tiny))
    result = modality.bench(tmp_path, True)
    assert result.status == "ok" and result.modality == "image"
    for name in result.files:
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("digits_class_accuracy", "digits_frechet", "digits_frechet_train_test", "digits_precision"):
        assert key in saved and key in result.metrics
    assert 0.0 <= result.metrics["digits_class_accuracy"] <= 1.0
    assert result.metrics["digits_frechet_train_test"] > 0  # the floor compares two different real splits
    assert "class accuracy" in result.summary
