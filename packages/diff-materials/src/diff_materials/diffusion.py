"""Joint diffusion of lattice, fractional coordinates and atom types (DiffCSP / MatterGen), built on diffcore.

Time ``t`` in [0, 1], ``t = 0`` data, ``t = 1`` noise, per crystal. Three processes run side by side:

- **Lattice**: the standardised six entries of the symmetric lattice (:mod:`diff_materials.lattice`) on a
  Gaussian VP path of :mod:`diffcore.paths` (``x_t = alpha x_0 + sigma eps``, VP-cosine by default); the network
  predicts ``eps``; sampling takes DDPM posterior steps (:func:`diffcore.paths.transitions.posterior`).
- **Fractional coordinates**: the wrapped normal on the torus of :mod:`diffcore.manifolds.torus` with the
  variance-exploding scale ``sigma(t) = sigma_min^(1 - t) sigma_max^t`` (DiffCSP, Jiao et al. 2023, Sec. 4.2:
  0.005 and 0.5). The network predicts the score of ``p(x_t | x_0)`` divided by ``sqrt(E|score|^2)`` (DiffCSP
  Eq. 11, the normaliser computed by quadrature, :func:`score_norm`); sampling is DiffCSP's predictor-corrector
  (Alg. 1: a Langevin corrector of step ``step_lr (sigma_t / sigma_min)^2`` and a reverse-VE predictor). The
  mean of the score over a crystal's atoms only moves the whole crystal, which the data do not care about and the
  translation-invariant network cannot know: the loss compares, and the sampler follows, the per-crystal
  centred score (:func:`centre`), as torus flows that remove the translation do (FlowMM, Miller et al. 2024).
- **Fractional coordinates by flow matching** (``coords = "flow"``, the option to the wrapped normal): Riemannian
  flow matching on the flat torus (Chen & Lipman 2024; FlowMM, Miller et al. 2024) between the data and uniform
  noise ``z``. The path is the geodesic ``x_t = exp_{x_0}(t log_{x_0}(z))`` (:func:`diffcore.manifolds.torus.
  geodesic`), whose velocity ``dx_t/dt = log_{x_0}(z)`` (the wrapped difference ``z - x_0``) the network predicts,
  divided by :data:`FLOW_SCALE`; sampling integrates ``dx/dt`` by Euler steps from ``t = 1`` to ``t = 0``,
  wrapping into [0, 1) after each. The mean velocity over a crystal's atoms is removed as for the score.
- **Atom types** (ab initio generation only; for crystal structure prediction the composition is given and
  types stay clean): :mod:`diffcore.discrete`, absorbing (masked, MDLM's SUBS and ancestral sampler) or uniform
  (its exact ancestral posterior), log-linear ``alpha(t)`` by default, trained with the cross-entropy of the
  corrupted atoms (MatterGen's D3PM types, Zeni et al. 2025, App. B).

Property conditioning: the network's adapters see standardised properties with a mask; training drops each
property of each crystal on its own with probability ``p_uncond`` so that one network is conditional on any
subset of its properties and unconditional (all dropped), and
:func:`sample_crystals` guides with classifier-free guidance (continuous parts ``u + w (c - u)``, types by
:func:`diffcore.guidance.discrete.guided_log_probs`) and, optionally, a :class:`~diff_materials.models.
PropertyPredictor` (classifier guidance: ``score += scale * grad log p(y in range | x_t)``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffcore.discrete import (
    get_discrete_schedule,
    mask_tokens,
    masked_ancestral_sample,
    subs_log_probs,
    uniform_ancestral_sample,
    uniform_resample,
)
from diffcore.guidance.discrete import guided_log_probs
from diffcore.manifolds import torus
from diffcore.paths.predictions import PathCoefficients, to_x0_eps
from diffcore.paths.schedules import Schedule
from diffcore.paths.schedules import get as get_schedule
from diffcore.paths.transitions import marginal_sample, posterior
from torch import Tensor, nn
from tqdm.auto import tqdm

from diff_materials.data.crystals import NUM_TYPES, Crystal
from diff_materials.lattice import normalise_lattice, unnormalise_lattice
from diff_materials.orbit import MIN_SIGMA, orbit_score
from diff_materials.properties import property_mask, property_slices

__all__ = [
    "FLOW_SCALE",
    "MASK_TYPE",
    "CrystalDiffusion",
    "CrystalDiffusionConfig",
    "CrystalObjective",
    "Guidance",
    "centre",
    "sample_crystals",
    "score_norm",
]

MASK_TYPE = NUM_TYPES
Task = Literal["csp", "gen"]
Coords = Literal["wrapped_normal", "flow"]
FLOW_SCALE = 1 / math.sqrt(12)
"""The standard deviation of each entry of the flow's target velocity (uniform on [-1/2, 1/2)): the network
predicts ``velocity / FLOW_SCALE``, of unit scale like the normalised score."""


@dataclass(frozen=True)
class CrystalDiffusionConfig:
    """The joint process.

    Attributes:
        task: ``csp`` (crystal structure prediction: the composition is given, atom types are not diffused) or
            ``gen`` (ab initio generation: atom types are diffused too).
        lattice_schedule: a :mod:`diffcore.paths.schedules` name for the lattice's Gaussian path.
        coords: how fractional coordinates are noised and generated: ``wrapped_normal`` (DiffCSP's score-based
            diffusion) or ``flow`` (Riemannian flow matching on the torus to uniform noise).
        frac_sigma_min, frac_sigma_max: the wrapped normal's scale at ``t = 0`` and ``t = 1`` (fractional units).
        type_process: ``absorbing`` (masked) or ``uniform`` discrete diffusion of atom types.
        type_schedule: a :mod:`diffcore.discrete` schedule name.
        type_power: the power ``p`` of the ``polynomial`` type schedule, ``alpha(t) = 1 - t^p`` (ignored by the
            others). ``p > 1`` decides atom types early in sampling (at ``t = 0.7``, ``p = 3`` has 66 % of the
            types unmasked, log-linear 30 %), so the coordinates pick their sites knowing the types.
        lattice_weight, frac_weight, type_weight: loss weights.
        min_t: training times are drawn from ``[min_t, 1]``.
        focus_fraction, focus_low, focus_high: the share of training times drawn from ``[focus_low,
            focus_high]`` instead of ``[min_t, 1]``. That window (fractional sigma about 0.06-0.3) is where the
            sampler decides which atom takes which site; there the score needs the whole crystal (a per-pair
            "nearest site" rule, which the network learns first and which is right below ``t = 0.5``, is off
            by 85 % of the exact score at ``t = 0.7``), and the network leaves that plateau only after several
            hundred steps spent in the window. Uniform times spend 20 % of the steps there.
        frac_target: what the network regresses on the wrapped normal: ``orbit``, the score averaged over
            the translations and atom permutations the network cannot tell apart (:mod:`diff_materials.orbit`,
            the same regression function as ``crystal`` with far less variance where sites are assigned), or
            ``crystal``, DiffCSP's score of the one training crystal the noise came from.
    """

    task: Task = "csp"
    lattice_schedule: str = "vp-cosine"
    coords: Coords = "wrapped_normal"
    frac_sigma_min: float = 0.005
    frac_sigma_max: float = 0.5
    type_process: Literal["absorbing", "uniform"] = "absorbing"
    type_schedule: str = "log-linear"
    type_power: float = 2.0
    lattice_weight: float = 1.0
    frac_weight: float = 1.0
    type_weight: float = 1.0
    min_t: float = 1e-3
    focus_fraction: float = 0.5
    focus_low: float = 0.55
    focus_high: float = 0.9
    frac_target: Literal["orbit", "crystal"] = "crystal"

    def __post_init__(self) -> None:
        if self.task not in ("csp", "gen"):
            raise ValueError(f"task: expected 'csp' or 'gen', got {self.task!r}")
        if self.coords not in ("wrapped_normal", "flow"):
            raise ValueError(f"coords: expected 'wrapped_normal' or 'flow', got {self.coords!r}")
        if self.type_process not in ("absorbing", "uniform"):
            raise ValueError(f"type_process: expected 'absorbing' or 'uniform', got {self.type_process!r}")
        if not 0 < self.frac_sigma_min < self.frac_sigma_max:
            raise ValueError(
                f"frac_sigma_min, frac_sigma_max: expected 0 < min < max, got {self.frac_sigma_min}, "
                f"{self.frac_sigma_max}"
            )
        if not self.type_power > 0:
            raise ValueError(f"type_power: expected > 0, got {self.type_power}")
        if not 0 <= self.min_t < 1:
            raise ValueError(f"min_t: expected in [0, 1), got {self.min_t}")
        if not 0 <= self.focus_fraction <= 1:
            raise ValueError(f"focus_fraction: expected a fraction in [0, 1], got {self.focus_fraction}")
        if self.frac_target not in ("orbit", "crystal"):
            raise ValueError(f"frac_target: expected 'orbit' or 'crystal', got {self.frac_target!r}")
        if not 0 <= self.focus_low < self.focus_high <= 1:
            raise ValueError(
                f"focus_low, focus_high: expected 0 <= low < high <= 1, got {self.focus_low}, {self.focus_high}"
            )


@functools.lru_cache(maxsize=4)
def _norm_table(sigma_min: float, sigma_max: float, n: int = 256) -> tuple[Tensor, Tensor]:
    sigmas = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), n, dtype=torch.float64))
    x = torch.linspace(-0.5, 0.5, 8001, dtype=torch.float64)[:-1, None]
    dx = 1.0 / 8000
    values = []
    for s in sigmas.tolist():
        zero = torch.zeros_like(x)
        p = torus.wrapped_normal_log_prob(x, zero, s).exp()
        score = torus.wrapped_normal_score(x, zero, s)[:, 0]
        values.append(float((p * score**2).sum() * dx))
    return sigmas.log(), torch.tensor(values, dtype=torch.float64).log()


def score_norm(sigma: Tensor, sigma_min: float, sigma_max: float) -> Tensor:
    """``E_{x ~ WN(0, sigma)} |d/dx log p(x)|^2`` per coordinate (DiffCSP's ``sigma_norm``), by quadrature on a
    table of 256 log-spaced ``sigma`` in ``[sigma_min, sigma_max]``, interpolated in log-log. Tends to
    ``1 / sigma^2`` for small ``sigma`` (the unwrapped Gaussian)."""
    log_s, log_v = _norm_table(float(sigma_min), float(sigma_max))
    q = sigma.double().log().clamp(float(log_s[0]), float(log_s[-1])).cpu()
    pos = ((q - log_s[0]) / (log_s[1] - log_s[0])).clamp(0, len(log_s) - 1 - 1e-9)
    i = pos.floor().long()
    w = pos - i
    out = log_v[i] * (1 - w) + log_v[(i + 1).clamp(max=len(log_v) - 1)] * w
    return out.exp().to(device=sigma.device, dtype=sigma.dtype)


class CrystalDiffusion:
    """The three processes of :class:`CrystalDiffusionConfig` (see the module docstring)."""

    def __init__(self, config: CrystalDiffusionConfig | None = None) -> None:
        self.config = config or CrystalDiffusionConfig()
        self.lattice_schedule: Schedule = get_schedule(self.config.lattice_schedule)
        kwargs = {"power": self.config.type_power} if self.config.type_schedule == "polynomial" else {}
        self.type_schedule = get_discrete_schedule(self.config.type_schedule, **kwargs)

    def frac_sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = sigma_min^(1 - t) sigma_max^t`` of the fractional coordinates."""
        c = self.config
        return c.frac_sigma_min ** (1 - t) * c.frac_sigma_max**t

    def training_times(self, b: int, generator: torch.Generator | None, device) -> Tensor:
        """``(b,)`` training times: uniform on ``[min_t, 1]``, a ``focus_fraction`` share of them uniform on
        ``[focus_low, focus_high]`` (see :class:`CrystalDiffusionConfig`)."""
        c = self.config
        t = c.min_t + (1 - c.min_t) * torch.rand(b, generator=generator, device=device)
        if c.focus_fraction > 0:
            u = c.focus_low + (c.focus_high - c.focus_low) * torch.rand(b, generator=generator, device=device)
            t = torch.where(torch.rand(b, generator=generator, device=device) < c.focus_fraction, u, t)
        return t

    def score_norm(self, sigma: Tensor) -> Tensor:
        """The wrapped-normal score norm :func:`score_norm` at ``sigma`` with this model's ``frac_sigma_min``
        and ``frac_sigma_max``."""
        return score_norm(sigma, self.config.frac_sigma_min, self.config.frac_sigma_max)

    def noisy_frac(
        self, frac0: Tensor, t: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """``(frac_t, target)``: noised fractional coordinates and what the network should predict there.

        frac0: (M, 3) in [0, 1); t: (M, 1) each atom's time. ``wrapped_normal``: ``frac_t ~ WN(frac0, sigma(t))``
        and the target is its score over ``sqrt(E|score|^2)`` (DiffCSP Eq. 11). ``flow``: ``frac_t`` on the
        geodesic from ``frac0`` to uniform noise ``z`` and the target ``log_{frac0}(z) / FLOW_SCALE``.

        Chen & Lipman (2024) run time from noise (s = 0) to data (s = 1): ``x_s = exp_{x_1}((1 - s)
        log_{x_1}(x_0))`` with ``x_1`` data and ``x_0`` noise, velocity ``-log_{x_1}(x_0)``. Here ``t = 1 - s``
        (0 = data), so ``x_t = exp_{frac0}(t log_{frac0}(z))`` and ``dx_t/dt = log_{frac0}(z)``. The noise is drawn
        as ``z = frac0 + u`` (mod 1), ``u`` uniform: as uniform and as independent of ``frac0`` as any draw, and
        it makes the pair ``(frac_t - frac0, target)`` the same for every translate of the crystal.
        """
        if self.config.coords == "flow":
            z = torus.wrap(
                frac0 + torch.rand(frac0.shape, generator=generator, device=frac0.device, dtype=frac0.dtype)
            )
            return torus.geodesic(frac0, z, t), torus.log_map(frac0, z) / FLOW_SCALE
        sigma = self.frac_sigma(t)
        frac_t = torus.wrapped_normal_sample(frac0, sigma, generator=generator)
        return frac_t, torus.wrapped_normal_score(frac_t, frac0, sigma) / self.score_norm(sigma).sqrt()

    def orbit_target(
        self,
        frac_t: Tensor,
        frac0: Tensor,
        target: Tensor,
        t: Tensor,
        num_atoms: Tensor,
        types0: Tensor,
        types_t: Tensor,
    ) -> Tensor:
        """``target`` (M, 3) with the crystal's own score replaced by the orbit-averaged one
        (:func:`diff_materials.orbit.orbit_score`, normalised the same way) for every crystal whose ``sigma(t)``
        is at least :data:`~diff_materials.orbit.MIN_SIGMA` (below, the two are equal up to the mean over atoms,
        which the loss removes). frac_t, frac0: (M, 3); t: (B,); num_atoms: (B,); types0, types_t: (M,) the clean
        types and those the network sees (``MASK_TYPE`` where masked)."""
        sigma = self.frac_sigma(t)
        use = sigma >= MIN_SIGMA
        if not bool(use.any()):
            return target
        seen = types_t if self.diffuses_types and self.config.type_process == "absorbing" else None
        offsets = torch.cumsum(num_atoms, 0) - num_atoms
        target = target.clone()
        for n in num_atoms[use].unique().tolist():
            rows = torch.nonzero(use & (num_atoms == n))[:, 0]
            atoms = (offsets[rows, None] + torch.arange(n, device=frac0.device)).flatten()
            c = len(rows)
            score = orbit_score(
                frac_t[atoms].view(c, n, 3),
                frac0[atoms].view(c, n, 3),
                sigma[rows],
                types0[atoms].view(c, n),
                None if seen is None else seen[atoms].view(c, n),
                MASK_TYPE,
            )
            target[atoms] = (
                score.reshape(-1, 3) / self.score_norm(sigma[rows]).sqrt().repeat_interleave(n)[:, None]
            )
        return target

    @property
    def diffuses_types(self) -> bool:
        return self.config.task == "gen"


class CrystalObjective:
    """The training loss of a :class:`~diff_materials.models.CrystalDenoiser` under a :class:`CrystalDiffusion`:
    ``objective(model, batch, generator) -> (loss, logs)`` (the :class:`diffcore.training.Trainer` contract).

    ``batch``: a :func:`~diff_materials.data.crystals.collate_crystals` batch. ``p_uncond``: the probability of
    dropping a crystal's properties (classifier-free guidance training, Ho & Salimans 2022). ``csp_fraction``
    (``task = gen``): the probability that a crystal's atom types stay clean, which teaches the same network
    crystal structure prediction (types given at every ``t``)."""

    def __init__(self, diffusion: CrystalDiffusion, p_uncond: float = 0.2, csp_fraction: float = 0.0) -> None:
        for name, value in (("p_uncond", p_uncond), ("csp_fraction", csp_fraction)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {value}")
        self.diffusion = diffusion
        self.p_uncond = p_uncond
        self.csp_fraction = csp_fraction

    def __call__(
        self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        d, cfg = self.diffusion, self.diffusion.config
        enc = _encoder(model)
        frac0, types0, num_atoms = batch["frac"], batch["types"], batch["num_atoms"]
        b = num_atoms.shape[0]
        dev = frac0.device
        atom_batch = torch.repeat_interleave(torch.arange(b, device=dev), num_atoms)
        x0 = normalise_lattice(batch["lattice"], num_atoms, enc.lattice_mean, enc.lattice_std)
        t = d.training_times(b, generator, dev)
        eps = torch.randn(x0.shape, generator=generator, device=dev)
        x_t = marginal_sample(d.lattice_schedule, x0, t, eps)
        frac_t, target = d.noisy_frac(frac0, t[atom_batch, None], generator)
        types_t = types0
        if d.diffuses_types:
            keep = d.type_schedule.alpha(t)
            if self.csp_fraction > 0:
                clean = torch.rand(b, generator=generator, device=dev) < self.csp_fraction
                keep = torch.where(clean, torch.ones_like(keep), keep)
            keep = keep[atom_batch]
            if cfg.type_process == "absorbing":
                types_t = mask_tokens(types0, keep, MASK_TYPE, generator)
            else:
                types_t = uniform_resample(types0, keep, NUM_TYPES, generator)
        if cfg.coords == "wrapped_normal" and cfg.frac_target == "orbit":
            target = d.orbit_target(frac_t, frac0, target, t, num_atoms, types0, types_t)
        props, mask = _standardised_properties(enc, batch)
        if (
            mask is not None and self.p_uncond > 0
        ):  # each property dropped on its own (MatterGen's fine-tuning)
            mask = mask & (torch.rand(mask.shape, generator=generator, device=dev) >= self.p_uncond)
        out = model(frac_t, x_t, types_t, t, num_atoms, props, mask)
        loss_l = ((out["lattice"] - eps) ** 2).mean()
        # The data are invariant to translating all atoms and the network is too, so the common (mean) part of
        # the score, which only says where the crystal sits, cannot be predicted: compare the translation-free
        # parts (the projection onto zero-mean scores; exact where sigma is small enough not to wrap).
        loss_f = ((centre(out["frac"], atom_batch, b) - centre(target, atom_batch, b)) ** 2).mean()
        loss = cfg.lattice_weight * loss_l + cfg.frac_weight * loss_f
        logs = {"loss_lattice": loss_l.detach(), "loss_frac": loss_f.detach()}
        if d.diffuses_types:
            ce = nn.functional.cross_entropy(out["types"][:, :NUM_TYPES].float(), types0, reduction="none")
            corrupted = (
                (types_t != types0) | (types_t == MASK_TYPE) if cfg.type_process == "absorbing" else None
            )
            loss_a = (
                ce[corrupted].sum() / corrupted.sum().clamp_min(1) if corrupted is not None else ce.mean()
            )
            loss = loss + cfg.type_weight * loss_a
            logs["loss_types"] = loss_a.detach()
        return loss, logs


def centre(v: Tensor, atom_batch: Tensor, num_crystals: int) -> Tensor:
    """``v`` (M, 3) minus its mean over the atoms of each crystal."""
    from torch_geometric.utils import scatter

    return v - scatter(v, atom_batch, dim=0, dim_size=num_crystals, reduce="mean")[atom_batch]


def _encoder(model: nn.Module) -> Any:
    inner = getattr(model, "module", model)  # DDP / compiled wrappers
    inner = getattr(inner, "_orig_mod", inner)
    return inner.encoder


def _standardised_properties(enc: Any, batch: dict[str, Tensor]) -> tuple[Tensor | None, Tensor | None]:
    p = enc.config.num_properties
    if p == 0:
        return None, None
    props, mask = batch["properties"], batch["property_mask"]
    kinds = enc.config.property_kinds
    slices = property_slices(kinds)
    if props.shape[-1] != slices[-1].stop or mask.shape[-1] != p:
        raise ValueError(
            f"batch: {mask.shape[-1]} properties in {props.shape[-1]} columns, the network was built for {p} in "
            f"{slices[-1].stop} ({kinds})"
        )
    mean, std = torch.zeros(props.shape[-1]), torch.ones(props.shape[-1])
    for k, (kind, cols) in enumerate(zip(kinds, slices)):
        if kind == "scalar":  # categorical columns (multi-hot, space-group number) stay as they are
            mean[cols], std[cols] = enc.config.property_mean[k], enc.config.property_std[k]
    return (props - mean.to(props)) / std.to(props), mask


# ----------------------------------------------------------------------------------------------------
# Sampling.


@dataclass
class Guidance:
    """Steering samples towards properties.

    Attributes:
        properties: ``(B, D)`` raw property values to condition on (CFG), packed as
            :mod:`diff_materials.properties` says (one column per scalar, a multi-hot for a chemical system, the
            number for a space group), NaN where a property is free.
        scale: classifier-free guidance weight ``w`` (1: the conditional model, 0: unconditional).
        predictor: a :class:`~diff_materials.models.PropertyPredictor` trained on noisy crystals
            (classifier guidance), or None.
        target_low, target_high: ``(P,)`` raw range the predictor should land in (NaN: unbounded).
        predictor_scale: classifier-guidance strength.
        predictor_noise: width (in standardised units) of the soft range indicator.
    """

    properties: Tensor | None = None
    scale: float = 1.0
    predictor: nn.Module | None = None
    target_low: Tensor | None = None
    target_high: Tensor | None = None
    predictor_scale: float = 0.0
    predictor_noise: float = 0.25


def _range_log_prob(pred: Tensor, low: Tensor, high: Tensor, noise: float) -> Tensor:
    """``log P(low <= y <= high)`` for ``y ~ N(pred, noise^2)``, summed over properties: (B,)."""
    ndtr = torch.special.ndtr
    up = torch.where(torch.isnan(high), torch.ones_like(pred), ndtr((torch.nan_to_num(high) - pred) / noise))
    lo = torch.where(torch.isnan(low), torch.zeros_like(pred), ndtr((torch.nan_to_num(low) - pred) / noise))
    return torch.log((up - lo).clamp_min(1e-12)).sum(-1)


class _Evaluator:
    """One (guided) network evaluation at the current state."""

    def __init__(
        self, model: nn.Module, diffusion: CrystalDiffusion, num_atoms: Tensor, guidance: Guidance | None
    ):
        self.model, self.diffusion, self.num_atoms = model, diffusion, num_atoms
        self.guidance = guidance
        enc = _encoder(model)
        self.props = self.mask = None
        if guidance is not None and guidance.properties is not None:
            raw = guidance.properties.to(num_atoms.device).float()
            known = property_mask(raw, enc.config.property_kinds)
            batch = {"properties": torch.nan_to_num(raw), "property_mask": known}
            self.props, self.mask = _standardised_properties(enc, batch)
        if guidance is not None and guidance.predictor is not None:
            pc = guidance.predictor.config
            mean, std = torch.tensor(pc.property_mean), torch.tensor(pc.property_std)
            self.low = ((guidance.target_low - mean) / std).to(num_atoms.device)
            self.high = ((guidance.target_high - mean) / std).to(num_atoms.device)

    def __call__(self, frac: Tensor, x: Tensor, types: Tensor, t: float) -> dict[str, Tensor]:
        n = self.num_atoms
        tt = torch.full((len(n),), t, device=frac.device)
        g = self.guidance
        if self.props is None:
            out = self.model(frac, x, types, tt, n)
        else:
            cond = self.model(frac, x, types, tt, n, self.props, self.mask)
            if g.scale == 1.0:
                out = cond
            else:
                unc = self.model(frac, x, types, tt, n, self.props, torch.zeros_like(self.mask))
                w = g.scale
                out = {k: unc[k] + w * (cond[k] - unc[k]) for k in ("frac", "lattice")}
                out["types"] = guided_log_probs(cond["types"], unc["types"], w)
        if g is not None and g.predictor is not None and g.predictor_scale > 0:
            out = self._classifier(out, frac, x, types, tt, t)
        return out

    def _classifier(
        self, out: dict[str, Tensor], frac: Tensor, x: Tensor, types: Tensor, tt: Tensor, t: float
    ):
        g, d = self.guidance, self.diffusion
        with torch.enable_grad():
            f = frac.detach().requires_grad_(True)
            xl = x.detach().requires_grad_(True)
            pred = g.predictor(f, xl, types, tt, self.num_atoms)
            logp = _range_log_prob(pred, self.low, self.high, g.predictor_noise).sum()
            grad_f, grad_x = torch.autograd.grad(logp, (f, xl), allow_unused=True)
        grad_f = torch.zeros_like(frac) if grad_f is None else grad_f
        grad_x = torch.zeros_like(x) if grad_x is None else grad_x
        tq = torch.tensor([t], dtype=torch.float64)
        sigma_l = float(d.lattice_schedule.sigma(tq))
        s = g.predictor_scale
        out = dict(out)
        out["lattice"] = out["lattice"] - s * sigma_l * grad_x  # score = -eps / sigma
        if d.config.coords == "flow":  # the Euler step x - dt v climbs grad log p when v loses s grad
            out["frac"] = out["frac"] - s * grad_f / FLOW_SCALE
        else:
            norm = d.score_norm(d.frac_sigma(torch.tensor(t, dtype=frac.dtype))).sqrt()
            out["frac"] = out["frac"] + s * grad_f / norm
        return out


@torch.no_grad()
def sample_crystals(
    model: nn.Module,
    diffusion: CrystalDiffusion,
    num_atoms: Sequence[int] | Tensor,
    *,
    types: Tensor | None = None,
    steps: int = 200,
    step_lr: float = 1e-5,
    guidance: Guidance | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> list[Crystal]:
    """Draw crystals from the model by DiffCSP's predictor-corrector (see the module docstring).

    num_atoms: (B,) atoms per crystal. types: (M,) atom-type ids (``Z - 1``) of every atom, crystal after
    crystal (crystal structure prediction: required when ``task == "csp"``, ignored otherwise). steps: grid
    steps from ``t = 1`` to ``t = 0``. step_lr: the Langevin corrector's step (0: predictor only, one network
    call per step instead of two; the ``flow`` coordinates take plain Euler steps and ignore it). Returns ``B`` crystals (lattice, fractional coordinates, atomic numbers).
    """
    if steps < 1:
        raise ValueError(f"steps: expected >= 1, got {steps}")
    if step_lr < 0:
        raise ValueError(f"step_lr: expected >= 0, got {step_lr}")
    dev = next(model.parameters()).device
    n = torch.as_tensor(num_atoms, dtype=torch.long, device=dev)
    if n.ndim != 1 or len(n) == 0 or int(n.min()) < 1:
        raise ValueError(f"num_atoms: expected a non-empty list of counts >= 1, got {num_atoms}")
    m = int(n.sum())
    cfg = diffusion.config
    if diffusion.diffuses_types:
        if cfg.type_process == "absorbing":
            types = torch.full((m,), MASK_TYPE, dtype=torch.long, device=dev)
        else:
            types = torch.randint(0, NUM_TYPES, (m,), generator=generator, device=dev)
    else:
        if types is None or types.shape != (m,):
            got = None if types is None else tuple(types.shape)
            raise ValueError(f"types: crystal structure prediction needs ({m},) atom types, got {got}")
        types = types.to(dev)
    x = torch.randn(len(n), 6, generator=generator, device=dev)
    frac = torch.rand(m, 3, generator=generator, device=dev)
    evaluate = _Evaluator(model, diffusion, n, guidance)
    atom_batch = torch.repeat_interleave(torch.arange(len(n), device=dev), n)
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    bound = float(getattr(_encoder(model).config, "lattice_bound", 0.0))
    for i in tqdm(range(steps), disable=not progress, desc="sampling", leave=False):
        t, s = float(grid[i]), float(grid[i + 1])
        if cfg.coords == "flow":
            out = evaluate(frac, x, types, t)
            frac = _flow_step(frac, centre(out["frac"], atom_batch, len(n)) * FLOW_SCALE, t, s)
            x = _lattice_step(diffusion.lattice_schedule, x, out["lattice"], t, s, generator, bound)
            if diffusion.diffuses_types:
                types = _types_step(diffusion, out["types"], types, t, s, generator)
            continue
        sig_t = float(diffusion.frac_sigma(torch.tensor(t, dtype=torch.float64)))
        sig_s = float(diffusion.frac_sigma(torch.tensor(s, dtype=torch.float64)))
        norm_t = float(diffusion.score_norm(torch.tensor(sig_t, dtype=torch.float64)).sqrt())
        if step_lr > 0:  # Langevin corrector at t (DiffCSP Alg. 1, lines 7-9)
            score = centre(evaluate(frac, x, types, t)["frac"], atom_batch, len(n)) * norm_t
            eta = step_lr * (sig_t / cfg.frac_sigma_min) ** 2
            frac = torus.wrap(frac + eta * score + math.sqrt(2 * eta) * _randn(frac, generator))
        out = evaluate(frac, x, types, t)
        # predictor: reverse VE step from sigma_t to sigma_s (DiffCSP Alg. 1, lines 10-12)
        score = centre(out["frac"], atom_batch, len(n)) * norm_t  # translations are free (see the loss)
        step = sig_t**2 - sig_s**2
        std = math.sqrt(step * sig_s**2 / sig_t**2)
        frac = torus.wrap(frac + step * score + std * _randn(frac, generator))
        x = _lattice_step(diffusion.lattice_schedule, x, out["lattice"], t, s, generator, bound)
        if diffusion.diffuses_types:
            types = _types_step(diffusion, out["types"], types, t, s, generator)
    lattice = unnormalise_lattice(x, n, _encoder(model).lattice_mean, _encoder(model).lattice_std)
    return _crystals(lattice, frac, types, n)


def _flow_step(frac: Tensor, velocity: Tensor, t: float, s: float) -> Tensor:
    """Euler step of ``dx/dt = velocity`` on the torus from ``t`` down to ``s < t``: ``exp_x(-(t - s) v)``."""
    return torus.exp_map(frac, -(t - s) * velocity)


def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _lattice_step(
    schedule: Schedule, x: Tensor, eps: Tensor, t: float, s: float, generator, bound: float = 0.0
) -> Tensor:
    """DDPM ancestral step of the lattice from ``t`` to ``s`` (the posterior of diffcore's path); at ``s = 0``
    the ``x0`` estimate. With ``bound > 0`` the ``x0`` estimate is clipped to ``[-bound, bound]`` (the range of
    the standardised training lattices, as DDPM clips to the data range): near ``t = 1`` it is ``(x_t - sigma
    eps) / alpha`` with ``alpha`` about 0, so an imperfect network's small error in ``eps`` (any short run) was
    amplified into cells of hundreds of cubic angstrom per atom."""
    c = PathCoefficients.at(schedule, torch.tensor(t, dtype=torch.float64), x.ndim)
    x0, _ = to_x0_eps(
        eps, "eps", x, PathCoefficients(*(float(v) for v in (c.alpha, c.sigma, c.d_alpha, c.d_sigma)))
    )
    if bound > 0:
        x0 = x0.clamp(-bound, bound)
    if s == 0.0:
        return x0
    mean, var = posterior(schedule, x0, x, s, t)
    return mean + var.sqrt() * _randn(x, generator)


def _types_step(
    diffusion: CrystalDiffusion, logits: Tensor, types: Tensor, t: float, s: float, generator
) -> Tensor:
    """One step of diffcore's discrete ancestral sampler on the atom types (a (1, M) sequence)."""
    times = torch.tensor([t, s], dtype=torch.float64)
    x = types[None]
    if diffusion.config.type_process == "absorbing":
        log_probs = subs_log_probs(logits[None], x, MASK_TYPE)
        return masked_ancestral_sample(
            lambda *_: log_probs,
            x,
            times,
            schedule=diffusion.type_schedule,
            mask_id=MASK_TYPE,
            generator=generator,
        )[0]
    log_probs = torch.log_softmax(logits[None, :, :NUM_TYPES].float(), -1)
    return uniform_ancestral_sample(
        lambda *_: log_probs, x, times, schedule=diffusion.type_schedule, generator=generator
    )[0]


def _crystals(lattice: Tensor, frac: Tensor, types: Tensor, num_atoms: Tensor) -> list[Crystal]:
    out = []
    start = 0
    lat, f, ty = lattice.double().cpu().numpy(), frac.double().cpu().numpy(), types.cpu().numpy()
    if (ty >= NUM_TYPES).any():
        raise RuntimeError("sampling ended with masked atom types; the time grid must end at t = 0")
    for b, k in enumerate(num_atoms.tolist()):
        z = ty[start : start + k] + 1
        out.append(Crystal(lat[b], f[start : start + k], z, material_id=f"sample_{b}"))
        start += k
    return out
