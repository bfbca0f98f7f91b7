"""Configurations of diff-3d: dataclasses, read from YAML / TOML files and ``--set key=value`` overrides
through :mod:`diffcore.config`. Training settings are the core's :class:`~diffcore.training.TrainConfig`,
nested as ``train`` (``--set train.lr=1e-4``), never restated here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffcore.device import Device
from diffcore.training import TrainConfig

__all__ = [
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


@dataclass
class SplatModelConfig:
    """The denoising network (not implemented yet: issue #27).

    Attributes:
        width: hidden size of the backbone.
        depth: number of blocks.
    """

    width: int = 128
    depth: int = 4


@dataclass
class SplatTrainConfig:
    """One training run.

    Attributes:
        model: the network.
        data_path: a local folder of real data; empty uses the default generated splat primitives.
        batch_size: examples per optimizer step (per process).
        train: the optimisation, checkpoints, device and seed (:class:`diffcore.training.TrainConfig`).
    """

    model: SplatModelConfig = field(default_factory=SplatModelConfig)
    data_path: str = ""
    batch_size: int = 32
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="runs/3d"))


@dataclass
class SplatSampleConfig:
    """Drawing samples from a saved pipeline.

    Attributes:
        num_samples: how many to draw.
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 16
    sampler: str = "dpmpp_2m"
    steps: int = 20
    seed: int = 0
    device: Device = "auto"


@dataclass
class SplatEvaluateConfig:
    """Scoring a saved pipeline against held-out data.

    Attributes:
        num_samples: samples drawn for the metrics.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 256
    seed: int = 0
    device: Device = "auto"


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
