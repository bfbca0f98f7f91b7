"""``diffuse protein train | sample | evaluate`` end to end on tiny settings, and the registration."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
from diff_protein.bench import QUICK, bench
from diff_protein.cli import app, modality
from diff_protein.data.sequences import read_fasta
from typer.testing import CliRunner

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_modality_has_app_and_real_bench() -> None:
    assert modality.name == "protein" and modality.app is app and modality.bench is bench
    assert QUICK.cpu and QUICK.backbone_steps <= 300


def test_sequence_train_sample_evaluate(tmp_path) -> None:
    run = tmp_path / "seq"
    _ok(
        [
            "train",
            "--out",
            str(run),
            "--what",
            "sequence",
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--width",
            "16",
            "--depth",
            "1",
            "--length",
            "10",
            "--num-examples",
            "6",
            "--cpu",
        ]
    )
    assert json.loads((run / "run.json").read_text())["kind"] == "sequence"
    _ok(["sample", "--run", str(run), "--out", str(tmp_path / "s"), "--num", "2", "--steps", "4"])
    records = read_fasta(tmp_path / "s" / "samples.fasta")
    assert len(records) == 8 and all(len(r.sequence) == 10 for r in records)
    out = tmp_path / "m.json"
    _ok(
        ["evaluate", "--samples", str(tmp_path / "s" / "samples.fasta"), "--run", str(run), "--out", str(out)]
    )
    metrics = json.loads(out.read_text())
    assert metrics["num_samples"] == 8 and 0 <= metrics["adherence_classifier"] <= 1


def test_backbone_train_sample_motif_evaluate(tmp_path) -> None:
    run = tmp_path / "bb"
    _ok(
        [
            "train",
            "--out",
            str(run),
            "--what",
            "backbone",
            "--process",
            "flow",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--width",
            "16",
            "--depth",
            "1",
            "--num-examples",
            "2",
            "--max-length",
            "26",
            "--cpu",
        ]
    )
    samples = tmp_path / "pdb"
    _ok(["sample", "--run", str(run), "--out", str(samples), "--num", "2", "--length", "20", "--steps", "3"])
    assert len(list(samples.glob("*.pdb"))) == 2
    again = tmp_path / "bb2"  # a further training run from the first one's weights, CUDA graphs requested
    _ok(["train", "--out", str(again), "--what", "backbone", "--process", "flow", "--steps", "1", "--batch-size",
         "2", "--width", "16", "--depth", "1", "--num-examples", "2", "--max-length", "26", "--cpu",
         "--cuda-graphs", "--init-from", str(run)])  # fmt: skip
    assert (again / "run.json").is_file()
    guided = tmp_path / "guided"
    _ok(["sample", "--run", str(run), "--out", str(guided), "--num", "2", "--length", "20", "--steps", "3",
         "--clash-radius", "4.0"])  # fmt: skip
    assert len(list(guided.glob("*.pdb"))) == 2
    assert json.loads((run / "run.json").read_text())["process_config"]["rotation_rate_t_max"] == 0.9
    plain = tmp_path / "plain"  # the sped-up rotations everywhere: other samples from the same noise
    _ok(["sample", "--run", str(run), "--out", str(plain), "--num", "2", "--length", "20", "--steps", "3",
         "--rotation-rate-t-max", "1.0"])  # fmt: skip
    assert (plain / "sample_000.pdb").read_text() != (samples / "sample_000.pdb").read_text()
    motif_out = tmp_path / "motif"
    _ok(
        [
            "sample",
            "--run",
            str(run),
            "--out",
            str(motif_out),
            "--num",
            "1",
            "--steps",
            "3",
            "--motif",
            str(samples / "sample_000.pdb"),
            "--fixed",
            "2-6",
        ]
    )
    out = tmp_path / "m.json"
    _ok(["evaluate", "--samples", str(samples), "--reference", str(samples), "--out", str(out)])
    metrics = json.loads(out.read_text())
    assert metrics["num_samples"] == 2 and metrics["sse_max_abs_diff"] == 0.0


def test_errors_name_the_bad_option(tmp_path) -> None:
    result = runner.invoke(app, ["train", "--out", str(tmp_path), "--what", "rna", "--steps", "1"])
    assert result.exit_code != 0 and "--what" in result.output
    result = runner.invoke(app, ["sample", "--run", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "run.json" in result.output


@pytest.mark.parametrize(
    ("process", "second"), [("diffusion", "backbone_noise0.1_"), ("flow", "backbone_rot_exp10_")]
)
def test_run_bench_tiny_writes_pdb_fasta_and_every_metric(tmp_path, process: str, second: str) -> None:
    from diff_protein.bench import BenchSettings, run_bench

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
