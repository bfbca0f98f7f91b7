"""Frechet distances between sets of clips, on features of a network the package trains itself ("FVD-local").

**FVD-local is not comparable with published FVD numbers.** Published FVD (Unterthiner et al. 2019) uses the
features of an I3D network trained on Kinetics-400; that network cannot be downloaded here, so diff-video trains a
small 3D-convolutional classifier (:class:`VideoFeatureNet`) on the moving-shapes set (direction, colour and shape
of the first object) and measures the Frechet distance of Gaussians fitted to its pooled features:

- ``fvd_local``: features of whole clips (spatiotemporal);
- ``frame_fd``: features of single frames (the same network on 1-frame clips; it is trained on both), pooled over
  every frame of every clip: the per-frame Frechet distance (FID-like, no motion).

Both are reported with their floor: the distance between two independent sets of real clips of the same size.
:func:`i3d_fvd` computes standard FVD when the user points to a local TorchScript I3D (StyleGAN-V's
``i3d_torchscript.pt`` convention).

The distance (Dowson & Landau 1982): ``||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffcore.metrics.frechet import frechet_distance_from_statistics as frechet_distance
from diffcore.pretrained import PretrainedModel
from diffcore.rng import make_generator, seeded
from torch import Tensor, nn
from tqdm.auto import tqdm

from diff_video.data.shapes import COLOURS, DIRECTIONS, SHAPES, MovingShapes, ShapesConfig

__all__ = [
    "FeatureNetConfig",
    "VideoFeatureNet",
    "feature_net_data",
    "feature_net_labels",
    "feature_statistics",
    "frechet_distance",
    "i3d_fvd",
    "train_feature_net",
]


def feature_statistics(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and covariance ``(F, F)`` (float64) of ``features`` ``(N, F)``, ``N >= 2``."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features: expected (N >= 2, F), got {tuple(features.shape)}")
    f = features.detach().double().cpu().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


def features_frechet(a: Tensor, b: Tensor) -> float:
    """Frechet distance of Gaussians fitted to feature sets ``a`` ``(N, F)`` and ``b`` ``(M, F)``."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


@dataclass
class FeatureNetConfig:
    """:class:`VideoFeatureNet`: ``channels`` of its three 3D-conv stages and the ``feature_dim`` it pools to."""

    channels: tuple[int, int, int] = (16, 32, 64)
    feature_dim: int = 64


