"""``diffuse 3d train | sample | evaluate`` through the whole ``diffuse`` app, as a user runs them."""

import json

import diff_3d
import pytest
from diffcore.cli import build_app
from diffcore.modality import discover
from typer.testing import CliRunner

TINY = ["--set", "dataset=primitives", "--set", "num_objects=8", "--budget", "48", "--batch-size", "4",
        "--set", "model.latent_tokens=4", "--set", "model.latent_dim=8", "--set", "model.field_width=32",
        "--set", "model.queries=64", "--set", "model.width=32", "--set", "model.depth=1", "--set", "model.heads=2",
        "--autoencoder-steps", "2", "--steps", "2", "--set", "train.progress_bar=false",
        "--set", "train.tensorboard=false", "--device", "cpu"]  # fmt: skip


def test_diff_3d_registers_with_diffuse():
    installed = discover()
    assert installed["3d"].distribution == "diff-3d"
    assert installed["3d"].version == diff_3d.__version__


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(
        build_app(), ["3d", "train", "--out", str(out), "--conditioning", "class", *TINY]
    )
    assert result.exit_code == 0, result.output
    assert f"pipeline: {out / 'pipeline'}" in result.output
    return out / "pipeline"


def test_sample_and_evaluate_write_their_files(trained, tmp_path):
    runner = CliRunner()
    result = runner.invoke(build_app(), ["3d", "sample", "--pipeline", str(trained), "--out", str(tmp_path / "s"),
                                         "-n", "2", "--class", "cone", "--steps", "2", "--budget", "24",
                                         "--set", "image_size=16", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {"sample_000.ply", "sample_001.ply", "grid.png", "turntable_001.gif"} <= {
        p.name for p in (tmp_path / "s").iterdir()
    }
    result = runner.invoke(build_app(), ["3d", "evaluate", "--pipeline", str(trained), "--out", str(tmp_path / "e"),
                                         "-n", "3", "--steps", "2", "--classifier-steps", "1", "--set", "num_reference=3",
                                         "--set", "points=16", "--set", "image_size=16", "--set", "views=1",
                                         "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert "class_adherence" in metrics and "one_nna" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "model.representation=nerf"],
            "error: representation: expected one of diffgs, l3dg, got 'nerf'",
        ),
        (["--conditioning", "text"], "error: conditioning: expected one of none, class, caption, got 'text'"),
    ],
)
def test_bad_training_settings_fail_with_one_line_and_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(build_app(), ["3d", "train", "--out", str(tmp_path / "r"), *TINY, *args])
    assert result.exit_code == 2
    assert result.output.strip() == message


def test_a_class_the_pipeline_does_not_know_fails_with_one_line(trained, tmp_path):
    result = CliRunner().invoke(build_app(), ["3d", "sample", "--pipeline", str(trained), "--out", str(tmp_path),
                                              "--class", "pyramid", "--steps", "1", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: classes: 'pyramid' is not one of sphere, cube")
