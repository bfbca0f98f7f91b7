"""The 2D priors of score distillation and sparse-view completion, trained here on true renders of the
primitives (:mod:`diff_3d.render.sdf_trace`) from random cameras on a sphere.

- :class:`Prior2D`: a class-conditional image diffusion model (a diff-image :class:`~diff_image.ImagePipeline`
  holding a diffcore U-Net), one class per (kind, colour), trained with condition dropout so that
  classifier-free guidance applies. :func:`train_prior` makes one; ``Prior2D.from_pretrained`` loads it.
- :class:`ViewPrior`: a view-conditioned model (Zero123-style, Liu et al. 2023, small): it denoises a target
  view of an object given one reference view of it, concatenated to the noisy input as 3 more channels, and
  the pose of the target camera relative to the reference (:func:`relative_pose`), embedded with Fourier
  features and added to the U-Net's time embedding. :func:`train_view_prior` trains it on pairs of renders of
  the same object.

Conventions: images given to or returned by the networks are ``(B, 3, H, W)`` in ``[-1, 1]``; renders are
``(V, H, W, 3)`` in ``[0, 1]`` (:func:`to_model_space` / :func:`to_rgb` convert). Time runs from ``t = 0``
(data) to ``t = 1`` (noise); ``x_t = alpha_t x_0 + sigma_t eps`` on the prior's diffcore schedule.

On disk a :class:`Prior2D` is the ImagePipeline folder plus ``prior.json`` (its classes and cameras); a
:class:`ViewPrior` is the network's ``save_pretrained`` folder plus ``view_prior.json``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from diffcore.io import read_json, write_json
from diffcore.nn.unet import UNet, UNetConfig
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.pretrained import PretrainedModel, load_pretrained
from diffcore.rng import seeded
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from diff_3d.cameras import Camera, random_cameras
from diff_3d.config import PriorConfig, PriorNetwork, PriorViews, ViewPriorConfig
from diff_3d.data.primitives import KINDS, PALETTE, SIZES, Primitive
from diff_3d.render.sdf_trace import render_sdf

__all__ = [
    "POSE_DIM",
    "Prior2D",
    "ViewConditionedUNet",
    "ViewPrior",
    "ViewUNetConfig",
    "camera_angles",
    "prior_cameras",
    "prior_classes",
    "relative_pose",
    "render_class_views",
    "render_view_pairs",
    "to_model_space",
    "to_rgb",
    "train_prior",
    "train_view_prior",
]

PRIOR_FILE = "prior.json"
VIEW_PRIOR_FILE = "view_prior.json"
POSE_DIM = 6
"""Length of :func:`relative_pose`'s vector."""


# -- images and cameras -------------------------------------------------------------------------------------------
def to_model_space(rgb: Tensor) -> Tensor:
    """Renders ``(V, H, W, 3)`` in [0, 1] -> network images ``(V, 3, H, W)`` in [-1, 1]."""
    return rgb.permute(0, 3, 1, 2) * 2 - 1


def to_rgb(x: Tensor) -> Tensor:
    """Network images ``(V, 3, H, W)`` in [-1, 1] -> renders ``(V, H, W, 3)`` in [0, 1] (clamped)."""
    return ((x.permute(0, 2, 3, 1) + 1) / 2).clamp(0, 1)


def prior_cameras(n: int, views: PriorViews, generator: torch.Generator | None = None) -> list[Camera]:
    """``n`` random cameras of the prior's distribution: on the sphere of radius ``views.radius`` between its
    elevations (uniform in area), looking at the origin, ``views.resolution`` pixels square."""
    return random_cameras(n, views.radius, generator, min_elevation=views.min_elevation,
                          max_elevation=views.max_elevation, width=views.resolution, height=views.resolution)  # fmt: skip


def camera_angles(camera: Camera) -> tuple[float, float]:
    """``(elevation, azimuth)`` in radians of the camera centre seen from the origin (y up; azimuth 0 on +z,
    increasing towards +x, as :func:`~diff_3d.cameras.orbit_cameras`)."""
    x, y, z = (float(v) for v in camera.position.double())
    return math.atan2(y, math.hypot(x, z)), math.atan2(x, z)


