"""Spatial control of a trained pipeline through diffcore's ControlNets (Zhang, Rao & Agrawala 2023).

The shapes data set gives three control inputs per image (:data:`CONTROL_CHANNELS`): ``edges`` (object
outlines, 1 channel), ``segmentation`` (one-hot shape classes with background, ``1 + len(SHAPES)`` channels)
and ``boxes`` (filled bounding boxes per shape class, ``len(SHAPES)`` channels), all in ``{0, 1}`` at pixel
resolution. One ControlNet per kind is trained on a frozen base (:func:`train_controlnets`); several are
combined by :class:`~diffcore.nn.MultiControlNet` (residuals summed with per-control scales). Every backbone
is supported: the U-Net (copy of its encoder), the DiT (copy of its first blocks) and the text-to-image MMDiT
(SD3-ControlNet style copy of its first joint blocks, both streams, :class:`~diffcore.nn.MMDiTControlNet`).

:func:`evaluate_control` measures whether control works: samples for held-out scenes' maps (and captions, for
text models) with and without the ControlNets, same noise, scored by the IoU of the generated foreground with
the scene's object pixels (:mod:`diff_image.metrics.control`).

For a stream (``diffuse image stream``) the maps come from each input frame itself: :func:`scene_from_pixels`
reads the scene a picture shows back from its pixels (:mod:`diff_image.metrics.adherence`), and the maps are
that scene's, built by the same :class:`~diff_image.data.ShapesSample` methods as the training maps; on a render
of the shapes data it gives back exactly the maps the ControlNets were trained with.

Conditioning travels as ONE tensor ``control_maps`` ``(B, sum of channels, H, W)`` (the kinds' maps
concatenated in order) so that classifier-free guidance batches it like any other condition;
:class:`ControlMapsModel` splits it for the ControlNets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffcore.device import resolve_device
from diffcore.nn import ControlledModel, DiT, DiTControlNet, MMDiT, MMDiTControlNet, UNet, UNetControlNet
from diffcore.rng import make_generator, seeded
from diffcore.training import TrainConfig, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from diff_image.config import ImageControlConfig
from diff_image.data import PALETTE, SHAPES, ShapesConfig, ShapesDataset
from diff_image.data.shapes import ShapeObject, ShapesSample
from diff_image.io import to_uint8
from diff_image.metrics.adherence import AdherenceConfig, classify_shape, object_masks
from diff_image.metrics.control import foreground_iou

__all__ = [
    "CONTROL_CHANNELS",
    "ControlExamples",
    "ControlMapsModel",
    "control_examples",
    "control_maps",
    "control_maps_from_images",
    "evaluate_control",
    "make_controlnet",
    "render_control",
    "run_control",
    "scene_from_pixels",
    "set_control_scales",
    "train_controlnets",
]

CONTROL_CHANNELS: dict[str, int] = {"edges": 1, "segmentation": 1 + len(SHAPES), "boxes": len(SHAPES)}
HINT_CHANNELS = (16, 32, 64, 128)


def _check_kinds(kinds: Sequence[str]) -> list[str]:
    kinds = list(kinds)
    bad = [k for k in kinds if k not in CONTROL_CHANNELS]
    if not kinds or bad:
        raise ValueError(f"kinds: expected a non-empty subset of {tuple(CONTROL_CHANNELS)}, got {kinds}")
    return kinds


def control_maps(item: dict[str, Any], kinds: Sequence[str]) -> Tensor:
    """``(sum of channels, H, W)`` maps in ``{0, 1}`` of one :class:`ShapesDataset` item (built with ``controls``)."""
    parts = []
    for kind in _check_kinds(kinds):
        value = item[kind]
        if kind == "segmentation":
            value = F.one_hot(value.long(), CONTROL_CHANNELS[kind]).permute(2, 0, 1)
        parts.append(value.float())
    return torch.cat(parts)


def scene_from_pixels(image: np.ndarray, config: ShapesConfig | None = None) -> ShapesSample:
    """The shapes scene an ``(H, W, 3)`` uint8 picture shows, read from its pixels: objects are the palette-coloured
    connected components of :func:`~diff_image.metrics.adherence.object_masks`, their shape classified from
    geometry (:func:`~diff_image.metrics.adherence.classify_shape`); components of no known shape are left out
    (background). ``config``: the colours and background of the data the ControlNets saw (default: the shapes
    defaults, which :func:`train_controlnets` trains on). The result has no relations and an empty caption."""
    config = config or ShapesConfig(image_size=max(16, image.shape[0]))
    object_ids = np.zeros(image.shape[:2], dtype=np.int16)
    objects = []
    for colour, mask in object_masks(image, AdherenceConfig.from_shapes(config)):
        ys, xs = np.nonzero(mask)
        shape, _ = classify_shape(mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
        if shape not in config.shapes:
            continue
        objects.append(ShapeObject(shape, colour, (int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                                                   int(ys.max()) + 1), (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)))  # fmt: skip
        object_ids[mask] = len(objects)
    return ShapesSample(image, object_ids, tuple(objects), (), "", tuple(config.shapes))


def control_maps_from_images(images: Tensor, kinds: Sequence[str]) -> Tensor:
    """``(B, sum of channels, H, W)`` maps of ``kinds`` for RGB pictures ``images`` ``(B, 3, H, W)`` in
    ``[-1, 1]``: :func:`control_maps` of the scene :func:`scene_from_pixels` reads from each (the condition
    extractor of a ControlNet stream)."""
    kinds = _check_kinds(kinds)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected RGB (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
    maps = []
    for picture in to_uint8(images.detach().float().cpu()):
        scene = scene_from_pixels(picture)
        maps.append(control_maps({kind: getattr(scene, kind)() for kind in kinds}, kinds))
    return torch.stack(maps).to(images.device)


def set_control_scales(network: nn.Module, scales: Sequence[float]) -> None:
    """Set the strength of each ControlNet of ``network`` (a pipeline's ``network``: a
    :class:`ControlMapsModel`, or a text wrapper around one as its ``backbone``), in the order of its kinds."""
    maps_model = network if isinstance(network, ControlMapsModel) else getattr(network, "backbone", None)
    if not isinstance(maps_model, ControlMapsModel):
        raise TypeError(
            f"network: expected a pipeline network with ControlNets, got {type(network).__name__}"
        )
    if len(scales) != len(maps_model.kinds):
        raise ValueError(
            f"scales: expected {len(maps_model.kinds)} values (one per ControlNet {maps_model.kinds}), "
            f"got {len(scales)}"
        )
    maps_model.controlled.scales = [float(v) for v in scales]


class ControlMapsModel(nn.Module):
    """``net(x, t, control_maps=maps, **cond)``: a :class:`~diffcore.nn.ControlledModel` whose condition maps
    arrive as one concatenated tensor ``(B, sum of channels, H, W)``; ``None`` runs the base alone."""

    def __init__(self, controlled: ControlledModel, kinds: Sequence[str]) -> None:
        super().__init__()
        self.controlled = controlled
        self.kinds = _check_kinds(kinds)
        self.splits = [CONTROL_CHANNELS[k] for k in self.kinds]

    def forward(self, x: Tensor, t: Tensor, control_maps: Tensor | None = None, **cond: Any) -> Tensor:
        """The controlled network's output for ``x`` at ``t``; ``control_maps`` ``(B, sum of channels, H, W)``
        is split per kind and passed as ``control_cond``; ``None`` runs the base alone."""
        if control_maps is None:
            return self.controlled(x, t, **cond)
        if control_maps.ndim != 4 or control_maps.shape[1] != sum(self.splits):
            raise ValueError(
                f"control_maps: expected (B, {sum(self.splits)}, H, W) for kinds {self.kinds}, got {tuple(control_maps.shape)}"
            )
        return self.controlled(x, t, control_cond=list(control_maps.split(self.splits, dim=1)), **cond)


def make_controlnet(
    base: nn.Module, kind: str, hint_downscale: int = 1, num_blocks: int | None = None
) -> UNetControlNet | DiTControlNet | MMDiTControlNet:
    """A ControlNet for ``kind`` initialised from ``base``: a U-Net's encoder, or the first ``num_blocks``
    blocks of a DiT or an MMDiT (``None``: half the depth)."""
    channels = CONTROL_CHANNELS[_check_kinds([kind])[0]]
    hint = HINT_CHANNELS[: max(2, int(math.log2(hint_downscale)) + 1)]
    if isinstance(base, UNet):
        return UNetControlNet.from_unet(base, channels, hint, hint_downscale)
    if isinstance(base, DiT):
        return DiTControlNet.from_dit(base, num_blocks, channels, hint, hint_downscale)
    if isinstance(base, MMDiT):
        return MMDiTControlNet.from_mmdit(base, num_blocks, channels, hint, hint_downscale)
    raise TypeError(f"base: ControlNets need a UNet, DiT or MMDiT backbone, got {type(base).__name__}")


class _ControlSet(Dataset):
    """Shapes items as ``{"x", "control_maps", "caption"?, "y"?}``; ``null_class`` labels every item with it."""

    def __init__(
        self, shapes: ShapesDataset, kinds: list[str], captions: bool, null_class: int | None
    ) -> None:
        self.shapes, self.kinds, self.captions, self.null_class = shapes, kinds, captions, null_class

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.shapes[i]
        out = {"x": item["image"], "control_maps": control_maps(item, self.kinds)}
        if self.captions:
            out["caption"] = item["caption"]
        if self.null_class is not None:
            out["y"] = torch.tensor(self.null_class)
        return out


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in ("x", "control_maps", "y") if k in items[0]]
    out: dict[str, Any] = {k: torch.stack([it[k] for it in items]) for k in keys}
    if "caption" in items[0]:
        out["caption"] = [it["caption"] for it in items]
    return out


def train_controlnets(
    pipe: Any,
    kinds: Sequence[str],
    steps: int,
    output_dir: str | Path,
    batch_size: int = 64,
    lr: float = 1e-4,
    shapes_length: int = 20_000,
    seed: int = 0,
    num_blocks: int | None = None,
    cond_dropout: float = 0.0,
) -> Any:
    """Train one ControlNet per kind on the shapes data (the base frozen) and attach them to ``pipe``.

    ``pipe``: an :class:`~diff_image.pipeline.ImagePipeline` with a U-Net, DiT or MMDiT backbone trained on RGB
    shapes: unconditional, text-conditioned (U-Net, MMDiT: the scenes' captions go with their maps) or
    class-conditional (the shapes have no classes, so the ControlNets see the base's null class, its
    unconditional branch). The ControlNets are trained together on the summed residuals, with the base's
    objective (eps / v / x0 on its schedule, or flow matching). ``num_blocks``: blocks a DiT / MMDiT ControlNet
    copies (``None``: half the depth). ``cond_dropout``: probability of replacing a caption by the empty one
    (ControlNet Sec. 3.3 drops prompts so the control alone must carry the layout; keeps CFG usable).
    Returns ``pipe`` with ``pipe.controlnets`` set (saved with the pipeline).
    """
    from diff_image.pipeline.training import PreparedObjective, build_objective

    kinds = _check_kinds(kinds)
    if not 0.0 <= cond_dropout < 1.0:
        raise ValueError(f"cond_dropout: expected a probability in [0, 1), got {cond_dropout}")
    down = pipe.autoencoder.config.downsample if pipe.autoencoder is not None else 1
    with seeded(seed):
        nets = {k: make_controlnet(pipe.model, k, down, num_blocks) for k in kinds}
    pipe.controlnets = nets
    network = pipe.network
    if pipe.text_encoder is not None:
        pipe.text_encoder.requires_grad_(False)
    size = pipe.image_shape[-1]
    shapes = ShapesDataset(
        shapes_length, seed=seed + 1, split="all", config=ShapesConfig(image_size=size), controls=tuple(kinds)
    )
    null_class = pipe.num_classes if pipe.num_classes else None
    dataset = _ControlSet(shapes, kinds, pipe.text_encoder is not None, null_class)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=_collate,
                        drop_last=len(dataset) >= batch_size)  # fmt: skip
    name = "flow_matching" if pipe.prediction == "velocity" else pipe.prediction
    null_cond: dict[str, Any] = {}
    if pipe.text_encoder is not None and cond_dropout > 0:
        null_cond = {"input_ids": pipe.text_encoder.tokenize([""])[0]}
    objective = PreparedObjective(
        build_objective(
            name, pipe.schedule, cond_dropout=cond_dropout if null_cond else 0.0, null_cond=null_cond
        ),
        encode=pipe.autoencoder.encode if pipe.autoencoder is not None else None,
        tokenize=pipe.text_encoder.tokenize if pipe.text_encoder is not None else None,
    )
    tc = TrainConfig(steps=steps, lr=lr, ema_decay=None, checkpoint_every=None, keep_last=1, output_dir=str(output_dir),
                     seed=seed, tensorboard=False, device="cpu" if pipe.device.type == "cpu" else "auto",
                     log_every=max(1, steps // 10))  # fmt: skip
    Trainer(network, objective, loader, tc).fit()
    for net in nets.values():
        net.eval()
    return pipe


@dataclass
class ControlExamples:
    """Held-out shapes scenes to steer towards: ``maps`` ``(N, sum of channels, H, W)`` of ``kinds``,
    ``objects`` ``(N, H, W)`` bool (the scenes' object pixels) and their ``captions``."""

    kinds: list[str]
    maps: Tensor
    objects: Tensor
    captions: list[str]


def control_examples(
    kinds: Sequence[str], num: int, image_size: int = 32, seed: int = 20_000
) -> ControlExamples:
    """``num`` scenes drawn with ``seed`` (keep it apart from the training seeds) and their control maps."""
    kinds = _check_kinds(kinds)
    if num < 1:
        raise ValueError(f"num: expected >= 1, got {num}")
    data = ShapesDataset(
        num, seed=seed, split="all", config=ShapesConfig(image_size=image_size), controls=tuple(kinds)
    )
    items = [data[i] for i in range(num)]
    maps = torch.stack([control_maps(it, kinds) for it in items])
    objects = torch.stack([torch.from_numpy(data.sample(i).object_ids > 0) for i in range(num)])
    return ControlExamples(kinds, maps, objects, [it["caption"] for it in items])


_SHAPE_COLOURS = (
    torch.tensor([PALETTE[c] for c in ("red", "green", "blue", "yellow")], dtype=torch.float32) / 255
)


def render_control(maps: Tensor, kinds: Sequence[str]) -> Tensor:
    """RGB pictures ``(B, 3, H, W)`` in ``[-1, 1]`` of concatenated control maps (for grids): edges white,
    segmentation classes and shape boxes in one colour per shape (boxes at half brightness), overlaid."""
    kinds = _check_kinds(kinds)
    parts = maps.detach().float().cpu().split([CONTROL_CHANNELS[k] for k in kinds], dim=1)
    out = torch.zeros(maps.shape[0], 3, *maps.shape[2:])
    for kind, part in zip(kinds, parts, strict=True):
        if kind == "edges":
            layer = part.expand(-1, 3, -1, -1)
        else:
            classes = part[:, 1:] if kind == "segmentation" else part
            weight = 1.0 if kind == "segmentation" else 0.5
            layer = weight * torch.einsum("bshw,sc->bchw", classes, _SHAPE_COLOURS[: classes.shape[1]])
        out = torch.maximum(out, layer)
    return out * 2 - 1


def evaluate_control(
    pipe: Any,
    num: int = 64,
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    guidance: float = 1.0,
    seed: int = 0,
    scales: Sequence[float] | None = None,
    examples: ControlExamples | None = None,
) -> tuple[dict[str, Any], ControlExamples, Tensor, Tensor]:
    """Sample ``num`` held-out scenes with and without the pipeline's ControlNets (same noise, same captions for
    text models, the null class for class-conditional ones) and score the foreground IoU with the scenes.

    ``scales``: per-ControlNet strengths (default 1 each). Returns ``(metrics, examples, controlled,
    uncontrolled)`` with images ``(num, 3, H, W)`` in ``[-1, 1]``; metrics ``iou_control``, ``iou_no_control``
    (means), ``iou_gain`` (their difference) and the settings.
    """
    if not pipe.controlnets:
        raise ValueError("pipe: has no ControlNets; train them first (train_controlnets)")
    kinds = list(pipe.controlnets)
    examples = examples or control_examples(kinds, num, pipe.image_shape[-1])
    if examples.kinds != kinds:
        raise ValueError(f"examples: built for kinds {examples.kinds}, the pipeline controls {kinds}")
    scale_list = [1.0] * len(kinds) if scales is None else [float(v) for v in scales]
    if len(scale_list) != len(kinds):
        raise ValueError(
            f"scales: expected {len(kinds)} values (one per ControlNet {kinds}), got {len(scale_list)}"
        )
    n = len(examples.captions)
    prompt = examples.captions if pipe.text_encoder is not None else None
    y = [pipe.num_classes] * n if pipe.num_classes else None
    maps = examples.maps.to(pipe.device)
    run = (pipe, n, sampler, steps, guidance, seed, prompt, y)
    controlled, plain = _sample_controlled(*run, maps, scale_list), _sample_controlled(*run, None, scale_list)
    iou_c, iou_p = foreground_iou(controlled, examples.objects), foreground_iou(plain, examples.objects)
    metrics = {
        "iou_control": float(iou_c.mean()),
        "iou_no_control": float(iou_p.mean()),
        "iou_gain": float(iou_c.mean() - iou_p.mean()),
        "kinds": kinds,
        "scales": scale_list,
        "num_samples": n,
        "sampler": sampler,
        "steps": steps,
        "guidance": guidance,
    }
    return metrics, examples, controlled, plain


def _sample_controlled(
    pipe: Any, n: int, sampler: str, steps: int, guidance: float, seed: int,
    prompt: list[str] | None, y: list[int] | None, maps: Tensor | None, scales: list[float], batch_size: int = 256,
) -> Tensor:  # fmt: skip
    """``n`` images ``(n, 3, H, W)`` on CPU, as :meth:`ImagePipeline.sample` draws them (``batch_size`` at a
    time), with ``control_maps=maps`` (``None``: the base alone) and each ControlNet's residuals times its
    scale; noise seeded by ``seed``, so two calls differing only in ``maps`` or ``scales`` share their noise."""
    from diffcore import sample as diffcore_sample

    net = pipe.network.eval()
    set_control_scales(net, scales)
    cond, uncond = pipe.condition(n, y, prompt)
    if maps is not None:
        cond["control_maps"] = maps
    den = pipe.guided(pipe.denoiser(net), uncond, guidance)
    gen = make_generator(seed, pipe.device)
    out = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            noise = torch.randn((b, *pipe.sample_shape), generator=gen, device=pipe.device)
            part = {k: v[start : start + b] for k, v in cond.items()}
            x = diffcore_sample(den, noise, sampler=sampler, steps=steps, cond=part, generator=gen)
            out.append(pipe.decode(x).cpu())
    return torch.cat(out)


def run_control(
    pipe: Any, config: ImageControlConfig, output_dir: str | Path
) -> tuple[dict[str, Any], ControlExamples, Tensor, Tensor]:
    """``diffuse image control``: train ``config.kinds`` ControlNets on the frozen ``pipe`` (RGB shapes images)
    and save the result to ``output_dir/pipeline`` (the Trainer's run in ``output_dir/control_run``), or, with
    ``config.steps == 0``, take the ControlNets ``pipe`` holds; then :func:`evaluate_control` with
    ``config``'s sampling settings. The pipeline is moved to ``config.device``.

    Returns :func:`evaluate_control`'s ``(metrics, examples, controlled, uncontrolled)``.
    """
    if pipe.image_shape[0] != 3:
        raise ValueError(
            f"pipeline: expected a pipeline of RGB images (the shapes data), got image shape {pipe.image_shape}"
        )
    pipe.to(resolve_device(config.device))
    out = Path(output_dir)
    if config.steps > 0:
        train_controlnets(
            pipe, config.kinds, config.steps, out / "control_run", batch_size=config.batch_size, lr=config.lr,
            shapes_length=config.shapes_length, seed=config.seed, num_blocks=config.num_blocks or None,
            cond_dropout=config.cond_dropout,
        )  # fmt: skip
        pipe.save_pretrained(out / "pipeline")
    elif list(pipe.controlnets) != list(config.kinds):
        raise ValueError(
            f"steps: 0 evaluates the pipeline's ControlNets {list(pipe.controlnets)}, but kinds asks for "
            f"{list(config.kinds)}"
        )
    return evaluate_control(
        pipe, config.num_samples, config.sampler, config.sample_steps, config.guidance, config.seed,
        list(config.scales) or None,
    )  # fmt: skip
