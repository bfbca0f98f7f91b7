"""Configurations of diff-audio: dataclasses, read from YAML / TOML files and ``--set key=value`` overrides
through :mod:`diffcore.config`. Training settings are the core's :class:`~diffcore.training.TrainConfig`,
nested as ``train`` (``--set train.lr=1e-4``), never restated here.

Conventions everywhere: audio is ``(B, channels, samples)`` float in ``[-1, 1]``; diffusion time ``t`` in
``[0, 1]`` with ``t = 0`` data (latents) and ``t = 1`` noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from diffcore.device import Device
from diffcore.training import TrainConfig

__all__ = [
    "AudioA2AConfig",
    "AudioDataConfig",
    "AudioEvaluateConfig",
    "AudioModelConfig",
    "AudioSampleConfig",
    "AudioTrainConfig",
    "AudioVAEConfig",
]

ObjectiveName = Literal["rectified_flow", "v"]
DataKind = Literal["notes", "phrases", "pieces"]


@dataclass
class AudioVAEConfig:
    """The Oobleck-style 1D convolutional VAE (stable-audio-tools' ``OobleckEncoder`` / ``OobleckDecoder``).

    Attributes:
        channels: base width; block ``i`` has ``channels * channel_mults[i]`` channels.
        channel_mults: width multiplier of each down-sampling block.
        strides: down-sampling factor of each block; their product is the latent frame rate's divisor (hop).
        latent_dim: channels of the latent sequence.
        kl_weight: weight of ``KL(q(z|x) || N(0, I))`` (stable-audio-tools uses about 1e-4).
        stft_weight: weight of the multi-resolution STFT loss (spectral convergence + log magnitude). Kept
            small: at 1 its phase-free gradient outweighs the waveform terms and SI-SDR falls while it drops
            (``benchmarks/results/vae_recon-cpu.json``).
        l1_weight: weight of the waveform L1 loss.
        fft_sizes: window sizes of the multi-resolution STFT loss (hop = size / 4).
        complex_stft_weight: weight of the phase-sensitive complex STFT loss (the magnitude loss leaves the
            phase free, which SI-SDR punishes).
        weight_norm: weight-normalise every convolution (Oobleck's ``WNConv1d``).
        posterior_init: starting bias of the posterior's pre-softplus scale: -5 starts the standard deviation at
            softplus(-5) = 0.007, so the decoder sees the latent from the first step; 0 (std 0.69) drowns the
            young encoder's small means in noise and the decoder learns to ignore them.
        upsample: the decoder's upsampling: ``nearest`` (repeat, then a convolution: no checkerboard tones) or
            ``transposed`` (Oobleck's transposed convolutions).
        shortcut: DC-AE's parameter-free shortcuts (Chen et al. 2025) around every layer that changes the rate
            or the width (space-to-channel and channel averaging down, channel repetition and channel-to-space
            up), so the signal reaches the decoder's output from the first step. Widths must divide each
            other's products with the strides (``channels * stride`` and the next width, the last width and
            ``latent_dim``). Helps where the widths keep most of the signal (the quick benchmark's 1x VAE:
            ``benchmarks/results/audio_quick-cpu.json``); at 8x and 32x with width 8 it did not
            (``benchmarks/results/vae_recon-residual-cpu.json``, ``vae_recon-residual-latent1-cpu.json``).
        zero_init: zero the last convolution of every residual branch and shortcut layer (and, with
            ``shortcut``, the encoder's head), so the VAE starts as its parameter-free path: without it the
            Snake branches, whose ``sin^2`` is never negative, pile up offsets and the untrained output is
            about ten times louder than its input.
    """

    channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    strides: tuple[int, ...] = (2, 4, 4, 8)
    latent_dim: int = 32
    kl_weight: float = 1e-4
    stft_weight: float = 0.1
    l1_weight: float = 1.0
    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    complex_stft_weight: float = 4.0
    weight_norm: bool = True
    posterior_init: float = -5.0
    upsample: Literal["nearest", "transposed"] = "nearest"
    shortcut: bool = False
    zero_init: bool = False

    def __post_init__(self) -> None:
        self.channel_mults, self.strides, self.fft_sizes = (
            tuple(self.channel_mults), tuple(self.strides), tuple(self.fft_sizes),
        )  # fmt: skip
        if len(self.channel_mults) != len(self.strides) or not self.strides:
            raise ValueError(
                f"channel_mults, strides: expected one multiplier per stride, got {self.channel_mults}, {self.strides}"
            )
        if min(self.strides) < 1 or self.channels < 1 or self.latent_dim < 1:
            raise ValueError("strides, channels, latent_dim: expected positive integers")
        if min(self.kl_weight, self.stft_weight, self.l1_weight, self.complex_stft_weight) < 0:
            raise ValueError("kl_weight, stft_weight, l1_weight, complex_stft_weight: expected >= 0")
        if self.upsample not in ("nearest", "transposed"):
            raise ValueError(f"upsample: expected nearest or transposed, got {self.upsample!r}")


@dataclass
class AudioModelConfig:
    """The latent DiT (diffcore's MMDiT blocks, RoPE over time) with timing and text conditioning.

    Attributes:
        width: hidden size of the transformer.
        depth: number of joint-attention blocks.
        heads: attention heads (must divide ``width``).
        patch_size: latent frames per token.
        text_width: width of the text encoder (a small transformer trained from scratch on the captions).
        text_layers: layers of the text encoder.
        text_heads: heads of the text encoder.
        text_max_length: caption tokens kept (longer captions are refused, not cut).
        max_seconds: ``seconds_start`` / ``seconds_total`` are embedded as ``seconds / max_seconds`` (Stable
            Audio's NumberConditioner range); 0 takes the training clips' length.
        pooled_text: add the caption's mean token state to the blocks' adaLN conditioning (SD3's pooled text),
            beside the timing; ``False``: timing only, as Stable Audio.
    """

    width: int = 256
    depth: int = 6
    heads: int = 4
    patch_size: int = 1
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_max_length: int = 32
    max_seconds: float = 0.0
    pooled_text: bool = True


@dataclass
class AudioDataConfig:
    """Where the training audio comes from.

    Attributes:
        path: a local folder of audio (metadata.jsonl captions or class sub-folders); empty uses the synthetic
            music set.
        kind: the synthetic set's kind: notes, phrases or pieces.
        length: examples of the synthetic set.
        instruments: instruments of the synthetic set (organ, pluck, bell, drums).
        sample_rate: samples per second of the audio the model works on.
        channels: 1 (mono) or 2 (stereo).
        clip_seconds: length of every training clip (crop or zero-padded).
        min_seconds: shortest sound of the synthetic set (``seconds_total`` is drawn in [min_seconds,
            clip_seconds]).
    """

    path: str = ""
    kind: DataKind = "notes"
    length: int = 2048
    instruments: tuple[str, ...] = ("organ", "pluck", "bell")
    sample_rate: int = 16000
    channels: int = 1
    clip_seconds: float = 1.024
    min_seconds: float = 0.4


@dataclass
class AudioTrainConfig:
    """One training run: the VAE first (``vae_steps``), then the latent DiT (``train.steps``).

    Attributes:
        data: the training audio.
        vae: the autoencoder.
        model: the latent diffusion transformer.
        objective: ``rectified_flow`` (velocity on the straight path, logit-normal times) or ``v`` (v-prediction
            on the ``vp-cosine`` path).
        vae_steps: optimizer steps of the VAE stage (its optimisation is otherwise ``train``'s).
        vae_lr: learning rate of the VAE stage.
        vae_max_seconds: wall-time budget of the VAE stage in seconds; ``None`` takes ``train.max_seconds``.
        vae_crop_seconds: train the VAE on a random window of this length of each clip (rounded to whole hops),
            as Stable Audio trains its autoencoders on crops: a step costs that fraction of a whole clip's, so a
            time budget buys more steps; ``None``: whole clips.
        cond_dropout: probability of dropping the caption while training (classifier-free guidance).
        batch_size: examples per optimizer step (per process).
        train: the optimisation, checkpoints, device and seed (:class:`diffcore.training.TrainConfig`).
    """

    data: AudioDataConfig = field(default_factory=AudioDataConfig)
    vae: AudioVAEConfig = field(default_factory=AudioVAEConfig)
    model: AudioModelConfig = field(default_factory=AudioModelConfig)
    objective: ObjectiveName = "rectified_flow"
    vae_steps: int = 2000
    vae_lr: float = 1e-3
    vae_max_seconds: float | None = None
    vae_crop_seconds: float | None = None
    cond_dropout: float = 0.1
    batch_size: int = 32
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            output_dir="runs/audio", lr=3e-4, ema_decay=0.999, checkpoint_every=1000
        )
    )

    def __post_init__(self) -> None:
        if self.vae_steps < 1:
            raise ValueError(f"vae_steps: expected >= 1, got {self.vae_steps}")
        if self.vae_crop_seconds is not None and not self.vae_crop_seconds > 0:
            raise ValueError(f"vae_crop_seconds: expected > 0 seconds or None, got {self.vae_crop_seconds}")
        if self.vae_max_seconds is not None and not self.vae_max_seconds > 0:
            raise ValueError(f"vae_max_seconds: expected > 0 seconds or None, got {self.vae_max_seconds}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout: expected in [0, 1), got {self.cond_dropout}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")


@dataclass
class AudioSampleConfig:
    """Drawing audio from a saved pipeline.

    Attributes:
        prompts: captions (cycled to ``num_samples``); empty: the unconditional model.
        num_samples: how many clips to draw.
        seconds_total: length of the sound asked for (the clip is silent after it); 0: the training clip length.
        seconds_start: the timing condition's offset (Stable Audio's ``seconds_start``).
        duration: length of the generated window in seconds (rounded up to whole latent tokens); 0: the training
            clip length. Longer windows generate long-form audio in one pass.
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        guidance: classifier-free guidance scale (1 = none).
        trim: cut the written files at ``seconds_total`` (the returned tensors are never cut).
        format: file format of the written clips: wav or flac.
        batch_size: clips generated per forward.
        seed: seeds the noise.
        device: where to run.
    """

    prompts: tuple[str, ...] = ()
    num_samples: int = 4
    seconds_total: float = 0.0
    seconds_start: float = 0.0
    duration: float = 0.0
    sampler: str = "euler"
    steps: int = 50
    guidance: float = 3.0
    trim: bool = False
    format: Literal["wav", "flac"] = "wav"
    batch_size: int = 16
    seed: int = 0
    device: Device = "auto"


@dataclass
class AudioEvaluateConfig:
    """Scoring a saved pipeline on held-out synthetic captions (the test seed differs from training's).

    Attributes:
        num_samples: clips drawn for the metrics.
        kind: the synthetic set whose captions and timings are asked for: notes, phrases or pieces.
        data_seed: seed of the held-out synthetic set (training uses ``train.seed``'s set, seed 0 by default).
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        guidance: classifier-free guidance scale.
        classifier_steps: training steps of the instrument classifier behind instrument accuracy and FAD-local.
        reference_samples: real clips of each split for the train-vs-test floor of FAD-local.
        batch_size: clips generated per forward.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 128
    kind: DataKind = "notes"
    data_seed: int = 1000
    sampler: str = "euler"
    steps: int = 50
    guidance: float = 3.0
    classifier_steps: int = 300
    reference_samples: int = 256
    batch_size: int = 32
    seed: int = 0
    device: Device = "auto"


@dataclass
class AudioA2AConfig:
    """Audio-to-audio: SDEdit (Meng et al. 2022) of an input clip in latent space towards a caption.

    Attributes:
        input: the input audio file (wav / flac / ogg).
        prompts: the caption(s) to move towards (cycled over the input clip once each).
        strength: how far the input is noised, in [0, 1]: 0 keeps it, 1 ignores it.
        seconds_total: the timing condition; 0: the input's length.
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps over [0, strength].
        guidance: classifier-free guidance scale.
        format: file format of the written clips: wav or flac.
        seed: seeds the noise.
        device: where to run.
    """

    input: str = ""
    prompts: tuple[str, ...] = ()
    strength: float = 0.5
    seconds_total: float = 0.0
    sampler: str = "euler"
    steps: int = 50
    guidance: float = 3.0
    format: Literal["wav", "flac"] = "wav"
    seed: int = 0
    device: Device = "auto"
