"""ImagePipeline: conditions, guidance, sampling with diffcore samplers, save/load, and training end to end."""

import pytest
import torch
from diff_image.config import ImageModelConfig, TrainImageConfig
from diff_image.models import build_backbone
from diff_image.pipeline import ImagePipeline, PreparedObjective, build_objective, train


def tiny_pipe(prediction: str = "v", schedule: str = "vp-cosine") -> ImagePipeline:
    torch.manual_seed(0)
    net = build_backbone(ImageModelConfig(width=32, depth=1, heads=2), (1, 8, 8), num_classes=10)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return ImagePipeline(net, schedule, prediction, num_classes=10)


def test_conditions_cycle_labels_and_give_the_null_class():
    pipe = tiny_pipe()
    cond, uncond = pipe.condition(5, y=[3, 7])
    assert cond["y"].tolist() == [3, 7, 3, 7, 3]
    assert uncond["y"].tolist() == [10]
    assert pipe.condition(12)[0]["y"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    with pytest.raises(ValueError, match="labels"):
        pipe.condition(2, y=[11])


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "euler", "heun"])
def test_samples_are_images_and_depend_on_guidance(sampler):
    pipe = tiny_pipe()
    g = torch.Generator().manual_seed(0)
    a = pipe.sample(4, sampler=sampler, steps=4, guidance=1.0, generator=g)
    g.manual_seed(0)
    b = pipe.sample(4, sampler=sampler, steps=4, guidance=3.0, generator=g)
    assert a.shape == (4, 1, 8, 8) and a.min() >= -1 and a.max() <= 1
    assert not torch.allclose(a, b)


def test_guidance_one_equals_the_conditional_model():
    """CFG at w = 1 is the conditional model: the same samples as no guidance wrapper at all."""
    pipe = tiny_pipe()
    g = torch.Generator().manual_seed(0)
    a = pipe.sample(3, sampler="ddim", steps=3, guidance=1.0, y=[1, 2, 3], generator=g)
    g.manual_seed(0)
    noise = torch.randn(3, 1, 8, 8, generator=g)
    import diffcore

    ref = diffcore.sample(pipe.denoiser(), noise, "ddim", 3, cond={"y": torch.tensor([1, 2, 3])}).clamp(-1, 1)
    torch.testing.assert_close(a, ref)


def test_save_load_gives_identical_samples(tmp_path):
    pipe = tiny_pipe("eps", "vp-linear")
    pipe.save_pretrained(tmp_path / "p")
    back = ImagePipeline.from_pretrained(tmp_path / "p")
    assert (back.schedule, back.prediction, back.num_classes, back.sample_shape) == (
        "vp-linear",
        "eps",
        10,
        (1, 8, 8),
    )
    g = torch.Generator().manual_seed(0)
    a = pipe.sample(4, steps=3, guidance=2.0, generator=g)
    g.manual_seed(0)
    torch.testing.assert_close(a, back.sample(4, steps=3, guidance=2.0, generator=g))


@pytest.mark.parametrize(
    ("name", "prediction", "schedule"),
    [("eps", "eps", "vp-cosine"), ("v", "v", "vp-cosine"), ("x0", "x0", "vp-cosine"),
     ("flow_matching", "velocity", "rectified-flow"), ("rectified_flow", "velocity", "rectified-flow")],
)  # fmt: skip
def test_objectives_by_name(name, prediction, schedule):
    obj = build_objective(name, "vp-cosine")
    assert obj.prediction == prediction
    assert type(obj.schedule).__name__ == type(__import__("diffcore").schedules.get(schedule)).__name__
    with pytest.raises(ValueError, match="objective"):
        build_objective("edm-ish", "vp-cosine")


def test_prepared_objective_tokenizes_and_encodes():
    seen = {}

    def inner(model, batch, generator=None):
        seen.update(batch)
        return torch.zeros(())

    obj = PreparedObjective(
        inner, encode=lambda x: x[:, :, ::2, ::2], tokenize=lambda caps, dev: torch.ones(len(caps), 3)
    )
    obj(None, {"x": torch.zeros(2, 1, 8, 8), "caption": ["a", "b"]})
    assert seen["x"].shape == (2, 1, 4, 4) and seen["input_ids"].shape == (2, 3) and "caption" not in seen


@pytest.mark.slow
def test_latent_class_training_end_to_end(tmp_path):
    cfg = TrainImageConfig(
        model=ImageModelConfig(backbone="unet", width=16, depth=1, heads=2, channel_mult=(1,), attention_levels=()),
        dataset="digits", image_size=16, latent=True, autoencoder_steps=2, steps=2, batch_size=16,
        output_dir=str(tmp_path / "run"), device="cpu", objective="eps",
    )  # fmt: skip
    cfg.autoencoder.base_channels = 8
    pipe = train(cfg)
    assert pipe.autoencoder is not None and pipe.sample_shape == (4, 4, 4) and pipe.image_shape == (1, 16, 16)
    back = ImagePipeline.from_pretrained(tmp_path / "run" / "pipeline")
    g = torch.Generator().manual_seed(0)
    a = back.sample(3, steps=2, guidance=2.0, generator=g)
    assert a.shape == (3, 1, 16, 16)
    assert back.autoencoder.config.scaling_factor == pipe.autoencoder.config.scaling_factor != 1.0


@pytest.mark.slow
def test_text_to_image_training_end_to_end(tmp_path):
    cfg = TrainImageConfig(
        model=ImageModelConfig(backbone="mmdit", conditioning="text", width=32, depth=2, heads=2, patch_size=4,
                               text_width=16, text_layers=1, text_heads=2, text_max_length=24),
        dataset="shapes", image_size=16, shapes_length=32, steps=2, batch_size=8,
        output_dir=str(tmp_path / "run"), device="cpu", objective="rectified_flow",
    )  # fmt: skip
    pipe = train(cfg)
    back = ImagePipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert (
        back.text_encoder is not None and back.schedule == "rectified-flow" and back.prediction == "velocity"
    )
    g = torch.Generator().manual_seed(0)
    a = pipe.sample(2, steps=2, guidance=3.0, prompt="a red circle", generator=g)
    g.manual_seed(0)
    torch.testing.assert_close(a, back.sample(2, steps=2, guidance=3.0, prompt="a red circle", generator=g))
