"""Benchmark results: one file per measurement, named ``<script>[-<variant>]-<device>.json``, written through
``benchmarks/results_io.py`` with a header that says how the file was made (issue #22)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
DEVICES = ("cpu", "h100", "h200")


@pytest.fixture(scope="module")
def results_io():
    spec = importlib.util.spec_from_file_location("results_io", BENCHMARKS / "results_io.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_result_file_is_named_by_its_script_variant_and_device():
    scripts = {p.stem for p in BENCHMARKS.glob("*/*.py")} | {"diffuse_bench_image"}
    pattern = re.compile(r"(?P<script>[a-z0-9_]+)(?:-[a-z0-9_.-]+)?-(?P<device>[a-z0-9]+)\.(?:json|txt)")
    for path in sorted((BENCHMARKS / "results").iterdir()):
        match = pattern.fullmatch(path.name)
        assert match, f"{path.name}: expected <script>[-<variant>]-<device>.json"
        assert match["script"] in scripts, f"{path.name}: no benchmark script {match['script']}.py"
        assert match["device"] in DEVICES, f"{path.name}: device {match['device']!r} not one of {DEVICES}"


def test_every_benchmark_script_writes_through_results_io():
    for script in BENCHMARKS.glob("*/*.py"):
        source = script.read_text(encoding="utf-8")
        if "def main" not in source:
            continue  # a module of another script (few_step_shapes)
        assert "from results_io import" in source, f"{script.relative_to(ROOT)} does not use results_io"
        assert ".write_text(json.dumps" not in source, f"{script.name} writes JSON around results_io"


def test_result_path_names_script_variant_and_device(results_io):
    path = results_io.result_path("ddp_throughput", "dit_b_2-b256-eager-2proc", "NVIDIA H100 80GB HBM3")
    assert path == BENCHMARKS / "results" / "ddp_throughput-dit_b_2-b256-eager-2proc-h100.json"
    assert results_io.result_path("sampler_overhead", None, "cpu").name == "sampler_overhead-cpu.json"
    assert results_io.device_tag("NVIDIA H200") == "h200"
    with pytest.raises(ValueError, match="variant"):
        results_io.result_path("few_step", "Bad Variant", "cpu")


def test_write_result_puts_the_run_header_first(results_io, tmp_path):
    out = results_io.write_result(
        {"rows": [1.5]}, script="few_step", variant="quick", device="cpu", path=tmp_path / "r.json"
    )
    data = json.loads(out.read_text())
    assert list(data) == ["meta", "rows"] and data["rows"] == [1.5]
    meta = data["meta"]
    assert meta["script"] == "few_step" and meta["variant"] == "quick" and meta["device"] == "cpu"
    assert {"python", "torch", "diffcore"} <= set(meta["versions"])
    assert {"device_name", "git_commit", "date", "command"} <= set(meta)
