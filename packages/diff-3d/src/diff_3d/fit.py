"""Fitting Gaussians to multi-view images with a fixed budget: the optimisation of 3D Gaussian Splatting
(Kerbl et al. 2023, Sec. 5) without densification, so every object keeps exactly N Gaussians (the fixed size
a generative model needs).

Loss (3DGS Eq. 7): ``(1 - lambda) L1 + lambda (1 - SSIM)`` with ``lambda = 0.2``, averaged over
``views_per_step`` random views per step. Adam with one learning rate per parameter group as in 3DGS
(means, SH DC, higher SH, opacity logits, log scales, quaternions), the means' rate multiplied by the scene
extent and decayed exponentially to 1% of it over the run (3DGS decays it likewise); the default rates are
3DGS's relative split raised for runs of hundreds of steps instead of 30k.

Budget upkeep (optional, ``relocate_every``): Gaussians whose opacity fell below ``0.005`` are moved onto
live ones chosen in proportion to their opacity, taking the same parameters and sharing the opacity so the
pair shows what the one did (``o' = 1 - sqrt(1 - o)``: two layers of ``o'`` composite to ``o``), in the
spirit of 3DGS-MCMC's relocation; the count never changes. Their Adam moments are reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from diff_3d.cameras import Camera
from diff_3d.config import FitSettings
from diff_3d.gaussians import Gaussians, rgb_to_sh_dc
from diff_3d.metrics import psnr, ssim
from diff_3d.render import render

__all__ = ["FitResult", "FitSettings", "fit_gaussians", "random_init"]


@dataclass
class FitResult:
    """The fitted Gaussians, the PSNR (dB) of their render against each view (V,), and the loss per step."""

    gaussians: Gaussians
    psnr: torch.Tensor
    losses: list[float] = field(default_factory=list)


def _groups(params: dict[str, torch.Tensor], s: FitSettings, extent: float) -> list[dict]:
    sh = params["sh"]
    return [
        {"params": [params["means"]], "lr": s.lr_means * extent, "name": "means"},
        {"params": [params["sh_dc"]], "lr": s.lr_sh_dc, "name": "sh_dc"},
        {"params": [params["sh_rest"]], "lr": s.lr_sh_rest, "name": "sh_rest"} if sh.shape[1] > 1 else None,
        {"params": [params["opacity_logits"]], "lr": s.lr_opacity, "name": "opacity_logits"},
        {"params": [params["log_scales"]], "lr": s.lr_scales, "name": "log_scales"},
        {"params": [params["quats"]], "lr": s.lr_quats, "name": "quats"},
    ]


def fit_gaussians(
    images: torch.Tensor,
    cameras: list[Camera],
    init: Gaussians,
    settings: FitSettings | None = None,
    *,
    generator: torch.Generator | None = None,
    extent: float | None = None,
    progress: bool = True,
    desc: str = "fit",
    view_weights: torch.Tensor | None = None,
) -> FitResult:
    """Fit ``init`` (N Gaussians; N stays fixed) to ``images`` (V, H, W, 3) in [0, 1] seen by ``cameras``.

    ``extent``: the scene's radius for the means' learning rate (default: the largest distance of an
    initial mean from their centroid). ``generator`` (CPU) picks the views of each step. ``view_weights``:
    (V,) weights of the views' losses (default equal; a step's loss is the weighted mean over its views), e.g.
    lower for generated pseudo-views. Runs on the device of ``init``. Returns the Gaussians (detached), the
    per-view PSNR and the losses.
    """
    from diffcore.progress import Progress

    s = settings or FitSettings()
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] != len(cameras):
        raise ValueError(
            f"images: expected shape ({len(cameras)}, H, W, 3), one per camera, got {tuple(images.shape)}"
        )
    if view_weights is not None and (view_weights.shape != (len(cameras),) or bool((view_weights < 0).any())):
        raise ValueError(
            f"view_weights: expected ({len(cameras)},) weights >= 0, one per camera, got {view_weights.tolist()}"
        )
    dev = init.device
    images = images.to(dev, init.dtype)
    weights = None if view_weights is None else view_weights.to(dev, init.dtype)
    cams = [c.to(dev, init.dtype) for c in cameras]
    if extent is None:
        extent = float((init.means - init.means.mean(0)).norm(dim=1).max().clamp_min(1e-3))
    g0 = init.detach().clone()
    params = {
        "means": g0.means,
        "quats": g0.quats,
        "log_scales": g0.log_scales,
        "opacity_logits": g0.opacity_logits,
        "sh_dc": g0.sh[:, :1].clone(),
        "sh_rest": g0.sh[:, 1:].clone(),
    }
    for t in params.values():
        t.requires_grad_(True)
    params["sh"] = g0.sh  # only for the group list
    opt = torch.optim.Adam([g for g in _groups(params, s, extent) if g is not None], eps=1e-15)
    decay = 0.01 ** (1 / max(s.steps, 1))
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    v = len(cams)
    k = min(s.views_per_step, v)
    losses: list[float] = []

    def current() -> Gaussians:
        sh = torch.cat([params["sh_dc"], params["sh_rest"]], dim=1)
        return Gaussians(params["means"], params["quats"], params["log_scales"], params["opacity_logits"], sh)

    with Progress(s.steps, desc, show=progress) as bar:
        for step in range(s.steps):
            views = torch.randperm(v, generator=gen)[:k].tolist()
            gs = current()
            pred = torch.stack([render(gs, cams[i], s.background, s.backend).rgb for i in views])
            loss = _loss(pred, images[views], s.ssim_weight, None if weights is None else weights[views])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            opt.param_groups[0]["lr"] *= decay
            losses.append(float(loss.detach()))
            if s.relocate_every and (step + 1) % s.relocate_every == 0 and step + 1 < s.steps:
                _relocate(params, opt, gen)
            bar.update()
    final = current().detach()
    with torch.no_grad():
        renders = torch.stack([render(final, c, s.background, s.backend).rgb for c in cams])
    return FitResult(final, psnr(renders.clamp(0, 1), images).cpu(), losses)


def _loss(
    pred: torch.Tensor, target: torch.Tensor, weight: float, view_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """3DGS Eq. 7 averaged over the views: ``(1 - w) L1 + w (1 - SSIM)``; a weighted mean with ``view_weights``."""
    if view_weights is not None:
        per_view = torch.stack([_loss(p[None], q[None], weight) for p, q in zip(pred, target)])
        return (view_weights * per_view).sum() / view_weights.sum().clamp_min(1e-12)
    l1 = (pred - target).abs().mean()
    if weight == 0:
        return l1
    return (1 - weight) * l1 + weight * (1 - ssim(pred, target).mean())


@torch.no_grad()
def _relocate(params: dict[str, torch.Tensor], opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
    """Move dead Gaussians (opacity < 0.005) onto live ones (module docstring); the count stays the same."""
    opac = torch.sigmoid(params["opacity_logits"])
    dead = torch.nonzero(opac < 0.005).squeeze(1)
    alive = opac >= 0.005
    if dead.numel() == 0 or not bool(alive.any()):
        return
    weights = (opac * alive).cpu().double()
    src = torch.multinomial(weights, dead.numel(), replacement=True, generator=gen).to(dead.device)
    for name in ("means", "quats", "log_scales", "sh_dc", "sh_rest"):
        params[name][dead] = params[name][src]
    shared = 1 - torch.sqrt((1 - opac[src]).clamp_min(0))
    logit = torch.logit(shared.clamp(1e-6, 1 - 1e-6))
    params["opacity_logits"][dead] = logit
    params["opacity_logits"][src] = logit
    for group in opt.param_groups:
        p = group["params"][0]
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][dead] = 0
                state[key][src] = 0


def random_init(
    n: int,
    extent: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    sh_degree: int = 0,
    opacity: float = 0.1,
    dtype: torch.dtype = torch.float32,
) -> Gaussians:
    """``n`` isotropic grey Gaussians uniform in the cube ``[-extent, extent]^3`` (for real data without a
    surface to start from), standard deviation the mean spacing ``2 extent / n^(1/3)`` over 2."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    means = (torch.rand(n, 3, generator=generator, dtype=dtype) * 2 - 1) * extent
    sigma = extent / n ** (1 / 3)
    rgb = torch.full((n, 3), 0.5, dtype=dtype)
    gs = Gaussians.from_activated(
        means,
        torch.full((n, 3), sigma, dtype=dtype),
        torch.full((n,), opacity, dtype=dtype),
        rgb,
        sh_degree=sh_degree,
    )
    assert math.isfinite(sigma) and torch.equal(gs.sh[:, 0], rgb_to_sh_dc(rgb))
    return gs
