"""``diffuse image ...``: help texts, configuration from files and overrides, one-line errors, and a
train -> sample -> edit run."""

import json
import re

import pytest
from diff_image.cli import app, modality
from diff_image.config import ImageEditConfig, ImageSampleConfig, ImageTrainConfig
from diffcore.cli.options import option_help
from diffcore.config import apply_overrides, load_config, parse_overrides
from typer.testing import CliRunner

runner = CliRunner()


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("command", ["train", "sample", "edit", "evaluate", "lora", "control", "stream"])
def test_every_command_has_the_shared_options(command):
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = _plain(result.output)
    for option in ("--device", "--seed", "--out", "--config", "--set", "--debug"):
        assert option in text, (command, option)
    assert ("--pipeline" in text) == (command != "train")
    assert modality.app is app and modality.bench is not None


def test_help_takes_meaning_and_default_from_the_dataclass():
    text = _plain(runner.invoke(app, ["train", "--help"], terminal_width=200).output)
    assert "--steps" in text and "--data-path" in text and "--latent" in text
    assert option_help(ImageTrainConfig, "train.steps").endswith("default: 2000.")  # the image run's own
    assert option_help(ImageTrainConfig, "data.path").startswith("image folder for dataset=")
    text = _plain(runner.invoke(app, ["sample", "--help"], terminal_width=200).output)
    assert "--num-samples" in text and "--label" in text and "--adapter" in text


def test_yaml_and_toml_files_with_sections_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "train:\n  model:\n    backbone: unet\n    depth: 3\n  train:\n    steps: 7\n    warmup_steps: 2\n"
    )
    cfg = load_config(
        ImageTrainConfig, tmp_path / "c.yaml", ["model.depth=5", "data.holdout=[red]"], section="train"
    )
    assert (cfg.train.steps, cfg.model.backbone, cfg.model.depth, cfg.data.holdout) == (
        7,
        "unet",
        5,
        ("red",),
    )
    assert cfg.train.lr == ImageTrainConfig().train.lr == 1e-3  # the image run's own default, kept
    (tmp_path / "c.toml").write_text('num_samples = 9\nprompts = ["a red circle"]\nguidance = 3\n')
    s = load_config(ImageSampleConfig, tmp_path / "c.toml")
    assert (s.num_samples, s.prompts, s.guidance) == (9, ("a red circle",), 3.0)
    assert parse_overrides(["a.b=1", "c=null"]) == {"a": {"b": 1}, "c": None}
    assert apply_overrides(cfg, {"train": {"ema_decay": None}}).train.ema_decay is None  # EMA off


def test_bad_settings_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(ImageTrainConfig, overrides=["stepz=3"])
    with pytest.raises(ValueError, match="unknown keys"):  # a TrainConfig field is not restated at the top
        load_config(ImageTrainConfig, overrides=["steps=3"])
    with pytest.raises(ValueError, match="objective"):
        load_config(ImageTrainConfig, overrides=["objective=edm"])
    with pytest.raises(TypeError, match="steps"):
        load_config(ImageTrainConfig, overrides=["train.steps=many"])
    with pytest.raises(ValueError, match="path"):
        load_config(ImageTrainConfig, overrides=["data.dataset=folder"])
    with pytest.raises(ValueError, match="box"):
        ImageEditConfig(box="1,2,3").box_coordinates()
    assert ImageEditConfig(box="1,2,3,4").box_coordinates() == (1, 2, 3, 4)
    result = runner.invoke(app, ["train", "--set", "model.backbone=vit", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "error: " in result.output and "backbone" in result.output
    assert len(result.output.strip().splitlines()) == 1  # one line, no traceback
    result = runner.invoke(app, ["sample", "--pipeline", str(tmp_path / "none")])
    assert result.exit_code == 2 and "--pipeline" in result.output


@pytest.mark.slow
def test_train_sample_edit_from_the_command_line(tmp_path):
    (tmp_path / "t.toml").write_text(
        "batch_size = 16\n[model]\nwidth = 32\ndepth = 1\nheads = 2\n[train]\nsteps = 2\nwarmup_steps = 1\n"
    )
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--config", str(tmp_path / "t.toml"), "--set", "train.lr=0.002",
                            "--out", str(run), "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    saved = json.loads((run / "train_config.json").read_text())["config"]
    assert saved["train"]["steps"] == 2 and saved["train"]["lr"] == 0.002 and saved["model"]["width"] == 32
    assert saved["batch_size"] == 16 and saved["train"]["output_dir"] == str(run)
    from diffcore.model_card import hub_folder_problems
    from huggingface_hub import ModelCard

    card = ModelCard.load(run / "pipeline" / "README.md")  # the model card, in the Hub's form
    assert card.data.library_name == "diffcore" and card.data.pipeline_tag == "unconditional-image-generation"
    assert "- steps: 2" in card.text and "diffuse image sample --pipeline" in card.text
    assert hub_folder_problems(run / "pipeline") == []
    r = runner.invoke(app, ["sample", "--pipeline", str(run / "pipeline"), "--num-samples", "6", "--steps", "2",
                            "--label", "3", "--out", str(tmp_path / "s"), "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s" / "grid.png").is_file()
    assert len(list((tmp_path / "s" / "images").glob("*.png"))) == 6
    r = runner.invoke(app, ["edit", "inpaint", "--pipeline", str(run / "pipeline"), "--input", str(tmp_path / "s" / "images"),
                            "--box", "2,2,6,6", "--steps", "3", "--label", "3", "--out", str(tmp_path / "e"), "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "e" / "images").glob("*.png"))) == 6
    r = runner.invoke(app, ["edit", "outpaint", "--pipeline", str(run / "pipeline"), "--input", str(tmp_path / "s" / "images"),
                            "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 2 and "mask, box" in r.output
    r = runner.invoke(app, ["evaluate", "--pipeline", str(run / "pipeline"), "--num-samples", "3", "--steps", "1",
                            "--set", "guidance=-1", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 2 and "guidance" in r.output


@pytest.mark.slow
def test_lora_from_the_command_line_writes_the_adapter_and_the_concept_rates(tmp_path):
    import torch
    from diff_image.config import ImageModelConfig
    from diff_image.models import build_backbone
    from diff_image.pipeline import ImagePipeline
    from diffcore.rng import seeded

    with seeded(0):
        net = build_backbone(
            ImageModelConfig(width=16, depth=1, heads=2, patch_size=4), (3, 16, 16), num_classes=2
        )
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(0))
    ImagePipeline(net, "vp-cosine", "v", num_classes=2).save_pretrained(tmp_path / "base")
    out = tmp_path / "lora"
    r = runner.invoke(app, ["lora", "--pipeline", str(tmp_path / "base"), "--out", str(out), "--num-images", "2",
                            "--steps", "2", "--rank", "2", "--num-samples", "2", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["adapter_bytes"] == (out / "adapter" / "adapter_model.safetensors").stat().st_size
    assert 0.0 <= metrics["concept_rate_base"] <= 1.0 and 0.0 <= metrics["concept_rate_lora"] <= 1.0
    assert (out / "grid.png").is_file() and (out / "base_grid.png").is_file()
    r = runner.invoke(app, ["lora", "--pipeline", str(tmp_path / "base"), "--images", str(tmp_path / "none"),
                            "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 2 and "error: " in r.output
