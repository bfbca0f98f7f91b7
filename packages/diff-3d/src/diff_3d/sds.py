"""Score distillation: optimise 3D Gaussians from a class prompt with a frozen 2D prior (:mod:`diff_3d.prior`).

**SDS** (DreamFusion, Poole et al. 2022, Eq. 3). With a render ``x = g(theta)`` (``(B, 3, H, W)`` in [-1, 1]),
a time ``t`` (``t = 0`` data, ``t = 1`` noise), noise ``eps`` and ``x_t = alpha_t x + sigma_t eps``::

    grad_theta L_SDS = E_{t, eps}[ w(t) (eps_hat_s(x_t; y, t) - eps) dx/dtheta ]
    eps_hat_s = eps_hat(x_t; null) + s (eps_hat(x_t; y) - eps_hat(x_t; null))       (CFG, Ho & Salimans 2022)

skipping the U-Net Jacobian. ``w(t) = sigma_t^2``, which on a variance-preserving path is ``1 - alpha_bar_t``
(threestudio's convention for SDS, ``w = 1 - alphas_cumprod[t]``); DreamFusion uses ``s = 100``. The prior may
predict eps, x0, v or a velocity: diffcore's :class:`~diffcore.paths.denoiser.Denoiser` converts its output to
``eps_hat``, so the formula above holds for every parameterisation.

*Velocity (rectified-flow) priors.* On the path ``x_t = (1 - t) x + t eps`` a velocity network predicts
``v_hat ~ E[eps - x | x_t]``, and ``eps_hat = x_t + (1 - t) v_hat``. With ``v = eps - x`` (the conditional
velocity of this sample)::

    eps_hat - eps = (1 - t) x + t eps + (1 - t) v_hat - eps = (1 - t) (v_hat - (eps - x)) = (1 - t) (v_hat - v)

so SDS on a rectified-flow prior is ``w(t) (1 - t) (v_hat_s - v)``, with ``w(t) = sigma_t^2 = t^2``: the
eps-space gradient, computed here through the conversion (guidance is linear, so guiding ``v`` or ``eps``
is the same).

**CSD** (classifier score distillation, Yu et al. 2023, "Text-to-3D with Classifier Score Distillation",
Eq. 8): drop the noise residual and keep the classifier score, ``w(t) s (eps_hat(x_t; y) - eps_hat(x_t; null))``.
SDS at scale ``s`` is CSD plus the residual ``w (eps_hat(x_t; null) - eps)``; with a class-conditional prior
and no negative prompts, the "lower guidance plus a negative prompt" variants (NFSD, Katzir et al. 2024;
SDS-Bridge, McAllister et al. 2024) with the null condition as the negative reduce to this form. Its
guidance scale can be lower than SDS's, which is what reduces over-saturation.

**Time annealing.** ``t ~ U[t_min, t_max(step)]`` with ``t_max`` decreasing linearly from ``t_max_start`` to
``t_max_end`` over the run (coarse shape first, detail later; ProlificDreamer, Wang et al. 2023, Sec. 4.3
anneals ``t`` the same way).

The gradient is applied through :func:`sds_loss`, ``0.5 ||x - sg(x - grad)||^2``, whose gradient in ``x`` is
``grad``.

**Evaluation.** :func:`silhouette_iou` of the object's alpha against the prompted primitive's true coverage
(:func:`~diff_3d.render.sdf_trace.render_sdf`) from orbit cameras: both are centred at the origin, so nothing
is aligned. The prompt fixes the primitive but SDS has no reason to match its exact size (a class prior of
one size per class pins it only as well as the renders' apparent size does), so :func:`best_scale_iou` also
reports the best IoU over a range of uniform scalings of the object (the scale-normalised IoU).
:func:`janus_check` defines the multi-face problem for our primitives (see there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffcore.paths.denoiser import DenoiserBase
from torch import Tensor

from diff_3d.cameras import Camera, orbit_cameras
from diff_3d.config import SDSSettings
from diff_3d.data.primitives import Primitive
from diff_3d.gaussians import Gaussians
from diff_3d.prior import Prior2D, prior_cameras, to_model_space
from diff_3d.render import render
from diff_3d.render.sdf_trace import render_sdf

__all__ = [
    "JanusReport",
    "SDSResult",
    "best_scale_iou",
    "distillation_gradient",
    "draw_time",
    "evaluate_object",
    "init_blob",
    "janus_check",
    "max_time",
    "optimise_sds",
    "saturation_stats",
    "scale_gaussians",
    "sds_loss",
    "sds_weight",
    "silhouette_iou",
]

METHODS = ("sds", "csd")


# -- times --------------------------------------------------------------------------------------------------------
def max_time(step: int, steps: int, t_max_start: float, t_max_end: float) -> float:
    """The largest time drawn at ``step`` (0-based) of ``steps``: linear from ``t_max_start`` (first step) to
    ``t_max_end`` (last step)."""
    if not 0 <= step < steps:
        raise ValueError(f"step: expected 0 <= step < steps = {steps}, got {step}")
    frac = step / (steps - 1) if steps > 1 else 0.0
    return t_max_start + (t_max_end - t_max_start) * frac


def draw_time(
    step: int, steps: int, settings: SDSSettings, generator: torch.Generator | None = None
) -> float:
    """``t ~ U[t_min, max_time(step)]`` (module docstring), one time per step for the whole batch."""
    hi = max_time(step, steps, settings.t_max_start, settings.t_max_end)
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    return settings.t_min + (hi - settings.t_min) * u


# -- the gradient -------------------------------------------------------------------------------------------------
def sds_weight(denoiser: DenoiserBase, t: float) -> float:
    """``w(t) = sigma_t^2`` (``1 - alpha_bar_t`` on a variance-preserving path; ``t^2`` on rectified flow)."""
    return float(denoiser.coefficients(float(t), torch.zeros(1)).sigma) ** 2


def distillation_gradient(
    denoiser: DenoiserBase,
    x: Tensor,
    t: float,
    noise: Tensor,
    cond: dict[str, Any],
    uncond: dict[str, Any],
    guidance: float,
    method: str = "sds",
) -> Tensor:
    """The score-distillation gradient in image space (module docstring), ``(B, ...)`` like ``x``, no graph.

    Args:
        denoiser: the frozen prior (any parameterisation; ``eps`` is read through it).
        x: the renders ``(B, ...)``; ``noise``: the ``eps`` of ``x_t = alpha_t x + sigma_t eps``, same shape.
        t: the time in (0, 1), 0 = data.
        cond, uncond: the network's keyword arguments for the prompt and for the null condition.
        guidance: the CFG scale ``s``.
        method: ``sds`` -> ``w(t) (eps_hat_s - eps)``; ``csd`` -> ``w(t) s (eps_hat(y) - eps_hat(null))``.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if noise.shape != x.shape:
        raise ValueError(f"noise: expected the shape of x {tuple(x.shape)}, got {tuple(noise.shape)}")
    if not 0 < t < 1:
        raise ValueError(f"t: expected a time in (0, 1), got {t!r}")
    with torch.no_grad():
        x = x.detach()
        c = denoiser.coefficients(float(t), x)
        x_t = c.alpha * x + c.sigma * noise
        eps_c = denoiser.eps(x_t, float(t), **cond)
        eps_u = denoiser.eps(x_t, float(t), **uncond) if (guidance != 1.0 or method == "csd") else eps_c
        w = sds_weight(denoiser, t)
        if method == "csd":
            return w * guidance * (eps_c - eps_u)
        return w * (eps_u + guidance * (eps_c - eps_u) - noise)


