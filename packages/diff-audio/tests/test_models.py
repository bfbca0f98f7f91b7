"""The VAE and the latent DiT: shapes, the paper's formulas, stable training, conditioning that matters."""

import math

import pytest
import torch
from diff_audio.config import AudioVAEConfig
from diff_audio.data import SyntheticMusic
from diff_audio.models import (
    AudioDiT,
    AudioDiTConfig,
    AudioVAE,
    AudioVAEModelConfig,
    Snake,
    VAEObjective,
    build_vocabulary,
)
from diff_audio.models.vae import kl_divergence, multi_resolution_stft_loss
from diffcore.rng import seeded
from diffcore.training import TrainConfig, Trainer
from diffcore.training.trainer import NonFiniteLossError

TINY_VAE = dict(channels=8, channel_mults=(1, 2), strides=(2, 4), latent_dim=4, fft_sizes=(256, 128, 64))


def tiny_vae(**kw):
    with seeded(0):
        return AudioVAE(AudioVAEModelConfig(**{**TINY_VAE, **kw}))


def test_snake_is_x_plus_sin_squared_over_alpha():
    snake = Snake(2)
    with torch.no_grad():
        snake.log_alpha[0, 1, 0] = math.log(3.0)
    x = torch.linspace(-2, 2, 5).expand(1, 2, 5)
    want = torch.stack([x[0, 0] + torch.sin(x[0, 0]) ** 2, x[0, 1] + torch.sin(3 * x[0, 1]) ** 2 / 3])
    assert torch.allclose(snake(x)[0], want, atol=1e-6)


def test_vae_shapes_hop_and_compression():
    vae = tiny_vae(audio_channels=2)
    assert vae.hop == 8 and vae.compression == 2 * 8 / 4
    x = torch.randn(3, 2, 512) * 0.1
    z = vae.encode(x)
    assert z.shape == (3, 4, 64) and vae.decode(z).shape == x.shape
    with pytest.raises(ValueError, match="multiple of the VAE's hop 8"):
        vae.encode(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match=r"\(B, 2, samples\)"):
        vae.encode(torch.zeros(1, 1, 512))


def test_kl_and_stft_loss_are_zero_at_their_optimum():
    assert kl_divergence(torch.zeros(4), torch.ones(4)) == 0
    assert kl_divergence(torch.ones(4), torch.ones(4)) == pytest.approx(0.5)
    x = torch.randn(2, 1, 1024, generator=torch.Generator().manual_seed(0))
    assert multi_resolution_stft_loss(x, x, (256, 64)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="fft_sizes"):
        multi_resolution_stft_loss(x[..., :32], x[..., :32], (256,))


def test_fit_scaling_gives_unit_variance_latents():
    vae = tiny_vae()
    audio = SyntheticMusic(length=16, clip_seconds=0.128, min_seconds=0.1)
    x = torch.stack([audio[i]["audio"] for i in range(16)])
    vae.fit_scaling(x)
    z = vae.encode(x)
    assert z.mean().item() == pytest.approx(0.0, abs=1e-4) and z.std().item() == pytest.approx(1.0, rel=1e-3)


def test_vae_training_stays_finite_and_reconstruction_error_drops(tmp_path):
    ds = SyntheticMusic(length=16, clip_seconds=0.128, min_seconds=0.1)
    x = torch.stack([ds[i]["audio"] for i in range(16)])
    vae = tiny_vae()
    objective = VAEObjective(fft_sizes=TINY_VAE["fft_sizes"])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=8, shuffle=True)

    def loss_of(model):
        with torch.no_grad():
            return float(objective(model, x, generator=torch.Generator().manual_seed(1))[0])

    before = loss_of(vae)
    cfg = TrainConfig(steps=30, lr=3e-3, ema_decay=None, output_dir=str(tmp_path), device="cpu", log_every=10,
                      checkpoint_every=None, tensorboard=False, progress_bar=False)  # fmt: skip
    trainer = Trainer(vae, lambda m, b, generator=None: objective(m, b[0], generator), loader, cfg)
    trainer.fit()
    after = loss_of(trainer.unwrapped_model)
    assert math.isfinite(after) and after < 0.8 * before


def test_a_nan_batch_stops_vae_training_naming_the_step(tmp_path):
    x = torch.zeros(4, 1, 256)
    x[:, :, 10] = float("nan")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)
    objective = VAEObjective(fft_sizes=(64,))
    cfg = TrainConfig(steps=3, ema_decay=None, output_dir=str(tmp_path), device="cpu", checkpoint_every=None,
                      tensorboard=False, progress_bar=False)  # fmt: skip
    trainer = Trainer(tiny_vae(), lambda m, b, generator=None: objective(m, b[0], generator), loader, cfg)
    with pytest.raises(NonFiniteLossError, match="step 1"):
        trainer.fit()


def tiny_dit(**kw):
    vocab = build_vocabulary(["an organ plays C4", "a plucked string plays E4"])
    cfg = AudioDiTConfig(latent_dim=4, latent_length=16, width=32, depth=2, heads=2, patch_size=2, text_width=16,
                         text_layers=1, text_heads=2, text_max_length=8, max_seconds=1.0, vocabulary=vocab, **kw)  # fmt: skip
    with seeded(0):
        return AudioDiT(cfg)


def test_dit_starts_at_zero_and_tokenizes_words_with_unknowns_and_padding():
    dit = tiny_dit()
    ids = dit.tokenize(["An organ plays C4.", "a kazoo plays C4"])
    vocab = dit.config.vocabulary
    assert [vocab[i] for i in ids[0, :4]] == ["an", "organ", "plays", "c4"] and ids[0, 4:].eq(0).all()
    assert ids[1, 1] == 1  # <unk>
    out = dit(torch.randn(2, 4, 16), torch.rand(2), ids, torch.zeros(2), torch.ones(2))
    assert out.shape == (2, 4, 16) and out.abs().max() == 0  # adaLN-Zero
    with pytest.raises(ValueError, match="text_max_length=8"):
        dit.tokenize(["one two three four five six seven eight nine"])


def test_dit_output_depends_on_caption_and_timing_and_runs_any_length():
    dit = tiny_dit()
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    x, t = torch.randn(1, 4, 16), torch.tensor([0.5])
    ids = dit.tokenize(["an organ plays C4"])
    base = dit(x, t, ids, torch.zeros(1), torch.tensor([0.5]))
    assert not torch.allclose(base, dit(x, t, ids, torch.zeros(1), torch.tensor([0.9])))
    assert not torch.allclose(
        base, dit(x, t, dit.tokenize(["a plucked string plays E4"]), torch.zeros(1), torch.tensor([0.5]))
    )
    null = dit(x, t, torch.zeros_like(ids), torch.zeros(1), torch.tensor([0.5]))  # the CFG null caption
    assert torch.isfinite(null).all() and not torch.allclose(base, null)
    assert dit(torch.randn(1, 4, 40), t, ids, torch.zeros(1), torch.ones(1)).shape == (1, 4, 40)


def test_vae_config_refuses_mismatched_strides():
    with pytest.raises(ValueError, match="channel_mults, strides"):
        AudioVAEConfig(channel_mults=(1, 2), strides=(2,))
