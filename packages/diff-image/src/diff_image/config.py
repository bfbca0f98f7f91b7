"""Configurations of diff-image: dataclasses, read from YAML / TOML files and ``--set key=value`` overrides
through :mod:`diffcore.config` (``load_config(ImageTrainConfig, "train.yaml", overrides=["model.depth=6"])``).

Training settings are the core's :class:`~diffcore.training.TrainConfig`, nested as ``train``
(``--set train.lr=1e-4``), never restated here. Each default is stated once, in its dataclass; each setting's
meaning once, in the dataclass docstring's ``Attributes:`` section (also its ``--help`` line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from diffcore.device import Device
from diffcore.precision.recipes import QUANTIZATIONS, Quantization
from diffcore.training import TrainConfig

__all__ = [
    "DEFAULT_GUIDANCE",
    "AutoencoderConfig",
    "EditMode",
    "ImageAlignDDPOConfig",
    "ImageAlignDPOConfig",
    "ImageAlignRewardConfig",
    "ImageControlConfig",
    "ImageDataConfig",
    "ImageEditConfig",
    "ImageEvaluateConfig",
    "ImageLoraConfig",
    "ImageModelConfig",
    "ImageSampleConfig",
    "ImageStreamConfig",
    "ImageTrainConfig",
]


Backbone = Literal["auto", "dit", "unet", "mmdit"]
Conditioning = Literal["auto", "none", "class", "text"]
DatasetName = Literal["digits", "shapes", "folder"]
ObjectiveName = Literal["eps", "v", "x0", "flow_matching", "rectified_flow"]
EditMode = Literal["inpaint", "outpaint", "colorize", "sdedit", "interpolate"]

OBJECTIVES: tuple[str, ...] = ("eps", "v", "x0", "flow_matching", "rectified_flow")
BACKBONES: tuple[str, ...] = ("auto", "dit", "unet", "mmdit")
CONDITIONINGS: tuple[str, ...] = ("auto", "none", "class", "text")
DATASETS: tuple[str, ...] = ("digits", "shapes", "folder")
EDIT_MODES: tuple[str, ...] = ("inpaint", "outpaint", "colorize", "sdedit", "interpolate")
CONTROL_KINDS: tuple[str, ...] = ("edges", "segmentation", "boxes")

DEFAULT_GUIDANCE = 2.0
"""The classifier-free guidance scale that ``guidance: None`` means for a conditional (class or text) model;
an unconditional model is sampled without guidance."""


def _one_of(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {tuple(allowed)}, got {value!r}")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")


def _probability(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {value}")


@dataclass
class ImageModelConfig:
    """The denoising network.

    Attributes:
        backbone: ``auto`` (``mmdit`` for text conditioning, else ``dit``), ``dit`` (Peebles & Xie 2023),
            ``unet`` (ADM-style, Dhariwal & Nichol 2021) or ``mmdit`` (SD3, Esser et al. 2024; text only).
        conditioning: ``auto`` (from the data: ``class`` for class sub-folders and the digits, ``text`` for a
            ``metadata.jsonl`` folder and the shapes, ``none`` for a flat folder; training prints what it
            chose), ``none``, ``class`` (``y=`` labels, null class for CFG) or ``text`` (token ids through a
            text encoder; MMDiT gets ``context``/``pooled``, U-Net cross-attention).
        width: DiT/MMDiT hidden size, or the U-Net's ``model_channels``.
        depth: DiT/MMDiT blocks, or U-Net residual blocks per level.
        heads: attention heads.
        patch_size: DiT/MMDiT patch side.
        channel_mult: U-Net width multipliers, one per level.
        attention_levels: U-Net levels with attention.
        text_encoder: ``""`` trains a small CLIP text transformer from scratch with the model; otherwise a local
            folder of a pretrained CLIP or T5 text encoder (frozen).
        text_width, text_layers, text_heads, text_max_length: the from-scratch text encoder's shape.
    """

    backbone: Backbone = "auto"
    conditioning: Conditioning = "auto"
    width: int = 128
    depth: int = 4
    heads: int = 4
    patch_size: int = 2
    channel_mult: tuple[int, ...] = (1, 2)
    attention_levels: tuple[int, ...] = (1,)
    text_encoder: str = ""
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_max_length: int = 32

    def __post_init__(self) -> None:
        self.channel_mult = tuple(self.channel_mult)
        self.attention_levels = tuple(self.attention_levels)
        _one_of("backbone", self.backbone, BACKBONES)
        _one_of("conditioning", self.conditioning, CONDITIONINGS)
        if self.backbone == "mmdit" and self.conditioning not in ("text", "auto"):
            raise ValueError(f"conditioning: backbone 'mmdit' needs 'text', got {self.conditioning!r}")
        if self.backbone == "dit" and self.conditioning == "text":
            raise ValueError("backbone: 'dit' has no text input; use 'mmdit' or 'unet' for text conditioning")
        for name in ("width", "depth", "heads", "patch_size", "text_width", "text_layers", "text_heads"):
            _positive(name, getattr(self, name))
        if self.width % self.heads:
            raise ValueError(f"heads: {self.heads} must divide width {self.width}")


@dataclass
class AutoencoderConfig:
    """A KL autoencoder (Rombach et al. 2022, Sec. 3) for latent diffusion; see :mod:`diff_image.autoencoder`.

    Attributes:
        in_channels: image channels.
        latent_channels: channels of the latent.
        downsample: spatial reduction, 4 or 8.
        base_channels: width of the first conv stage (doubled at each downsampling, capped at 4x).
        kl_weight: weight of ``KL(q(z|x) || N(0, I))`` in the loss.
        perceptual_weight: weight of the feature-matching loss (0 disables it).
        scaling_factor: multiplies latents before diffusion, ``1 / std`` of the training latents
            (computed from the data after training, as in LDM).
        shift_factor: subtracted from latents before scaling (the data mean of the latents).
    """

    in_channels: int = 3
    latent_channels: int = 4
    downsample: int = 4
    base_channels: int = 32
    kl_weight: float = 1e-4
    perceptual_weight: float = 0.0
    scaling_factor: float = 1.0
    shift_factor: float = 0.0

    def __post_init__(self) -> None:
        _one_of("downsample", self.downsample, (4, 8))
        for name in ("in_channels", "latent_channels", "base_channels", "scaling_factor"):
            _positive(name, getattr(self, name))
        if self.kl_weight < 0 or self.perceptual_weight < 0:
            raise ValueError(
                f"kl_weight, perceptual_weight: expected >= 0, got {self.kl_weight}, {self.perceptual_weight}"
            )


@dataclass
class ImageDataConfig:
    """The training images.

    Attributes:
        dataset: ``digits`` (sklearn, 10 classes), ``shapes`` (generated scenes with captions) or ``folder``
            (``path``).
        path: image folder for ``dataset="folder"`` (class sub-folders, captions, or flat).
        image_size: image side in pixels; 0 = from the data (digits: 8; shapes: 32; a folder: its images' size
            when all are one square size, else an error naming two that differ). Set, it is the size trained at
            (digits: 8, 16 or 32; shapes: >= 16); a folder's images of another size are resized (shorter side)
            and centre-cropped to it, which training reports.
        shapes_length: number of generated shapes scenes per epoch.
        holdout: shapes concepts never drawn in training (e.g. ``["red"]`` for a LoRA concept test).
        cache: ``shapes`` only: render the whole set once (in ``render_workers`` processes), tokenise its
            captions once and keep both on the training device, so a step is one gather on the device.
        render_workers: processes that pre-render the shapes set; None = the usable CPUs minus one.
        num_workers: DataLoader workers (used when ``cache`` is off or the data set is not ``shapes``).
    """

    dataset: DatasetName = "digits"
    path: str = ""
    image_size: int = 0
    shapes_length: int = 20_000
    holdout: tuple[str, ...] = ()
    cache: bool = True
    render_workers: int | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        self.holdout = tuple(self.holdout)
        _one_of("dataset", self.dataset, DATASETS)
        if self.dataset == "folder" and not self.path:
            raise ValueError("path: dataset 'folder' needs the folder's path (data.path)")
        _positive("shapes_length", self.shapes_length)
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 0:
            raise ValueError(
                f"image_size: expected pixels > 0, or 0 for the data's size, got {self.image_size!r}"
            )
        if self.num_workers < 0:
            raise ValueError(f"num_workers: expected >= 0, got {self.num_workers}")


def _image_training() -> TrainConfig:
    """The optimisation of an image run: AdamW with a short warmup (10 steps, so that runs of any length from
    11 steps up keep the default) and a cosine decay to 0.1 lr, EMA with warm-up (a short run's EMA is not
    the initialisation), gradient clipping; one resumable checkpoint at the end, progress on standard error
    (a plain line every ``log_every`` steps when it is not a terminal), no TensorBoard."""
    return TrainConfig(
        steps=2000,
        lr=1e-3,
        warmup_steps=10,
        lr_schedule="cosine",
        min_lr_ratio=0.1,
        ema_decay=0.999,
        ema_warmup=True,
        max_grad_norm=1.0,
        log_every=100,
        checkpoint_every=None,
        keep_last=1,
        output_dir="runs/image",
        progress_bar=True,
        tensorboard=False,
    )


@dataclass
class ImageTrainConfig:
    """One training run of an image diffusion model.

    Attributes:
        model: the denoising network.
        autoencoder: the first-stage autoencoder of latent diffusion (``latent``).
        data: the training images.
        objective: ``eps``, ``v``, ``x0`` (on ``schedule``), ``flow_matching`` or ``rectified_flow``
            (on the rectified-flow path, velocity prediction).
        schedule: a ``diffcore.paths.schedules`` name for the eps/v/x0 objectives.
        cond_dropout: probability of training with the null condition (classifier-free guidance).
        latent: train in the latent space of an autoencoder (trained first, with ``autoencoder``).
        autoencoder_steps: training steps of the autoencoder (the rest of its optimisation is ``train``'s).
        batch_size: images per optimizer step (per process).
        train: the optimisation, run folder (the pipeline is saved in ``train.output_dir/pipeline``), seed
            (data order, noise and initialisation) and device (:class:`diffcore.training.TrainConfig`).
    """

    model: ImageModelConfig = field(default_factory=ImageModelConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    objective: ObjectiveName = "v"
    schedule: str = "vp-cosine"
    cond_dropout: float = 0.1
    latent: bool = False
    autoencoder_steps: int = 2000
    batch_size: int = 128
    train: TrainConfig = field(default_factory=_image_training)

    def __post_init__(self) -> None:
        _one_of("objective", self.objective, OBJECTIVES)
        for name in ("autoencoder_steps", "batch_size"):
            _positive(name, getattr(self, name))
        _probability("cond_dropout", self.cond_dropout)


@dataclass
class ImageSampleConfig:
    """Drawing samples from a saved pipeline.

    Attributes:
        num_samples: images to draw.
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        guidance: classifier-free guidance scale (1 = no guidance); unset (None): 2.0 for a conditional (class
            or text) model, none for an unconditional one. Set to anything but 1 on an unconditional model it
            is an error.
        labels: class labels to cycle through (class-conditional models; empty: 0..num_classes-1).
        prompts: captions to cycle through (text-to-image models).
        batch_size: images per network batch.
        seed: seeds the noise.
        device: where to run (the pipeline is moved there).
        quantize: sample with the backbone's linear weights quantised through torchao
            (``ImagePipeline.quantized``): ``none``, ``int8-weight``, ``int8``, ``fp8-weight`` or ``fp8`` (a GPU of
            compute capability 8.9+). Needs ``pip install diffcore[quant]``.
    """

    num_samples: int = 64
    sampler: str = "dpmpp_2m"
    steps: int = 20
    guidance: float | None = None
    labels: tuple[int, ...] = ()
    prompts: tuple[str, ...] = ()
    batch_size: int = 256
    seed: int = 0
    device: Device = "auto"
    quantize: Quantization = "none"

    def __post_init__(self) -> None:
        self.labels = tuple(int(v) for v in self.labels)
        self.prompts = tuple(self.prompts)
        for name in ("num_samples", "steps", "batch_size"):
            _positive(name, getattr(self, name))
        if self.guidance is not None and self.guidance < 0:
            raise ValueError(f"guidance: expected >= 0, got {self.guidance}")
        _check_quantize(self.quantize)


@dataclass
class ImageEvaluateConfig:
    """Scoring a saved pipeline: class accuracy, Frechet distance and precision / recall of a class-conditional
    digits pipeline; caption adherence on one- and two-object captions of a text-to-image shapes pipeline.

    Attributes:
        num_samples: digits: samples (labels cycling 0..9); shapes: captions per kind (one and two objects).
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        guidance: classifier-free guidance scale (1 = no guidance); unset (None): 2.0 (the pipelines evaluated
            are conditional).
        holdout: shapes: concepts left out of the evaluation captions (those the model never saw).
        seed: seeds the noise.
        device: where to run (the pipeline is moved there).
        quantize: score the pipeline with torchao-quantised backbone weights (as ``ImageSampleConfig.quantize``).
    """

    num_samples: int = 1000
    sampler: str = "dpmpp_2m"
    steps: int = 20
    guidance: float | None = None
    holdout: tuple[str, ...] = ()
    seed: int = 0
    device: Device = "auto"
    quantize: Quantization = "none"

    def __post_init__(self) -> None:
        self.holdout = tuple(self.holdout)
        for name in ("num_samples", "steps"):
            _positive(name, getattr(self, name))
        if self.guidance is not None and self.guidance < 0:
            raise ValueError(f"guidance: expected >= 0, got {self.guidance}")
        _check_quantize(self.quantize)


@dataclass
class ImageEditConfig:
    """Editing images with a saved pipeline (``diffuse image edit MODE``; :mod:`diff_image.editing`).

    Attributes:
        mode: ``inpaint`` (regenerate the mask's black or the box), ``outpaint`` (keep the box, generate
            around it), ``colorize`` (keep the grey level, generate colour), ``sdedit`` (noise to ``strength``
            and denoise) or ``interpolate`` (DDIM-invert two images and morph between them).
        input: input PNG, or a folder of PNGs (a batch).
        input_b: interpolate: the second image.
        mask: inpaint / outpaint: a PNG mask, white = keep, black = generate.
        box: ``x0,y0,x1,y1`` in pixels (end-exclusive): inpaint regenerates it, outpaint keeps it.
        strength: sdedit: the noise level ``t0`` in [0, 1] (0 keeps the input).
        frames: interpolate: number of frames.
        steps: sampler steps.
        guidance: classifier-free guidance scale (1 = no guidance).
        labels: class labels of the edit (class-conditional models), cycled over the images.
        prompts: captions of the edit (text-to-image models), cycled over the images.
        resample: inpaint / outpaint / colorize: RePaint resampling jumps per step (1 = none).
        seed: seeds the noise.
        device: where to run (the pipeline is moved there).
    """

    mode: EditMode = "inpaint"
    input: str = ""
    input_b: str = ""
    mask: str = ""
    box: str = ""
    strength: float = 0.5
    frames: int = 8
    steps: int = 50
    guidance: float = 1.0
    labels: tuple[int, ...] = ()
    prompts: tuple[str, ...] = ()
    resample: int = 1
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        self.labels = tuple(int(v) for v in self.labels)
        self.prompts = tuple(self.prompts)
        _one_of("mode", self.mode, EDIT_MODES)
        for name in ("frames", "steps", "resample"):
            _positive(name, getattr(self, name))
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength: expected a noise level in [0, 1], got {self.strength}")
        if self.guidance < 0:
            raise ValueError(f"guidance: expected >= 0, got {self.guidance}")

    def box_coordinates(self) -> tuple[int, int, int, int] | None:
        """``box`` as ``(x0, y0, x1, y1)``, or None when empty."""
        if not self.box:
            return None
        try:
            x0, y0, x1, y1 = (int(v) for v in self.box.split(","))
        except ValueError as exc:
            raise ValueError(f"box: expected 'x0,y0,x1,y1' (four integers), got {self.box!r}") from exc
        return x0, y0, x1, y1


@dataclass
class ImageLoraConfig:
    """DreamBooth-style LoRA fine-tuning (Ruiz et al. 2023; Hu et al. 2021) on a few images of one concept.

    Attributes:
        images: folder of the concept's images (PNG); empty: draw ``num_images`` shapes holding ``concept``.
        concept: the shapes concept (``red``, ``circle``, ``red circle``) when ``images`` is empty.
        num_images: how many concept images to fine-tune on.
        label: class label attached to the concept images (class-conditional models).
        prompt: caption attached to them (text models); empty: the concept's name.
        rank: LoRA rank.
        alpha: LoRA scale numerator; the update is scaled by ``alpha / rank``.
        steps: fine-tuning steps.
        batch_size: images per step.
        lr: learning rate of the adapter.
        num_samples: samples drawn with and without the adapter (``diffuse image lora``).
        seed: seeds data, noise and the adapter's initialisation.
        device: where to run (the pipeline is moved there).
    """

    images: str = ""
    concept: str = "red"
    num_images: int = 8
    label: int = 0
    prompt: str = ""
    rank: int = 8
    alpha: float = 8.0
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    num_samples: int = 32
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        for name in ("num_images", "rank", "alpha", "steps", "batch_size", "lr", "num_samples"):
            _positive(name, getattr(self, name))


@dataclass
class ImageControlConfig:
    """ControlNet training on a frozen saved pipeline and its evaluation (``diffuse image control``).

    Attributes:
        kinds: control inputs from the shapes data, any of ``edges`` (outlines, 1 channel), ``segmentation``
            (one-hot shape classes, 5 channels), ``boxes`` (filled boxes per shape, 4 channels); one ControlNet
            each, residuals summed with ``scales``.
        scales: per-kind strength at sampling, in the order of ``kinds`` (empty: 1 each).
        num_blocks: DiT / MMDiT blocks each ControlNet copies (0: half the depth; the U-Net copies its encoder).
        steps: ControlNet training steps (0: evaluate the ControlNets the pipeline already holds).
        batch_size: training images per step.
        lr: learning rate of the ControlNets.
        shapes_length: generated training scenes.
        cond_dropout: probability of an empty caption during training (text models).
        num_samples: held-out scenes sampled with and without control for the grid and the IoU.
        sampler: a ``diffcore.sampling.available()`` name.
        sample_steps: sampler steps.
        guidance: classifier-free guidance scale on the caption (1 = none).
        seed: seeds training and the sampling noise.
        device: where to run (the pipeline is moved there).
    """

    kinds: tuple[str, ...] = ("segmentation",)
    scales: tuple[float, ...] = ()
    num_blocks: int = 0
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-4
    shapes_length: int = 20_000
    cond_dropout: float = 0.1
    num_samples: int = 64
    sampler: str = "dpmpp_2m"
    sample_steps: int = 20
    guidance: float = 1.0
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        self.kinds = tuple(self.kinds)
        self.scales = tuple(float(v) for v in self.scales)
        bad = [k for k in self.kinds if k not in CONTROL_KINDS]
        if not self.kinds or bad or len(set(self.kinds)) != len(self.kinds):
            raise ValueError(
                f"kinds: expected distinct names among edges, segmentation, boxes, got {self.kinds}"
            )
        if self.scales and len(self.scales) != len(self.kinds):
            raise ValueError(
                f"scales: expected {len(self.kinds)} values (one per kind) or none, got {self.scales}"
            )
        if self.steps < 0 or self.num_blocks < 0:
            raise ValueError(f"steps, num_blocks: expected >= 0, got {self.steps}, {self.num_blocks}")
        for name in ("batch_size", "lr", "shapes_length", "num_samples", "sample_steps"):
            _positive(name, getattr(self, name))
        _probability("cond_dropout", self.cond_dropout)


STREAM_MODES: tuple[str, ...] = ("img2img", "txt2img")
STREAM_GUIDANCES: tuple[str, ...] = ("none", "full", "self", "initialize")
VIDEO_FORMATS: tuple[str, ...] = ("auto", "mp4", "gif")


@dataclass
class ImageStreamConfig:
    """A real-time frame stream through a saved pipeline (``diffuse image stream``; :mod:`diffcore.streaming`).

    Attributes:
        mode: ``img2img`` (each input frame is noised to the first step and denoised) or ``txt2img`` (each frame
            starts from fresh noise).
        source: the input frames (img2img): a folder of images (sorted by name), a video file (read with
            diff-video, which must be installed), or ``synthetic`` (a moving scene drawn here).
        num_frames: frames to stream (synthetic: how many; a folder or video: at most this many, 0 = all).
        t_index_list: the denoising steps, as indices into the ``num_steps``-interval grid (StreamDiffusion's
            ``t_index_list``); image-to-image starts later (higher indices keep more of the input).
        num_steps: intervals of the grid the steps are picked from.
        grid: a registered time grid (``diffcore.sampling.grids``).
        step_rule: ``ddim`` (any trained model) or ``consistency`` (consistency / LCM students).
        guidance: ``none``, ``full`` (classifier-free guidance), ``self`` or ``initialize`` (residual CFG).
        guidance_scale: the guidance scale.
        labels: the class label of the stream (class-conditional models; empty: 0).
        prompts: the caption of the stream (text-to-image models; the first one is used).
        similarity_filter: skip input frames nearly equal to the last processed one (img2img).
        filter_threshold: the filter's cosine-similarity threshold.
        control: the pipeline's ControlNets to steer with, by kind (each frame's map is read from the input
            frame; the others run at strength 0); empty: all of them. Text-to-image reads ``source`` for the maps.
        control_scale: the strength of each of ``control``, in its order (empty: 1 each).
        cuda_graphs: replay each frame's GPU work as one CUDA graph (CUDA only).
        compile: ``torch.compile`` the network and the autoencoder.
        fps: frames per second of the written video.
        format: ``mp4`` (needs PyAV), ``gif``, or ``auto`` (mp4 when PyAV is installed, else gif).
        seed: seeds the noise.
        device: where to run (the pipeline is moved there).
    """

    mode: str = "img2img"
    source: str = "synthetic"
    num_frames: int = 24
    t_index_list: tuple[int, ...] = (30, 40)
    num_steps: int = 50
    grid: str = "trailing"
    step_rule: str = "ddim"
    guidance: str = "none"
    guidance_scale: float = 1.0
    labels: tuple[int, ...] = ()
    prompts: tuple[str, ...] = ()
    similarity_filter: bool = False
    filter_threshold: float = 0.98
    control: tuple[str, ...] = ()
    control_scale: tuple[float, ...] = ()
    cuda_graphs: bool = False
    compile: bool = False
    fps: int = 8
    format: str = "auto"
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        self.t_index_list = tuple(int(v) for v in self.t_index_list)
        self.labels = tuple(int(v) for v in self.labels)
        self.prompts = tuple(self.prompts)
        self.control = tuple(self.control)
        self.control_scale = tuple(float(v) for v in self.control_scale)
        bad = [k for k in self.control if k not in CONTROL_KINDS]
        if bad:
            raise ValueError(f"control: expected kinds of {CONTROL_KINDS}, got {list(self.control)}")
        if self.control_scale and len(self.control_scale) != len(self.control):
            raise ValueError(
                f"control_scale: expected one value per control {list(self.control)}, got {list(self.control_scale)}"
            )
        _one_of("mode", self.mode, STREAM_MODES)
        _one_of("guidance", self.guidance, STREAM_GUIDANCES)
        _one_of("step_rule", self.step_rule, ("ddim", "consistency"))
        _one_of("format", self.format, VIDEO_FORMATS)
        for name in ("num_steps", "fps"):
            _positive(name, getattr(self, name))
        if self.num_frames < 0:
            raise ValueError(
                f"num_frames: expected >= 0 (0: every frame of the source), got {self.num_frames}"
            )
        if self.mode == "txt2img" and self.num_frames == 0:
            raise ValueError("num_frames: a txt2img stream has no source to exhaust; expected >= 1")


def _align_training() -> TrainConfig:
    """The optimisation of a Diffusion-DPO run: a small constant learning rate after a short warmup, no EMA (the
    run is short and starts from a trained model), a checkpoint every 200 steps (a time-budgeted run resumes with
    ``train.resume=latest``), no TensorBoard."""
    return TrainConfig(
        steps=1000,
        lr=2e-5,
        warmup_steps=10,
        lr_schedule="constant",
        ema_decay=None,
        max_grad_norm=1.0,
        log_every=50,
        checkpoint_every=200,
        keep_last=1,
        output_dir="runs/image-align-dpo",
        progress_bar=True,
        tensorboard=False,
    )


@dataclass
class ImageAlignRewardConfig:
    """Oracle-labelled preference pairs of a text-to-image shapes pipeline and a Bradley-Terry reward model on them
    (``diffuse image align reward``; :mod:`diff_image.align`).

    Attributes:
        num_captions: captions sampled twice each (half one-object, half two-object); pairs are those where exactly
            one sample follows its caption.
        sampler: a ``diffcore.sampling.available()`` name for the pair samples.
        steps: sampler steps.
        guidance: classifier-free guidance scale of the pair samples (None: the pipeline's default).
        anchor_renders: where both samples of a caption fail, pair the caption's data render (the winner) with one
            of them (for an undertrained model whose samples rarely pass).
        held_out: fraction of the pairs kept apart to measure the reward model's accuracy.
        train_steps: reward-model training steps.
        batch_size: pairs per step.
        lr: learning rate of the reward model.
        width: channels of the reward model's CNN.
        seed: seeds the captions, the noise, the split and the reward model.
        device: where to run (the pipeline is moved there).
    """

    num_captions: int = 2000
    sampler: str = "dpmpp_2m"
    steps: int = 20
    guidance: float | None = None
    anchor_renders: bool = False
    held_out: float = 0.2
    train_steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    width: int = 64
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        for name in ("num_captions", "steps", "train_steps", "batch_size", "lr", "width"):
            _positive(name, getattr(self, name))
        if not 0.0 < self.held_out < 1.0:
            raise ValueError(f"held_out: expected a fraction in (0, 1), got {self.held_out}")


@dataclass
class ImageAlignDPOConfig:
    """Diffusion-DPO of a text-to-image shapes pipeline on oracle-labelled pairs (``diffuse image align dpo``).

    Attributes:
        pairs: a folder of preference pairs (``diffuse image align reward`` writes ``OUT/pairs``); empty: sample
            ``num_captions`` captions twice and label them with the oracle first.
        num_captions: captions of fresh pairs.
        sampler: a ``diffcore.sampling.available()`` name (fresh pairs and the evaluation).
        steps: sampler steps.
        guidance: classifier-free guidance scale (None: the pipeline's default).
        anchor_renders: fresh pairs only: where both samples of a caption fail, pair its data render (the winner)
            with one of them.
        beta: DPO's KL coefficient (errors averaged over pixels; Wallace et al. use 5000 for SDXL latents).
        draws: ``(t, noise)`` draws per pair averaged inside the loss (1 = Eq. 14 of the paper).
        batch_size: pairs per step.
        eval_captions: evaluation captions per kind (one- and two-object), each drawn 4 times, before and after.
        train: the optimisation, run folder (the aligned pipeline goes to ``train.output_dir/pipeline``), time budget
            (``train.max_seconds``), seed and device (:class:`diffcore.training.TrainConfig`).
    """

    pairs: str = ""
    num_captions: int = 2000
    sampler: str = "dpmpp_2m"
    steps: int = 20
    guidance: float | None = None
    anchor_renders: bool = False
    beta: float = 2000.0
    draws: int = 1
    batch_size: int = 64
    eval_captions: int = 100
    train: TrainConfig = field(default_factory=_align_training)

    def __post_init__(self) -> None:
        for name in ("num_captions", "steps", "beta", "draws", "batch_size", "eval_captions"):
            _positive(name, getattr(self, name))


@dataclass
class ImageAlignDDPOConfig:
    """DDPO of a text-to-image shapes pipeline against a learned reward model (``diffuse image align ddpo``).

    Attributes:
        reward: the reward model's folder (``diffuse image align reward`` writes ``OUT/reward``).
        iterations: rollout-and-update rounds.
        caption_pool: training captions the rounds draw from (half one-object, half two-object).
        prompts_per_iteration: captions per round.
        samples_per_prompt: rollouts per caption (the per-caption reward statistics use them).
        steps: policy steps (DDIM with ``eta``) from ``t = 1`` to ``t_end``.
        eta: DDIM stochasticity of the policy (1: the DDPM posterior).
        t_end: where the policy stops (> 0: every step stochastic); its state is the sample.
        guidance: classifier-free guidance scale of the policy (None: the pipeline's default).
        lr: learning rate (AdamW) of the backbone.
        clip_range: PPO's ratio clip.
        adv_clip: advantages are clipped to ``[-adv_clip, adv_clip]``.
        inner_epochs: update passes per rollout.
        batch_size: trajectories per optimizer step.
        timestep_fraction: fraction of the steps of each trajectory trained on per pass.
        buffer_size: rewards kept per caption for its running mean and standard deviation.
        min_count: below this many rewards a caption is normalised with the round's statistics.
        eval_captions: evaluation captions per kind (one- and two-object), each drawn 4 times, before and after.
        sampler: a ``diffcore.sampling.available()`` name for the evaluation.
        seed: seeds the captions, rollouts and updates.
        device: where to run (the pipeline is moved there).
    """

    reward: str = ""
    iterations: int = 50
    caption_pool: int = 512
    prompts_per_iteration: int = 16
    samples_per_prompt: int = 8
    steps: int = 20
    eta: float = 1.0
    t_end: float = 0.02
    guidance: float | None = None
    lr: float = 1e-5
    clip_range: float = 1e-4
    adv_clip: float = 5.0
    inner_epochs: int = 1
    batch_size: int = 32
    timestep_fraction: float = 1.0
    buffer_size: int = 32
    min_count: int = 8
    eval_captions: int = 100
    sampler: str = "dpmpp_2m"
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        for name in ("iterations", "caption_pool", "prompts_per_iteration", "samples_per_prompt", "steps", "eta",
                     "lr", "clip_range", "adv_clip", "inner_epochs", "batch_size", "buffer_size", "min_count",
                     "eval_captions"):  # fmt: skip
            _positive(name, getattr(self, name))
        if not 0.0 < self.t_end < 1.0:
            raise ValueError(f"t_end: expected a time in (0, 1), got {self.t_end}")
        if not 0.0 < self.timestep_fraction <= 1.0:
            raise ValueError(
                f"timestep_fraction: expected a fraction in (0, 1], got {self.timestep_fraction}"
            )


def _check_quantize(mode: str) -> None:
    if mode not in QUANTIZATIONS:
        raise ValueError(f"quantize: expected one of {QUANTIZATIONS}, got {mode!r}")
