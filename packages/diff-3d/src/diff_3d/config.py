"""Configurations of diff-3d: dataclasses, read from YAML / TOML files and ``--set key=value`` overrides
through :mod:`diffcore.config`. Training settings are the core's :class:`~diffcore.training.TrainConfig`,
nested as ``train`` (``--set train.lr=1e-4``), never restated here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffcore.device import Device
from diffcore.training import TrainConfig

__all__ = [
    "CONDITIONINGS",
    "DEFAULT_GUIDANCE",
    "REPRESENTATIONS",
    "FitSettings",
    "PriorConfig",
    "PriorNetwork",
    "PriorViews",
    "ProceduralSettings",
    "SDSSettings",
    "SparseViewSettings",
    "SplatEvaluateConfig",
    "SplatFitConfig",
    "SplatModelConfig",
    "SplatSDSConfig",
    "SplatSampleConfig",
    "SplatTrainConfig",
    "ViewPriorConfig",
]

REPRESENTATIONS = ("diffgs", "l3dg")
CONDITIONINGS = ("none", "class", "caption")
DATASETS = ("procedural", "primitives")

DEFAULT_GUIDANCE = 2.0
"""The classifier-free guidance scale used when a conditional pipeline is sampled with ``guidance = 0``."""


def _positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name}: expected a number > 0, got {value!r}")


@dataclass
class SplatModelConfig:
    """The splat autoencoder and the latent denoiser.

    Attributes:
        representation: ``diffgs`` (Gaussian probability / colour / transform functions of a few latent tokens,
            DiffGS) or ``l3dg`` (voxel-aligned Gaussians and a 3D-convolutional VAE, L3DG).
        extent: objects are taken to lie in the cube ``[-extent, extent]^3``.
        latent_tokens: diffgs: latent tokens per object.
        latent_dim: diffgs: width of each latent token.
        field_width: diffgs: width of the set encoder and of the Gaussian functions.
        queries: diffgs: query points per object per autoencoder step.
        refine_steps: diffgs: gradient steps of the extraction's refinement.
        grid_size: l3dg: voxels per axis.
        downsample: l3dg: stride-2 stages of the VAE (latent grid = grid_size / 2^downsample).
        conv_channels: l3dg: channels of the VAE.
        latent_channels: l3dg: channels of the latent grid.
        kl_weight: weight of the autoencoder's KL term.
        width: hidden size of the latent denoiser (a DiT).
        depth: DiT blocks of the denoiser.
        heads: attention heads of the denoiser.
        patch_size: l3dg: patch size of the denoiser over the latent grid (diffgs tokens are never patched).
    """

    representation: str = "l3dg"
    extent: float = 1.0
    latent_tokens: int = 8
    latent_dim: int = 16
    field_width: int = 128
    queries: int = 1024
    refine_steps: int = 4
    grid_size: int = 16
    downsample: int = 2
    conv_channels: int = 32
    latent_channels: int = 8
    kl_weight: float = 1e-4
    width: int = 128
    depth: int = 4
    heads: int = 4
    patch_size: int = 1

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ValueError(
                f"representation: expected one of {', '.join(REPRESENTATIONS)}, got {self.representation!r}"
            )
        _positive(
            self,
            "extent",
            "latent_tokens",
            "latent_dim",
            "field_width",
            "queries",
            "grid_size",
            "width",
            "depth",
            "heads",
        )
        if self.width % self.heads:
            raise ValueError(f"heads: {self.heads} must divide width {self.width}")


@dataclass
class SplatTrainConfig:
    """One training run: the autoencoder first, then rectified flow on its latents.

    Attributes:
        model: the networks.
        data_path: a local folder of 3DGS PLY files (class sub-folders give classes, ``captions.json`` or the
            file name gives captions); empty uses ``dataset``.
        dataset: the default set when ``data_path`` is empty: ``procedural`` (primitives fitted to 3DGS by
            ``diff_3d.data.procedural``, cached) or ``primitives`` (Gaussians sampled on the primitives'
            surfaces, no fitting: seconds).
        num_objects: objects of a generated ``dataset``.
        data_seed: seed of a generated ``dataset``.
        budget: Gaussians per training object (larger sets are subsampled, smaller ones repeated).
        batch_size: objects per optimizer step (per process), for both stages.
        conditioning: ``none``, ``class`` (the data's classes) or ``caption`` (the data's captions); both
            conditional kinds train with condition dropout for classifier-free guidance.
        cond_dropout: probability of training an object without its class / caption.
        autoencoder_steps: optimizer steps of the autoencoder (its optimisation is otherwise ``train``'s, EMA off).
        autoencoder_lr: learning rate of the autoencoder.
        autoencoder_seconds: wall-time budget of the autoencoder stage (0: none); a cut stage is kept as is.
        time_sampler: the training density of ``t`` (a ``diffcore.training.time_sampling`` name).
        train: the latent diffusion's optimisation, checkpoints, device and seed
            (:class:`diffcore.training.TrainConfig`).
    """

    model: SplatModelConfig = field(default_factory=SplatModelConfig)
    data_path: str = ""
    dataset: str = "procedural"
    num_objects: int = 240
    data_seed: int = 0
    budget: int = 1024
    batch_size: int = 32
    conditioning: str = "class"
    cond_dropout: float = 0.1
    autoencoder_steps: int = 2000
    autoencoder_lr: float = 1e-3
    autoencoder_seconds: float = 0.0
    time_sampler: str = "logit-normal"
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            output_dir="runs/3d", lr=3e-4, steps=4000, ema_decay=0.999, warmup_steps=50
        )
    )

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"conditioning: expected one of {', '.join(CONDITIONINGS)}, got {self.conditioning!r}"
            )
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {', '.join(DATASETS)}, got {self.dataset!r}")
        _positive(self, "num_objects", "budget", "batch_size", "autoencoder_steps", "autoencoder_lr")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError(f"cond_dropout: expected a probability in [0, 1], got {self.cond_dropout!r}")
        if self.autoencoder_seconds < 0:
            raise ValueError(f"autoencoder_seconds: expected >= 0, got {self.autoencoder_seconds!r}")


@dataclass
class SplatSampleConfig:
    """Drawing splat objects from a saved pipeline.

    Attributes:
        num_samples: how many objects to draw.
        classes: class names or indices, cycled over the samples (class pipelines; default: every class in
            turn); repeat --class for several.
        prompts: captions, cycled over the samples (caption pipelines; default: the training captions' first
            ones); repeat --prompt for several.
        guidance: classifier-free guidance scale (0: the default on a conditional pipeline, none on an
            unconditional one).
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        budget: Gaussians per object (0: the training budget); any number works for diffgs, l3dg keeps at most
            this many occupied voxels.
        batch_size: objects per sampler call.
        image_size: side of the rendered pictures in pixels.
        turntable: also write a turntable GIF of every object.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 8
    classes: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    guidance: float = 0.0
    sampler: str = "euler"
    steps: int = 30
    budget: int = 0
    batch_size: int = 16
    image_size: int = 96
    turntable: bool = True
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        self.classes = tuple(str(c) for c in self.classes)
        self.prompts = tuple(self.prompts)
        _positive(self, "num_samples", "steps", "batch_size", "image_size")
        if self.budget < 0:
            raise ValueError(f"budget: expected >= 0 Gaussians (0: the training budget), got {self.budget}")


@dataclass
class SplatEvaluateConfig:
    """Scoring a saved pipeline against reference objects of its training set's kind.

    Attributes:
        num_samples: objects generated for the metrics (classes / captions cycled over the reference's).
        num_reference: reference objects (held-out draws of the generated set, or the folder's objects).
        points: surface points per object for the point-cloud metrics (Gaussian centres, subsampled).
        guidance: classifier-free guidance scale (0: the pipeline's default).
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        budget: Gaussians per generated object (0: the training budget).
        classifier_steps: training steps of the render classifier (class adherence and the render Frechet
            distance; 0 skips both).
        image_size: side of the renders the classifier sees.
        views: rendered views per object for the classifier.
        heldout_seed: seed of the held-out reference draws of a generated set.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 64
    num_reference: int = 64
    points: int = 512
    guidance: float = 0.0
    sampler: str = "euler"
    steps: int = 30
    budget: int = 0
    classifier_steps: int = 300
    image_size: int = 32
    views: int = 4
    heldout_seed: int = 1_000_003
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        _positive(self, "num_samples", "num_reference", "points", "steps", "image_size", "views")
        if self.budget < 0 or self.classifier_steps < 0:
            raise ValueError(
                f"budget, classifier_steps: expected >= 0, got {self.budget}, {self.classifier_steps}"
            )


# -- fitting Gaussians to views (diff_3d.fit, diff_3d.data.procedural, `diffuse 3d fit`) --------------------
@dataclass
class FitSettings:
    """How to fit one object.

    Attributes:
        steps: optimisation steps.
        views_per_step: random views rendered per step (all of them when larger than the number of views).
        ssim_weight: lambda of the loss ``(1 - lambda) L1 + lambda (1 - SSIM)``.
        lr_means: learning rate of the means, times the scene extent; decays to 1% of it by the last step.
        lr_sh_dc: learning rate of the DC colour coefficients.
        lr_sh_rest: learning rate of the higher SH coefficients.
        lr_opacity: learning rate of the opacity logits.
        lr_scales: learning rate of the log scales.
        lr_quats: learning rate of the quaternions.
        relocate_every: every this many steps, move near-transparent Gaussians onto live ones (0: never).
        background: the background colour the images were composited over.
        backend: renderer, ``auto`` | ``torch`` | ``gsplat``.
    """

    steps: int = 300
    views_per_step: int = 4
    ssim_weight: float = 0.2
    lr_means: float = 5e-3
    lr_sh_dc: float = 2.5e-2
    lr_sh_rest: float = 1.25e-3
    lr_opacity: float = 5e-2
    lr_scales: float = 2e-2
    lr_quats: float = 5e-3
    relocate_every: int = 0
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    backend: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps: expected an integer >= 0, got {self.steps!r}")
        if self.views_per_step < 1:
            raise ValueError(f"views_per_step: expected >= 1, got {self.views_per_step!r}")
        if not 0 <= self.ssim_weight <= 1:
            raise ValueError(f"ssim_weight: expected a value in [0, 1], got {self.ssim_weight!r}")


@dataclass
class ProceduralSettings:
    """How the procedural set is made (:mod:`diff_3d.data.procedural`): true renders of each primitive on orbit
    cameras, fitted to a fixed budget of Gaussians.

    Attributes:
        num_gaussians: Gaussians per object (fixed: no densification).
        views: orbit cameras per object, alternating between the two elevations.
        resolution: side of the square true renders in pixels.
        elevations: the two camera elevations in degrees.
        radius: camera distance from the origin.
        compositions: fraction of objects that are two stacked primitives (0: single primitives only).
        fit: the optimisation of each object.
    """

    num_gaussians: int = 1024
    views: int = 12
    resolution: int = 64
    elevations: tuple[float, float] = (15.0, 45.0)
    radius: float = 2.6
    compositions: float = 0.0
    fit: FitSettings = field(default_factory=FitSettings)

    def __post_init__(self) -> None:
        for name in ("num_gaussians", "views", "resolution"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if not 0 <= self.compositions <= 1:
            raise ValueError(f"compositions: expected a fraction in [0, 1], got {self.compositions!r}")


@dataclass
class SplatFitConfig:
    """``diffuse 3d fit``: fit Gaussians to multi-view sets, write a PLY per object, renders and PSNR.

    Attributes:
        data_path: a folder of multi-view sets (sub-folders each with ``transforms.json`` or
            ``transforms_train.json``, NeRF-synthetic format; or one such set); empty fits the procedural
            objects.
        output_dir: where the PLY files, ``renders.png`` and ``metrics.json`` go.
        num_objects: procedural objects to fit when ``data_path`` is empty.
        num_gaussians: Gaussians per real object (random initialisation in the cube ``[-extent, extent]^3``).
        extent: half-size of the cube real objects are initialised in.
        max_views: views read per real set (0: all).
        resolution: real images are resampled to this side in pixels (0: as stored).
        background: the background colour transparent pixels are composited on.
        turntable: also write a turntable GIF (and MP4 with PyAV) of each fitted object.
        cache_dir: where the procedural set is cached (empty: not cached).
        procedural: how procedural objects are rendered (its ``fit`` is replaced by ``fit`` below).
        fit: the optimisation of every object.
        seed: seeds object choice, initialisation and view order.
        device: where to run.
    """

    data_path: str = ""
    output_dir: str = "runs/3d-fit"
    num_objects: int = 6
    num_gaussians: int = 4096
    extent: float = 1.3
    max_views: int = 0
    resolution: int = 64
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    turntable: bool = False
    cache_dir: str = ""
    procedural: ProceduralSettings = field(default_factory=ProceduralSettings)
    fit: FitSettings = field(default_factory=FitSettings)
    seed: int = 0
    device: Device = "auto"


# -- the 2D prior, score distillation and sparse-view completion (diff_3d.prior, .sds, .sparse_view) ----------
def _prior_training() -> TrainConfig:
    """The optimisation of a prior: AdamW 1e-3 with a short warmup and a cosine decay, EMA with warm-up, one
    checkpoint at the end, no TensorBoard."""
    return TrainConfig(steps=2000, lr=1e-3, lr_schedule="cosine", warmup_steps=20, min_lr_ratio=0.1,
                       ema_decay=0.999, log_every=100, checkpoint_every=None, keep_last=1, tensorboard=False,
                       output_dir="runs/3d-prior")  # fmt: skip


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")


@dataclass
class PriorViews:
    """Where the prior's training renders are seen from, and how large they are; SDS and the view-conditioned
    prior render from the same distribution.

    Attributes:
        resolution: side of the square renders in pixels (a multiple of 4).
        radius: camera distance from the origin.
        min_elevation: lowest camera elevation in degrees.
        max_elevation: highest camera elevation in degrees.
        background: the background colour (RGB in [0, 1]) the primitives are rendered over.
    """

    resolution: int = 32
    radius: float = 2.6
    min_elevation: float = -10.0
    max_elevation: float = 60.0
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        _positive_int("resolution", self.resolution)
        if self.resolution % 4:
            raise ValueError(
                f"resolution: expected a multiple of 4 (two U-Net downsamplings), got {self.resolution}"
            )
        if not self.radius > 1.0:
            raise ValueError(
                f"radius: expected a camera distance > 1 (outside the objects), got {self.radius!r}"
            )
        if not -90 < self.min_elevation < self.max_elevation < 90:
            raise ValueError(
                "min_elevation, max_elevation: expected -90 < min < max < 90 degrees, got "
                f"{self.min_elevation}, {self.max_elevation}"
            )


@dataclass
class PriorNetwork:
    """The U-Net of a prior (diffcore's ADM / SD U-Net).

    Attributes:
        width: channels of the first level.
        depth: residual blocks per level.
        channel_mult: width multipliers, one per level (``len - 1`` downsamplings).
        attention_levels: levels with self-attention (0 = full resolution).
        heads: attention heads.
        schedule: the diffcore path (``vp-cosine``, ``rectified-flow``, ...); t in [0, 1], 0 = data.
        prediction: what the network predicts (``eps``, ``v``, ``x0``, ``velocity``).
    """

    width: int = 64
    depth: int = 1
    channel_mult: tuple[int, ...] = (1, 2, 2)
    attention_levels: tuple[int, ...] = (2,)
    heads: int = 4
    schedule: str = "vp-cosine"
    prediction: str = "v"

    def __post_init__(self) -> None:
        self.channel_mult = tuple(self.channel_mult)
        self.attention_levels = tuple(self.attention_levels)
        _positive_int("width", self.width)
        _positive_int("depth", self.depth)
        if self.prediction not in ("eps", "v", "x0", "velocity"):
            raise ValueError(f"prediction: expected eps, v, x0 or velocity, got {self.prediction!r}")


@dataclass
class PriorConfig:
    """Training the class-conditional 2D prior (:func:`diff_3d.prior.train_prior`) on true renders of the
    primitives: one class per (kind, colour), label ``kinds.index(kind) * len(colors) + colors.index(colour)``.

    Attributes:
        kinds: primitive kinds (empty: all six).
        colors: palette colours (empty: all eight).
        views_per_class: random-camera renders of each class.
        views: cameras and image size of the renders.
        network: the U-Net and its path.
        batch_size: images per optimizer step.
        cond_dropout: probability of the null class in training (classifier-free guidance).
        train: the optimisation, device, seed and run folder (the prior is saved in ``output_dir/prior``).
    """

    kinds: tuple[str, ...] = ()
    colors: tuple[str, ...] = ()
    views_per_class: int = 48
    views: PriorViews = field(default_factory=PriorViews)
    network: PriorNetwork = field(default_factory=PriorNetwork)
    batch_size: int = 64
    cond_dropout: float = 0.1
    train: TrainConfig = field(default_factory=_prior_training)

    def __post_init__(self) -> None:
        self.kinds, self.colors = tuple(self.kinds), tuple(self.colors)
        _positive_int("views_per_class", self.views_per_class)
        _positive_int("batch_size", self.batch_size)
        if not 0 <= self.cond_dropout < 1:
            raise ValueError(f"cond_dropout: expected a probability in [0, 1), got {self.cond_dropout!r}")


@dataclass
class ViewPriorConfig:
    """Training the view-conditioned prior (:func:`diff_3d.prior.train_view_prior`): a U-Net that denoises a
    target view given one reference view of the same object (channel-concatenated) and the cameras' relative
    pose (an embedding added to the time embedding), trained on pairs of true renders (Zero123-style, small).

    Attributes:
        kinds: primitive kinds (empty: all six).
        colors: palette colours (empty: all eight).
        sizes: primitive sizes drawn for the objects (names of ``diff_3d.data.primitives.SIZES``).
        objects: random objects (kind, colour, size) rendered.
        views_per_object: random-camera renders of each object; pairs are drawn among them.
        pairs: (reference, target) pairs in the training set.
        views: cameras and image size of the renders.
        network: the U-Net and its path.
        batch_size: pairs per optimizer step.
        train: the optimisation, device, seed and run folder (saved in ``output_dir/view_prior``).
    """

    kinds: tuple[str, ...] = ()
    colors: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ("small", "medium", "large")
    objects: int = 96
    views_per_object: int = 12
    pairs: int = 8192
    views: PriorViews = field(default_factory=PriorViews)
    network: PriorNetwork = field(default_factory=PriorNetwork)
    batch_size: int = 64
    train: TrainConfig = field(default_factory=lambda: _replace_dir(_prior_training(), "runs/3d-view-prior"))

    def __post_init__(self) -> None:
        self.kinds, self.colors, self.sizes = tuple(self.kinds), tuple(self.colors), tuple(self.sizes)
        for name in ("objects", "pairs", "batch_size"):
            _positive_int(name, getattr(self, name))
        if (
            isinstance(self.views_per_object, bool)
            or not isinstance(self.views_per_object, int)
            or (self.views_per_object < 2)
        ):
            raise ValueError(
                f"views_per_object: expected an integer >= 2 (pairs), got {self.views_per_object!r}"
            )


def _replace_dir(train: TrainConfig, output_dir: str) -> TrainConfig:
    train.output_dir = output_dir
    return train


@dataclass
class SDSSettings:
    """Score distillation (:func:`diff_3d.sds.optimise_sds`): optimise Gaussians so that their renders score
    well under the frozen prior.

    Attributes:
        method: ``sds`` (DreamFusion: ``w(t) (eps_cfg - eps)``) or ``csd`` (classifier score distillation:
            ``w(t) s (eps_cond - eps_uncond)``, no noise residual).
        guidance: the classifier-free guidance scale ``s`` (DreamFusion uses 100).
        steps: optimisation steps.
        views_per_step: random cameras rendered per step (one batch through the prior).
        t_min: smallest diffusion time drawn (t in [0, 1], 0 = data).
        t_max_start: largest time drawn at the first step.
        t_max_end: largest time drawn at the last step (linear annealing from ``t_max_start``).
        num_gaussians: Gaussians of the initial blob.
        init_radius: radius of the ball the initial means are drawn in.
        init_opacity: initial opacity of every Gaussian.
        lr_means: Adam learning rate of the means (decays to 10% by the last step).
        lr_colors: learning rate of the DC colour coefficients.
        lr_opacity: learning rate of the opacity logits.
        lr_scales: learning rate of the log scales.
        lr_quats: learning rate of the quaternions.
        max_scale: largest standard deviation a Gaussian may grow to (clamped after each step).
        backend: renderer, ``auto`` | ``torch`` | ``gsplat``.
    """

    method: str = "sds"
    guidance: float = 100.0
    steps: int = 400
    views_per_step: int = 4
    t_min: float = 0.02
    t_max_start: float = 0.98
    t_max_end: float = 0.5
    num_gaussians: int = 1024
    init_radius: float = 0.35
    init_opacity: float = 0.3
    lr_means: float = 5e-3
    lr_colors: float = 2.5e-2
    lr_opacity: float = 5e-2
    lr_scales: float = 1e-2
    lr_quats: float = 5e-3
    max_scale: float = 0.15
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in ("sds", "csd"):
            raise ValueError(f"method: expected sds or csd, got {self.method!r}")
        for name in ("steps", "views_per_step", "num_gaussians"):
            _positive_int(name, getattr(self, name))
        if not 0 < self.t_min <= self.t_max_end <= self.t_max_start < 1:
            raise ValueError(
                "t_min, t_max_end, t_max_start: expected 0 < t_min <= t_max_end <= t_max_start < 1, got "
                f"{self.t_min}, {self.t_max_end}, {self.t_max_start}"
            )
        if not self.guidance > 0:
            raise ValueError(f"guidance: expected a scale > 0, got {self.guidance!r}")
        if not self.init_radius > 0 or not self.max_scale > 0:
            raise ValueError(
                f"init_radius, max_scale: expected > 0, got {self.init_radius!r}, {self.max_scale!r}"
            )


@dataclass
class SplatSDSConfig:
    """``diffuse 3d sds``: distil a 3D Gaussian object from a prompt with a trained 2D prior.

    Attributes:
        prompt: what to make: a colour and a kind of the prior's classes ("a red sphere").
        prior: the folder of a prior saved by :func:`diff_3d.prior.train_prior` (``OUT/prior`` of its run).
        output_dir: where ``object.ply``, ``turntable.gif``, ``views.png`` and ``metrics.json`` go.
        sds: the optimisation.
        turntable_frames: frames of the turntable GIF.
        seed: seeds the initial Gaussians, cameras, times and noise.
        device: where to run.
    """

    prompt: str = "a red sphere"
    prior: str = ""
    output_dir: str = "runs/3d-sds"
    sds: SDSSettings = field(default_factory=SDSSettings)
    turntable_frames: int = 24
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        _positive_int("turntable_frames", self.turntable_frames)


@dataclass
class SparseViewSettings:
    """Sparse-view completion (:func:`diff_3d.sparse_view.complete_sparse_views`): fit Gaussians to a few real
    views plus pseudo-views generated by the view-conditioned prior.

    Attributes:
        input_views: real views given (on an orbit at elevation ``elevation``, evenly spaced in azimuth).
        pseudo_views: cameras the prior generates views for (orbit, offset half a step from the inputs).
        held_out_views: cameras the fits are scored on (orbit, offset a quarter step).
        elevation: elevation of all the orbits in degrees.
        pseudo_weight: weight of a pseudo-view's loss relative to a real view's (1).
        sample_steps: sampler steps per generated view.
        sampler: a ``diffcore.sampling.available()`` name.
        num_gaussians: Gaussians of the fit (surface of a sphere of radius 0.5 to start).
        fit: the optimisation of both fits.
    """

    input_views: int = 3
    pseudo_views: int = 6
    held_out_views: int = 6
    elevation: float = 20.0
    pseudo_weight: float = 0.3
    sample_steps: int = 20
    sampler: str = "dpmpp_2m"
    num_gaussians: int = 512
    fit: FitSettings = field(default_factory=lambda: FitSettings(steps=300))

    def __post_init__(self) -> None:
        for name in ("input_views", "pseudo_views", "held_out_views", "sample_steps", "num_gaussians"):
            _positive_int(name, getattr(self, name))
        if not self.pseudo_weight >= 0:
            raise ValueError(f"pseudo_weight: expected >= 0, got {self.pseudo_weight!r}")