def sds_loss(x: Tensor, grad: Tensor) -> Tensor:
    """``0.5 ||x - sg(x - grad)||^2`` summed: a scalar whose gradient in ``x`` is ``grad`` (``sg``: no gradient)."""
    target = (x - grad).detach()
    return 0.5 * ((x - target) ** 2).sum()


# -- optimisation -------------------------------------------------------------------------------------------------
def init_blob(
    n: int,
    radius: float = 0.5,
    opacity: float = 0.3,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Gaussians:
    """``n`` grey isotropic Gaussians, means uniform in the ball of ``radius`` at the origin, standard deviation
    ``radius / n^(1/3)`` (about the mean spacing over 1.6), opacity ``opacity``, SH degree 0."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    if not 0 < opacity < 1:
        raise ValueError(f"opacity: expected a value in (0, 1), got {opacity!r}")
    d = torch.randn(n, 3, generator=generator, dtype=dtype)
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
    r = radius * torch.rand(n, 1, generator=generator, dtype=dtype) ** (1 / 3)
    sigma = radius / n ** (1 / 3)
    return Gaussians.from_activated(d * r, torch.full((n, 3), sigma, dtype=dtype),
                                    torch.full((n,), opacity, dtype=dtype), torch.full((n, 3), 0.5, dtype=dtype))  # fmt: skip


@dataclass
class SDSResult:
    """The distilled Gaussians (detached), the prompt's label, the times drawn and the gradient norm per step."""

    gaussians: Gaussians
    label: int
    times: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)


