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
    "ProceduralSettings",
    "SplatEvaluateConfig",
    "SplatFitConfig",
    "SplatModelConfig",
    "SplatSampleConfig",
    "SplatTrainConfig",
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
