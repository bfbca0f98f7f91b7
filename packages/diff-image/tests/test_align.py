"""``diffuse image align reward | dpo | ddpo`` at tiny size on the CPU, and the pieces they are built from: the
caption code, oracle-labelled pairs, the colour detector of the safety guidance, the measures."""

from __future__ import annotations

import json
import re

import torch
from diff_image.align import (
    CODE_DIM,
    caption_code,
    caption_pairs,
    colour_detector,
    diversity,
    load_reward,
    oracle_pass,
    training_scenes,
)
from diff_image.cli import app
from diff_image.config import ImageModelConfig
from diff_image.data import PALETTE, SHAPES
from diff_image.models import TextEncoder, build_backbone
from diff_image.pipeline import ImagePipeline
from diffcore.alignment import PreferencePairs
from diffcore.rng import seeded
from typer.testing import CliRunner

runner = CliRunner()


def tiny_text_pipeline() -> ImagePipeline:
    words = sorted({w for c in training_scenes(64, 16, 0)[0] for w in c.split()} | set(SHAPES) | set(PALETTE))
    with seeded(0):
        encoder = TextEncoder.from_scratch(words, width=16, layers=1, heads=2, max_length=24)
        cfg = ImageModelConfig(
            backbone="mmdit", conditioning="text", width=16, depth=1, heads=2, patch_size=4
        )
        net = build_backbone(cfg, (3, 16, 16), context_dim=16, pooled_dim=16)
    return ImagePipeline(net, "vp-cosine", "v", text_encoder=encoder, train_text_encoder=False)


def test_caption_code_is_exact_and_in_caption_order():
    code = caption_code(["a red circle to the left of a blue square", "a white diamond"])
    assert code.shape == (2, CODE_DIM)
    assert code[0].sum() == 5 and code[1].sum() == 2  # two objects (colour + shape each) and one relation
    swapped = caption_code(["a blue square to the left of a red circle"])
    assert not torch.equal(code[0], swapped[0])


def test_oracle_pairs_put_the_caption_following_sample_first():
    pipe = tiny_text_pipeline()
    captions, renders = training_scenes(6, 16, seed=3)
    pairs, info = caption_pairs(pipe, captions, steps=2, renders=renders)
    assert info["anchor_pairs"] == info["pairs"] == len(pairs) > 0  # random weights: no sample passes
    assert bool((oracle_pass(pairs.winner, pairs.prompts) == 1).all())
    assert bool((oracle_pass(pairs.loser, pairs.prompts) == 0).all())
    torch.testing.assert_close(pairs.cond["caption_code"], caption_code(pairs.prompts))


def test_colour_detector_counts_pixels_of_the_banned_colour():
    x0 = -torch.ones(2, 3, 8, 8)
    x0[0, :, :2, :3] = torch.tensor([1.0, -1.0, -1.0]).reshape(3, 1, 1)  # 6 red pixels
    q = colour_detector("red", min_pixels=8.0)(x0, 0.5, x0)
    torch.testing.assert_close(q, torch.tensor([0.75, 0.0]))


def test_diversity_is_the_mean_distance_within_a_caption():
    images = torch.zeros(4, 3, 2, 2)
    images[1] = 1.0  # group 1: distance 1 (RMS over pixels); group 2: identical
    assert diversity(images, 2) == 0.5


def test_align_reward_dpo_ddpo_from_the_command_line(tmp_path):
    tiny_text_pipeline().save_pretrained(tmp_path / "base")
    out = tmp_path / "reward"
    r = runner.invoke(app, ["align", "reward", "--pipeline", str(tmp_path / "base"), "--out", str(out), "--num-captions", "8",
                            "--steps", "2", "--train-steps", "3", "--batch-size", "4", "--set", "anchor_renders=true",
                            "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["reward_heldout_accuracy"] <= 1.0 and metrics["pairs_pairs"] == len(
        PreferencePairs.load(out / "pairs")
    )
    load_reward(out / "reward")

    dpo = tmp_path / "dpo"
    r = runner.invoke(app, ["align", "dpo", "--pipeline", str(tmp_path / "base"), "--out", str(dpo), "--pairs", str(out / "pairs"),
                            "--train-steps", "2", "--batch-size", "4", "--eval-captions", "2", "--set", "steps=2",
                            "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = json.loads((dpo / "metrics.json").read_text())
    assert metrics["dpo_steps"] == 2 and 0.0 <= metrics["win_rate"] <= 1.0
    assert (dpo / "pipeline" / "pipeline.json").is_file() and (dpo / "checkpoints").is_dir()

    ddpo = tmp_path / "ddpo"
    r = runner.invoke(app, ["align", "ddpo", "--pipeline", str(tmp_path / "base"), "--out", str(ddpo), "--reward", str(out / "reward"),
                            "--iterations", "1", "--steps", "2", "--eval-captions", "2", "--set", "prompts_per_iteration=2",
                            "--set", "samples_per_prompt=2", "--set", "caption_pool=4", "--set", "batch_size=2",
                            "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = json.loads((ddpo / "metrics.json").read_text())
    assert metrics["ddpo_iterations"] == 1 and "aligned_reward" in metrics

    r = runner.invoke(app, ["align", "ddpo", "--pipeline", str(tmp_path / "base"), "--device", "cpu"])
    assert r.exit_code == 2 and re.search(r"error: .*--reward", r.output)
