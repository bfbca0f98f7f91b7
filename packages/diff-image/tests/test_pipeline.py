"""ImagePipeline: conditions, guidance, sampling with diffcore samplers, save/load (the diffcore.pipeline folder,
and folders of diff-image 0.1), the verbs sample / evaluate, and training end to end."""

import copy
import json
from dataclasses import replace

import pytest
import torch
from diff_image.config import (
    ImageDataConfig,
    ImageEvaluateConfig,
    ImageModelConfig,
    ImageSampleConfig,
    ImageTrainConfig,
)
from diff_image.models import build_backbone
from diff_image.pipeline import ImagePipeline, PreparedObjective, build_objective, evaluate, sample, train
from diffcore.paths import schedules
from diffcore.pipeline import Pipeline
from diffcore.rng import make_generator


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
    assert type(obj.schedule).__name__ == type(schedules.get(schedule)).__name__
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


def _steps(steps, run):
    """The image run's optimisation, shortened to ``steps`` steps on the CPU (warmup as long as it fits)."""
    return replace(
        ImageTrainConfig().train, steps=steps, warmup_steps=steps - 1, output_dir=str(run), device="cpu"
    )


def test_the_saved_folder_is_a_diffcore_pipeline(tmp_path):
    pipe = tiny_pipe("eps", "vp-linear")
    pipe.save_pretrained(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "pipeline.json").read_text())
    assert meta["pipeline_class"] == "diff_image.pipeline.core:ImagePipeline" and meta["components"] == [
        "model"
    ]
    assert meta["config"] == {"schedule": "vp-linear", "prediction": "eps", "sample_shape": [1, 8, 8],
                              "num_classes": 10, "train_text_encoder": True, "controlnets": []}  # fmt: skip
    assert isinstance(pipe, Pipeline) and pipe.device == torch.device("cpu")
    with pytest.raises(FileNotFoundError, match=r"pipeline\.json"):
        ImagePipeline.from_pretrained(tmp_path)


def test_a_folder_of_diff_image_0_1_still_loads(tmp_path):
    pipe = tiny_pipe("x0")
    pipe.model.save_pretrained(tmp_path / "old" / "model")
    flat = {"schedule": "vp-cosine", "prediction": "x0", "sample_shape": [1, 8, 8], "num_classes": 10,
            "autoencoder": False, "text_encoder": False, "train_text_encoder": True, "controlnets": []}  # fmt: skip
    (tmp_path / "old" / "pipeline.json").write_text(json.dumps(flat))
    back = ImagePipeline.from_pretrained(tmp_path / "old")
    assert (back.prediction, back.num_classes, back.autoencoder) == ("x0", 10, None)
    a = pipe.sample(3, steps=2, generator=make_generator(0))
    torch.testing.assert_close(back.sample(3, steps=2, generator=make_generator(0)), a)
    flat["controlnets"] = ["edges"]
    (tmp_path / "old" / "pipeline.json").write_text(json.dumps(flat))
    with pytest.raises(FileNotFoundError, match="controlnet_edges"):
        ImagePipeline.from_pretrained(tmp_path / "old")


def test_the_sample_verb_draws_what_the_config_says():
    pipe = tiny_pipe()
    cfg = ImageSampleConfig(
        num_samples=5, sampler="ddim", steps=3, guidance=2.0, labels=(4, 1), seed=7, device="cpu"
    )
    out = sample(pipe, cfg)
    ref = pipe.sample(
        5, sampler="ddim", steps=3, guidance=2.0, y=[4, 1, 4, 1, 4], generator=make_generator(7)
    )
    torch.testing.assert_close(out, ref)  # the seed seeds the noise; labels cycle
    torch.testing.assert_close(sample(pipe, replace(cfg, seed=0), generator=make_generator(7)), ref)
    assert not torch.allclose(sample(pipe, replace(cfg, seed=8)), ref)
    with pytest.raises(ValueError, match="labels"):
        sample(pipe, replace(cfg, labels=(12,)))


def test_the_evaluate_verb_picks_the_metrics_from_the_pipeline(monkeypatch):
    from diff_image.pipeline import evaluation

    calls = []

    def fake(kind):
        def run(pipe, num, sampler, steps, guidance, seed, **kw):
            calls.append((kind, num, sampler, steps, guidance, seed, kw))
            return {"score": 1, "num_images": 2 * num}, torch.zeros(2 * num, 3, 4, 4), None

        return run

    monkeypatch.setattr(evaluation, "evaluate_digits", fake("digits"))
    monkeypatch.setattr(evaluation, "evaluate_shapes", fake("shapes"))
    cfg = ImageEvaluateConfig(
        num_samples=3, sampler="euler", steps=4, guidance=1.5, holdout=("red",), seed=2, device="cpu"
    )
    metrics = evaluate(tiny_pipe(), cfg)
    assert metrics == {"score": 1.0, "num_images": 6.0} and all(
        isinstance(v, float) for v in metrics.values()
    )
    assert calls == [("digits", 3, "euler", 4, 1.5, 2, {})]
    text = tiny_pipe()
    text.num_classes, text.text_encoder = 0, object()  # what evaluate looks at: a text-conditioned pipeline
    evaluate(text, cfg)
    assert calls[-1] == ("shapes", 3, "euler", 4, 1.5, 2, {"holdout": ("red",)})
    text.text_encoder = None
    with pytest.raises(ValueError, match="unconditional"):
        evaluate(text, cfg)