def relative_pose(reference: Camera, target: Camera) -> Tensor:
    """(6,) float32 pose of ``target`` relative to ``reference``: ``[el_r, sin az_r, cos az_r, el_t - el_r,
    sin(az_t - az_r), cos(az_t - az_r)]`` (radians). Zero123 feeds the relative elevation, azimuth and radius;
    our renders' light is fixed in the world, so the reference's own elevation and azimuth are given too."""
    el_r, az_r = camera_angles(reference)
    el_t, az_t = camera_angles(target)
    d = az_t - az_r
    return torch.tensor([el_r, math.sin(az_r), math.cos(az_r), el_t - el_r, math.sin(d), math.cos(d)])


def _render(shape: Primitive, cams: Sequence[Camera], views: PriorViews) -> Tensor:
    """(V, 3, H, W) uint8 true renders."""
    rgb = torch.stack([render_sdf(shape, c, views.background).rgb for c in cams])
    return (rgb.permute(0, 3, 1, 2) * 255).round().clamp(0, 255).to(torch.uint8)


# -- classes ------------------------------------------------------------------------------------------------------
def prior_classes(kinds: Sequence[str] = (), colors: Sequence[str] = ()) -> list[Primitive]:
    """The classes, one large primitive at the origin per (kind, colour), in label order ``kind-major``:
    ``label = kinds.index(kind) * len(colors) + colors.index(colour)``. Empty: all kinds / all colours."""
    kinds, colors = tuple(kinds) or KINDS, tuple(colors) or tuple(PALETTE)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"kinds: expected names from {', '.join(KINDS)}, got {k!r}")
    for c in colors:
        if c not in PALETTE:
            raise ValueError(f"colors: expected names from {', '.join(PALETTE)}, got {c!r}")
    return [Primitive(k, c) for k in kinds for c in colors]


