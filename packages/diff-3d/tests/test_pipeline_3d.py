"""train -> sample -> evaluate through SplatPipeline on the CPU, save/load, resume, and one-line refusals."""

import json

import pytest
import torch
from diff_3d import (
    SplatEvaluateConfig,
    SplatModelConfig,
    SplatPipeline,
    SplatSampleConfig,
    SplatTrainConfig,
    evaluate,
    sample,
    train,
)
from diffcore.training import TrainConfig


def tiny_config(out, representation="diffgs", conditioning="class", **train_fields) -> SplatTrainConfig:
    model = SplatModelConfig(
        representation=representation, latent_tokens=4, latent_dim=8, field_width=32, queries=128, grid_size=8,
        downsample=1, conv_channels=8, latent_channels=4, width=32, depth=1, heads=2,
    )  # fmt: skip
    train_cfg = TrainConfig(output_dir=str(out), steps=3, device="cpu", progress_bar=False, tensorboard=False,
                            ema_decay=0.9, log_every=1, **train_fields)  # fmt: skip
    return SplatTrainConfig(model=model, dataset="primitives", num_objects=12, budget=64, batch_size=4,
                            conditioning=conditioning, autoencoder_steps=3, train=train_cfg)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return train(tiny_config(out)), out


def test_train_writes_both_stages_and_a_pipeline_that_loads_to_the_same_samples(trained):
    pipe, out = trained
    assert (out / "autoencoder" / "done.json").is_file() and (out / "pipeline" / "pipeline.json").is_file()
    assert pipe.class_names == ["sphere", "cube", "torus", "cone", "cylinder", "capsule"]
    loaded = SplatPipeline.from_pretrained(out / "pipeline")
    cfg = SplatSampleConfig(num_samples=3, steps=2, budget=20, classes=("torus", "1"), device="cpu", seed=5)
    a, b = sample(pipe, cfg), sample(loaded, cfg)
    assert [g.num for g in a] == [20, 20, 20]
    for x, y in zip(a, b):
        assert torch.equal(x.means, y.means) and torch.equal(x.sh, y.sh) and torch.equal(x.quats, y.quats)
    c = sample(loaded, SplatSampleConfig(num_samples=3, steps=2, budget=20, device="cpu", seed=6))
    assert not torch.equal(a[0].means, c[0].means)


def test_sample_writes_ply_grid_and_turntables(trained, tmp_path):
    pipe, _ = trained
    cfg = SplatSampleConfig(num_samples=2, steps=2, budget=30, image_size=16, device="cpu")
    sample(pipe, cfg, out=tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"sample_000.ply", "sample_001.ply", "grid.png", "turntable_000.gif"} <= names
    from diff_3d.io import read_ply

    assert read_ply(tmp_path / "sample_001.ply").num == 30


def test_evaluate_writes_the_metrics(trained, tmp_path):
    pipe, _ = trained
    cfg = SplatEvaluateConfig(num_samples=4, num_reference=4, points=32, steps=2, budget=32, classifier_steps=2,
                              image_size=16, views=2, device="cpu")  # fmt: skip
    metrics = evaluate(pipe, cfg, out=tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(metrics)
    assert {"cov", "mmd_cd", "one_nna", "class_adherence", "render_fd", "render_fd_floor"} <= set(metrics)
    assert 0 <= metrics["cov"] <= 1 and 0 <= metrics["one_nna"] <= 1 and metrics["mmd_cd"] > 0


@pytest.mark.parametrize("representation", ["l3dg"])
def test_l3dg_with_captions_trains_and_resumes_without_retraining_the_autoencoder(tmp_path, representation):
    cfg = tiny_config(tmp_path, representation, "caption")
    pipe = train(cfg)
    objs = pipe.generate(
        2, prompts=["a red torus"], steps=2, budget=16, generator=torch.Generator().manual_seed(0)
    )
    assert all(0 < g.num <= 16 for g in objs)
    done = (tmp_path / "autoencoder" / "done.json").stat().st_mtime_ns
    with pytest.raises(ValueError, match="already holds a training run"):
        train(cfg)
    longer = tiny_config(tmp_path, representation, "caption", resume="latest")
    longer.train.steps = 5
    train(longer)
    assert (tmp_path / "autoencoder" / "done.json").stat().st_mtime_ns == done
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 5


def test_bad_settings_are_refused_naming_the_parameter(trained):
    pipe, _ = trained
    with pytest.raises(ValueError, match="representation: expected one of diffgs, l3dg"):
        SplatModelConfig(representation="nerf")
    with pytest.raises(ValueError, match="conditioning: expected one of"):
        SplatTrainConfig(conditioning="text")
    with pytest.raises(ValueError, match="classes: 'pyramid' is not one of"):
        pipe.generate(1, classes=["pyramid"])
    with pytest.raises(ValueError, match="prompts: this pipeline is class-conditional"):
        pipe.generate(1, prompts=["a red torus"])
    with pytest.raises(ValueError, match="budget: expected >= 0"):
        SplatSampleConfig(budget=-1)


def assert_hub_ready(folder, modality: str, trained: bool = True) -> None:
    """The saved folder's README.md is a model card huggingface_hub reads, and nothing in it is pickled."""
    from diffcore.model_card import hub_folder_problems
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "diffcore" and modality in card.data.tags
    assert f"diffuse {modality} sample --pipeline" in card.text
    assert ("- steps: " in card.text) == trained
    assert hub_folder_problems(folder) == []


def test_the_saved_pipeline_has_a_model_card_for_the_hub(trained):
    _, out = trained
    assert_hub_ready(out / "pipeline", "3d")
