"""Configurations of diff-video: dataclasses, read from YAML / TOML files and ``--set key=value`` overrides
through :mod:`diffcore.config`. Training settings are the core's :class:`~diffcore.training.TrainConfig`,
nested as ``train`` (``--set train.lr=1e-4``), never restated here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffcore.device import Device
from diffcore.training import TrainConfig

from diff_video.data.shapes_config import ShapesConfig

__all__ = [
    "DEFAULT_GUIDANCE",
    "VaeConfig",
    "VideoDataConfig",
    "VideoEvaluateConfig",
    "VideoI2VConfig",
    "VideoModelConfig",
    "VideoSampleConfig",
    "VideoTrainConfig",
]

DEFAULT_GUIDANCE = 3.0
"""The classifier-free guidance scale used when a conditional pipeline is sampled without ``guidance``."""


@dataclass
class VideoModelConfig:
    """The denoising network (:class:`~diff_video.models.VideoDiT`) and its conditioning.

    Attributes:
        attention: ``factorised`` (alternating spatial and temporal blocks, Latte variant 1 / ST-DiT) or ``full``
            (3D attention over all spacetime tokens).
        width: hidden size of the DiT.
        depth: number of DiT blocks (even for factorised attention).
        heads: attention heads (the head width must be even and >= 6).
        patch_size: spacetime patch ``(pt, ph, pw)`` in frames and pixels (or latent cells).
        conditioning: ``text`` (captions through a text encoder trained from scratch), ``class`` (the data's
            class sub-folders) or ``none``.
        text_width: width of the text encoder.
        text_layers: transformer layers of the text encoder.
        text_heads: attention heads of the text encoder.
        text_max_length: the most tokens a caption may have (``[CLS]`` included).
        cond_tokens: add the class / pooled caption to every patch token as well as to the adaLN modulation
            (the default; ``false``: modulation and cross-attention only, which a model learns to ignore: the
            package README, "Measured").
        gradient_checkpointing: recompute each block in the backward pass (less memory, ~30% more time).
    """

    attention: str = "factorised"
    width: int = 256
    depth: int = 8
    heads: int = 4
    patch_size: tuple[int, int, int] = (1, 4, 4)
    conditioning: str = "text"
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_max_length: int = 32
    cond_tokens: bool = True
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(p) for p in self.patch_size)  # type: ignore[assignment]
        if self.conditioning not in ("text", "class", "none"):
            raise ValueError(f"conditioning: expected text, class or none, got {self.conditioning!r}")
        if len(self.patch_size) != 3:
            raise ValueError(f"patch_size: expected (pt, ph, pw), got {self.patch_size}")


@dataclass
class VaeConfig:
    """The causal 3D VAE of latent video diffusion (:class:`~diff_video.models.vae.CausalVAE`).

    Attributes:
        enabled: train the VAE first and diffuse its latents (else the model works on pixels).
        latent_channels: channels of the latent.
        channels: base width of the VAE's convolutions.
        temporal_downsample: 1, 2 or 4: ``T`` frames become ``1 + (T - 1) / temporal_downsample`` latent frames
            (the first frame alone, so an image is a 1-frame video).
        spatial_downsample: 2, 4 or 8.
        kl_weight: weight of the KL term (beta of a beta-VAE).
        steps: training steps of the VAE (its optimisation is otherwise ``train``'s).
    """

    enabled: bool = False
    latent_channels: int = 4
    channels: int = 32
    temporal_downsample: int = 4
    spatial_downsample: int = 4
    kl_weight: float = 1e-4
    steps: int = 2000


@dataclass
class VideoDataConfig:
    """Where the clips come from.

    Attributes:
        path: a local folder of videos (mp4/avi/webm/mkv; captions in ``metadata.jsonl`` or class sub-folders);
            empty uses the generated moving-shapes set (``shapes``).
        shapes: the generated moving-shapes set (used when ``path`` is empty).
        frames: frames per training clip of a folder (the shapes set uses ``shapes.frames``).
        stride: take every ``stride``-th decoded frame of a folder's video (ignored when ``fps`` > 0).
        fps: resample a folder's videos to this frame rate (0: keep the stride).
        height: frame height of a folder's clips (0: the videos' own; they must then share one size).
        width: frame width of a folder's clips (0: the videos' own).
        resize: how a folder's frames reach ``height x width``: ``none`` (a size mismatch is an error),
            ``resize`` (bilinear, aspect ratio not kept) or ``center-crop`` (scale the short side, crop the centre).
        decoder: ``auto`` (decord when installed, else PyAV), ``pyav`` or ``decord``.
        num_workers: DataLoader worker processes for a folder.
    """

    path: str = ""
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    frames: int = 16
    stride: int = 1
    fps: float = 0.0
    height: int = 0
    width: int = 0
    resize: str = "none"
    decoder: str = "auto"
    num_workers: int = 0


@dataclass
class VideoTrainConfig:
    """One training run: rectified flow (Liu et al. 2023) on a spacetime DiT.

    Attributes:
        model: the network.
        vae: the optional causal 3D VAE (latent diffusion).
        data: the clips.
        batch_size: clips per optimizer step (per process).
        time_sampler: the training-time density of ``t`` (a ``diffcore.training.time_sampling`` name;
            ``logit-normal`` is SD3's, Esser et al. 2024, Eq. 19).
        time_shift: SD3's time shift towards noise (Esser et al. 2024, Eq. 23); 0 picks it from the clip's token
            count, ``max(1, sqrt(tokens / shift_base_tokens))``, so longer and larger clips get more noise.
        shift_base_tokens: the token count of shift 1 for ``time_shift = 0``.
        cond_dropout: probability of training a clip without its caption / class (classifier-free guidance).
        frame_cond_prob: probability of training a clip with some frames given clean (Open-Sora's masking:
            the first frame, the first quarter, or the last frame), which teaches image-to-video and
            continuation.
        image_prob: probability of training a batch as images (one frame of each clip, 1-frame videos): joint
            image-video training.
        train: the optimisation, checkpoints, device and seed (:class:`diffcore.training.TrainConfig`).
    """

    model: VideoModelConfig = field(default_factory=VideoModelConfig)
    vae: VaeConfig = field(default_factory=VaeConfig)
    data: VideoDataConfig = field(default_factory=VideoDataConfig)
    batch_size: int = 32
    time_sampler: str = "logit-normal"
    time_shift: float = 0.0
    shift_base_tokens: int = 256
    cond_dropout: float = 0.1
    frame_cond_prob: float = 0.25
    image_prob: float = 0.0
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            output_dir="runs/video", lr=3e-4, warmup_steps=100, ema_decay=0.999, steps=5000
        )
    )


@dataclass
class VideoSampleConfig:
    """Drawing clips from a saved pipeline.

    Attributes:
        num_samples: how many clips to draw.
        prompts: captions, cycled over the samples (text pipelines; default: the training captions' first ones);
            repeat --prompt for several.
        labels: class indices, cycled over the samples (class pipelines; default 0, 1, 2, ...); repeat --label.
        frames: frames per clip (0: the training length); any multiple of the temporal patch runs.
        guidance: classifier-free guidance scale (0: 3 on a conditional pipeline, none on an unconditional one).
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        batch_size: clips per sampler call.
        fps: frame rate of the written MP4 / GIF files.
        formats: the files written per clip: any of ``mp4``, ``gif``, ``png`` (a frame strip), and one grid
            ``grid.png`` of all clips.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 8
    prompts: tuple[str, ...] = ()
    labels: tuple[int, ...] = ()
    frames: int = 0
    guidance: float = 0.0
    sampler: str = "euler"
    steps: int = 30
    batch_size: int = 16
    fps: int = 8
    formats: tuple[str, ...] = ("mp4", "gif", "png")
    seed: int = 0
    device: Device = "auto"


@dataclass
class VideoI2VConfig:
    """Image-to-video and continuation: frames given, the rest generated (Open-Sora's frame masking).

    Attributes:
        image: a PNG/JPEG first frame, or a video whose last ``context_frames`` frames the clip continues.
        prompt: the caption (text pipelines).
        label: the class (class pipelines; -1: none).
        context_frames: how many of the video's last frames to keep (an image gives 1).
        length: total frames to produce (0: one window, the training length); longer clips are extended window
            by window, each conditioned on the last ``overlap`` frames of the previous one.
        overlap: frames shared by consecutive windows.
        guidance: classifier-free guidance scale (0: the pipeline's default).
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        fps: frame rate of the written files.
        seed: seeds the noise.
        device: where to run.
    """

    image: str = ""
    prompt: str = ""
    label: int = -1
    context_frames: int = 1
    length: int = 0
    overlap: int = 4
    guidance: float = 0.0
    sampler: str = "euler"
    steps: int = 30
    fps: int = 8
    seed: int = 0
    device: Device = "auto"


@dataclass
class VideoEvaluateConfig:
    """Scoring a saved pipeline against held-out clips of the moving-shapes set.

    Attributes:
        num_samples: clips generated for the metrics (their captions are held-out ones).
        num_reference: held-out real clips (the Frechet distances' reference and the train-vs-test floor).
        heldout_seed: seed of the held-out moving-shapes set (different from training's).
        guidance: classifier-free guidance scale (0: the pipeline's default).
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        feature_steps: training steps of the FVD-local feature network (a small 3D-conv classifier of the
            shapes' direction, colour and shape, trained on the data); 0 skips the Frechet distances.
        extend_factor: also make clips this many times the training length by sliding-window extension and score
            their object persistence (1: skip).
        i3d: a local TorchScript I3D (StyleGAN-V's ``i3d_torchscript.pt`` convention) for standard FVD; empty
            skips it.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 64
    num_reference: int = 256
    heldout_seed: int = 1_000_003
    guidance: float = 0.0
    sampler: str = "euler"
    steps: int = 30
    feature_steps: int = 400
    extend_factor: int = 1
    i3d: str = ""
    seed: int = 0
    device: Device = "auto"
