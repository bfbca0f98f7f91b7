"""Gaussians out of a Gaussian probability function at any budget (DiffGS's optimisation-based extraction).

DiffGS (Zhou et al. 2024, Sec. 3.3) samples dense candidate points, keeps the probable ones, and moves them
towards higher probability by a few gradient steps before querying the colour and transform functions there.
Here the probability is given through an unsigned distance ``d(x) >= 0`` to the nearest Gaussian centre (what
:class:`~diff_3d.models.diffgs.GaussianFields`' GauPF regresses), with

    p(x) = exp(-d(x)^2 / (2 h^2))                                   (h: the kernel's bandwidth)

so that gradient ascent on ``log p`` with step ``h^2`` and a unit-normalised gradient is the projection
``x <- x - d(x) grad d / |grad d|``: one step lands an exact distance field's point on the nearest centre.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["DistanceFn", "extract_points", "probability", "refine_points"]

DistanceFn = Callable[[Tensor], Tensor]
"""``distance(x)``: query points ``(B, M, 3)`` -> unsigned distances to the nearest centre ``(B, M)``."""


def probability(distance: Tensor, bandwidth: float) -> Tensor:
    """The Gaussian probability ``exp(-d^2 / (2 h^2))`` of distances ``d`` (any shape) for bandwidth ``h``."""
    if bandwidth <= 0:
        raise ValueError(f"bandwidth: expected > 0, got {bandwidth}")
    return torch.exp(-0.5 * (distance / bandwidth) ** 2)


def refine_points(distance: DistanceFn, x: Tensor, steps: int, extent: float) -> Tensor:
    """``steps`` projection steps ``x <- x - d(x) grad d / |grad d|`` (gradient ascent on ``log p``), clamped to
    the cube ``[-extent, extent]^3``. ``x``: ``(B, M, 3)``; returns a detached tensor of the same shape."""
    for _ in range(steps):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            d = distance(xg)
            (grad,) = torch.autograd.grad(d.sum(), xg)
        unit = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        x = (xg.detach() - d.detach()[..., None] * unit).clamp(-extent, extent)
    return x.detach()


def extract_points(
    distance: DistanceFn,
    batch: int,
    budget: int,
    *,
    extent: float = 1.0,
    candidates: int = 0,
    refine_steps: int = 4,
    keep_distance: float = 0.02,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Extract ``budget`` Gaussian centres per object: ``(batch, budget, 3)``.

    1. Draw ``candidates`` points uniformly in ``[-extent, extent]^3`` (0: ``max(32 budget, 16384)``) and keep the
       ``4 budget`` of them the field puts closest (a truncated distance is flat, so far candidates never move).
    2. Refine them by ``refine_steps`` steps of :func:`refine_points`.
    3. Keep the probable ones, ``d < keep_distance``; when at least ``budget`` remain, draw ``budget`` of them
       uniformly (so the centres cover the surface evenly), else take the ``budget`` most probable.

    Any budget works, independent of what the model was trained with.
    """
    if budget < 1:
        raise ValueError(f"budget: expected >= 1 Gaussians, got {budget}")
    if batch < 1:
        raise ValueError(f"batch: expected >= 1 objects, got {batch}")
    m = candidates or max(32 * budget, 16384)
    if m < budget:
        raise ValueError(f"candidates: expected >= budget ({budget}), got {m}")
    x = (torch.rand((batch, m, 3), generator=generator, device=device) * 2 - 1) * extent
    if m > 4 * budget:  # refine only the closest 4 x budget: a truncated field is flat (no gradient) far away
        with torch.no_grad():
            d0 = torch.cat([distance(part) for part in x.split(8192, dim=1)], dim=1)
        near = torch.topk(d0, 4 * budget, dim=1, largest=False).indices
        x = torch.gather(x, 1, near[..., None].expand(-1, -1, 3))
    x = refine_points(distance, x, refine_steps, extent)
    with torch.no_grad():
        d = distance(x)
    out = []
    for i in range(batch):
        ok = torch.nonzero(d[i] < keep_distance).flatten()
        if ok.numel() >= budget:
            pick = ok[torch.randperm(ok.numel(), generator=generator, device=device)[:budget]]
        else:
            pick = torch.topk(d[i], budget, largest=False).indices
        out.append(x[i, pick])
    return torch.stack(out)
