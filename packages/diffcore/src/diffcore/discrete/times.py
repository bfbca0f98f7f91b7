"""Sampling diffusion times for Monte-Carlo estimates of the NELBO.

Antithetic / low-discrepancy sampling (Kingma et al. 2021, "Variational Diffusion Models", Sec. 3.4;
used by MDLM and BD3-LM): ``n`` times ``t_i = (u + i / n) mod 1`` share one uniform ``u``, which keeps each
``t_i`` uniform but spreads them over [0, 1] and lowers the variance of the batch mean.

Clipping (BD3-LM, Arriola et al. 2025, Sec. 4): training may draw the masking rate from ``[t_min, t_max]``
instead of [0, 1]; evaluation must use the full range so the bound stays unbiased.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sample_times"]


def sample_times(
    shape: int | tuple[int, ...],
    *,
    antithetic: bool = True,
    t_min: float = 0.0,
    t_max: float = 1.0,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Times uniform on ``[max(t_min, eps), t_max]``, shape ``shape`` (e.g. (B,) or (B, n_blocks)).

    antithetic: one shared uniform offset for all ``numel`` times, ``t_i = (u + i / n) mod 1`` (then permuted
    randomly so neighbouring blocks do not get ordered times). ``eps`` keeps ``t`` off 0 where the NELBO
    weight ``-alpha'/(1 - alpha)`` is infinite.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not 0.0 <= t_min <= t_max <= 1.0:
        raise ValueError(f"t_min, t_max: expected 0 <= t_min <= t_max <= 1, got {t_min}, {t_max}")
    n = 1
    for s in shape:
        n *= s
    if antithetic:
        u = torch.rand((), generator=generator, dtype=torch.float64)
        u = (u + torch.arange(n, dtype=torch.float64) / n) % 1.0
        u = u[torch.randperm(n, generator=generator)]
    else:
        u = torch.rand(n, generator=generator, dtype=torch.float64)
    lo = max(t_min, eps)
    hi = max(t_max, lo)
    t = lo + (hi - lo) * u
    return t.reshape(shape).to(device=device, dtype=dtype)
