"""``diffuse protein train | sample | evaluate`` end to end on tiny settings, and the registration."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
from diff_protein import io
from diff_protein.bench import QUICK, bench
from diff_protein.cli import app, modality
from diff_protein.data.sequences import read_fasta
from diff_protein.metrics import kabsch_rmsd
from typer.testing import CliRunner

runner = CliRunner()

TINY_BACKBONE = ["--what", "backbone", "--process", "flow", "--steps", "1", "--batch-size", "2", "--node-dim", "16",
                 "--num-blocks", "1", "--set", "backbone.pair_dim=8", "--num-examples", "2", "--max-length", "26",
                 "--device", "cpu"]  # fmt: skip


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _fails(args: list[str]) -> str:
    """A user mistake: one ``error: ...`` line and exit status 2."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    return result.output


def test_modality_has_app_and_real_bench() -> None:
    assert modality.name == "protein" and modality.app is app and modality.bench is bench
    assert QUICK.device == "cpu" and QUICK.backbone_steps <= 300


def test_help_states_the_configurations_defaults() -> None:
    """Defaults come from the dataclasses, once: the learning rate is the library's 1e-4 (the old command line
    said 3e-4), the sampler's settings are ProteinSampleConfig's."""
    text = _ok(["train", "--help"])
    assert "0.0001" in text and "3e-4" not in text and "0.0003" not in text
    for option in ("--device", "--seed", "--out", "--config", "--set", "--what", "--process", "--data"):
        assert option in text
    assert "--pipeline" in _ok(["sample", "--help"]) and "--pipeline" in _ok(["evaluate", "--help"])


def test_sequence_train_sample_evaluate(tmp_path) -> None:
    run = tmp_path / "seq"
    _ok(["train", "--out", str(run), "--what", "sequence", "--steps", "2", "--batch-size", "8", "--hidden-size",
         "16", "--depth", "1", "--length", "10", "--num-examples", "6", "--device", "cpu"])  # fmt: skip
    meta = json.loads((run / "pipeline" / "pipeline.json").read_text())
    assert meta["config"]["what"] == "sequence" and meta["components"] == ["sequence", "classifier"]
    assert meta["config"]["labels"] == ["<unknown>", "taxon_0", "taxon_1", "taxon_2", "taxon_3"]
    pipe = ["--pipeline", str(run / "pipeline"), "--device", "cpu"]
    _ok(["sample", *pipe, "--out", str(tmp_path / "s"), "--num", "2", "--steps", "4"])
    records = read_fasta(tmp_path / "s" / "samples.fasta")
    assert len(records) == 8 and all(len(r.sequence) == 10 for r in records)
    assert [r.header.split("Tax=")[1] for r in records] == [f"taxon_{k}" for k in range(4) for _ in range(2)]
    _ok(["sample", *pipe, "--out", str(tmp_path / "one"), "--num", "3", "--steps", "4", "--label", "taxon_2"])
    assert {r.header.split("Tax=")[1] for r in read_fasta(tmp_path / "one" / "samples.fasta")} == {"taxon_2"}
    scored = tmp_path / "m"
    _ok(["evaluate", *pipe, "--samples", str(tmp_path / "s" / "samples.fasta"), "--out", str(scored)])
    metrics = json.loads((scored / "metrics.json").read_text())
    assert metrics["num_samples"] == 8 and 0 <= metrics["adherence_classifier"] <= 1
    assert 0 <= metrics["adherence_bayes"] <= 1  # trained on the generated families: the exact judge too
    # evaluate draws what sample draws from the same seed and settings, so both score the same sequences
    drawn = tmp_path / "drawn"
    _ok(["evaluate", *pipe, "--num", "2", "--steps", "4", "--out", str(drawn)])
    assert json.loads((drawn / "metrics.json").read_text()) == metrics


