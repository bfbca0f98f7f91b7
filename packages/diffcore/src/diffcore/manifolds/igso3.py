"""IGSO(3): the isotropic Gaussian on SO(3), and the variance-exploding SDE on rotations of FrameDiff.

IGSO(3)(sigma) is the law of Brownian motion on SO(3) run for time ``sigma^2`` from the identity
(Nikolayev & Savyolova 1997; Leach et al. 2022; FrameDiff, Yim et al. 2023, Sec. 3 and App. E).
It is isotropic, so its density with respect to the Haar measure depends on the rotation angle
``omega`` in [0, pi] only (FrameDiff Eq. 4, with ``chi_l`` the character of degree ``l``)::

    f(omega; sigma) = sum_{l >= 0} (2l + 1) exp(-l (l + 1) sigma^2 / 2) sin((l + 1/2) omega) / sin(omega / 2)

and the angle itself has density ``f(omega) (1 - cos omega) / pi`` on [0, pi] (Haar measure factor).
The series needs ``~10 / sigma`` terms and, worse, loses all precision by cancellation where
``f`` is tiny (large ``omega``, small ``sigma``). For ``sigma < SERIES_MIN_SIGMA`` we therefore use the
closed form of Leach et al. (2022, Eq. 9; the heat kernel with the first images), with
``eps = sigma^2 / 2``::

    f(omega) ~ sqrt(pi) eps^(-3/2) exp(eps/4 - omega^2/(4 eps))
               * [omega - (omega - 2 pi) e^(-pi (pi - omega)/eps) - (omega + 2 pi) e^(-pi (pi + omega)/eps)]
               / (2 sin(omega / 2))

evaluated in log space. The two agree to < 1e-7 in ``log f`` for sigma in [0.5, 1.5] (see the tests).

What is cached: the angle CDF on a grid of ``sigma`` (log-spaced) x ``omega`` (uniform on [0, pi]),
used for inverse-CDF sampling, and ``E[(d log f / d omega)^2]`` per ``sigma`` (FrameDiff's score
scaling). Both are computed once per grid in memory (:func:`igso3_table`) and optionally stored as
``.npz`` in a cache folder. The log-density and the score are closed-form per call, not looked up.

Rotations and tangent vectors follow :mod:`diffcore.manifolds.so3`: body-frame rotation vectors.
Time runs from ``t = 0`` (data) to ``t = 1`` (noise).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffcore.io import atomic_path
from diffcore.manifolds import so3

__all__ = [
    "SERIES_MIN_SIGMA",
    "IGSO3Table",
    "SO3VESchedule",
    "angle_log_density",
    "dlog_f_domega",
    "forward_marginal",
    "igso3_table",
    "log_f",
    "reverse_step",
    "sample",
    "sample_angle",
    "score",
    "score_from_rotvec",
]

SERIES_MIN_SIGMA = 1.0
"""Below this sigma the closed-form approximation is used, at and above it the truncated series."""

# Below this angle, the score is continued linearly to 0 (it is an odd function of omega).
_OMEGA_FLOOR = 1e-4


def _series_terms(sigma_min: float) -> int:
    # exp(-l (l + 1) sigma^2 / 2) < 1e-20 once l > sqrt(92) / sigma.
    return math.ceil(10.0 / sigma_min) + 2


def _log_f_series(omega: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated series for ``log f`` and ``d log f / d omega``; ``omega >= _OMEGA_FLOOR``."""
    n = _series_terms(float(sigma.min()))
    l = torch.arange(n, dtype=omega.dtype, device=omega.device)
    w, s = omega[..., None], sigma[..., None]
    c = (2 * l + 1) * torch.exp(-l * (l + 1) * s * s / 2)
    a = (l + 0.5) * w
    sh = torch.sin(w / 2)
    f = (c * torch.sin(a) / sh).sum(-1)
    df = (c * ((l + 0.5) * torch.cos(a) * sh - 0.5 * torch.sin(a) * torch.cos(w / 2)) / (sh * sh)).sum(-1)
    return torch.log(f), df / f


