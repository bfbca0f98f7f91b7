"""FrameDiff: diffusion on SE(3)^N (Yim et al. 2023, "SE(3) diffusion model with application to protein
backbone generation", Sec. 3-4).

Each residue frame ``T = (R, x)`` is corrupted independently in its two parts:

* rotations by the VE SDE on SO(3) whose marginal is ``R_t = R_0 exp(v)``, ``v ~ IGSO(3)(sigma(t))``
  (Eq. 4-6): exact sampling by inverse CDF and the score of the truncated series expansion, both from
  :mod:`diffcore.manifolds.igso3` (grid precomputed once and cached);
* translations, scaled to network units by ``coordinate_scale`` (0.1: angstrom -> nm, as FrameDiff),
  by a VP Gaussian path ``x_t = alpha(t) x_0 + sigma(t) eps`` of :mod:`diffcore.paths.schedules` with the
  centre of mass removed from the noise (the model lives in the zero-centroid subspace, Sec. 3.3).

The network predicts the clean frames ``T_0``. Rotation loss: denoising score matching with the score
implied by the prediction, ``|s(R_t; R0_hat) - s(R_t; R_0)|^2 / E|s|^2`` (Eq. 7 with FrameDiff's scaling);
the translation loss is the x0 MSE (Eq. 8). The reverse step is the geodesic random walk of the
reverse SDE on rotations (Eq. 8 / :func:`diffcore.manifolds.igso3.reverse_step`) and the exact DDPM
posterior ``q(x_s | x_t, x0_hat)`` on translations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffcore.manifolds import igso3, so3
from diffcore.paths.schedules import VPLinear
from diffcore.sampling.steps import grid_points, posterior_std, snr_ratio
from torch import Tensor

from diff_protein.diffusion.base import centre, check_batch
from diff_protein.frames import Rigid

__all__ = ["FrameDiffusion", "FrameDiffusionConfig"]


@dataclass(frozen=True)
class FrameDiffusionConfig:
    """Settings of :class:`FrameDiffusion` (FrameDiff's defaults).

    ``rot_sigma_min/max``, ``rot_schedule``: the IGSO(3) noise ``sigma(t)`` of
    :class:`~diffcore.manifolds.igso3.SO3VESchedule`; ``trans_beta_min/max``: the linear VP schedule of
    the translations; ``coordinate_scale``: angstrom -> diffusion units; ``rot_noise_scale`` and
    ``trans_noise_scale``: multipliers of the reverse-step noise (1 = the exact reverse process;
    FrameDiff samples with 0.1 for more designable backbones).
    """

    rot_sigma_min: float = 0.1
    rot_sigma_max: float = 1.5
    rot_schedule: str = "logarithmic"
    trans_beta_min: float = 0.1
    trans_beta_max: float = 20.0
    coordinate_scale: float = 0.1
    rot_noise_scale: float = 1.0
    trans_noise_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.coordinate_scale <= 0:
            raise ValueError(f"coordinate_scale: expected > 0, got {self.coordinate_scale}")
        if self.rot_noise_scale < 0 or self.trans_noise_scale < 0:
            raise ValueError("rot_noise_scale, trans_noise_scale: expected >= 0")


class FrameDiffusion:
    """The FrameDiff process on frames ``Rigid (B, L)`` (see the module docstring). Stateless."""

    def __init__(self, config: FrameDiffusionConfig | None = None) -> None:
        self.config = config or FrameDiffusionConfig()
        c = self.config
        self.rot_schedule = igso3.SO3VESchedule(c.rot_sigma_min, c.rot_sigma_max, c.rot_schedule)
        self.trans_schedule = VPLinear(c.trans_beta_min, c.trans_beta_max)
        self.coordinate_scale = c.coordinate_scale
        # The cached IGSO(3) grid must cover sigma(t) on [0, 1] (it is memoised per process).
        if c.rot_sigma_min >= 0.1 and c.rot_sigma_max <= 2.0:
            self.table = igso3.igso3_table()  # the default grid, shared with every other user
        else:
            self.table = igso3.igso3_table(min(0.05, c.rot_sigma_min / 2), max(2.0, c.rot_sigma_max))

    # ---------------------------------------------------------------- forward process

    def corrupt(
        self, frames0: Rigid, t: Tensor, diffuse_mask: Tensor, generator: torch.Generator | None = None
    ) -> Rigid:
        """``frames_t`` given clean ``frames0 (B, L)`` (angstrom) at times ``t: (B,)``."""
        check_batch(frames0, t)
        rots_t, _ = igso3.forward_marginal(frames0.rots, t[:, None], self.rot_schedule, generator, self.table)
        x0 = frames0.trans * self.coordinate_scale
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        eps = centre(eps, diffuse_mask)
        tt = t.to(torch.float64)
        alpha = self.trans_schedule.alpha(tt).to(x0.dtype)[:, None, None]
        sigma = self.trans_schedule.sigma(tt).to(x0.dtype)[:, None, None]
        x_t = alpha * x0 + sigma * eps
        keep = ~diffuse_mask
        rots = torch.where(keep[..., None, None], frames0.rots, rots_t)
        trans = torch.where(keep[..., None], frames0.trans, x_t / self.coordinate_scale)
        return Rigid(rots, trans)

    def prior(
        self,
        shape: tuple[int, int],
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> Rigid:
        """Frames at ``t = 1``: approximately uniform rotations (IGSO(3)(sigma_max)) and centred N(0, I)
        translations in diffusion units. ``shape = (B, L)``."""
        b, length = shape
        sigma = torch.full(
            (b, length), float(self.rot_schedule.sigma(1.0)), dtype=torch.float64, device=device
        )
        rots = so3.exp_map(igso3.sample(sigma, generator, self.table)).to(dtype)
        x = torch.randn(b, length, 3, generator=generator, dtype=dtype, device=device)
        x = centre(x, torch.ones(b, length, dtype=torch.bool, device=device))
        return Rigid(rots, x / self.coordinate_scale)

    # ---------------------------------------------------------------- loss pieces

    def rotation_loss(self, pred0: Rigid, frames0: Rigid, frames_t: Rigid, t: Tensor) -> Tensor:
        """FrameDiff's scaled rotation score loss per residue ``(B, L)``.

        ``|s(R_t; R0_hat) - s(R_t; R_0)|^2 / (3 E|ds/domega|^2)`` with ``s`` the IGSO(3) score at ``sigma(t)``.
        """
        sigma = self.rot_schedule.sigma(t.to(torch.float64))[:, None].expand(frames0.shape)
        true = igso3.score(frames_t.rots, frames0.rots, sigma)
        pred = igso3.score(frames_t.rots, pred0.rots, sigma)
        norm = self.table.score_norm_at(sigma).to(pred.dtype)
        return ((pred - true) ** 2).sum(-1) / (3 * norm**2)

    def translation_weight(self, t: Tensor) -> Tensor:
        """Weight of the x0 MSE: 1 (FrameDiff's ``trans_x0`` loss)."""
        return torch.ones_like(t)

    # ---------------------------------------------------------------- reverse process

    def step(
        self,
        frames_t: Rigid,
        pred0: Rigid,
        t: float,
        s: float,
        diffuse_mask: Tensor,
        generator: torch.Generator | None = None,
    ) -> Rigid:
        """One reverse step ``t -> s``: geodesic random walk on rotations, DDPM posterior on translations."""
        if not 0 <= s < t <= 1:
            raise ValueError(f"t, s: expected 0 <= s < t <= 1, got {t}, {s}")
        c = self.config
        if s == 0.0:
            rots, x = pred0.rots, pred0.trans * self.coordinate_scale  # s = 0: the prediction itself
        else:
            sigma = self.rot_schedule.sigma(t)
            score = igso3.score(frames_t.rots, pred0.rots, sigma)
            rots = igso3.reverse_step(
                frames_t.rots, score, t, t - s, self.rot_schedule, generator, noise_scale=c.rot_noise_scale
            )
            x = self._trans_step(
                frames_t.trans * self.coordinate_scale,
                pred0.trans * self.coordinate_scale,
                t,
                s,
                diffuse_mask,
                generator,
            )
        keep = ~diffuse_mask
        rots = torch.where(keep[..., None, None], frames_t.rots, rots)
        trans = torch.where(keep[..., None], frames_t.trans, x / self.coordinate_scale)
        return Rigid(rots, trans)

    def _trans_step(
        self, x_t: Tensor, x0: Tensor, t: float, s: float, mask: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        cur, nxt = grid_points(self.trans_schedule, torch.tensor([t, s], dtype=torch.float64))
        eps = (x_t - cur.alpha * x0) / cur.sigma
        mean = nxt.alpha * x0 + snr_ratio(cur, nxt) * nxt.sigma * eps
        z = centre(torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=x_t.device), mask)
        return mean + self.config.trans_noise_scale * posterior_std(cur, nxt) * z

    def __repr__(self) -> str:
        return f"FrameDiffusion({self.config})"
