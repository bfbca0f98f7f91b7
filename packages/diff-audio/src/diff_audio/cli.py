"""``diffuse audio train | sample | evaluate | a2a``, registered through the entry point ``diffcore.modalities``,
and ``diffuse bench audio``.

Options come from the configuration dataclasses (:mod:`diff_audio.config`) through
:func:`diffcore.cli.options.config_command`, the same way in every modality: ``--device --seed --out --config
--set --debug`` (and ``--pipeline DIR`` on a saved pipeline), the settings users reach for most as named
options, every default and help line from the dataclass. Only typer, diffcore's command helpers and the
configurations are imported here; the rest when a command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_audio.bench import bench
from diff_audio.config import AudioA2AConfig, AudioEvaluateConfig, AudioSampleConfig, AudioTrainConfig

__all__ = ["app", "modality"]

DESCRIPTION = (
    "Audio diffusion (Stable Audio style): an Oobleck VAE and a timing- and text-conditioned latent DiT; "
    "synthetic music with known notes, offline metrics, audio-to-audio."
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_audio.pipeline:AudioPipeline"


@config_command(
    app,
    "train",
    AudioTrainConfig,
    options={
        "data.path": ("--data", "--data-path"),
        "data.kind": "--kind",
        "data.sample_rate": "--sample-rate",
        "data.channels": "--channels",
        "data.clip_seconds": "--clip-seconds",
        "vae_steps": "--vae-steps",
        "train.steps": "--steps",
        "batch_size": "--batch-size",
        "train.lr": "--lr",
        "train.resume": "--resume",
    },
)
def train_cmd(config: AudioTrainConfig, out: Path) -> None:
    """Train the VAE, then the latent DiT, on the synthetic music set (default) or a folder of audio
    (--data: metadata.jsonl captions or class sub-folders); write OUT/pipeline and the runs."""
    from diff_audio.pipeline.training import train

    pipe = train(config, notes=lambda line: typer.echo(f"note: {line}", err=True))
    typer.echo(
        f"pipeline: {out / 'pipeline'} ({pipe.sample_rate} Hz, {pipe.channels} channel(s), "
        f"VAE compression {pipe.vae.compression:g}x)"
    )
    typer.echo(f"next: diffuse audio sample --pipeline {out / 'pipeline'} --prompt 'an organ plays C4'")


@config_command(
    app,
    "sample",
    AudioSampleConfig,
    pipeline=PIPELINE,
    default_out="runs/audio-samples",
    options={
        "prompts": "--prompt",
        "num_samples": ("--num-samples", "-n"),
        "seconds_total": "--seconds-total",
        "duration": "--duration",
        "sampler": "--sampler",
        "steps": "--steps",
        "guidance": "--guidance",
        "trim": "--trim",
        "format": "--format",
    },
)
def sample_cmd(config: AudioSampleConfig, out: Path, pipeline: object) -> None:
    """Generate clips from a saved pipeline; write OUT/sample_<i>.wav (or .flac), OUT/spectrograms.png and
    OUT/captions.txt."""
    from diffcore.io import write_text

    from diff_audio.io import save_audio_batch, save_spectrogram_grid
    from diff_audio.pipeline import sample

    audio = sample(pipeline, config).cpu()  # type: ignore[arg-type]
    sr = pipeline.sample_rate  # type: ignore[attr-defined]
    if config.trim:
        total = config.seconds_total or pipeline.clip_seconds  # type: ignore[attr-defined]
        audio = audio[..., : round(total * sr)]
    paths = save_audio_batch(audio, out, sr, fmt=config.format)
    save_spectrogram_grid(audio[:16], out / "spectrograms.png", sr)
    prompts = list(config.prompts) or [""]
    captions = [prompts[i % len(prompts)] for i in range(len(audio))]
    write_text(out / "captions.txt", "".join(f"{p.name}\t{c}\n" for p, c in zip(paths, captions)))
    typer.echo(f"wrote {len(paths)} clips to {out}")


@config_command(
    app,
    "evaluate",
    AudioEvaluateConfig,
    pipeline=PIPELINE,
    default_out="runs/audio-eval",
    options={
        "num_samples": ("--num-samples", "-n"),
        "kind": "--kind",
        "sampler": "--sampler",
        "steps": "--steps",
        "guidance": "--guidance",
    },
)
def evaluate_cmd(config: AudioEvaluateConfig, out: Path, pipeline: object) -> None:
    """Generate from held-out synthetic captions and score: pitch, instrument and timing accuracy, FAD-local and
    its floor, structure / onsets, silence and clipping, VAE SI-SDR, audio-to-audio transfer. Writes
    OUT/metrics.json, OUT/spectrograms.png and a few clips."""
    from diff_audio.io import save_audio_batch, save_metrics_json, save_spectrogram_grid
    from diff_audio.pipeline import evaluate_and_sample

    metrics, samples, _ = evaluate_and_sample(pipeline, config)  # type: ignore[arg-type]
    sr = pipeline.sample_rate  # type: ignore[attr-defined]
    save_metrics_json(metrics, out / "metrics.json")
    save_spectrogram_grid(samples[:16], out / "spectrograms.png", sr)
    save_audio_batch(samples[:8], out / "clips", sr)
    for k, v in metrics.items():
        typer.echo(f"{k}: {v:.4f}")


@config_command(
    app,
    "a2a",
    AudioA2AConfig,
    pipeline=PIPELINE,
    default_out="runs/audio-a2a",
    options={
        "input": "--input",
        "prompts": "--prompt",
        "strength": "--strength",
        "steps": "--steps",
        "guidance": "--guidance",
        "format": "--format",
    },
)
def a2a_cmd(config: AudioA2AConfig, out: Path, pipeline: object) -> None:
    """Audio-to-audio (SDEdit in latent space): move --input towards --prompt at --strength (0 keeps the input,
    1 ignores it). The input must have the pipeline's sample rate and channel count; it is zero-padded to whole
    tokens and the output cut back to its length. Writes OUT/a2a_<i>.wav."""
    import torch
    from diffcore.cli.options import CommandError

    from diff_audio.io import read_audio, save_audio_batch
    from diff_audio.pipeline import audio_to_audio

    if not config.input:
        raise CommandError("input: pass the audio file to transform with --input")
    audio, rate = read_audio(config.input)
    pipe = pipeline
    if rate != pipe.sample_rate or audio.shape[0] != pipe.channels:  # type: ignore[attr-defined]
        raise CommandError(
            f"input: {config.input} is {rate} Hz with {audio.shape[0]} channel(s); the pipeline takes "
            f"{pipe.sample_rate} Hz with {pipe.channels}"  # type: ignore[attr-defined]
        )
    n = audio.shape[-1]
    padded = torch.nn.functional.pad(audio, (0, pipe.window_samples(n / rate) - n))  # type: ignore[attr-defined]
    prompts = list(config.prompts) or [""]
    batch = padded[None].expand(len(prompts), -1, -1)
    result = audio_to_audio(pipe, config, batch).cpu()[..., :n]  # type: ignore[arg-type]
    paths = save_audio_batch(result, out, rate, prefix="a2a", fmt=config.format)
    typer.echo(f"wrote {len(paths)} clips to {out}")


modality = Modality(name="audio", description=DESCRIPTION, app=app, bench=bench)
