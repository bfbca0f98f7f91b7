"""The pipeline end to end on a tiny model: train, save and load, sample (CIF files), guidance, evaluate, and
structure prediction of a file from compositions only."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch
from diff_materials import (
    CrystalCSPConfig,
    CrystalEvaluateConfig,
    CrystalPipeline,
    CrystalSampleConfig,
    sample,
)
from diff_materials.data import Crystal, read_cif_folder
from diff_materials.io import cif_text
from diff_materials.pipeline import evaluate, parse_formula, predict_files, save_samples

FAST = {"steps": 4, "device": "cpu"}


def test_save_and_load_give_the_same_samples(tiny_pipeline, tmp_path):
    pipe, _ = tiny_pipeline
    pipe.save_pretrained(tmp_path / "p")
    loaded = CrystalPipeline.from_pretrained(tmp_path / "p")
    assert loaded.properties == ["volume_per_atom"] and loaded.predictor is not None
    cfg = CrystalSampleConfig(num_samples=3, **FAST)
    a, b = sample(pipe, cfg), sample(loaded, cfg)
    for x, y in zip(a, b):
        assert np.allclose(x.lattice, y.lattice) and np.array_equal(x.numbers, y.numbers)
    assert not np.allclose(sample(pipe, dataclasses.replace(cfg, seed=1))[0].frac, a[0].frac)


def test_samples_are_written_as_cif_files_pymatgen_reads_and_a_picture(tiny_pipeline, tmp_path):
    pipe, _ = tiny_pipeline
    crystals = sample(pipe, CrystalSampleConfig(num_samples=2, formulas=["SrTiO3", "NaCl"], **FAST))
    assert [c.formula for c in crystals] == ["SrTiO3", "NaCl"]
    files = save_samples(tmp_path, crystals)
    assert (tmp_path / "samples.png").stat().st_size > 1000
    back = read_cif_folder(tmp_path)
    assert [c.formula for c in back.crystals] == ["SrTiO3", "NaCl"] and not back.skipped
    assert np.allclose(back.crystals[0].lattice @ back.crystals[0].lattice.T,
                       crystals[0].lattice @ crystals[0].lattice.T, atol=1e-4)  # fmt: skip
    assert len(files) == 3


def test_guided_sampling_runs_with_cfg_and_the_predictor(tiny_pipeline):
    pipe, _ = tiny_pipeline
    base = CrystalSampleConfig(num_samples=2, **FAST)
    cfg = dataclasses.replace(base, properties=["volume_per_atom=12"], guidance_scale=3.0)
    cls = dataclasses.replace(base, target=["volume_per_atom=10:14"], predictor_scale=1.0)
    assert len(sample(pipe, cfg)) == 2 and len(sample(pipe, cls)) == 2
    with pytest.raises(ValueError, match="properties: the pipeline was not trained on 'band_gap'"):
        sample(pipe, dataclasses.replace(base, properties=["band_gap=1"]))


def test_evaluate_reports_structure_prediction_and_generation_metrics(tiny_pipeline):
    pipe, _ = tiny_pipeline
    m = evaluate(pipe, CrystalEvaluateConfig(num_samples=3, candidates=2, fingerprints=False, **FAST))
    for key in (
        "csp_match_rate@1",
        "csp_match_rate@2",
        "structure_validity",
        "composition_validity",
        "novelty",
    ):
        assert key in m
    assert 0 <= m["structure_validity"] <= 1


def test_parse_formula_keeps_the_atoms_as_written():
    assert parse_formula("SrTiO3") == [38, 22, 8, 8, 8]
    assert len(parse_formula("Sr2Ti2O6")) == 10
    with pytest.raises(ValueError, match="formulas"):
        parse_formula("Fe0.5Ni0.5")


def test_csp_of_a_file_writes_k_files_per_entry_from_the_composition_alone(
    tiny_pipeline, tmp_path, perovskites
):
    _, run = tiny_pipeline
    a, b = perovskites[:2]
    scrambled = Crystal(a.lattice * 1.7, np.random.default_rng(0).random((5, 3)), a.numbers[::-1], "x")
    rows = [[0, "mp-1", cif_text(a), "", "0"], [1, "mp-2", cif_text(b), "", "0"], [2, "bad", "junk", "", "0"]]
    scrambled_rows = [[0, "mp-1", cif_text(scrambled), "", "0"], [1, "mp-2", cif_text(b), "", "0"]]
    for name, content in (("in.csv", rows), ("scrambled.csv", scrambled_rows)):
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f).writerows([["", "material_id", "cif", "formula", "heat_ref"], *content])
    config = CrystalCSPConfig(run=str(run), input=str(tmp_path / "in.csv"), samples=2, steps=4, device="cpu")
    files = predict_files(config, tmp_path / "out")
    assert sorted(f.name for f in files) == ["mp-1_0.cif", "mp-1_1.cif", "mp-2_0.cif", "mp-2_1.cif"]
    assert "bad" in (tmp_path / "out" / "skipped.txt").read_text()
    again = predict_files(
        dataclasses.replace(config, input=str(tmp_path / "scrambled.csv")), tmp_path / "out2"
    )
    for f, g in zip(
        sorted(files), sorted(again)
    ):  # the input's coordinates and lattice never reach the model
        assert f.read_text().split("_cell_length_a")[1] == g.read_text().split("_cell_length_a")[1]
    with pytest.raises(FileNotFoundError, match="nope"):
        predict_files(dataclasses.replace(config, input=str(tmp_path / "nope")), tmp_path / "o3")


def test_fine_tuning_adapters_keeps_the_base_network(tmp_path, tiny_config):
    from diff_materials.pipeline import train

    tiny_train_config = tiny_config
    base_cfg = tiny_train_config(tmp_path / "base", task="gen", steps=2)
    base = train(base_cfg)
    tuned = train(tiny_train_config(tmp_path / "tuned", task="gen", steps=3, properties=["tolerance_factor"],
                                    init_from=str(tmp_path / "base")))  # fmt: skip
    b, t = base.denoiser.state_dict(), tuned.denoiser.state_dict()
    frozen = [k for k in b if not k.startswith(("encoder.property", "encoder.adapters"))]
    assert all(torch.equal(b[k], t[k]) for k in frozen)
    assert any(not torch.equal(t[k], torch.zeros_like(t[k])) for k in t if k.startswith("encoder.adapters"))


def assert_hub_ready(folder, modality: str, trained: bool = True) -> None:
    """The saved folder's README.md is a model card huggingface_hub reads, and nothing in it is pickled."""
    from diffcore.model_card import hub_folder_problems
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "diffcore" and modality in card.data.tags
    assert f"diffuse {modality} sample --pipeline" in card.text
    assert ("- steps: " in card.text) == trained
    assert hub_folder_problems(folder) == []


def test_the_saved_pipeline_has_a_model_card_for_the_hub(tiny_pipeline):
    _, out = tiny_pipeline
    assert_hub_ready(out / "pipeline", "materials")
