"""Safety guidance: steer sampling away from a named concept (Safe Latent Diffusion, Schramowski et al. 2023).

A :class:`~diffcore.paths.denoiser.DenoiserBase` wrapper like the classifier-free guidance of
:mod:`diffcore.guidance.wrappers`; samplers never know it exists. With the unconditional, prompt and concept
estimates ``e_u``, ``e_p``, ``e_S`` of one batched forward (SLD, Eq. 3-6)::

    e = e_u + w * ( (e_p - e_u) - mu * (e_S - e_u) )

``w`` is the classifier-free guidance scale and ``mu`` the safety scale:

- plain (neither ``concept_prob`` nor ``threshold``): ``mu = safety_scale`` everywhere, negative guidance (concept
  negation, Liu et al. 2022, Eq. 12): the score of ``p_u (p_p / p_u)^w (p_u / p_S)^(w mu)``. It also bends regions
  far from the concept (``1 / p_S`` grows in the tails), so other content shifts;
- ``concept_prob=q``: ``mu = safety_scale * q / (1 - q)`` per sample (capped at ``max_scale``), ``q(x_t, t, x0_p)``
  the probability that the sample is heading into the concept. With ``w = 1``, a prompt equal to the
  unconditional model ``p_u = pi_S p_S + (1 - pi_S) p_other`` and the exact ``q = pi_S p_{t,S}(x) / p_{t,u}(x)``,
  ``e_u - q / (1 - q) (e_S - e_u)`` is exactly the estimate of ``p_{t,u}(x | not S)``: diffusion is linear in the
  data distribution, so the concept is removed and the rest kept unchanged at every ``t``. A modality supplies a
  detector (e.g. of the banned colour in the prompt's data estimate ``x0_p``);
- ``threshold=lambda``: SLD's element-wise scale, ``mu = min(1, safety_scale |e_p - e_S|)`` where
  ``e_p - e_S < lambda`` and 0 elsewhere (their Eq. 5).

SLD's warm-up (no safety in the first steps) is ``interval``: safety acts only for ``t`` in ``[lo, hi]``
(``t = 1`` noise, ``t = 0`` data). SLD's momentum term needs state across steps; this wrapper keeps none (a
sampler may call it in any order), so momentum is left out.

Every parameterisation is affine in ``(x0, eps)`` at fixed ``(x_t, t)`` and the weights of ``e_u, e_p, e_S``
sum to one element-wise, so the same combination of the ``x0`` estimates is the matching data estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffcore.guidance.wrappers import _stack_conditions
from diffcore.paths.denoiser import DenoiserBase

__all__ = ["SafetyGuidance"]


class SafetyGuidance(DenoiserBase):
    """Classifier-free guidance towards the prompt and away from a concept (see the module docstring).

    Args:
        denoiser: the conditional denoiser; called once per step on ``[x; x; x]`` with ``[cond; uncond; concept]``.
        uncond: keyword arguments of the unconditional branch (keys missing take the conditional value).
        concept: keyword arguments naming the banned concept (e.g. the token ids of "red", or its class label).
        scale: the guidance weight ``w`` towards the prompt (1 = the conditional model).
        safety_scale: ``mu`` (``threshold=None``) or SLD's ``s_S`` (element-wise scale before the cap of 1).
        threshold: SLD's ``lambda``; None for plain negative guidance.
        concept_prob: ``q(x_t, t, x0_p) -> (B,)`` in [0, 1] (``x0_p``: the prompt's data estimate; ``t`` a float or
            ``(B,)``); weights the push per sample by ``q / (1 - q)``. Exclusive with ``threshold``.
        max_scale: the cap of ``mu`` with ``concept_prob`` (``q -> 1`` would make it infinite).
        interval: ``(lo, hi)``: safety acts for ``t`` in this range only (SLD's warm-up is ``hi < 1``).
    """

    def __init__(
        self,
        denoiser: DenoiserBase,
        uncond: dict[str, Any],
        concept: dict[str, Any],
        scale: float = 1.0,
        safety_scale: float = 1.0,
        threshold: float | None = None,
        concept_prob: Callable[..., Tensor] | None = None,
        max_scale: float = 20.0,
        interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if concept_prob is not None and threshold is not None:
            raise ValueError(
                "concept_prob, threshold: expected at most one of them (two ways to scale the push)"
            )
        if concept_prob is not None and not callable(concept_prob):
            raise TypeError("concept_prob: expected a callable q(x_t, t, x0_p) -> (B,) or None")
        if not max_scale > 0:
            raise ValueError(f"max_scale: expected > 0, got {max_scale}")
        for name, value in (("scale", scale), ("safety_scale", safety_scale)):
            if not math.isfinite(float(value)) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if threshold is not None and not math.isfinite(float(threshold)):
            raise ValueError(f"threshold: expected a finite number or None, got {threshold!r}")
        lo, hi = interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"interval: expected 0 <= lo <= hi <= 1, got {interval}")
        if not concept:
            raise ValueError("concept: expected the keyword arguments of the banned concept, got none")
        self.inner, self.uncond, self.concept = denoiser, dict(uncond), dict(concept)
        self.scale, self.safety_scale = float(scale), float(safety_scale)
        self.threshold = None if threshold is None else float(threshold)
        self.concept_prob, self.max_scale = concept_prob, float(max_scale)
        self.interval = (lo, hi)
        self.schedule = denoiser.schedule

    def _active(self, t: float | Tensor) -> bool:
        if isinstance(t, Tensor):
            return True
        lo, hi = self.interval
        return lo <= float(t) <= hi

    def _mu(self, x: Tensor, t: float | Tensor, x0_p: Tensor, eps_p: Tensor, eps_s: Tensor) -> Tensor | float:
        if self.concept_prob is not None:
            q = self.concept_prob(x, t, x0_p).to(eps_p.dtype).clamp(0.0, 1.0)
            if q.shape != (x.shape[0],):
                raise ValueError(f"concept_prob: expected shape ({x.shape[0]},), got {tuple(q.shape)}")
            mu = (self.safety_scale * q / (1.0 - q).clamp_min(1e-12)).clamp(max=self.max_scale)
            return mu.reshape((-1,) + (1,) * (x.ndim - 1))
        if self.threshold is None:
            return self.safety_scale
        diff = eps_p - eps_s
        mu = (self.safety_scale * diff.abs()).clamp(max=1.0)
        return torch.where(diff < self.threshold, mu, torch.zeros_like(mu))

    def x0_eps(self, x: Tensor, t: float | Tensor, **cond: Any) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        safety = self._active(t) and self.safety_scale > 0
        branches = [self.uncond, self.concept] if safety else [self.uncond]
        stacked = _stack_conditions(cond, branches[0])
        if safety:  # [cond; uncond] + [concept]
            more = _stack_conditions(cond, branches[1])
            stacked = {
                k: torch.cat([v, more[k][b:]]) if isinstance(v, Tensor) else v for k, v in stacked.items()
            }
        n = len(branches) + 1
        tt = torch.cat([t] * n) if isinstance(t, Tensor) and t.ndim == 1 else t
        x0, eps = self.inner.x0_eps(torch.cat([x] * n), tt, **stacked)
        x0_p, x0_u, eps_p, eps_u = x0[:b], x0[b : 2 * b], eps[:b], eps[b : 2 * b]
        w = self.scale
        x0_g, eps_g = x0_p - x0_u, eps_p - eps_u
        if safety:
            x0_s, eps_s = x0[2 * b :], eps[2 * b :]
            mu = self._mu(x, t, x0_p, eps_p, eps_s)
            x0_g = x0_g - mu * (x0_s - x0_u)
            eps_g = eps_g - mu * (eps_s - eps_u)
        return x0_u + w * x0_g, eps_u + w * eps_g
