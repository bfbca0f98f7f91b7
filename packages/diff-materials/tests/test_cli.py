"""``diffuse materials``: train -> sample -> csp -> evaluate on the command line, and one-line errors."""

from __future__ import annotations

import json

import diff_materials
from diff_materials.cli import app
from diffcore.modality import discover
from typer.testing import CliRunner

TINY = ["--device", "cpu", "--set", "model.width=16", "--set", "model.depth=1", "--set", "model.num_freqs=4",
        "--set", "train.progress_bar=false", "--set", "train.tensorboard=false", "--set", "train.ema_decay=null"]  # fmt: skip


def test_diff_materials_registers_with_diffuse():
    installed = discover()
    assert installed["materials"].distribution == "diff-materials"
    assert installed["materials"].version == diff_materials.__version__


def test_train_sample_csp_and_evaluate_from_the_command_line(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(
        app, ["train", "--out", str(run), "--task", "gen", "--steps", "3", "--limit", "30", *TINY]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["sample", "--pipeline", str(run / "pipeline"), "--out", str(tmp_path / "s"), "-n", "2",
                            "--formula", "BaTiO3", "--steps", "3", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "sample_000.cif",
        "sample_001.cif",
        "samples.png",
    ]
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    (cifs / "a.cif").write_text((tmp_path / "s" / "sample_000.cif").read_text())
    r = runner.invoke(app, ["csp", "--run", str(run), "--input", str(cifs), "--samples", "3", "--out",
                            str(tmp_path / "c"), "--steps", "3", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "c").glob("*.cif")} == {"a_0.cif", "a_1.cif", "a_2.cif"}
    r = runner.invoke(app, ["evaluate", "--pipeline", str(run), "--out", str(tmp_path / "e"), "-n", "2",
                            "--steps", "3", "--device", "cpu", "--set", "fingerprints=false"])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert "csp_match_rate@1" in metrics and "structure_validity" in metrics


def test_user_mistakes_print_one_error_line_and_exit_2(tmp_path):
    runner = CliRunner()
    r = runner.invoke(
        app, ["train", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "missing.csv"), *TINY]
    )
    assert r.exit_code == 2
    assert r.output.strip().startswith("error: path:") and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["csp", "--run", str(tmp_path), "--input", str(tmp_path), "--device", "cpu",
                            "--out", str(tmp_path / "o")])  # fmt: skip
    assert r.exit_code == 2 and r.output.startswith("error:")
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "r2"), "--task", "nonsense", *TINY])
    assert r.exit_code == 2 and "task" in r.output


def test_sampling_on_a_chemical_system_and_a_space_group_and_its_errors(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--out", str(run), "--task", "gen", "--steps", "2", "--limit", "20",
                            "--property", "chemical_system", "--property", "space_group", *TINY])  # fmt: skip
    assert r.exit_code == 0, r.output
    base = ["sample", "--pipeline", str(run / "pipeline"), "-n", "2", "--steps", "2", "--device", "cpu"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "s"), "--property", "chemical_system=Ba-Ti-O",
                            "--property", "space_group=221", "--guidance", "2"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "s").glob("*.cif"))) == 2
    for setting, message in [
        (
            "chemical_system=Ba-Qq-O",
            "error: properties: chemical_system 'Ba-Qq-O' has an unknown element 'Qq'",
        ),
        ("space_group=231", "error: properties: space_group expected an integer in 1..230, got '231'"),
        ("heat_ref=-1.0", "error: properties: the pipeline was not trained on 'heat_ref'"),
    ]:
        r = runner.invoke(app, [*base, "--out", str(tmp_path / "x"), "--property", setting])
        assert r.exit_code == 2 and r.output.strip().startswith(message), r.output
        assert len(r.output.strip().splitlines()) == 1
