"""The causal 3D VAE: latent sizes, causality in time, an image as a 1-frame video, training through the
pipeline, reconstruction measured by PSNR."""

import pytest
import torch
from diff_video.config import VaeConfig, VideoDataConfig, VideoModelConfig, VideoTrainConfig
from diff_video.data.shapes import ShapesConfig
from diff_video.models.vae import CausalVAE, CausalVAEConfig
from diff_video.pipeline import train
from diffcore.rng import seeded
from diffcore.training import TrainConfig


def _vae():
    with seeded(0):
        return CausalVAE(CausalVAEConfig(channels=16, temporal_downsample=4, spatial_downsample=4)).eval()


def test_latents_compress_four_times_in_time_and_space_and_decode_back_to_the_clip_size():
    vae = _vae()
    x = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    z = vae.encode(x)
    assert z.shape == (2, 4, 3, 4, 4) == (2, *vae.latent_shape((3, 9, 16, 16)))
    assert vae.decode(z).shape == x.shape and vae.decoded_frames(3) == 9
    assert vae.encode(x[:, :, :1]).shape == (2, 4, 1, 4, 4)  # an image is a 1-frame video
    with pytest.raises(ValueError, match="frames - 1 must be divisible by 4"):
        vae.encode(torch.zeros(1, 3, 8, 16, 16))


def test_the_encoder_and_decoder_are_causal_in_time():
    vae = _vae()
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    y = x.clone()
    y[:, :, 5:] = torch.rand(1, 3, 4, 16, 16)  # change frames 5.. : latent frames 0 and 1 (pixels 0..4) keep
    torch.testing.assert_close(vae.encode(x)[:, :, :2], vae.encode(y)[:, :, :2])
    z = vae.encode(x)
    z2 = z.clone()
    z2[:, :, 2] += 1.0
    torch.testing.assert_close(
        vae.decode(z)[:, :, :5], vae.decode(z2)[:, :, :5]
    )  # frames <= 4 from latents 0, 1
    assert vae.encode(x[:, :, :1]).allclose(vae.encode(x)[:, :, :1], atol=1e-5)  # frame 0 is encoded alone


@pytest.mark.slow
def test_a_latent_pipeline_trains_the_vae_first_and_samples_clips_of_the_pixel_size(tmp_path):
    shapes = ShapesConfig(
        frames=5, height=16, width=16, num_objects=(1,), events=(), shapes=("square",), length=32
    )
    cfg = VideoTrainConfig(
        model=VideoModelConfig(
            width=24, depth=2, heads=4, patch_size=(1, 2, 2), text_width=16, text_layers=1, text_heads=2
        ),
        vae=VaeConfig(enabled=True, channels=16, steps=2),
        data=VideoDataConfig(shapes=shapes),
        batch_size=4,
        train=TrainConfig(
            output_dir=str(tmp_path / "run"), steps=2, ema_decay=None, device="cpu", progress_bar=False
        ),
    )
    pipe = train(cfg)
    assert pipe.model_shape(5) == (4, 2, 4, 4) and pipe.vae.config.scale != 1.0
    clips = pipe.generate(2, prompts=["a red square moves left"], steps=2)
    assert clips.shape == (2, 3, 5, 16, 16)
    first = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    i2v = pipe.image_to_video(first, ["a red square moves left"], steps=2)
    assert i2v.shape == (1, 3, 5, 16, 16)
