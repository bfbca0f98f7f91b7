"""Spatial control of a trained pipeline through diffcore's ControlNets (Zhang, Rao & Agrawala 2023).

The shapes data set gives three control inputs per image (:data:`CONTROL_CHANNELS`): ``edges`` (object
outlines, 1 channel), ``segmentation`` (one-hot shape classes with background, ``1 + len(SHAPES)`` channels)
and ``boxes`` (filled bounding boxes per shape class, ``len(SHAPES)`` channels), all in ``{0, 1}`` at pixel
resolution. One ControlNet per kind is trained on a frozen base (:func:`train_controlnets`); several are
combined by :class:`~diffcore.nn.MultiControlNet` (residuals summed with per-control scales).

Conditioning travels as ONE tensor ``control_maps`` ``(B, sum of channels, H, W)`` (the kinds' maps
concatenated in order) so that classifier-free guidance batches it like any other condition;
:class:`ControlMapsModel` splits it for the ControlNets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffcore.nn import ControlledModel, DiT, DiTControlNet, UNet, UNetControlNet
from diffcore.train import TrainConfig, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from diff_image.data import SHAPES, ShapesConfig, ShapesDataset

__all__ = ["CONTROL_CHANNELS", "ControlMapsModel", "control_maps", "make_controlnet", "train_controlnets"]

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


class ControlMapsModel(nn.Module):
    """``net(x, t, control_maps=maps, **cond)``: a :class:`~diffcore.nn.ControlledModel` whose condition maps
    arrive as one concatenated tensor ``(B, sum of channels, H, W)``; ``None`` runs the base alone."""

    def __init__(self, controlled: ControlledModel, kinds: Sequence[str]) -> None:
        super().__init__()
        self.controlled = controlled
        self.kinds = _check_kinds(kinds)
        self.splits = [CONTROL_CHANNELS[k] for k in self.kinds]

    def forward(self, x: Tensor, t: Tensor, control_maps: Tensor | None = None, **cond: Any) -> Tensor:
        if control_maps is None:
            return self.controlled(x, t, **cond)
        if control_maps.ndim != 4 or control_maps.shape[1] != sum(self.splits):
            raise ValueError(
                f"control_maps: expected (B, {sum(self.splits)}, H, W) for kinds {self.kinds}, got {tuple(control_maps.shape)}"
            )
        return self.controlled(x, t, control_cond=list(control_maps.split(self.splits, dim=1)), **cond)


def make_controlnet(base: nn.Module, kind: str, hint_downscale: int = 1) -> UNetControlNet | DiTControlNet:
    """A ControlNet for ``kind`` initialised from ``base`` (a U-Net's encoder, or a DiT's first half)."""
    channels = CONTROL_CHANNELS[_check_kinds([kind])[0]]
    hint = HINT_CHANNELS[: max(2, int(math.log2(hint_downscale)) + 1)]
    if isinstance(base, UNet):
        return UNetControlNet.from_unet(base, channels, hint, hint_downscale)
    if isinstance(base, DiT):
        return DiTControlNet.from_dit(base, None, channels, hint, hint_downscale)
    raise TypeError(f"base: ControlNets need a UNet or DiT backbone, got {type(base).__name__}")


class _ControlSet(Dataset):
    def __init__(self, shapes: ShapesDataset, kinds: list[str], captions: bool) -> None:
        self.shapes, self.kinds, self.captions = shapes, kinds, captions

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.shapes[i]
        out = {"x": item["image"], "control_maps": control_maps(item, self.kinds)}
        if self.captions:
            out["caption"] = item["caption"]
        return out


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: torch.stack([it[k] for it in items]) for k in ("x", "control_maps")}
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
) -> Any:
    """Train one ControlNet per kind on the shapes data (the base frozen) and attach them to ``pipe``.

    ``pipe``: an :class:`~diff_image.pipeline.ImagePipeline` with a U-Net or DiT backbone trained on RGB shapes
    (unconditional, or text through a U-Net). The ControlNets are trained together on the summed residuals.
    Returns ``pipe`` with ``pipe.controlnets`` set (saved with the pipeline).
    """
    from diff_image.pipeline.training import PreparedObjective, build_objective

    kinds = _check_kinds(kinds)
    down = pipe.autoencoder.config.downsample if pipe.autoencoder is not None else 1
    torch.manual_seed(seed)
    nets = {k: make_controlnet(pipe.model, k, down) for k in kinds}
    pipe.controlnets = nets
    network = pipe.network
    if pipe.text_encoder is not None:
        pipe.text_encoder.requires_grad_(False)
    size = pipe.image_shape[-1]
    shapes = ShapesDataset(
        shapes_length, seed=seed + 1, split="all", config=ShapesConfig(image_size=size), controls=tuple(kinds)
    )
    loader = DataLoader(_ControlSet(shapes, kinds, pipe.text_encoder is not None), batch_size=batch_size, shuffle=True,
                        collate_fn=_collate, drop_last=True)  # fmt: skip
    name = "flow_matching" if pipe.prediction == "velocity" else pipe.prediction
    objective = PreparedObjective(
        build_objective(name, pipe.schedule),
        encode=pipe.autoencoder.encode if pipe.autoencoder is not None else None,
        tokenize=pipe.text_encoder.tokenize if pipe.text_encoder is not None else None,
    )
    tc = TrainConfig(steps=steps, lr=lr, ema_decay=None, checkpoint_every=None, keep_last=1, output_dir=str(output_dir),
                     seed=seed, progress_bar=False, tensorboard=False, cpu=pipe.device.type == "cpu",
                     log_every=max(1, steps // 10))  # fmt: skip
    Trainer(network, objective, loader, tc).fit()
    for net in nets.values():
        net.eval()
    return pipe
