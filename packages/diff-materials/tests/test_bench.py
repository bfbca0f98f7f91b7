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
    saved = json.loads((tmp_path / "pipeline" / "pipeline.json").read_text())["config"]["diffusion"]
    assert (saved["coords"], saved["type_schedule"]) == ("wrapped_normal", "log-linear")
    assert QUICK.max_seconds is not None and QUICK.max_seconds <= 200  # the quick bench fits 5 minutes


def test_bench_samples_with_the_process_it_trained(tmp_path):
    """The saved pipeline carries the settings' coordinate process and type schedule (flow matching sampled
    as flow matching, the polynomial type schedule unmasked along itself)."""
    settings = BenchSettings(width=8, depth=1, num_freqs=2, steps=2, batch_size=8, max_seconds=None, sample_steps=2,
                             num_generate=2, num_csp=1, fingerprints=False, device="cpu", coords="flow",
                             type_schedule="polynomial", type_power=3.0)  # fmt: skip
    run_bench(tmp_path, settings)
    saved = json.loads((tmp_path / "pipeline" / "pipeline.json").read_text())["config"]["diffusion"]
    assert (saved["coords"], saved["type_schedule"], saved["type_power"]) == ("flow", "polynomial", 3.0)
