"""``diffuse protein train | sample | evaluate`` end to end on tiny settings, and the registration."""

from __future__ import annotations

import json

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
    assert QUICK.cpu and QUICK.backbone_steps <= 50


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
