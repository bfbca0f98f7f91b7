"""``diffuse image stream`` and :func:`diff_image.pipeline.streaming.stream_frames` at tiny size on the CPU."""

from __future__ import annotations

import json

import pytest
import torch
from diff_image.cli import app
from diff_image.config import ImageStreamConfig
from diff_image.io import save_images
from diff_image.pipeline import ImagePipeline
from diff_image.pipeline.streaming import read_source, stream_frames, synthetic_scene
from diffcore.nn import UNet, UNetConfig
from diffcore.sampling import sample
from typer.testing import CliRunner

runner = CliRunner()


def _pipeline(tmp_path):
    torch.manual_seed(0)  # test-local: module initialisation
    net = UNet(UNetConfig(in_channels=3, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                          attention_levels=(), num_groups=4))  # fmt: skip
    with torch.no_grad():
        net.out[-1].weight.normal_(0, 0.05)  # the zero-initialised output conv, so the network does something
    pipe = ImagePipeline(net, "rectified-flow", "velocity", sample_shape=(3, 16, 16))
    pipe.save_pretrained(tmp_path / "pipe")
    return pipe


def test_img2img_stream_of_a_folder_equals_the_sampler_frame_by_frame(tmp_path):
    pipe = _pipeline(tmp_path)
    frames = synthetic_scene(5, (3, 16, 16))
    save_images(frames, tmp_path / "frames")
    config = ImageStreamConfig(source=str(tmp_path / "frames"), t_index_list=(20, 35), num_steps=50,
                               device="cpu", seed=3)  # fmt: skip
    outputs, inputs, stats = stream_frames(pipe, config)
    assert outputs.shape == (5, 3, 16, 16) and stats["frames"] == 5
    torch.testing.assert_close(inputs, read_source(str(tmp_path / "frames"), 0, (3, 16, 16)))
    g = torch.Generator().manual_seed(3)
    noise = torch.randn((1, 3, 16, 16), generator=g)  # the stream's fixed entry noise (ddim: no other draw)
    grid = torch.tensor([*stats["times"], 0.0], dtype=torch.float64)
    for k in range(5):
        ref = sample(pipe.denoiser(pipe.network), noise, "ddim", grid=grid, x_start=inputs[k : k + 1])
        torch.testing.assert_close(outputs[k : k + 1], ref.clamp(-1, 1), atol=1e-5, rtol=1e-5)