def render_class_views(
    classes: Sequence[Primitive], per_class: int, views: PriorViews, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """True renders of every class from ``per_class`` random cameras each: images ``(N, 3, H, W)`` uint8 and
    labels ``(N,)`` (the class index), ``N = len(classes) * per_class``."""
    images, labels = [], []
    for label, shape in enumerate(classes):
        images.append(_render(shape, prior_cameras(per_class, views, generator), views))
        labels.append(torch.full((per_class,), label, dtype=torch.long))
    return torch.cat(images), torch.cat(labels)


class _Batches(Dataset):
    """Training batches gathered at once (``__getitems__``): ``{"x": images[x_index] in [-1, 1], **extra}``
    with, when ``ref_index`` is given, ``"ref": images[ref_index]``; ``extra`` holds per-item tensors."""

    def __init__(
        self, images: Tensor, x_index: Tensor, extra: dict[str, Tensor], ref_index: Tensor | None = None
    ) -> None:
        self.images, self.x_index, self.extra, self.ref_index = images, x_index, extra, ref_index

    def __len__(self) -> int:
        return int(self.x_index.shape[0])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        out = {"x": self.images[self.x_index[idx]].float() / 127.5 - 1}
        if self.ref_index is not None:
            out["ref"] = self.images[self.ref_index[idx]].float() / 127.5 - 1
        out.update({k: v[idx] for k, v in self.extra.items()})
        return out

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def _whole(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return batch


def _fit(model: nn.Module, objective: Any, data: _Batches, batch_size: int, train: Any) -> nn.Module:
    """Train ``model`` with diffcore's Trainer (run folder ``train.output_dir``); the EMA (or last) weights."""
    from diffcore.training import Trainer

    n = len(data)
    loader = DataLoader(data, batch_size=min(batch_size, n), shuffle=True, drop_last=n >= batch_size,
                        collate_fn=_whole)  # fmt: skip
    trainer = Trainer(model, objective, loader, train)
    trainer.fit()
    trained = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
    return trained.eval()


# -- the class-conditional prior ----------------------------------------------------------------------------------
@dataclass
class Prior2D:
    """A class-conditional image prior over renders of the primitives.

    Attributes:
        pipeline: the diff-image pipeline (network, schedule, prediction; ``num_classes`` classes, null class
            ``num_classes``).
        classes: the primitive of each label.
        views: the cameras and image size it was trained on (SDS renders from the same distribution).
    """

    pipeline: Any
    classes: list[Primitive]
    views: PriorViews

    @property
    def device(self) -> torch.device:
        return self.pipeline.device

    @property
    def null_label(self) -> int:
        return len(self.classes)

    def denoiser(self) -> DenoiserBase:
        """The network as a diffcore denoiser (``x0``, ``eps``, ``velocity`` in any parameterisation)."""
        return self.pipeline.denoiser(self.pipeline.network.eval())

    def label(self, prompt: str) -> int:
        """The class a prompt names: its colour word and kind word (``"a red sphere"``); an error otherwise."""
        words = prompt.lower().replace(",", " ").split()
        kinds = list(dict.fromkeys(c.kind for c in self.classes))
        colors = list(dict.fromkeys(c.color for c in self.classes))
        kind = next((w for w in words if w in kinds), None)
        color = next((w for w in words if w in colors), None)
        if kind is None or color is None:
            raise ValueError(
                f"prompt: expected a colour ({', '.join(colors)}) and a kind ({', '.join(kinds)}) of the prior's "
                f"classes, got {prompt!r}"
            )
        return next(i for i, c in enumerate(self.classes) if c.kind == kind and c.color == color)

    @torch.no_grad()
    def classify(
        self,
        images: Tensor,
        times: Sequence[float] = (0.3, 0.5, 0.7),
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Diffusion classifier (Li et al. 2023, "Your diffusion model is secretly a zero-shot classifier"):
        logits ``(B, K)`` = minus the mean squared eps error of the conditional model for each class, over
        ``times`` with the same noise for every class. ``images``: ``(B, 3, H, W)`` in [-1, 1]."""
        den, dev = self.denoiser(), self.device
        x0 = images.to(dev, torch.float32)
        b, k = x0.shape[0], len(self.classes)
        labels = torch.arange(k, device=dev).repeat_interleave(b)
        err = torch.zeros(k * b, device=dev)
        for t in times:
            eps = torch.randn(x0.shape, generator=generator).to(dev)
            c = den.coefficients(float(t), x0)
            x_t = (c.alpha * x0 + c.sigma * eps).repeat(k, 1, 1, 1)
            eps_hat = den.eps(x_t, float(t), y=labels)
            err += ((eps_hat - eps.repeat(k, 1, 1, 1)) ** 2).flatten(1).mean(1)
        return -(err / len(times)).reshape(k, b).T

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """The pipeline folder with ``prior.json`` (classes and cameras) beside ``pipeline.json``."""
        folder = self.pipeline.save_pretrained(directory)
        meta = {"classes": [c.to_dict() for c in self.classes], "views": asdict(self.views)}
        write_json(meta, Path(folder) / PRIOR_FILE)
        return Path(folder)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> Prior2D:
        """Load a folder written by :meth:`save_pretrained` onto ``device``."""
        from diff_image import ImagePipeline

        folder = Path(directory)
        if not (folder / PRIOR_FILE).is_file():
            raise FileNotFoundError(
                f"prior: {folder} holds no {PRIOR_FILE}; expected a folder saved by train_prior"
            )
        meta = read_json(folder / PRIOR_FILE, "a prior's classes and cameras")
        views = meta["views"]
        views["background"] = tuple(views["background"])
        classes = [Primitive(d["kind"], d["color"], d["size"], tuple(d["center"]), float(d["scale"]))
                   for d in meta["classes"]]  # fmt: skip
        return cls(ImagePipeline.from_pretrained(folder, device), classes, PriorViews(**views))


def _unet_config(net: PriorNetwork, in_channels: int, out_channels: int, **kw: Any) -> UNetConfig:
    groups = 8 if net.width % 8 == 0 else 1
    return UNetConfig(in_channels=in_channels, out_channels=out_channels, model_channels=net.width,
                      channel_mult=net.channel_mult, num_res_blocks=net.depth, attention_levels=net.attention_levels,
                      num_heads=net.heads, num_groups=groups, **kw)  # fmt: skip


def train_prior(config: PriorConfig, *, save: bool = True) -> Prior2D:
    """Render the classes (:func:`render_class_views`), train the class-conditional U-Net with condition
    dropout ``config.cond_dropout`` on ``config.network``'s path, and (when ``save``) write it to
    ``config.train.output_dir/prior``. Seeded by ``config.train.seed``; the global RNG is left as it was."""
    from diff_image import ImagePipeline
    from diffcore.device import resolve_device
    from diffcore.training.objectives import DiffusionObjective

    classes = prior_classes(config.kinds, config.colors)
    gen = torch.Generator().manual_seed(config.train.seed)
    images, labels = render_class_views(classes, config.views_per_class, config.views, gen)
    net = config.network
    with seeded(config.train.seed):
        model = UNet(_unet_config(net, 3, 3, num_classes=len(classes)))
    objective = DiffusionObjective(net.schedule, prediction=net.prediction, cond_dropout=config.cond_dropout,
                                   null_cond={"y": len(classes)})  # fmt: skip
    data = _Batches(images, torch.arange(len(labels)), {"y": labels})
    trained = _fit(model, objective, data, config.batch_size, config.train)
    device = resolve_device(config.train.device)
    res = config.views.resolution
    pipe = ImagePipeline(trained.to(device), net.schedule, net.prediction, sample_shape=(3, res, res),
                         num_classes=len(classes))  # fmt: skip
    prior = Prior2D(pipe, classes, config.views)
    if save:
        prior.save_pretrained(Path(config.train.output_dir) / "prior")
    return prior


# -- the view-conditioned prior -----------------------------------------------------------------------------------
@dataclass
class ViewUNetConfig:
    """Shape of a :class:`ViewConditionedUNet`.

    Attributes:
        unet: the U-Net (6 input channels: noisy target and reference; 3 output channels; ``pooled_dim`` is
            set from the pose embedding).
        pose_frequencies: Fourier octaves of the pose embedding (``POSE_DIM * (1 + 2 F)`` features).
    """

    unet: UNetConfig
    pose_frequencies: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):
            self.unet = UNetConfig(**self.unet)


class ViewConditionedUNet(PretrainedModel):
    """``net(x_t, t, ref, pose)``: a U-Net on ``cat([x_t, ref], channels)`` with the Fourier embedding of
    ``pose`` (:func:`relative_pose`, ``(B, 6)``) added to its time embedding; predicts ``(B, 3, H, W)``."""

    config_class = ViewUNetConfig

    def __init__(self, config: ViewUNetConfig) -> None:
        super().__init__(config)
        dim = POSE_DIM * (1 + 2 * config.pose_frequencies)
        self.unet = UNet(replace(config.unet, in_channels=6, out_channels=3, pooled_dim=dim))
        self.register_buffer("freqs", 2.0 ** torch.arange(config.pose_frequencies), persistent=False)

    def embed_pose(self, pose: Tensor) -> Tensor:
        """(B, 6) -> (B, 6 (1 + 2 F)): the pose and ``sin, cos`` of it at ``2^0 .. 2^(F-1)``."""
        ang = pose[..., None] * self.freqs.to(pose.dtype)
        return torch.cat([pose, ang.sin().flatten(1), ang.cos().flatten(1)], dim=1)

    def forward(self, x: Tensor, t: Tensor, ref: Tensor, pose: Tensor) -> Tensor:
        """The prediction ``(B, 3, H, W)`` for the noisy view ``x`` at ``t: (B,)``, given the reference view
        ``ref`` ``(B, 3, H, W)`` and the relative camera ``pose`` ``(B, 6)``."""
        return self.unet(torch.cat([x, ref.to(x.dtype)], dim=1), t, pooled=self.embed_pose(pose.to(x.dtype)))


@dataclass
class ViewPrior:
    """A view-conditioned prior: a :class:`ViewConditionedUNet` with its path.

    Attributes:
        network: the network.
        schedule: its diffcore schedule name.
        prediction: what it predicts.
        views: the cameras and image size it was trained on.
    """

    network: ViewConditionedUNet
    schedule: str
    prediction: str
    views: PriorViews

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def denoiser(self) -> DenoiserBase:
        """The network as a :class:`~diffcore.Denoiser` (eval mode) on the prior's schedule and prediction."""
        return Denoiser(self.network.eval(), self.schedule, self.prediction)

    @torch.no_grad()
    def generate(
        self,
        reference: Tensor,
        reference_camera: Camera,
        cameras: Sequence[Camera],
        *,
        steps: int = 20,
        sampler: str = "dpmpp_2m",
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Views ``(V, H, W, 3)`` in [0, 1] of the object in ``reference`` (``(H, W, 3)`` in [0, 1], seen by
        ``reference_camera``) from each of ``cameras``, sampled with ``sampler`` in ``steps`` steps."""
        from diffcore.sampling import sample

        res = self.views.resolution
        if tuple(reference.shape) != (res, res, 3):
            raise ValueError(f"reference: expected a ({res}, {res}, 3) image, got {tuple(reference.shape)}")
        dev, v = self.device, len(cameras)
        ref = to_model_space(reference[None].to(dev, torch.float32)).expand(v, -1, -1, -1)
        pose = torch.stack([relative_pose(reference_camera, c) for c in cameras]).to(dev)
        noise = torch.randn((v, 3, res, res), generator=generator).to(dev)
        x = sample(self.denoiser(), noise, sampler=sampler, steps=steps, cond={"ref": ref, "pose": pose})
        return to_rgb(x.clamp(-1, 1)).cpu()

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write the network (``config.json`` + ``model.safetensors``) and the schedule, prediction and
        cameras to ``directory``; returns the folder."""
        folder = self.network.save_pretrained(directory)
        meta = {"schedule": self.schedule, "prediction": self.prediction, "views": asdict(self.views)}
        write_json(meta, Path(folder) / VIEW_PRIOR_FILE)
        return Path(folder)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> ViewPrior:
        """Read a prior written by :meth:`save_pretrained`; a folder without its metadata file raises
        ``FileNotFoundError`` naming it."""
        folder = Path(directory)
        if not (folder / VIEW_PRIOR_FILE).is_file():
            raise FileNotFoundError(
                f"view_prior: {folder} holds no {VIEW_PRIOR_FILE}; expected a folder saved by train_view_prior"
            )
        meta = read_json(folder / VIEW_PRIOR_FILE, "a view prior's path and cameras")
        views = dict(meta["views"], background=tuple(meta["views"]["background"]))
        net = load_pretrained(folder, device=device)
        return cls(net, meta["schedule"], meta["prediction"], PriorViews(**views))  # type: ignore[arg-type]


@dataclass
class ViewPairs:
    """Pairs of true renders of the same object.

    Attributes:
        images: ``(O * V, 3, H, W)`` uint8, object ``o``'s views at rows ``o V .. o V + V - 1``.
        cameras: the camera of each row.
        objects: the primitive of each object.
        reference: ``(P,)`` row of each pair's reference view.
        target: ``(P,)`` row of each pair's target view (another view of the same object).
        pose: ``(P, 6)`` :func:`relative_pose` of the target camera to the reference camera.
    """

    images: Tensor
    cameras: list[Camera]
    objects: list[Primitive]
    reference: Tensor
    target: Tensor
    pose: Tensor


def render_view_pairs(config: ViewPriorConfig, generator: torch.Generator | None = None) -> ViewPairs:
    """Render ``config.objects`` random objects (kind, colour, size) from ``config.views_per_object`` random
    cameras each and draw ``config.pairs`` ordered pairs of distinct views of one object."""
    kinds = config.kinds or KINDS
    colors = config.colors or tuple(PALETTE)
    for s in config.sizes:
        if s not in SIZES:
            raise ValueError(f"sizes: expected names from {', '.join(SIZES)}, got {s!r}")
    prims = prior_classes(kinds, colors)
    v = config.views_per_object
    objects, images, cameras = [], [], []
    for _ in range(config.objects):
        base = prims[int(torch.randint(len(prims), (1,), generator=generator))]
        size = config.sizes[int(torch.randint(len(config.sizes), (1,), generator=generator))]
        obj = Primitive(base.kind, base.color, size)
        cams = prior_cameras(v, config.views, generator)
        objects.append(obj)
        cameras += cams
        images.append(_render(obj, cams, config.views))
    o = torch.randint(config.objects, (config.pairs,), generator=generator)
    i = torch.randint(v, (config.pairs,), generator=generator)
    j = (i + torch.randint(1, v, (config.pairs,), generator=generator)) % v  # never i
    ref, tgt = o * v + i, o * v + j
    pose = torch.stack([relative_pose(cameras[a], cameras[b]) for a, b in zip(ref.tolist(), tgt.tolist())])
    return ViewPairs(torch.cat(images), cameras, objects, ref, tgt, pose)


def train_view_prior(config: ViewPriorConfig, *, save: bool = True) -> ViewPrior:
    """Render pairs (:func:`render_view_pairs`), train the :class:`ViewConditionedUNet` to denoise the target
    given the reference and the pose, and (when ``save``) write it to ``config.train.output_dir/view_prior``."""
    from diffcore.device import resolve_device
    from diffcore.training.objectives import DiffusionObjective

    gen = torch.Generator().manual_seed(config.train.seed)
    pairs = render_view_pairs(config, gen)
    net = config.network
    with seeded(config.train.seed):
        model = ViewConditionedUNet(ViewUNetConfig(_unet_config(net, 6, 3)))
    objective = DiffusionObjective(net.schedule, prediction=net.prediction)
    data = _Batches(pairs.images, pairs.target, {"pose": pairs.pose}, ref_index=pairs.reference)
    trained = _fit(model, objective, data, config.batch_size, config.train)
    prior = ViewPrior(
        trained.to(resolve_device(config.train.device)), net.schedule, net.prediction, config.views
    )  # type: ignore[arg-type]
    if save:
        prior.save_pretrained(Path(config.train.output_dir) / "view_prior")
    return prior
