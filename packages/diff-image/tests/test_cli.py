"""``diffuse image ...``: help texts, configuration from files and overrides, and a train -> sample -> edit run."""

import json

import pytest
from diff_image.cli import app, modality
from diff_image.config import (
    SampleImageConfig,
    TrainImageConfig,
    apply_overrides,
    load_config,
    parse_overrides,
)
from typer.testing import CliRunner

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "sample", "edit", "evaluate", "lora"])
def test_every_command_explains_its_options(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--pipeline" in result.output or "--set" in result.output
    assert modality.app is app and modality.bench is not None


def test_yaml_and_toml_files_with_sections_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  steps: 7\n  model:\n    backbone: unet\n    depth: 3\n")
    cfg = load_config(
        TrainImageConfig, tmp_path / "c.yaml", ["model.depth=5", "holdout=[red]"], section="train"
    )
    assert (cfg.steps, cfg.model.backbone, cfg.model.depth, cfg.holdout) == (7, "unet", 5, ("red",))
    (tmp_path / "c.toml").write_text('num_samples = 9\nprompts = ["a red circle"]\nguidance = 3\n')
    s = load_config(SampleImageConfig, tmp_path / "c.toml")
    assert (s.num_samples, s.prompts, s.guidance) == (9, ("a red circle",), 3.0)
    assert parse_overrides(["a.b=1", "c=null"]) == {"a": {"b": 1}, "c": None}
    assert apply_overrides(cfg, {"ema_decay": None}).ema_decay is None


def test_bad_settings_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(TrainImageConfig, overrides=["stepz=3"])
    with pytest.raises(ValueError, match="objective"):
        load_config(TrainImageConfig, overrides=["objective=edm"])
    with pytest.raises(TypeError, match="steps"):
        load_config(TrainImageConfig, overrides=["steps=many"])
    result = runner.invoke(app, ["train", "--set", "model.backbone=vit", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "backbone" in result.output


@pytest.mark.slow
def test_train_sample_edit_from_the_command_line(tmp_path):
    (tmp_path / "t.toml").write_text(
        "[train]\nsteps = 2\nbatch_size = 16\ndevice = 'cpu'\n[train.model]\nwidth = 32\ndepth = 1\nheads = 2\n"
    )
    run = tmp_path / "run"
    r = runner.invoke(
        app, ["train", "--config", str(tmp_path / "t.toml"), "--set", "lr=0.002", "--out", str(run)]
    )
    assert r.exit_code == 0, r.output
    saved = json.loads((run / "train_config.json").read_text())["config"]
    assert saved["steps"] == 2 and saved["lr"] == 0.002 and saved["model"]["width"] == 32
    r = runner.invoke(app, ["sample", "--pipeline", str(run / "pipeline"), "-n", "6", "--steps", "2", "--label", "3",
                            "--out", str(tmp_path / "s"), "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s" / "grid.png").is_file() and len(
        list((tmp_path / "s" / "images").glob("*.png"))
    ) == 6
    r = runner.invoke(app, ["edit", "inpaint", "--pipeline", str(run / "pipeline"), "--input", str(tmp_path / "s" / "images"),
                            "--box", "2,2,6,6", "--steps", "3", "--label", "3", "--out", str(tmp_path / "e"), "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "e" / "images").glob("*.png"))) == 6
