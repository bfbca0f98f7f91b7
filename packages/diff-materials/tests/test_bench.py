"""``diffuse bench materials`` at tiny sizes: it trains, samples, scores and lists the files it wrote."""

from __future__ import annotations

import json

from diff_materials.bench import QUICK, TARGETS, BenchSettings, run_bench


def test_bench_writes_cifs_a_picture_and_metrics_with_targets(tmp_path):
    settings = BenchSettings(width=16, depth=1, num_freqs=4, steps=3, batch_size=16, max_seconds=None,
                             sample_steps=3, num_generate=4, num_csp=2, fingerprints=False, device="cpu")  # fmt: skip
    result = run_bench(tmp_path, settings)
    assert result.status == "ok" and set(TARGETS) <= set(result.metrics)
    assert "samples.png" in result.files and "metrics.json" in result.files
    assert sum(f.endswith(".cif") for f in result.files) == 4 + 2
    assert all((tmp_path / f).is_file() for f in result.files)
    assert json.loads((tmp_path / "metrics.json").read_text())["num_held"] == result.metrics["num_held"]
    assert QUICK.max_seconds is not None and QUICK.max_seconds <= 200  # the quick bench fits 5 minutes