def test_backbone_train_sample_motif_evaluate(tmp_path) -> None:
    run = tmp_path / "bb"
    _ok(["train", "--out", str(run), *TINY_BACKBONE])
    pipe = ["--pipeline", str(run / "pipeline"), "--device", "cpu"]
    meta = json.loads((run / "pipeline" / "pipeline.json").read_text())
    assert meta["config"]["process_config"]["rotation_rate_t_max"] == 0.9 and meta["components"] == [
        "backbone"
    ]
    samples = tmp_path / "pdb"
    _ok(["sample", *pipe, "--out", str(samples), "--num", "2", "--length", "20", "--steps", "3"])
    assert sorted(p.name for p in samples.glob("*.pdb")) == ["sample_000.pdb", "sample_001.pdb"]
    assert all(len(io.read_backbone(p)) == 20 for p in samples.glob("*.pdb"))
    again = tmp_path / "bb2"  # a further training run from the first one's weights, CUDA graphs requested
    _ok(["train", "--out", str(again), *TINY_BACKBONE, "--cuda-graphs", "--init-from", str(run / "pipeline")])
    assert (again / "pipeline" / "pipeline.json").is_file()
    guided = tmp_path / "guided"
    _ok(["sample", *pipe, "--out", str(guided), "--num", "2", "--length", "20", "--steps", "3",
         "--clash-radius", "4.0"])  # fmt: skip
    assert len(list(guided.glob("*.pdb"))) == 2
    same = tmp_path / "same"  # the same seed gives the same files
    _ok(["sample", *pipe, "--out", str(same), "--num", "2", "--length", "20", "--steps", "3"])
    assert (same / "sample_000.pdb").read_text() == (samples / "sample_000.pdb").read_text()
    plain = tmp_path / "plain"  # the sped-up rotations everywhere: other samples from the same noise
    _ok(["sample", *pipe, "--out", str(plain), "--num", "2", "--length", "20", "--steps", "3",
         "--rotation-rate-t-max", "1.0"])  # fmt: skip
    assert (plain / "sample_000.pdb").read_text() != (samples / "sample_000.pdb").read_text()
    motif_out = tmp_path / "motif"
    motif_file = samples / "sample_000.pdb"
    _ok(["sample", *pipe, "--out", str(motif_out), "--num", "1", "--steps", "3", "--motif", str(motif_file),
         "--fixed", "2-6"])  # fmt: skip
    scaffold, motif = io.read_backbone(motif_out / "sample_000.pdb"), io.read_backbone(motif_file)
    assert len(scaffold) == len(motif) == 20
    assert kabsch_rmsd(scaffold.coords[2:7, 1], motif.coords[2:7, 1]) < 2e-3  # held (PDB keeps 3 decimals)
    assert kabsch_rmsd(scaffold.coords[8:, 1], motif.coords[8:, 1]) > 0.1  # the rest is generated
    out = tmp_path / "m"
    _ok(["evaluate", *pipe, "--samples", str(samples), "--reference", str(samples), "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_samples"] == 2 and metrics["sse_max_abs_diff"] == 0.0
    assert metrics["rg_vs_ref"] == pytest.approx(1.0)
    drawn = tmp_path / "drawn"  # samples at the training lengths, against the training chains
    _ok(["evaluate", *pipe, "--num", "2", "--steps", "3", "--set", "num_reference=2", "--out", str(drawn)])
    assert json.loads((drawn / "metrics.json").read_text())["num_samples"] == 2


def test_user_mistakes_are_one_line_errors_naming_the_setting(tmp_path) -> None:
    assert "what" in _fails(["train", "--out", str(tmp_path), "--what", "rna", "--steps", "1"])
    assert "data_path" in _fails(
        ["train", "--out", str(tmp_path), "--data", str(tmp_path / "none"), "--steps", "1"]
    )
    assert "--pipeline" in _fails(["sample", "--pipeline", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    run = tmp_path / "bb"
    _ok(["train", "--out", str(run), *TINY_BACKBONE])
    pipe = [
        "--pipeline",
        str(run / "pipeline"),
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "s"),
        "--steps",
        "2",
    ]
    assert "fixed" in _fails(["sample", *pipe, "--fixed", "2-6"])
    assert "labels" in _fails(["sample", *pipe, "--label", "taxon_0"])
    assert "samples_path" in _fails(["evaluate", *pipe, "--samples", str(tmp_path / "none")])


@pytest.mark.parametrize(
    ("process", "second"), [("diffusion", "backbone_noise0.1_"), ("flow", "backbone_rot_exp10_")]
)
def test_run_bench_tiny_writes_pdb_fasta_and_every_metric(tmp_path, process: str, second: str) -> None:
    from diff_protein.bench import BenchSettings, run_bench
    from diff_protein.pipeline import ProteinPipeline

    settings = BenchSettings(
        process=process,
        compare_rotation=(("exp", 10.0),),
        num_backbones=4,
        min_length=24,
        max_length=26,
        node_dim=16,
        pair_dim=8,
        num_blocks=1,
        backbone_steps=2,
        backbone_batch=2,
        ema_decay=0.9,
        num_samples=2,
        sample_steps=3,
        noise_scales=(1.0, 0.1),
        seq_length=8,
        per_family=4,
        seq_hidden=16,
        seq_depth=1,
        seq_steps=2,
        classifier_steps=2,
        samples_per_family=2,
        seq_batch=8,
    )
    result = run_bench(tmp_path, settings)
    assert result.status == "ok" and result.modality == "protein"
    assert all((tmp_path / f).is_file() for f in result.files)
    assert (
        sum(f.endswith(".pdb") for f in result.files) == 5 and "sequences/cfg_samples.fasta" in result.files
    )
    for key in (
        "backbone_ca_ca_valid",
        "backbone_clash_free",
        "backbone_sse_max_abs_diff",
        f"{second}ca_ca_valid",
        "sequence_w2_adherence_classifier",
        "sequence_w2_adherence_bayes",
        "motif_rmsd",
    ):
        assert 0.0 <= result.metrics[key] <= 1.0 or key == "motif_rmsd"
    assert result.metrics["motif_rmsd"] < 1e-3  # motif residues are held exactly
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"] == result.metrics
    backbone = ProteinPipeline.from_pretrained(tmp_path / "backbone_model")
    sequence = ProteinPipeline.from_pretrained(tmp_path / "sequence_model")
    assert backbone.process_kind == process and sequence.classifier is not None
    written = io.read_backbone(tmp_path / "backbones" / "backbone_sample_000.pdb").coords
    assert np.isfinite(written).all()


def test_run_bench_backbone_legs_resume_until_the_plan_is_done(tmp_path) -> None:
    """With ``backbone_legs`` each call trains for at most ``backbone_max_seconds``, stops with a checkpoint and
    the plan, and evaluates nothing; calling again with the same folder resumes, and the call that reaches
    the planned step count evaluates."""
    from diff_protein.bench import LEG_FILE, BenchSettings, run_bench

    settings = BenchSettings(num_backbones=4, min_length=24, max_length=26, node_dim=16, pair_dim=8,
                             num_blocks=1, backbone_steps=12, backbone_batch=2, backbone_legs=3,
                             backbone_max_seconds=0.02, num_samples=2, sample_steps=2)  # fmt: skip
    plan = tmp_path / "backbone_train" / LEG_FILE
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "training stopped by max_seconds" at every leg
        for _ in range(40):
            results.append(run_bench(tmp_path, settings, sequences=False))
            if not results[-1].metrics.get("backbone_unfinished"):
                break
    first, last = results[0], results[-1]
    assert len(results) > 1 and first.metrics["backbone_unfinished"] == 1.0 and "leg 1 of 3" in first.summary
    assert first.metrics["backbone_trained_steps"] < 12 and "backbone_ca_ca_valid" not in first.metrics
    assert not last.metrics.get("backbone_unfinished") and not plan.exists()
    assert last.metrics["backbone_trained_steps"] == 12 and last.metrics["backbone_planned_steps"] == 12
    assert (
        last.metrics["backbone_legs_run"] == len(results) and 0 <= last.metrics["backbone_ca_ca_valid"] <= 1
    )
    with pytest.raises(ValueError, match="backbone_max_seconds"):
        run_bench(tmp_path / "bad", dataclasses.replace(settings, backbone_max_seconds=None))
