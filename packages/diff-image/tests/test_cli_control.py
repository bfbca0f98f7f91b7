"""``diffuse image control``: help text, settings from a file, training ControlNets on a saved pipeline, the
grid and metrics it writes, and evaluating the ControlNets a pipeline already holds."""

import json
import re

import torch
from diff_image.cli import app
from diff_image.config import ImageControlConfig, ImageModelConfig
from diff_image.io import read_png
from diff_image.models import build_backbone
from diff_image.pipeline import ImagePipeline
from diffcore.config import load_config
from typer.testing import CliRunner

runner = CliRunner()


def test_help_explains_every_option():
    result = runner.invoke(app, ["control", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
    for option in ("--pipeline", "--out", "--config", "--set", "--kind", "--scale", "--num-blocks", "--steps",
                   "--batch-size", "--lr", "--shapes-length", "--cond-dropout", "--num-samples", "--sampler",
                   "--sample-steps", "--guidance", "--seed", "--device"):  # fmt: skip
        assert option in text, option


def test_config_file_and_errors(tmp_path):
    (tmp_path / "c.yaml").write_text("control:\n  kinds: [edges, boxes]\n  scales: [1.0, 0.5]\n  steps: 3\n")
    cfg = load_config(ImageControlConfig, tmp_path / "c.yaml", ["num_blocks=2"], section="control")
    assert (cfg.kinds, cfg.scales, cfg.steps, cfg.num_blocks) == (("edges", "boxes"), (1.0, 0.5), 3, 2)
    for bad, match in ((["kinds=[depth]"], "kinds"), (["scales=[1, 2]"], "scales"), (["steps=-1"], "steps")):
        try:
            load_config(ImageControlConfig, overrides=bad)
        except ValueError as exc:
            assert match in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_train_then_evaluate_held_controlnets(tmp_path):
    cfg = ImageModelConfig(backbone="dit", conditioning="none", width=16, depth=2, heads=2, patch_size=4)
    torch.manual_seed(0)
    net = build_backbone(cfg, (3, 16, 16))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ImagePipeline(net, "vp-cosine", "eps").save_pretrained(tmp_path / "base")
    out = tmp_path / "out"
    common = ["--num-samples", "3", "--sample-steps", "2", "--device", "cpu"]
    r = runner.invoke(app, ["control", "--pipeline", str(tmp_path / "base"), "--out", str(out), "--kind", "edges",
                            "--steps", "1", "--batch-size", "2", "--shapes-length", "2", *common])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kinds"] == ["edges"] and metrics["num_samples"] == 3
    assert abs(metrics["iou_gain"] - (metrics["iou_control"] - metrics["iou_no_control"])) < 1e-9
    grid = read_png(out / "grid.png")
    assert grid.shape == (
        3,
        2 + 3 * 18,
        2 + 3 * 18,
    )  # 3 columns (map | control | none) x 3 scenes, 2 px padding
    assert (out / "pipeline" / "controlnet_edges" / "config.json").is_file()
    again = tmp_path / "again"
    r = runner.invoke(app, ["control", "--pipeline", str(out / "pipeline"), "--out", str(again), "--kind", "edges",
                            "--steps", "0", "--scale", "0", *common])  # fmt: skip
    assert r.exit_code == 0, r.output
    m0 = json.loads((again / "metrics.json").read_text())
    assert (
        m0["scales"] == [0.0] and m0["iou_control"] == m0["iou_no_control"]
    )  # zero strength: the base alone
    r = runner.invoke(app, ["control", "--pipeline", str(out / "pipeline"), "--out", str(again), "--kind", "boxes",
                            "--steps", "0", *common])  # fmt: skip
    assert r.exit_code != 0 and "evaluates the pipeline's ControlNets" in r.output