def _log_f_closed_form(omega: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Leach et al. (2022) Eq. 9 for ``log f`` and ``d log f / d omega``; ``omega >= _OMEGA_FLOOR``."""
    eps = sigma * sigma / 2
    pi = math.pi
    e1 = torch.exp(-pi * (pi - omega) / eps)
    e2 = torch.exp(-pi * (pi + omega) / eps)
    bracket = omega - (omega - 2 * pi) * e1 - (omega + 2 * pi) * e2
    d_bracket = 1 - e1 * (1 + (omega - 2 * pi) * pi / eps) - e2 * (1 - (omega + 2 * pi) * pi / eps)
    log_f = (
        0.5 * math.log(pi)
        - 1.5 * torch.log(eps)
        + eps / 4
        - omega * omega / (4 * eps)
        + torch.log(bracket)
        - torch.log(2 * torch.sin(omega / 2))
    )
    dlog_f = -omega / (2 * eps) + d_bracket / bracket - 0.5 / torch.tan(omega / 2)
    return log_f, dlog_f


def _log_f_and_score(omega: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log f`` and ``d log f / d omega`` at any omega in [0, pi], choosing the method per sigma."""
    if (sigma <= 0).any():
        raise ValueError(f"sigma: expected values > 0, got min {float(sigma.min())}")
    if ((omega < 0) | (omega > math.pi + 1e-6)).any():
        raise ValueError("omega: expected angles in [0, pi]")
    omega, sigma = torch.broadcast_tensors(omega, sigma)
    w = omega.clamp(_OMEGA_FLOOR, math.pi)
    use_series = sigma >= SERIES_MIN_SIGMA
    log_f = torch.empty_like(w)
    dlog = torch.empty_like(w)
    if use_series.any():
        log_f[use_series], dlog[use_series] = _log_f_series(w[use_series], sigma[use_series])
    if (~use_series).any():
        m = ~use_series
        log_f[m], dlog[m] = _log_f_closed_form(w[m], sigma[m])
    # f is smooth and even in omega: constant log f and a linear score below the floor.
    dlog = torch.where(omega < _OMEGA_FLOOR, dlog * omega / _OMEGA_FLOOR, dlog)
    return log_f, dlog


def log_f(omega: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Log density of IGSO(3)(sigma) w.r.t. the normalised Haar measure, at rotation angle ``omega``.

    ``omega``: angles in [0, pi]; ``sigma > 0``; broadcast together. Computed in float64.
    """
    omega, sigma = _as_f64(omega), _as_f64(sigma, like=omega)
    return _log_f_and_score(omega, sigma)[0]


def dlog_f_domega(omega: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """``d/d omega log f(omega; sigma)``, the magnitude of the IGSO(3) score (FrameDiff Eq. 5)."""
    omega, sigma = _as_f64(omega), _as_f64(sigma, like=omega)
    return _log_f_and_score(omega, sigma)[1]


def angle_log_density(omega: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Log density of the rotation angle on [0, pi]: ``log f + log((1 - cos omega) / pi)``."""
    omega = _as_f64(omega)
    return log_f(omega, sigma) + torch.log1p(-torch.cos(omega)) - math.log(math.pi)


def _as_f64(x: torch.Tensor | float, like: torch.Tensor | None = None) -> torch.Tensor:
    device = like.device if like is not None else None
    return torch.as_tensor(x, dtype=torch.float64, device=device)


# ----------------------------------------------------------------------------------------------------
# Cached grid: angle CDF and score norm.


@dataclass(frozen=True)
class IGSO3Table:
    """Precomputed IGSO(3) quantities on a grid.

    ``sigmas: (S,)`` log-spaced; ``omegas: (W,)`` uniform on [0, pi]; ``cdf: (S, W)`` the angle CDF
    (trapezoid rule, normalised so the last column is exactly 1); ``score_norm: (S,)`` the root mean
    square ``sqrt(E[(d log f / d omega)^2])`` under the angle density (FrameDiff's loss scaling).
    """

    sigmas: np.ndarray
    omegas: np.ndarray
    cdf: np.ndarray
    score_norm: np.ndarray
    _on_device: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``cdf``, ``omegas`` and ``score_norm`` as float64 tensors on ``device``, copied once per device."""
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = tuple(
                torch.from_numpy(a).to(device) for a in (self.cdf, self.omegas, self.score_norm)
            )
        return self._on_device[key]

    @classmethod
    def build(cls, sigma_min: float, sigma_max: float, num_sigma: int, num_omega: int) -> IGSO3Table:
        """Compute the table (float64; ~0.1 s for the defaults on one CPU core)."""
        _check_grid(sigma_min, sigma_max, num_sigma, num_omega)
        sigmas = np.exp(np.linspace(math.log(sigma_min), math.log(sigma_max), num_sigma))
        omegas = np.linspace(0.0, math.pi, num_omega)
        w = torch.from_numpy(omegas)[None, :]
        s = torch.from_numpy(sigmas)[:, None]
        lf, dlog = _log_f_and_score(w.expand(num_sigma, -1), s.expand(-1, num_omega))
        density = torch.exp(lf) * (1 - torch.cos(w)) / math.pi
        dw = omegas[1] - omegas[0]
        increments = 0.5 * (density[:, 1:] + density[:, :-1]) * dw
        cdf = torch.cat([torch.zeros(num_sigma, 1, dtype=torch.float64), increments.cumsum(-1)], -1)
        total = cdf[:, -1:]
        cdf = cdf / total
        second = (dlog**2 * density).sum(-1) * dw / total[:, 0]
        return cls(sigmas, omegas, cdf.numpy(), np.sqrt(second.numpy()))

    def _bracket(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid index ``i`` and weight ``u`` with ``log sigma = (1-u) log s_i + u log s_{i+1}``."""
        lo, hi = float(self.sigmas[0]), float(self.sigmas[-1])
        if (sigma < lo * (1 - 1e-9)).any() or (sigma > hi * (1 + 1e-9)).any():
            raise ValueError(f"sigma: expected values in the table range [{lo}, {hi}]")
        pos = (torch.log(sigma) - math.log(lo)) / (math.log(hi) - math.log(lo)) * (len(self.sigmas) - 1)
        pos = pos.clamp(0, len(self.sigmas) - 1)
        i = pos.floor().long().clamp(max=len(self.sigmas) - 2)
        return i, pos - i

    def score_norm_at(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """``sqrt(E[(d log f / d omega)^2])`` at ``sigma`` (linear interpolation in log sigma)."""
        sigma = _as_f64(sigma)
        i, u = self._bracket(sigma)
        table = self._tensors(sigma.device)[2]
        return (1 - u) * table[i] + u * table[i + 1]

    def sample_angle(
        self, sigma: torch.Tensor, generator: torch.Generator | None = None, chunk: int = 2048
    ) -> torch.Tensor:
        """Angles ``omega ~ IGSO(3)(sigma)`` by inverse CDF, one per entry of ``sigma``: shape of ``sigma``.

        The CDF at ``sigma`` is the blend of the two neighbouring grid rows; it is inverted exactly
        (binary search, then linear interpolation between grid angles).
        """
        sigma = _as_f64(sigma)
        flat = sigma.reshape(-1)
        u01 = torch.rand(flat.shape, generator=generator, dtype=torch.float64, device=flat.device)
        cdf, omegas, _ = self._tensors(flat.device)
        out = torch.empty_like(flat)
        for start in range(0, flat.numel(), chunk):
            sl = slice(start, start + chunk)
            i, w = self._bracket(flat[sl])
            rows = (1 - w)[:, None] * cdf[i] + w[:, None] * cdf[i + 1]
            u = u01[sl, None]
            j = torch.searchsorted(rows, u).clamp(1, len(omegas) - 1)
            c0, c1 = rows.gather(-1, j - 1), rows.gather(-1, j)
            frac = ((u - c0) / (c1 - c0).clamp_min(1e-300)).clamp(0, 1)
            out[sl] = (omegas[j - 1] + frac * (omegas[j] - omegas[j - 1]))[:, 0]
        return out.reshape(sigma.shape)

    def save(self, path: str | Path) -> None:
        """Write the table as ``.npz`` (``.npz`` is appended to a name without it, as ``np.savez`` does),
        atomically: a failed write leaves an existing file as it was."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        with atomic_path(path) as tmp:
            np.savez(tmp, sigmas=self.sigmas, omegas=self.omegas, cdf=self.cdf, score_norm=self.score_norm)

    @classmethod
    def load(cls, path: str | Path) -> IGSO3Table:
        """Read a table written by :meth:`save`."""
        with np.load(path) as data:
            return cls(data["sigmas"], data["omegas"], data["cdf"], data["score_norm"])


def _check_grid(sigma_min: float, sigma_max: float, num_sigma: int, num_omega: int) -> None:
    if not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"sigma_min, sigma_max: expected 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}"
        )
    if num_sigma < 2 or num_omega < 3:
        raise ValueError(f"num_sigma, num_omega: expected >= 2 and >= 3, got {num_sigma}, {num_omega}")


@functools.lru_cache(maxsize=8)
def igso3_table(
    sigma_min: float = 0.05,
    sigma_max: float = 2.0,
    num_sigma: int = 256,
    num_omega: int = 4096,
    cache_dir: str | None = None,
) -> IGSO3Table:
    """The IGSO(3) table for a grid, computed once per process (memoised), optionally cached on disk.

    With ``cache_dir`` the table is read from / written to ``cache_dir/igso3_<hash of grid>.npz``.
    The default grid covers FrameDiff's sigma range [0.1, 1.5] with margin.
    """
    _check_grid(sigma_min, sigma_max, num_sigma, num_omega)
    if cache_dir is None:
        return IGSO3Table.build(sigma_min, sigma_max, num_sigma, num_omega)
    key = f"{sigma_min!r}-{sigma_max!r}-{num_sigma}-{num_omega}-{SERIES_MIN_SIGMA!r}-v1"
    path = Path(cache_dir) / f"igso3_{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        return IGSO3Table.load(path)
    table = IGSO3Table.build(sigma_min, sigma_max, num_sigma, num_omega)
    table.save(path)  # atomic: processes building the same table at once each replace it whole
    return table


# ----------------------------------------------------------------------------------------------------
# Sampling and score.


def sample_angle(
    sigma: torch.Tensor | float, generator: torch.Generator | None = None, table: IGSO3Table | None = None
) -> torch.Tensor:
    """Rotation angles ``omega ~ IGSO(3)(sigma)``, shape of ``sigma``, float64."""
    return (table or igso3_table()).sample_angle(_as_f64(sigma), generator)


def sample(
    sigma: torch.Tensor | float, generator: torch.Generator | None = None, table: IGSO3Table | None = None
) -> torch.Tensor:
    """Rotation vectors of IGSO(3)(sigma) samples: uniform axis, angle by inverse CDF. ``(...) -> (..., 3)``."""
    sigma = _as_f64(sigma)
    omega = sample_angle(sigma, generator, table)
    axis = torch.randn(*sigma.shape, 3, generator=generator, dtype=torch.float64, device=sigma.device)
    axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
    return axis * omega[..., None]


def score_from_rotvec(v: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Score of IGSO(3)(sigma) centred at the identity, at ``exp(hat(v))``, as a body-frame tangent vector.

    ``grad log f = (v / |v|) d/d omega log f(|v|)`` (FrameDiff Eq. 5). ``v: (..., 3)`` with ``|v| <= pi``,
    ``sigma`` broadcastable to ``(...)``. Returns ``(..., 3)`` in the dtype of ``v``.
    """
    # d log f / d omega is odd and ~ c omega near 0: evaluating at max(omega, floor) and dividing by the
    # same keeps the ratio finite and exact to O(floor^2).
    omega = torch.linalg.vector_norm(v.to(torch.float64), dim=-1)
    if (omega > math.pi + 1e-6).any():
        raise ValueError("v: expected rotation vectors with |v| <= pi (as returned by so3.log_map)")
    omega = omega.clamp(_OMEGA_FLOOR, math.pi)
    ratio = dlog_f_domega(omega, _as_f64(sigma, like=v)) / omega
    return (v.to(torch.float64) * ratio[..., None]).to(v.dtype)


def score(r_t: torch.Tensor, r_0: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Score ``grad_{R_t} log p(R_t | R_0)`` of ``R_t = R_0 exp(hat(v))``, ``v ~ IGSO(3)(sigma)``.

    Returned as a body-frame tangent vector at ``R_t``: ``(..., 3)``. ``r_t, r_0: (..., 3, 3)``.
    """
    return score_from_rotvec(so3.log_map(r_0.transpose(-1, -2) @ r_t), sigma)


# ----------------------------------------------------------------------------------------------------
# The VE SDE on SO(3): dR = g(t) dB_t, whose marginal is IGSO(3)(sigma(t)) around R_0.


@dataclass(frozen=True)
class SO3VESchedule:
    """FrameDiff's rotation noise schedule (Yim et al. 2023, App. E.2), t in [0, 1], 0 = data.

    ``kind="logarithmic"`` (FrameDiff's default): ``sigma(t) = log(t e^sigma_max + (1 - t) e^sigma_min)``.
    ``kind="geometric"``: ``log sigma`` linear in t, ``sigma_min^(1-t) sigma_max^t``.
    The diffusion coefficient is ``g(t) = sqrt(d sigma^2 / dt)``, so that IGSO(3)(sigma(t)) (Brownian
    motion for time ``sigma^2``) is the marginal of ``dR = g dB`` started from IGSO(3)(sigma_min).
    """

    sigma_min: float = 0.1
    sigma_max: float = 1.5
    kind: str = "logarithmic"

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"sigma_min, sigma_max: expected 0 < min < max, got {self.sigma_min}, {self.sigma_max}"
            )
        if self.kind not in ("logarithmic", "geometric"):
            raise ValueError(f"kind: expected 'logarithmic' or 'geometric', got {self.kind!r}")

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """``sigma(t)``, same shape as ``t``."""
        t = _check_time(t)
        if self.kind == "logarithmic":
            return torch.log(t * math.exp(self.sigma_max) + (1 - t) * math.exp(self.sigma_min))
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def dsigma_dt(self, t: torch.Tensor | float) -> torch.Tensor:
        """``d sigma / dt``."""
        t = _check_time(t)
        if self.kind == "logarithmic":
            return (math.exp(self.sigma_max) - math.exp(self.sigma_min)) / torch.exp(self.sigma(t))
        return self.sigma(t) * math.log(self.sigma_max / self.sigma_min)

    def diffusion_coefficient(self, t: torch.Tensor | float) -> torch.Tensor:
        """``g(t) = sqrt(2 sigma(t) d sigma / dt)``."""
        return torch.sqrt(2 * self.sigma(t) * self.dsigma_dt(t))


def _check_time(t: torch.Tensor | float) -> torch.Tensor:
    t = _as_f64(t) if not isinstance(t, torch.Tensor) else t.to(torch.float64)
    if ((t < 0) | (t > 1)).any():
        raise ValueError("t: expected times in [0, 1] (0 = data, 1 = noise)")
    return t


def forward_marginal(
    r_0: torch.Tensor,
    t: torch.Tensor | float,
    schedule: SO3VESchedule,
    generator: torch.Generator | None = None,
    table: IGSO3Table | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``R_t = R_0 exp(hat(v))``, ``v ~ IGSO(3)(sigma(t))``; return ``(R_t, score)``.

    ``r_0: (..., 3, 3)``; ``t`` broadcastable to ``(...)``. The score (body frame, ``(..., 3)``) is the
    denoising score-matching target of FrameDiff Eq. 6.
    """
    sigma = schedule.sigma(t).expand(r_0.shape[:-2])
    v = sample(sigma, generator, table)
    r_t = r_0 @ so3.exp_map(v).to(r_0.dtype)
    return r_t, score_from_rotvec(v, sigma).to(r_0.dtype)


def reverse_step(
    r_t: torch.Tensor,
    score_t: torch.Tensor,
    t: torch.Tensor | float,
    dt: float,
    schedule: SO3VESchedule,
    generator: torch.Generator | None = None,
    noise_scale: float = 1.0,
) -> torch.Tensor:
    """One Euler-Maruyama step of the reverse SDE as a geodesic random walk, from ``t`` to ``t - dt``.

    ``R_{t-dt} = R_t exp(hat(g^2 score dt + noise_scale g sqrt(dt) z))``, ``z ~ N(0, I_3)``
    (FrameDiff Eq. 8; De Bortoli et al. 2022). ``r_t: (..., 3, 3)``; ``score_t: (..., 3)`` body frame;
    ``t`` broadcastable to ``(...)``; ``dt > 0``.
    """
    if dt <= 0:
        raise ValueError(f"dt: expected a positive step, got {dt}")
    g = torch.as_tensor(schedule.diffusion_coefficient(t)).to(device=r_t.device, dtype=r_t.dtype)[..., None]
    z = torch.randn(score_t.shape, generator=generator, dtype=r_t.dtype, device=r_t.device)
    step = g * g * score_t * dt + noise_scale * g * math.sqrt(dt) * z
    return r_t @ so3.exp_map(step)
