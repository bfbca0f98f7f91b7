"""Audio: a VAE-latent DiT that plays the instrument and note its caption names, with timing conditioning
(diff-audio, Stable Audio's recipe at toy size).

The default data are synthetic notes ("an organ plays C4") of known length. ``train`` fits a 1-D audio VAE,
then a DiT on its latents by rectified flow, conditioned on the caption and on ``seconds_start`` /
``seconds_total``; ``sample`` generates clips (written as WAV here, with a spectrogram grid); ``evaluate``
reports instrument accuracy (a classifier trained on real notes), pitch accuracy, FAD-local and timing error.

    uv run python examples/audio_notes.py                 # 1500 VAE + 1500 DiT steps, the quick bench's sizes
    uv run python examples/audio_notes.py --steps 40000   # towards the GPU benchmark (diffuse bench audio)
"""

import argparse
from pathlib import Path

from diff_audio import AudioEvaluateConfig, AudioSampleConfig, AudioTrainConfig, evaluate, sample, train
from diff_audio.config import AudioDataConfig, AudioModelConfig, AudioVAEConfig
from diff_audio.io import save_spectrogram_grid, write_audio
from diffcore.training import TrainConfig

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=1500)
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/audio_notes"))
args = parser.parse_args()
steps, vae_steps, length = (3, 3, 16) if args.smoke else (args.steps, args.steps, 768)

config = AudioTrainConfig(
    data=AudioDataConfig(length=length, sample_rate=8000, clip_seconds=0.512, min_seconds=0.25),
    vae=AudioVAEConfig(channels=8, channel_mults=(1, 2), strides=(4, 4), latent_dim=16, fft_sizes=(512, 256, 128, 64)),
    model=AudioModelConfig(width=64, depth=3, heads=2, patch_size=4, text_width=32),
    vae_steps=vae_steps, vae_lr=2e-3, batch_size=16,
    train=TrainConfig(steps=steps, lr=2e-3, warmup_steps=min(10, steps // 2), ema_decay=None, device="cpu",
                      output_dir=str(args.out / "run"), progress_bar=False, tensorboard=False),
)  # fmt: skip
pipe = train(config)
prompts = ("an organ plays C4", "a plucked string plays G4", "an FM bell plays E5")
clips = sample(pipe, AudioSampleConfig(prompts=prompts, num_samples=3, seconds_total=0.4, steps=16, guidance=3.0,
                                       device="cpu"))  # fmt: skip
args.out.mkdir(parents=True, exist_ok=True)
for i, clip in enumerate(clips):  # (channels, samples) in [-1, 1]
    write_audio(args.out / f"sample_{i}.wav", clip, pipe.sample_rate)
save_spectrogram_grid(clips, args.out / "spectrograms.png", pipe.sample_rate, ncol=3)
small = dict(num_samples=6, classifier_steps=5, reference_samples=8) if args.smoke else dict(num_samples=48)
metrics = evaluate(pipe, AudioEvaluateConfig(steps=16, device="cpu", **small))
print({k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