@pytest.mark.slow
def test_latent_class_training_end_to_end(tmp_path):
    cfg = ImageTrainConfig(
        model=ImageModelConfig(backbone="unet", width=16, depth=1, heads=2, channel_mult=(1,), attention_levels=()),
        data=ImageDataConfig(dataset="digits", image_size=16), latent=True, autoencoder_steps=2, batch_size=16,
        objective="eps", train=_steps(2, tmp_path / "run"),
    )  # fmt: skip
    cfg.autoencoder.base_channels = 8
    pipe = train(cfg)
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["config"]["latent"] is True
    assert pipe.autoencoder is not None and pipe.sample_shape == (4, 4, 4) and pipe.image_shape == (1, 16, 16)
    back = ImagePipeline.from_pretrained(tmp_path / "run" / "pipeline")
    g = torch.Generator().manual_seed(0)
    a = back.sample(3, steps=2, guidance=2.0, generator=g)
    assert a.shape == (3, 1, 16, 16)
    assert back.autoencoder.config.scaling_factor == pipe.autoencoder.config.scaling_factor != 1.0


@pytest.mark.slow
def test_text_to_image_training_end_to_end(tmp_path):
    cfg = ImageTrainConfig(
        model=ImageModelConfig(backbone="mmdit", conditioning="text", width=32, depth=2, heads=2, patch_size=4,
                               text_width=16, text_layers=1, text_heads=2, text_max_length=24),
        data=ImageDataConfig(dataset="shapes", image_size=16, shapes_length=32), batch_size=8,
        objective="rectified_flow", train=_steps(2, tmp_path / "run"),
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


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_verbs_run_on_the_configured_cuda_device(tmp_path):
    pipe = tiny_pipe()
    pipe.save_pretrained(tmp_path / "p")
    cfg = ImageSampleConfig(num_samples=4, steps=3, labels=(2,), seed=5, device="cuda")
    out = sample(pipe, cfg)  # moves the pipeline to the GPU; the noise is drawn there
    assert out.device.type == "cuda" and pipe.device.type == "cuda"
    back = ImagePipeline.from_pretrained(tmp_path / "p", device="cuda")
    ref = back.sample(4, steps=3, guidance=2.0, y=[2], generator=make_generator(5, "cuda"))
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match="generator"):  # CPU noise would not match CUDA noise
        sample(back, cfg, generator=make_generator(5, "cpu"))


def test_quantized_sampling_uses_a_quantised_copy_and_leaves_the_pipeline_as_it_was():
    pytest.importorskip("torchao")
    from diffcore.precision.float8 import KEEP_IN_BF16
    from diffcore.precision.quantize import quantize_weights
    from torch import nn

    pipe = tiny_pipe()
    before = {k: v.clone() for k, v in pipe.model.state_dict().items()}
    cfg = ImageSampleConfig(num_samples=4, sampler="ddim", steps=3, guidance=2.0, seed=3, device="cpu")
    plain = sample(pipe, cfg)
    quantized = sample(pipe, replace(cfg, quantize="int8-weight"))
    # The same as sampling a pipeline whose backbone was quantised by hand with the core's function.
    by_hand = ImagePipeline(quantize_weights(copy.deepcopy(pipe.model), "int8-weight", keep=KEEP_IN_BF16),
                            "vp-cosine", "v", num_classes=10)  # fmt: skip
    torch.testing.assert_close(quantized, sample(by_hand, cfg), rtol=0, atol=0)
    distance = ((quantized - plain).norm() / plain.norm()).item()
    assert 1e-5 < distance < 0.05  # int8 per-channel rounding moves the images, a little
    linears = {n: m for n, m in pipe.model.named_modules() if isinstance(m, nn.Linear)}
    assert all(type(m.weight) is nn.Parameter for m in linears.values())  # the original is untouched
    assert all(torch.equal(v, before[k]) for k, v in pipe.model.state_dict().items())
    twin = pipe.quantized("int8-weight")
    kept = [
        n
        for n, m in twin.model.named_modules()
        if isinstance(m, nn.Linear) and type(m.weight) is nn.Parameter
    ]
    assert kept and all(
        any(f in n for f in KEEP_IN_BF16) for n in kept
    )  # only the named layers stay in float
    with pytest.raises(
        ValueError, match=r"save_pretrained: this pipeline's weights are quantised for sampling"
    ):
        twin.save_pretrained("unused")
    with pytest.raises(ValueError, match=r"quantize: expected one of \('none', 'int8'"):
        ImageSampleConfig(quantize="int4")
