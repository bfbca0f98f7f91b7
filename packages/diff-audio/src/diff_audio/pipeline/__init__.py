"""``AudioPipeline`` and the three verbs every modality offers: :func:`train`, :func:`sample`, :func:`evaluate`
(plus :func:`audio_to_audio`).

Audio is ``(B, channels, samples)`` float in ``[-1, 1]``; diffusion time ``t`` in [0, 1], ``t = 0`` data.
"""

from __future__ import annotations

import torch
from diffcore.device import resolve_device
from diffcore.rng import make_generator
from torch import Tensor

from diff_audio.config import AudioA2AConfig, AudioEvaluateConfig, AudioSampleConfig, AudioTrainConfig
from diff_audio.pipeline.core import AudioPipeline
from diff_audio.pipeline.evaluation import evaluate_and_sample
from diff_audio.pipeline.training import train as _train

__all__ = ["AudioPipeline", "audio_to_audio", "evaluate", "evaluate_and_sample", "sample", "train"]


def train(config: AudioTrainConfig) -> AudioPipeline:
    """Train the VAE and the latent DiT as ``config`` says; the run (and ``pipeline/``) goes under
    ``config.train.output_dir`` (:mod:`diff_audio.pipeline.training`)."""
    return _train(config)


def _prepare(pipeline: AudioPipeline, device: str) -> AudioPipeline:
    return pipeline.to(resolve_device(device))


def sample(
    pipeline: AudioPipeline, config: AudioSampleConfig, *, generator: torch.Generator | None = None
) -> Tensor:
    """Generate ``config.num_samples`` clips ``(n, channels, samples)`` in ``[-1, 1]`` for ``config.prompts``
    (cycled) with the timing ``config.seconds_total`` / ``seconds_start``; never trimmed (see ``config.trim`` for
    the written files)."""
    pipe = _prepare(pipeline, config.device)
    gen = generator if generator is not None else make_generator(config.seed, pipe.device)
    return pipe.generate(
        list(config.prompts) or None, config.num_samples, config.seconds_total or None, config.seconds_start,
        config.duration or None, config.sampler, config.steps, config.guidance, gen, config.batch_size,
    )  # fmt: skip


def evaluate(pipeline: AudioPipeline, config: AudioEvaluateConfig) -> dict[str, float]:
    """Score the pipeline on held-out synthetic captions (:mod:`diff_audio.pipeline.evaluation`)."""
    metrics, _, _ = evaluate_and_sample(_prepare(pipeline, config.device), config)
    return metrics


def audio_to_audio(
    pipeline: AudioPipeline,
    config: AudioA2AConfig,
    audio: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SDEdit of ``audio`` ``(B, channels, samples)`` (already at the pipeline's rate and channel count, a whole
    number of tokens long) towards ``config.prompts`` at ``config.strength``."""
    pipe = _prepare(pipeline, config.device)
    gen = generator if generator is not None else make_generator(config.seed, pipe.device)
    return pipe.audio_to_audio(
        audio, list(config.prompts) or None, config.strength, config.seconds_total or None, config.sampler,
        config.steps, config.guidance, gen,
    )  # fmt: skip
