"""The real quick benchmarks (``diffuse bench <modality> --quick``), once each, with their shipped settings.

The packages' own bench tests run tiny settings (diff-image replaces ``BenchSettings.quick``, diff-protein passes
its own ``BenchSettings``), so this is where the configuration users run is exercised under test."""

from __future__ import annotations

import json
import math

import pytest
from diffcore.modality import discover


@pytest.mark.slow
@pytest.mark.parametrize("name", ["image", "language", "protein"])
def test_the_quick_benchmark_runs_with_its_shipped_settings(name, tmp_path, record_property):
    modality = discover()[name].modality
    result = modality.bench(tmp_path, True)
    assert result.status == "ok" and result.modality == name, result.summary
    assert result.metrics and all(math.isfinite(float(v)) for v in result.metrics.values())
    for file in result.files:
        assert (tmp_path / file).is_file(), file
    record_property("metrics", json.dumps(result.metrics))
