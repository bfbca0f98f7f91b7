"""The training-time caption-adherence probe and the pass-through of pre-tokenised batches."""

from __future__ import annotations

from dataclasses import replace

import torch
from diff_image.config import ImageDataConfig, ImageModelConfig, ImageTrainConfig
from diff_image.pipeline import PreparedObjective, ShapesAdherenceProbe, train


def test_probe_records_adherence_at_the_chosen_steps_and_restores_train_mode(tmp_path) -> None:
    cfg = ImageTrainConfig(
        model=ImageModelConfig(backbone="mmdit", conditioning="text", width=32, depth=1, heads=2, patch_size=4,
                               text_width=16, text_layers=1, text_heads=2, text_max_length=24),
        data=ImageDataConfig(dataset="shapes", image_size=16, shapes_length=16, render_workers=0),
        batch_size=4, objective="rectified_flow",
        train=replace(ImageTrainConfig().train, steps=3, warmup_steps=2, ema_decay=None,
                      output_dir=str(tmp_path / "run"), device="cpu"),
    )  # fmt: skip
    probe = ShapesAdherenceProbe([1, 3], "rectified-flow", "velocity", (3, 16, 16), num_per_kind=2, steps=2)
    modes = []

    class Spy(ShapesAdherenceProbe):  # a second probe that checks the model trains again after the first
        def on_step_end(self, trainer, step):
            modes.append(trainer.unwrapped_model.training)

    train(cfg, save=False, callbacks=[probe, Spy([1], "rectified-flow", "velocity", (3, 16, 16))])
    assert [r["step"] for r in probe.history] == [1.0, 3.0]
    for record in probe.history:
        for key in ("adherence_one_object", "adherence_two_object", "adherence", "colours_found_one_object"):
            assert 0.0 <= record[key] <= 1.0
        assert record["adherence"] == 0.5 * (record["adherence_one_object"] + record["adherence_two_object"])
    assert modes == [True, True, True]


def test_prepared_objective_keeps_given_input_ids() -> None:
    seen = {}

    def inner(model, batch, generator=None):
        seen.update(batch)
        return torch.zeros(())

    def tokenize(captions, device):
        raise AssertionError("a batch with input_ids must not be tokenised again")

    ids = torch.arange(6).reshape(2, 3)
    PreparedObjective(inner, tokenize=tokenize)(None, {"x": torch.zeros(2, 3, 4, 4), "input_ids": ids})
    assert torch.equal(seen["input_ids"], ids)


def test_colours_found_is_true_on_renders_and_false_on_blank_images() -> None:
    from diff_image.data.shapes import ShapesConfig
    from diff_image.data.shapes_render import render_shapes
    from diff_image.metrics import caption_adherence
    from diff_image.pipeline.evaluation import _colours_found

    scenes = render_shapes(12, seed=4, config=ShapesConfig(image_size=16), workers=0)
    real = caption_adherence(scenes.images.float() / 127.5 - 1.0, scenes.captions)
    blank = caption_adherence(-torch.ones(12, 3, 16, 16), scenes.captions)
    assert all(_colours_found(r) for r in real.results)
    assert not any(_colours_found(r) for r in blank.results)