def test_cli_streams_a_synthetic_scene_and_txt2img_and_names_a_missing_source(tmp_path):
    _pipeline(tmp_path)
    out = tmp_path / "run"
    result = runner.invoke(app, ["stream", "--pipeline", str(tmp_path / "pipe"), "--out", str(out), "-n", "4",
                                 "--format", "gif", "--device", "cpu", "--similarity-filter"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "stream.gif").is_file() and (out / "input.gif").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"] == 4
    result = runner.invoke(app, ["stream", "--pipeline", str(tmp_path / "pipe"), "--out", str(out / "t"),
                                 "--mode", "txt2img", "--t-index", "0", "--num-steps", "1", "-n", "3",
                                 "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert any((out / "t").glob("stream.*"))
    result = runner.invoke(app, ["stream", "--pipeline", str(tmp_path / "pipe"), "--out", str(out / "x"),
                                 "--source", str(tmp_path / "nothing"), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 2 and "error: source: expected a folder of images" in result.output


def test_a_video_source_without_diff_video_says_so(tmp_path, monkeypatch):
    import sys

    (tmp_path / "clip.mp4").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "diff_video.data.decode", None)  # as if diff-video were not installed
    with pytest.raises(ImportError, match=r"source: reading the video .* needs diff-video"):
        read_source(str(tmp_path / "clip.mp4"), 0, (3, 16, 16))


def test_bad_stream_settings_name_the_parameter():
    with pytest.raises(ValueError, match="mode: expected one of"):
        ImageStreamConfig(mode="video")
    with pytest.raises(ValueError, match="num_frames: a txt2img stream"):
        ImageStreamConfig(mode="txt2img", num_frames=0)


def _control_pipeline(tmp_path):
    from diff_image.pipeline.control import make_controlnet

    pipe = _pipeline(tmp_path)
    g = torch.Generator().manual_seed(4)
    nets = {kind: make_controlnet(pipe.model, kind) for kind in ("edges", "segmentation")}
    for net in nets.values():  # the zero-initialised outputs, so that control changes the frames
        for p in net.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.1
    control = ImagePipeline(
        pipe.model, "rectified-flow", "velocity", sample_shape=(3, 16, 16), controlnets=nets
    )
    control.save_pretrained(tmp_path / "control")
    return control


def test_controlnet_stream_equals_the_controlled_sampler_on_each_frame_with_its_own_map(tmp_path):
    from diff_image.data import ShapesConfig, ShapesDataset
    from diff_image.pipeline.control import control_maps, set_control_scales

    pipe = _control_pipeline(tmp_path)
    scenes = ShapesDataset(4, seed=2, split="all", config=ShapesConfig(image_size=16),
                           controls=("edges", "segmentation"))  # fmt: skip
    frames = torch.stack([scenes[i]["image"] for i in range(4)])
    save_images(frames, tmp_path / "frames")
    config = ImageStreamConfig(source=str(tmp_path / "frames"), t_index_list=(20, 35), num_steps=50,
                               control=("segmentation",), control_scale=(0.7,), device="cpu", seed=3)  # fmt: skip
    outputs, inputs, stats = stream_frames(pipe, config)
    assert stats["control"] == "edges=0,segmentation=0.7"
    noise = torch.randn((1, 3, 16, 16), generator=torch.Generator().manual_seed(3))
    grid = torch.tensor([*stats["times"], 0.0], dtype=torch.float64)
    network = pipe.network
    set_control_scales(network, [0.0, 0.7])  # edges off, segmentation at 0.7
    den = pipe.denoiser(network)
    for k in range(4):  # the maps of the scene each frame shows, from the data set (not from the pixels)
        maps = control_maps(scenes[k], ["edges", "segmentation"])[None]
        ref = sample(den, noise, "ddim", grid=grid, x_start=inputs[k : k + 1], cond={"control_maps": maps})
        torch.testing.assert_close(outputs[k : k + 1], ref.clamp(-1, 1), atol=1e-5, rtol=1e-5)
        assert maps[:, 1:].sum() > 0  # each scene has objects for the ControlNet to see
    plain = sample(den, noise, "ddim", grid=grid, x_start=inputs[:1])
    assert (outputs[:1] - plain.clamp(-1, 1)).abs().max() > 1e-3  # the control changed the frame


def test_cli_streams_with_a_controlnet_and_names_a_missing_one(tmp_path):
    from diff_image.data import ShapesConfig, ShapesDataset

    _control_pipeline(tmp_path)
    scenes = ShapesDataset(3, seed=5, split="all", config=ShapesConfig(image_size=16))
    save_images(torch.stack([scenes[i]["image"] for i in range(3)]), tmp_path / "frames")
    out = tmp_path / "run"
    args = ["stream", "--pipeline", str(tmp_path / "control"), "--source", str(tmp_path / "frames"),
            "--format", "gif", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, [*args, "--out", str(out), "--control", "edges", "--control-scale", "0.5"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["frames"] == 3
    result = runner.invoke(app, [*args, "--out", str(out / "x"), "--control", "boxes"])
    assert (
        result.exit_code == 2
        and "error: control: expected some of the pipeline's ControlNets" in result.output
    )


@pytest.mark.parametrize("size", [16, 32])
def test_control_maps_read_from_a_shapes_render_are_the_data_sets_own(size):
    from diff_image.data import ShapesConfig, ShapesDataset
    from diff_image.pipeline.control import control_maps, control_maps_from_images

    kinds = ["edges", "segmentation", "boxes"]
    scenes = ShapesDataset(
        40, seed=7, split="all", config=ShapesConfig(image_size=size), controls=tuple(kinds)
    )
    items = [scenes[i] for i in range(40)]
    read = control_maps_from_images(torch.stack([it["image"] for it in items]), kinds)
    torch.testing.assert_close(read, torch.stack([control_maps(it, kinds) for it in items]), atol=0, rtol=0)
    blank = control_maps_from_images(-torch.ones(1, 3, size, size), kinds)  # black: background only
    assert blank[0, 0].sum() == 0 and blank[0, 1].eq(1).all() and blank[0, 6:].sum() == 0