def optimise_sds(
    prior: Prior2D,
    prompt: str | int,
    settings: SDSSettings | None = None,
    *,
    generator: torch.Generator | None = None,
    init: Gaussians | None = None,
    progress: bool = True,
) -> SDSResult:
    """Distil Gaussians for ``prompt`` (a caption the prior's classes name, or a label) from ``prior``.

    Each step renders ``views_per_step`` cameras of the prior's distribution over its background, draws one
    annealed time (:func:`draw_time`) and noise, and applies :func:`distillation_gradient` through
    :func:`sds_loss` with per-parameter Adam. ``init``: the starting Gaussians (default :func:`init_blob`).
    ``generator`` (CPU) draws the blob, cameras, times and noise. Runs on the prior's device.
    """
    from diffcore.progress import Progress

    s = settings or SDSSettings()
    label = prompt if isinstance(prompt, int) else prior.label(prompt)
    if not 0 <= label < len(prior.classes):
        raise ValueError(f"prompt: expected a label in [0, {len(prior.classes)}), got {label}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    dev = prior.device
    g0 = (
        init if init is not None else init_blob(s.num_gaussians, s.init_radius, s.init_opacity, gen)
    ).detach()
    params = {k: v.clone().to(dev).requires_grad_(True) for k, v in g0.parameters().items()}
    lrs = {"means": s.lr_means, "quats": s.lr_quats, "log_scales": s.lr_scales,
           "opacity_logits": s.lr_opacity, "sh": s.lr_colors}  # fmt: skip
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lr} for k, lr in lrs.items()], eps=1e-15)
    decay = 0.1 ** (1 / max(s.steps, 1))
    den = prior.denoiser()
    y = torch.full((s.views_per_step,), label, device=dev, dtype=torch.long)
    cond, uncond = {"y": y}, {"y": torch.full_like(y, prior.null_label)}
    max_log_scale = math.log(s.max_scale)
    result = SDSResult(g0, label)
    with Progress(s.steps, "sds", show=progress) as bar:
        for step in range(s.steps):
            gs = Gaussians(**params)
            cams = [c.to(dev) for c in prior_cameras(s.views_per_step, prior.views, gen)]
            rgb = torch.stack([render(gs, c, prior.views.background, s.backend).rgb for c in cams])
            x = to_model_space(rgb)
            t = draw_time(step, s.steps, s, gen)
            noise = torch.randn(x.shape, generator=gen).to(dev)
            grad = distillation_gradient(den, x, t, noise, cond, uncond, s.guidance, s.method)
            opt.zero_grad(set_to_none=True)
            sds_loss(x, grad).backward()
            opt.step()
            opt.param_groups[0]["lr"] *= decay
            with torch.no_grad():
                params["log_scales"].clamp_(max=max_log_scale)
            result.times.append(t)
            result.grad_norms.append(float(grad.norm()))
            bar.update()
    result.gaussians = Gaussians(**params).detach()
    return result


