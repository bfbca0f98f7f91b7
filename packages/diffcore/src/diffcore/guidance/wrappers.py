"""Guidance as :class:`~diffcore.paths.denoiser.DenoiserBase` wrappers; samplers never know it exists.

Every parameterisation (eps, x0, v, velocity, score) is an affine function of ``(x0, eps)`` at fixed
``(x_t, t)``, so a guided combination of ``(x0, eps)`` pairs is the same combination in every space: the
classic eps formula and the x0/v/velocity forms agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.paths.predictions import to_x0_eps


def _stack_conditions(cond: dict[str, Any], uncond: dict[str, Any]) -> dict[str, Any]:
    """Concatenate conditional and unconditional keyword arguments along the batch for one forward."""
    keys = set(cond) | set(uncond)
    merged: dict[str, Any] = {}
    for key in keys:
        c, u = cond.get(key), uncond.get(key, cond.get(key))
        if c is None:
            raise ValueError(f"uncond: key {key!r} has no conditional counterpart in cond")
        if not isinstance(c, Tensor):
            merged[key] = c  # non-tensor options (e.g. a flag) are shared by both branches
            continue
        u = torch.as_tensor(u, device=c.device, dtype=c.dtype)
        if u.shape != c.shape:
            u = u.expand_as(c)  # a single null value (e.g. shape (1, ...)) serves the whole batch
        merged[key] = torch.cat([c, u], dim=0)
    return merged


class ClassifierFreeGuidance(DenoiserBase):
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6): ``eps = eps_u + w (eps_c - eps_u)``.

    Args:
        denoiser: the conditional denoiser; called once per step on the concatenated batch
            ``[x; x]`` with ``[cond; uncond]`` (one batched forward for both branches).
        scale: the guidance weight ``w`` (1 = conditional model, 0 = unconditional).
        uncond: keyword arguments of the unconditional branch (e.g. ``{"y": null_labels}``); keys missing here
            take the conditional value.
        rescale: ``phi`` of CFG rescale (Lin et al. 2024, Eq. 15-16): the guided x0 is rescaled per sample to
            the standard deviation of the conditional x0 and mixed ``phi * rescaled + (1 - phi) * guided``.
        interval: guide only for ``t`` in ``[lo, hi]`` (Kynkäänniemi et al. 2024); elsewhere the conditional
            model alone is used (one forward of the plain batch).
    """

    def __init__(
        self,
        denoiser: DenoiserBase,
        scale: float,
        uncond: dict[str, Any],
        rescale: float = 0.0,
        interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if not math.isfinite(float(scale)):
            raise ValueError(f"scale: expected a finite guidance scale, got {scale!r}")
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"rescale: expected phi in [0, 1], got {rescale}")
        lo, hi = interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"interval: expected 0 <= lo <= hi <= 1, got {interval}")
        self.inner, self.scale, self.uncond = denoiser, float(scale), dict(uncond)
        self.rescale, self.interval = rescale, (lo, hi)
        self.schedule = denoiser.schedule

    def _active(self, t: float | Tensor) -> bool:
        if isinstance(t, Tensor):
            return True  # per-sample times: guidance everywhere (the interval needs a host-side t)
        lo, hi = self.interval
        return lo <= float(t) <= hi

    def x0_eps(self, x: Tensor, t: float | Tensor, **cond: Any) -> tuple[Tensor, Tensor]:
        if not self._active(t) or self.scale == 1.0:
            return self.inner.x0_eps(x, t, **cond)
        b = x.shape[0]
        tt = torch.cat([t, t]) if isinstance(t, Tensor) and t.ndim == 1 else t
        x0, eps = self.inner.x0_eps(torch.cat([x, x]), tt, **_stack_conditions(cond, self.uncond))
        x0_c, x0_u = x0[:b], x0[b:]
        eps_c, eps_u = eps[:b], eps[b:]
        w = self.scale
        x0_g = x0_u + w * (x0_c - x0_u)
        eps_g = eps_u + w * (eps_c - eps_u)
        if self.rescale > 0:
            dims = tuple(range(1, x.ndim))
            ratio = x0_c.std(dim=dims, keepdim=True) / x0_g.std(dim=dims, keepdim=True).clamp_min(1e-12)
            x0_new = self.rescale * x0_g * ratio + (1 - self.rescale) * x0_g
            # keep (x0, eps) on the same x_t: x_t = alpha x0 + sigma eps
            c = self.coefficients(t, x)
            sigma = c.sigma
            if isinstance(sigma, Tensor) or sigma != 0:
                eps_g = eps_g + (c.alpha * (x0_g - x0_new)) / (
                    sigma if not isinstance(sigma, Tensor) else sigma.clamp_min(1e-12)
                )
            x0_g = x0_new
        return x0_g, eps_g


class ClassifierGuidance(DenoiserBase):
    """Classifier guidance (Dhariwal & Nichol 2021, Algorithm 1; Song et al. 2021, Eq. 49):
    ``score(x_t | y) = score(x_t) + scale * grad_x log p(y | x_t, t)``, i.e. ``eps -= scale * sigma * grad``.

    ``log_prob(x, t, **cond) -> (B,)`` is any differentiable classifier of noisy inputs (``t`` a (B,) tensor).
    """

    def __init__(self, denoiser: DenoiserBase, log_prob: Callable[..., Tensor], scale: float = 1.0) -> None:
        if not callable(log_prob):
            raise TypeError("log_prob: expected a callable log p(y | x_t, t, **cond) -> (B,)")
        if not math.isfinite(float(scale)):
            raise ValueError(f"scale: expected a finite guidance scale, got {scale!r}")
        self.inner, self.log_prob, self.scale = denoiser, log_prob, float(scale)
        self.schedule = denoiser.schedule

    def x0_eps(self, x: Tensor, t: float | Tensor, **cond: Any) -> tuple[Tensor, Tensor]:
        x0, eps = self.inner.x0_eps(x, t, **cond)
        tdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        if isinstance(t, Tensor) and t.ndim == 1:
            t_vec = t.to(device=x.device, dtype=tdtype)
        else:
            t_vec = torch.full((x.shape[0],), float(t), device=x.device, dtype=tdtype)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            lp = self.log_prob(xg, t_vec, **cond)
            if lp.shape != (x.shape[0],):
                raise ValueError(f"log_prob: expected shape ({x.shape[0]},), got {tuple(lp.shape)}")
            (grad,) = torch.autograd.grad(lp.sum(), xg)
        c = self.coefficients(t, x)
        eps_g = eps - self.scale * c.sigma * grad.to(eps.dtype)
        x0_g, _ = to_x0_eps(eps_g, "eps", x, c)
        # where alpha = 0 the eps form carries no x0 information: keep the unguided x0 there
        if not isinstance(c.alpha, Tensor) and c.alpha == 0:
            x0_g = x0
        return x0_g, eps_g
