"""Every script in ``examples/`` runs at its smallest size (``--smoke``) and writes the files it promises
(issue #36). They run in this process (``runpy``), so torch and the packages are imported once; each must
finish within ``LIMIT_S`` of CPU time, and ``tests/test_roadmap_links.py`` checks that docs/roadmap.md names
only examples that exist."""

from __future__ import annotations

import ast
import runpy
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))
LIMIT_S = 60.0  # CPU seconds of one example's smoke run (the issue allows 2 minutes of wall time)

# what each example writes under --out (beyond a training run folder)
WRITES: dict[str, list[str]] = {
    "ddpm_2d": ["samples.png"],
    "score_sde_2d": ["samplers.png"],
    "ddim_vs_ddpm": ["ddim_vs_ddpm.png"],
    "fast_solvers": ["convergence.png"],
    "progressive_distillation_2d": ["student/config.json", "student/model.safetensors"],
    "flow_matching_2d": ["paths.png"],
    "backbones": ["digits.png"],
    "guidance_2d": ["guidance.png"],
    "controlnet_digits": ["control.png"],
    "lora_2d": ["adapter/adapter_config.json", "adapter/adapter_model.safetensors"],
    "min_snr_zero_snr": [],
    "reward_guidance_2d": [],
    "ecosystem": ["config.json", "model.safetensors"],
    "image_digits": ["digits.png", "run/pipeline/pipeline.json"],
    "video_shapes": ["samples/sample_000.mp4", "samples/sample_000.gif", "samples/grid.png"],
    "audio_notes": ["sample_0.wav", "spectrograms.png"],
    "splats_3d": ["samples/sample_000.ply", "samples/grid.png", "samples/turntable_000.gif"],
    "protein_backbones": ["samples/sample_000.pdb", "backbones.png"],
    "crystals": ["samples/sample_000.cif", "samples/samples.png"],
    "language_bd3lm": ["samples.txt"],
    "timeseries_text": ["samples/samples.csv", "samples/samples.png"],
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The examples' small tensors run fastest single-threaded (and the test machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_example_is_listed_with_what_it_writes():
    assert set(EXAMPLES) == set(WRITES), "add the new example to WRITES (or remove the stale entry)"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_states_what_it_shows_and_how_to_run_it_bigger(name):
    source = (ROOT / "examples" / f"{name}.py").read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source)) or ""
    assert f"uv run python examples/{name}.py" in doc, "the docstring gives the command to run it"
    assert "--smoke" in source, "the script has the smallest size CI runs"
    assert len(source.splitlines()) <= 90, "examples stay short"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_at_its_smallest_size(name, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [f"examples/{name}.py", "--smoke", "--out", str(out)])
    monkeypatch.chdir(tmp_path)  # anything written by default lands here, not in the checkout
    start = time.process_time()
    runpy.run_path(str(ROOT / "examples" / f"{name}.py"), run_name="__main__")
    used = time.process_time() - start
    import matplotlib.pyplot as plt

    plt.close("all")
    assert capsys.readouterr().out.strip(), "the example prints what it measured"
    missing = [f for f in WRITES[name] if not (out / f).is_file()]
    assert not missing, f"{name} did not write {missing}"
    assert used < LIMIT_S, f"{name} took {used:.0f} CPU seconds at --smoke (limit {LIMIT_S:.0f})"