# -- evaluation ---------------------------------------------------------------------------------------------------
def silhouette_iou(pred_alpha: Tensor, true_alpha: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU ``|P & T| / |P | T|`` of the masks ``alpha > threshold``, per view: ``(..., H, W)`` -> ``(...)``
    (1 where both masks are empty)."""
    if pred_alpha.shape != true_alpha.shape:
        raise ValueError(
            f"pred_alpha: expected the shape of true_alpha {tuple(true_alpha.shape)}, got {tuple(pred_alpha.shape)}"
        )
    p, q = pred_alpha > threshold, true_alpha > threshold
    inter = (p & q).flatten(-2).sum(-1).double()
    union = (p | q).flatten(-2).sum(-1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def scale_gaussians(gaussians: Gaussians, factor: float) -> Gaussians:
    """The object scaled by ``factor`` about the origin (means and standard deviations)."""
    return Gaussians(gaussians.means * factor, gaussians.quats, gaussians.log_scales + math.log(factor),
                     gaussians.opacity_logits, gaussians.sh)  # fmt: skip


def _alphas(gaussians: Gaussians, cameras: Sequence[Camera], backend: str = "auto") -> Tensor:
    dev = gaussians.device
    with torch.no_grad():
        return torch.stack([render(gaussians, c.to(dev), 1.0, backend).alpha for c in cameras]).cpu()  # type: ignore[arg-type]


def best_scale_iou(
    gaussians: Gaussians,
    true_alpha: Tensor,
    cameras: Sequence[Camera],
    scales: Sequence[float] = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4, 1.6),
    backend: str = "auto",
) -> tuple[float, float]:
    """``(IoU, scale)``: the best mean silhouette IoU over uniform scalings of the object by ``scales``."""
    best = (-1.0, 1.0)
    for f in scales:
        iou = float(
            silhouette_iou(_alphas(scale_gaussians(gaussians, f), cameras, backend), true_alpha).mean()
        )
        best = max(best, (iou, f))
    return best


def saturation_stats(rgb: Tensor, alpha: Tensor, threshold: float = 0.5) -> dict[str, float]:
    """Over the foreground pixels (``alpha > threshold``) of renders ``(V, H, W, 3)``: the mean HSV saturation
    ``(max - min) / max`` and the fraction of channel values clipped (below 0.02 or above 0.98)."""
    fg = rgb[alpha > threshold].clamp(0, 1)
    if fg.numel() == 0:
        return {"saturation": 0.0, "clipped": 0.0}
    mx, mn = fg.max(-1).values, fg.min(-1).values
    sat = torch.where(mx > 0, (mx - mn) / mx.clamp_min(1e-8), torch.zeros_like(mx))
    clipped = ((fg < 0.02) | (fg > 0.98)).double().mean()
    return {"saturation": float(sat.mean()), "clipped": float(clipped)}


@dataclass
class JanusReport:
    """The multi-face check of :func:`janus_check`.

    Attributes:
        labels: the class the prior's diffusion classifier gives each view (front, right, back, left).
        chroma: ``(4, 3)`` mean foreground chromaticity ``rgb / (r + g + b)`` of each view.
        kind_flip: an opposite pair of views is classified as different kinds.
        colour_flip: an opposite pair of views differs in chromaticity by more than the tolerance.
    """

    labels: list[int]
    chroma: Tensor
    kind_flip: bool
    colour_flip: bool

    @property
    def janus(self) -> bool:
        return self.kind_flip or self.colour_flip


def janus_check(
    prior: Prior2D,
    gaussians: Gaussians,
    *,
    elevation: float = 15.0,
    chroma_tolerance: float = 0.08,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> JanusReport:
    """The multi-face (Janus) check. Our primitives are solids of revolution about y (the cube has 4-fold
    symmetry) in one colour, so a correct object looks the same kind and colour from every side; a Janus
    object is one whose opposite sides (front/back at azimuths 0 and 180 degrees, right/left at 90 and 270,
    ``elevation`` degrees up) show different kinds (by the prior's diffusion classifier,
    :meth:`~diff_3d.prior.Prior2D.classify`) or different colours (mean foreground chromaticity ``rgb / sum``,
    which the world-fixed light's shading leaves unchanged, further apart than ``chroma_tolerance``)."""
    v = prior.views
    cams = orbit_cameras(4, v.radius, elevation, width=v.resolution, height=v.resolution)
    dev = gaussians.device
    with torch.no_grad():
        outs = [render(gaussians, c.to(dev), v.background, backend) for c in cams]  # type: ignore[arg-type]
    rgb = torch.stack([o.rgb for o in outs]).cpu()
    alpha = torch.stack([o.alpha for o in outs]).cpu()
    labels = prior.classify(to_model_space(rgb), generator=generator).argmax(1).tolist()
    kinds = [prior.classes[i].kind for i in labels]
    chroma = []
    for im, a in zip(rgb, alpha):
        fg = im[a > 0.5]
        mean = fg.mean(0) if fg.numel() else torch.full((3,), 1 / 3)
        chroma.append(mean / mean.sum().clamp_min(1e-8))
    chroma_t = torch.stack(chroma)
    pairs = ((0, 2), (1, 3))
    kind_flip = any(kinds[a] != kinds[b] for a, b in pairs)
    colour_flip = any(float((chroma_t[a] - chroma_t[b]).norm()) > chroma_tolerance for a, b in pairs)
    return JanusReport(labels, chroma_t, kind_flip, colour_flip)


def evaluate_object(
    prior: Prior2D,
    gaussians: Gaussians,
    shape: Primitive,
    *,
    views: int = 8,
    elevation: float = 20.0,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """Scores of a distilled object against the prompted primitive, from ``views`` orbit cameras of the
    prior's radius and resolution: ``iou`` (mean silhouette IoU, no alignment), ``iou_scaled`` and ``scale``
    (:func:`best_scale_iou`), the saturation statistics of the renders and of the true renders
    (``saturation_true``, ``clipped_true``), and the Janus check (``janus``, ``janus_labels``)."""
    v = prior.views
    cams = orbit_cameras(views, v.radius, elevation, width=v.resolution, height=v.resolution)
    truth = [render_sdf(shape, c, v.background) for c in cams]
    true_rgb, true_alpha = torch.stack([o.rgb for o in truth]), torch.stack([o.alpha for o in truth])
    dev = gaussians.device
    with torch.no_grad():
        outs = [render(gaussians, c.to(dev), v.background, backend) for c in cams]  # type: ignore[arg-type]
    rgb, alpha = torch.stack([o.rgb for o in outs]).cpu(), torch.stack([o.alpha for o in outs]).cpu()
    iou_scaled, scale = best_scale_iou(gaussians, true_alpha, cams, backend=backend)
    sat, sat_true = saturation_stats(rgb, alpha), saturation_stats(true_rgb, true_alpha)
    janus = janus_check(prior, gaussians, generator=generator, backend=backend)
    return {
        "iou": float(silhouette_iou(alpha, true_alpha).mean()),
        "iou_scaled": iou_scaled,
        "scale": scale,
        "saturation": sat["saturation"],
        "clipped": sat["clipped"],
        "saturation_true": sat_true["saturation"],
        "clipped_true": sat_true["clipped"],
        "janus": janus.janus,
        "janus_kind_flip": janus.kind_flip,
        "janus_colour_flip": janus.colour_flip,
        "janus_labels": janus.labels,
    }
