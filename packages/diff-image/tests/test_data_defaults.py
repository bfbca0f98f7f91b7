"""Defaults that fit the data (issue #23): conditioning and image size from the data set, one note per choice,
one-line errors where a setting contradicts the data; guidance that fits the model; short runs and reruns."""

import json

import pytest
import torch
from diff_image.cli import app
from diff_image.config import (
    DEFAULT_GUIDANCE,
    ImageDataConfig,
    ImageModelConfig,
    ImageSampleConfig,
    ImageTrainConfig,
)
from diff_image.models import build_backbone, resolve_model
from diff_image.pipeline import ImagePipeline, sample, train
from diff_image.pipeline.datasets import build_training_data
from diff_image.pipeline.training import resolve_config
from diffcore.config import load_config
from diffcore.rng import make_generator
from PIL import Image
from typer.testing import CliRunner

runner = CliRunner()


def _png(path, size=(8, 8), colour=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _folder(tmp_path, conditioning="auto", image_size=0, backbone="auto"):
    return ImageTrainConfig(
        model=ImageModelConfig(backbone=backbone, conditioning=conditioning),
        data=ImageDataConfig(dataset="folder", path=str(tmp_path), image_size=image_size),
    )


def test_the_defaults_say_auto_and_zero():
    cfg = ImageTrainConfig()
    assert (cfg.model.conditioning, cfg.model.backbone, cfg.data.image_size) == ("auto", "auto", 0)
    with pytest.raises(ValueError, match="image_size"):
        ImageDataConfig(image_size=-1)
    with pytest.raises(ValueError, match="backbone"):
        ImageModelConfig(backbone="dit", conditioning="text")


def test_a_flat_folder_is_unconditional_at_its_images_size(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", (12, 12))
    data = build_training_data(_folder(tmp_path))
    assert data.conditioning == "none" and data.num_classes == 0 and data.image_shape == (3, 12, 12)
    assert data.notes == [
        f"conditioning: none (3 images directly in {tmp_path}, no class sub-folders or metadata.jsonl)",
        f"image size: 12 px (all 3 images of {tmp_path} are 12x12)",
    ]
    assert data.dataset[0]["x"].shape == (3, 12, 12)
    cfg = resolve_config(_folder(tmp_path), data)
    assert (cfg.model.conditioning, cfg.model.backbone, cfg.data.image_size) == ("none", "dit", 12)
    with pytest.raises(
        ValueError, match=r"^conditioning: 'class' needs class sub-folders .* --conditioning none"
    ):
        build_training_data(_folder(tmp_path, conditioning="class"))
    with pytest.raises(ValueError, match=r"^conditioning: 'text' needs captions"):
        build_training_data(_folder(tmp_path, conditioning="text", backbone="mmdit"))


def test_class_sub_folders_give_class_conditioning(tmp_path):
    _png(tmp_path / "cats" / "a.png")
    _png(tmp_path / "dogs" / "b.png")
    _png(tmp_path / "dogs" / "c.png")
    data = build_training_data(_folder(tmp_path))
    assert data.conditioning == "class" and data.num_classes == 2
    assert data.notes[0] == f"conditioning: class (2 class sub-folders of {tmp_path}: cats, dogs)"
    assert [data.dataset[i]["y"] for i in range(3)] == [0, 1, 1]
    none = build_training_data(
        _folder(tmp_path, conditioning="none")
    )  # an explicit choice is kept, not noted
    assert none.conditioning == "none" and none.num_classes == 0 and "y" not in none.dataset[0]
    assert not any(n.startswith("conditioning") for n in none.notes)
    with pytest.raises(ValueError, match=r"^conditioning: 'text' needs captions"):
        build_training_data(_folder(tmp_path, conditioning="text", backbone="unet"))
    _png(tmp_path / "stray.png")  # an image outside the class folders would be left out: said, not dropped
    with pytest.raises(ValueError, match=r"^path: .* 1 images directly in it \(stray.png\)"):
        build_training_data(_folder(tmp_path))


def test_one_class_folder_is_unconditional_and_class_is_refused(tmp_path):
    _png(tmp_path / "photos" / "a.png")
    data = build_training_data(_folder(tmp_path))
    assert data.conditioning == "none" and "a single class" in data.notes[0]
    with pytest.raises(ValueError, match=r"^conditioning: 'class' needs >= 2 class sub-folders .* found 1"):
        build_training_data(_folder(tmp_path, conditioning="class"))


def test_captions_give_text_conditioning_and_an_mmdit(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    _png(tmp_path / "unlisted.png")
    lines = [{"file_name": "a.png", "text": "a red square"}, {"file_name": "b.png", "text": "a blue square"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    data = build_training_data(_folder(tmp_path))
    assert data.conditioning == "text" and data.captions == ["a red square", "a blue square"]
    assert data.notes[0] == (
        f"data: 1 images under {tmp_path} are not listed in metadata.jsonl and are left out (unlisted.png)"
    )
    assert data.notes[1].startswith("conditioning: text (captions of 2 images in")
    assert resolve_config(_folder(tmp_path), data).model.backbone == "mmdit"
    with pytest.raises(ValueError, match=r"^backbone: 'dit' has no text input"):
        build_training_data(_folder(tmp_path, backbone="dit"))
    with pytest.raises(ValueError, match=r"^conditioning: 'class' needs class sub-folders"):
        build_training_data(_folder(tmp_path, conditioning="class"))


def test_mixed_sizes_name_two_files_unless_a_size_is_given(tmp_path):
    flat = tmp_path / "flat"
    _png(flat / "a.png", (16, 16))
    _png(flat / "b.png", (16, 16))
    _png(flat / "c.png", (20, 12))
    with pytest.raises(
        ValueError, match=r"^image_size: .* \(a.png is 16x16, c.png is 20x12\); pass --image-size"
    ):
        build_training_data(_folder(flat))
    data = build_training_data(_folder(flat, image_size=8))
    assert data.image_shape == (3, 8, 8) and all(data.dataset[i]["x"].shape == (3, 8, 8) for i in range(3))
    assert data.notes[-1] == (
        "image size: 8 px (image_size); 3 of 3 images (16x16, 20x12) resized, shorter side to 8, and "
        "centre-cropped to 8x8"
    )
    same = build_training_data(_folder(flat, image_size=16))  # only the odd one is resized
    assert "1 of 3 images (20x12) resized" in same.notes[-1]
    nested = tmp_path / "nested"  # files are named by their path under the folder
    _png(nested / "cats" / "a.png", (16, 16))
    _png(nested / "dogs" / "b.png", (16, 16))
    _png(nested / "dogs" / "more" / "b.png", (24, 24))
    with pytest.raises(ValueError, match=r"\(cats/a.png is 16x16, dogs/more/b.png is 24x24\)"):
        build_training_data(_folder(nested))


def test_non_square_images_need_a_size(tmp_path):
    _png(tmp_path / "a.png", (16, 8))
    with pytest.raises(ValueError, match=r"^image_size: .* are 16x8, not square"):
        build_training_data(_folder(tmp_path))
    assert build_training_data(_folder(tmp_path, image_size=8)).image_shape == (3, 8, 8)


def test_digits_and_shapes_keep_their_behaviour():
    digits = build_training_data(ImageTrainConfig())
    assert (digits.conditioning, digits.image_shape, digits.num_classes) == ("class", (1, 8, 8), 10)
    assert digits.notes == [
        "image size: 8 px (the digits' own size)",
        "conditioning: class (the digits' 10 classes)",
    ]
    shapes_cfg = ImageTrainConfig(data=ImageDataConfig(dataset="shapes", shapes_length=4, cache=False))
    shapes = build_training_data(shapes_cfg)
    assert (shapes.conditioning, shapes.image_shape) == ("text", (3, 32, 32)) and shapes.captions
    assert resolve_config(shapes_cfg, shapes).model.backbone == "mmdit"
    with pytest.raises(ValueError, match=r"^conditioning: the shapes data set has captions"):
        build_training_data(
            ImageTrainConfig(model=ImageModelConfig(conditioning="class"), data=shapes_cfg.data)
        )


def test_build_backbone_resolves_auto_from_its_arguments():
    cfg = ImageModelConfig(width=16, depth=1, heads=2)
    assert build_backbone(cfg, (1, 8, 8), num_classes=3).config.num_classes == 3
    assert build_backbone(cfg, (1, 8, 8)).config.num_classes == 0
    assert resolve_model(cfg, "text").backbone == "mmdit" and resolve_model(cfg, "class").backbone == "dit"
    with pytest.raises(ValueError, match=r"^conditioning: expected 'class' or 'auto'"):
        resolve_model(ImageModelConfig(conditioning="none"), "class")


def _tiny(num_classes: int) -> ImagePipeline:
    net = build_backbone(ImageModelConfig(width=16, depth=1, heads=2), (1, 8, 8), num_classes=num_classes)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(0))
    return ImagePipeline(net, "vp-cosine", "v", num_classes=num_classes)


def test_guidance_none_fits_the_model_and_guidance_on_an_unconditional_model_is_refused():
    cfg = ImageSampleConfig(num_samples=3, steps=2, device="cpu")
    assert cfg.guidance is None and DEFAULT_GUIDANCE == 2.0
    plain = _tiny(0)
    assert plain.resolve_guidance(None) == 1.0 and plain.resolve_guidance(1) == 1.0
    out = sample(plain, cfg)
    ref = plain.sample(3, steps=2, guidance=1.0, generator=make_generator(0))
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match=r"^guidance: this pipeline is unconditional .* got 2"):
        sample(plain, ImageSampleConfig(num_samples=3, steps=2, guidance=2.0, device="cpu"))
    labelled = _tiny(3)
    assert labelled.resolve_guidance(None) == DEFAULT_GUIDANCE and labelled.resolve_guidance(3) == 3.0
    torch.testing.assert_close(
        sample(labelled, cfg), labelled.sample(3, steps=2, guidance=2.0, generator=make_generator(0))
    )
    assert not torch.allclose(
        sample(labelled, cfg), labelled.sample(3, steps=2, guidance=1.0, generator=make_generator(0))
    )


def test_short_runs_keep_the_default_warmup_and_the_options_are_named():
    cfg = load_config(ImageTrainConfig, overrides=["train.steps=50"])  # refused before (warmup 100 >= 50)
    assert (cfg.train.steps, cfg.train.warmup_steps, cfg.train.ema_warmup) == (50, 10, True)
    with pytest.raises(
        ValueError, match=r"warmup_steps: must be < steps \(5\)"
    ):  # the option to set is named
        load_config(ImageTrainConfig, overrides=["train.steps=5"])
    text = runner.invoke(app, ["train", "--help"], terminal_width=200).output
    assert "--ema-decay" in text and "--resume" in text and "--image-size" in text


def test_a_used_run_folder_is_refused_before_anything_is_written(tmp_path):
    run = tmp_path / "run"
    (run / "pipeline").mkdir(parents=True)
    (run / "train_config.json").write_text("{}")
    cfg = ImageTrainConfig()
    cfg.train.output_dir = str(run)
    with pytest.raises(ValueError, match=r"^output_dir: .* continue it with --resume latest"):
        train(cfg)
    assert (run / "train_config.json").read_text() == "{}"  # the earlier run's settings are not overwritten
    r = runner.invoke(app, ["train", "--out", str(run), "--steps", "20", "--device", "cpu"])
    assert r.exit_code == 2 and "--resume latest" in r.output and len(r.output.strip().splitlines()) == 1


def test_an_undertrained_ema_is_one_warning_line_and_the_default_has_none(tmp_path):
    tiny = ["--dataset", "digits", "--steps", "12", "--device", "cpu", "--set", "model.width=16",
            "--set", "model.depth=1", "--set", "model.heads=2", "--batch-size", "16"]  # fmt: skip
    r = runner.invoke(app, ["train", *tiny, "--out", str(tmp_path / "a"), "--set", "train.ema_warmup=false"])
    assert r.exit_code == 0, r.output
    warned = [line for line in r.output.splitlines() if line.startswith("warning: ema:")]
    assert len(warned) == 1 and "98.8%" in warned[0]  # 0.999 ** 12 of the initialisation left
    r = runner.invoke(app, ["train", *tiny, "--out", str(tmp_path / "b")])
    assert r.exit_code == 0 and "warning" not in r.output, r.output
    assert "note: conditioning: class (the digits' 10 classes)" in r.output