class VideoFeatureNet(PretrainedModel):
    """A small 3D-conv classifier of the moving-shapes set: clips ``(B, 3, T, H, W)`` in [-1, 1] (any ``T >= 1``,
    ``H, W >= 8``) -> logits of the first object's direction (8), colour (6) and shape (4); :meth:`features` gives
    the pooled ``(B, feature_dim)`` features the Frechet distances use."""

    config_class = FeatureNetConfig
    config: FeatureNetConfig

    def __init__(self, config: FeatureNetConfig) -> None:
        super().__init__(config)
        c1, c2, c3 = config.channels
        self.body = nn.Sequential(
            nn.Conv3d(3, c1, 3, padding=1), nn.GroupNorm(4, c1), nn.SiLU(),
            nn.Conv3d(c1, c2, 3, stride=(1, 2, 2), padding=1), nn.GroupNorm(4, c2), nn.SiLU(),
            nn.Conv3d(c2, c3, 3, stride=(1, 2, 2), padding=1), nn.GroupNorm(4, c3), nn.SiLU(),
        )  # fmt: skip
        self.project = nn.Linear(c3, config.feature_dim)
        self.heads = nn.ModuleDict(
            {
                "direction": nn.Linear(config.feature_dim, len(DIRECTIONS)),
                "colour": nn.Linear(config.feature_dim, len(COLOURS)),
                "shape": nn.Linear(config.feature_dim, len(SHAPES)),
            }
        )

    def features(self, x: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` -> ``(B, feature_dim)``."""
        return torch.tanh(self.project(self.body(x).mean(dim=(2, 3, 4))))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Logits of each head (the first object's ``direction``, ``colour`` and ``shape``) for clips
        ``x: (B, 3, T, H, W)`` in ``[-1, 1]``."""
        f = self.features(x)
        return {name: head(f) for name, head in self.heads.items()}

    @torch.no_grad()
    def clip_features(self, clips: Tensor, batch_size: int = 64) -> Tensor:
        """Spatiotemporal features ``(B, F)`` of clips ``(B, 3, T, H, W)``."""
        dev = next(self.parameters()).device
        return torch.cat([self.features(c.to(dev)).cpu() for c in clips.split(batch_size)])

    @torch.no_grad()
    def frame_features(self, clips: Tensor, batch_size: int = 256) -> Tensor:
        """Per-frame features ``(B * T, F)`` of clips ``(B, 3, T, H, W)`` (each frame as a 1-frame clip)."""
        frames = clips.transpose(1, 2).reshape(-1, clips.shape[1], 1, *clips.shape[-2:])
        return self.clip_features(frames, batch_size)


def _labels(dataset: MovingShapes, indices: range) -> dict[str, Tensor]:
    dirs, cols, shapes = list(DIRECTIONS), list(COLOURS), list(SHAPES)
    specs = [dataset.spec(i).objects[0] for i in indices]
    return {
        "direction": torch.tensor([dirs.index(o.direction) for o in specs]),
        "colour": torch.tensor([cols.index(o.colour) for o in specs]),
        "shape": torch.tensor([shapes.index(o.shape) for o in specs]),
    }


def feature_net_data(shapes: ShapesConfig, length: int) -> MovingShapes:
    """The clips :func:`train_feature_net` learns from: one-object clips of ``shapes`` (its size, frames, directions,
    colours, shapes and speeds, no events), seeded apart from the training data; clips ``0 .. 255`` are held out."""
    cfg = ShapesConfig(
        frames=shapes.frames, height=shapes.height, width=shapes.width, num_objects=(1,), shapes=shapes.shapes,
        colours=shapes.colours, directions=shapes.directions, speeds=shapes.speeds, events=(), size=shapes.size,
        length=length, seed=shapes.seed + 7919,
    )  # fmt: skip
    return MovingShapes(cfg)


def feature_net_labels(dataset: MovingShapes, indices: range) -> dict[str, Tensor]:
    """The targets of :class:`VideoFeatureNet` for clips ``indices`` of ``dataset``: the first object's direction,
    colour and shape as indices into :data:`DIRECTIONS`, :data:`COLOURS` and :data:`SHAPES`."""
    return _labels(dataset, indices)


def train_feature_net(
    shapes: ShapesConfig,
    steps: int = 400,
    batch_size: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[VideoFeatureNet, dict[str, float]]:
    """Train :class:`VideoFeatureNet` on one-object clips of ``shapes`` (its size, frames, directions; a set seeded
    apart from training data) and on their single frames (colour and shape only); returns the network and its
    held-out accuracies ``{"direction": ..., "colour": ..., "shape": ...}``."""
    data = feature_net_data(shapes, steps * batch_size + 256)
    with seeded(seed):
        net = VideoFeatureNet(FeatureNetConfig()).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    gen = make_generator(seed)
    for step in tqdm(range(steps), desc="feature net", disable=not progress, leave=False):
        idx = range(256 + step * batch_size, 256 + (step + 1) * batch_size)
        x, _ = data.render(batch_size, idx.start)
        labels = {k: v.to(device) for k, v in _labels(data, idx).items()}
        x = x.to(device)
        logits = net(x)
        loss = sum(F.cross_entropy(logits[k], labels[k]) for k in logits)
        j = int(torch.randint(0, x.shape[2], (1,), generator=gen))
        frame_logits = net(x[:, :, j : j + 1])
        loss = loss + F.cross_entropy(frame_logits["colour"], labels["colour"])
        loss = loss + F.cross_entropy(frame_logits["shape"], labels["shape"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    x, _ = data.render(256, 0)
    labels = _labels(data, range(256))
    with torch.no_grad():
        logits = net(x.to(device))
    accuracy = {k: float((logits[k].argmax(-1).cpu() == labels[k]).float().mean()) for k in logits}
    return net, accuracy


def i3d_fvd(real: Tensor, fake: Tensor, detector_path: str | os.PathLike[str], device: str = "cpu") -> float:
    """Standard FVD with a local TorchScript I3D (StyleGAN-V's ``i3d_torchscript.pt``): called as
    ``detector(videos, rescale=False, resize=True, return_features=True)`` with ``videos`` ``(B, 3, T, H, W)`` in
    [-1, 1]; the Frechet distance of its features of ``real`` and ``fake``. Nothing is downloaded."""
    path = os.fspath(detector_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"i3d: {path} does not exist (a local TorchScript I3D file is needed for FVD)"
        )
    detector = torch.jit.load(path, map_location=device).eval()

    def feats(clips: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat(
                [
                    detector(c.to(device), rescale=False, resize=True, return_features=True).cpu()
                    for c in clips.split(16)
                ]
            )

    return features_frechet(feats(real), feats(fake))
