"""A tiny trained pipeline shared by the pipeline and CLI tests (a few steps: it checks the plumbing, the bench
checks quality)."""

import pytest
from diff_audio.config import AudioDataConfig, AudioModelConfig, AudioTrainConfig, AudioVAEConfig
from diffcore.training import TrainConfig


def tiny_config(out, **train):
    return AudioTrainConfig(
        data=AudioDataConfig(length=8, sample_rate=8000, clip_seconds=0.128, min_seconds=0.06),
        vae=AudioVAEConfig(channels=4, channel_mults=(1, 2), strides=(2, 4), latent_dim=4, fft_sizes=(128, 64)),
        model=AudioModelConfig(width=32, depth=1, heads=2, patch_size=2, text_width=16, text_layers=1, text_heads=2),
        vae_steps=2, batch_size=4,
        train=TrainConfig(**{"steps": 2, "output_dir": str(out), "device": "cpu", "ema_decay": None, "log_every": 1,
                             "checkpoint_every": None, "tensorboard": False, "progress_bar": False, **train}),
    )  # fmt: skip


@pytest.fixture
def make_config():
    """``make_config(out, **train_settings)`` -> a tiny :class:`AudioTrainConfig`."""
    return tiny_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    from diff_audio.pipeline import train

    out = tmp_path_factory.mktemp("audio") / "run"
    pipe = train(tiny_config(out))
    return out, pipe
