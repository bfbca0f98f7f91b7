"""Loss weightings as functions of the log-SNR ``lambda = log(alpha^2 / sigma^2)``.

A weighting is defined on the x0-error (``w_x0(lambda) * ||x0_hat - x0||^2``) and converted to the
target the objective compares, using ``||eps_hat - eps||^2 = SNR ||x0_hat - x0||^2`` and, for VP paths,
``||v_hat - v||^2 = (SNR + 1) ||x0_hat - x0||^2`` (Salimans & Ho 2022; Hang et al. 2023, Sec. 3.4).
Everything is computed in log space so that ``SNR = 0`` (zero terminal SNR) and ``SNR = inf`` (``t = 0``)
give finite weights: their limits (e.g. EDM's eps weight -> 1 as SNR -> inf), read off at
``log_snr = +-LOG_SNR_EDGE``, where ``inf - inf`` would otherwise give NaN. A NaN log-SNR gives weight 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from diffcore.registry import Registry

LOG_SNR_EDGE = 1e4
"""Infinite log-SNRs are evaluated here: far beyond any weight's transition (``exp(-1e4) = 0``), exact in
float32 and float64, so ``logaddexp(lam, c) - lam`` and ``logsigmoid(b - lam) + lam`` reach their limits."""

Weighting = Callable[[Tensor, str], Tensor]
"""``weighting(log_snr, target) -> weight`` with ``target`` in eps|x0|v|velocity|score."""


def _log_target_factor(log_snr: Tensor, target: str) -> Tensor:
    """``log`` of the factor ``c`` with ``||target error||^2 = c ||x0 error||^2`` (VP form for ``v``)."""
    if target == "x0":
        return torch.zeros_like(log_snr)
    if target in ("eps", "score"):
        return log_snr
    if target in ("v", "velocity"):
        return F.softplus(log_snr)  # log(SNR + 1); for rectified flow velocity this is the VP-equivalent
    raise ValueError(f"target: expected eps, x0, v, velocity or score, got {target!r}")


def _edge(log_snr: Tensor) -> Tensor:
    """``log_snr`` with ``+-inf`` replaced by ``+-LOG_SNR_EDGE`` (see :data:`LOG_SNR_EDGE`)."""
    return log_snr.clamp(-LOG_SNR_EDGE, LOG_SNR_EDGE)


def _from_x0_weight(log_w_x0: Tensor, log_snr: Tensor, target: str) -> Tensor:
    log_w = log_w_x0 - _log_target_factor(log_snr, target)
    return torch.exp(log_w.clamp(max=80.0)).nan_to_num(0.0)


def uniform(log_snr: Tensor, target: str) -> Tensor:
    """Weight 1 on the target's error (DDPM's L_simple for eps, plain flow matching for velocity)."""
    _log_target_factor(log_snr, target)  # validates target
    return torch.ones_like(log_snr)


def min_snr(gamma: float = 5.0) -> Weighting:
    """Min-SNR-gamma (Hang et al. 2023, Eq. 10): x0-weight ``min(SNR, gamma)``; for an eps target this is
    ``min(1, gamma / SNR)`` and for v ``min(SNR, gamma) / (SNR + 1)``, computed in log space (safe at SNR = 0)."""
    if gamma <= 0:
        raise ValueError(f"gamma: expected > 0, got {gamma}")
    log_gamma = math.log(gamma)

    def weight(log_snr: Tensor, target: str) -> Tensor:
        log_snr = _edge(log_snr)
        if target in ("eps", "score"):  # min(1, gamma / SNR): 1 at SNR = 0, written without inf - inf
            return torch.exp(torch.clamp(log_gamma - log_snr, max=0.0))
        return _from_x0_weight(torch.clamp(log_snr, max=log_gamma), log_snr, target)

    return weight


def edm(sigma_data: float = 0.5) -> Weighting:
    """EDM's loss weight (Karras et al. 2022, Eq. 8 and Table 1): ``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2``
    on the x0-error with ``sigma = sigma/alpha = exp(-lambda/2)``, i.e. ``SNR + 1/sigma_data^2``."""
    if sigma_data <= 0:
        raise ValueError(f"sigma_data: expected > 0, got {sigma_data}")
    log_inv_sd2 = -2 * math.log(sigma_data)

    def weight(log_snr: Tensor, target: str) -> Tensor:
        log_snr = _edge(log_snr)
        log_w = torch.logaddexp(log_snr, torch.full_like(log_snr, log_inv_sd2))
        return _from_x0_weight(log_w, log_snr, target)

    return weight


def sigmoid(bias: float = -3.0) -> Weighting:
    """The sigmoid weighting of Kingma & Gao 2023 (eps-weight ``sigmoid(bias - lambda)``)."""

    def weight(log_snr: Tensor, target: str) -> Tensor:
        log_snr = _edge(log_snr)
        return _from_x0_weight(F.logsigmoid(bias - log_snr) + log_snr, log_snr, target)

    return weight


WEIGHTINGS: Registry[Callable[..., Weighting]] = Registry("weighting")
WEIGHTINGS.add("uniform", lambda: uniform)
WEIGHTINGS.add("min-snr", min_snr)
WEIGHTINGS.add("edm", edm)
WEIGHTINGS.add("sigmoid", sigmoid)


def available() -> list[str]:
    """Names accepted by :func:`get`, and ``likelihood`` (which only the objective can build)."""
    return sorted([*WEIGHTINGS.names(), "likelihood"])


def get(name: str, **kwargs) -> Weighting:
    """A weighting by name: ``uniform``, ``min-snr`` (gamma=), ``edm`` (sigma_data=), ``sigmoid`` (bias=).
    The ``likelihood`` weighting needs the schedule's time derivative and lives in the objective
    (``DiffusionObjective(weighting="likelihood")``)."""
    if name == "likelihood":
        raise ValueError(
            "weighting: 'likelihood' depends on d(log_snr)/dt; pass it to DiffusionObjective by name"
        )
    return WEIGHTINGS.get(name)(**kwargs)
