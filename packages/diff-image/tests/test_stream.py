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
