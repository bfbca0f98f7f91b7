"""The stream batch (Kodaira et al. 2023, "StreamDiffusion", Sec. 3.2): the denoising steps of successive frames
run as one batched network call.

A stream over ``n`` times ``t_0 > ... > t_{n-1}`` (:mod:`diffcore.streaming.steps`) holds ``n`` *slots*; slot
``i`` holds the frame that entered ``i`` calls ago, at time ``t_i``. One :meth:`StreamBatch.step` puts the new
frame's state into slot 0, evaluates the network once on all slots (``(n B, C, H, W)``, per-slot times), takes
every slot one step of the sampler (slot ``i`` to ``t_{i+1}``, the last slot to ``t = 0``) and moves each slot up
by one. The frame in the last slot has then finished all ``n`` steps and is returned: after the first ``n - 1``
calls (the pipeline filling), call ``k`` returns frame ``k - (n - 1)``, exactly what running the sampler on that
frame alone gives (same noise, same steps).

Step rules (one network call per step, so a slot needs no history):

- ``consistency``: ``x0 = f(x_t, t_i)`` then re-noise, ``x_{t_{i+1}} = alpha_{i+1} x0 + sigma_{i+1} z_{i+1}``
  (Song et al. 2023, Alg. 1; LCM's Alg. 3; StreamDiffusion's step): :func:`diffcore.sampling.consistency`.
- ``ddim``: ``x_{t_{i+1}} = alpha_{i+1} x0 + sigma_{i+1} eps`` (Song et al. 2021, Eq. 12, ``eta = 0``; the Euler
  step on rectified flow): :func:`diffcore.sampling.ddim`.

The re-noising noises ``z_1 .. z_{n-1}`` are ``fixed`` (drawn once, reused by every frame: StreamDiffusion's
choice, steadier video) or ``fresh`` (drawn at every call). All state lives in buffers allocated once
(:meth:`StreamBatch.state`), updated in place, so a step has static shapes and can be captured as a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from diffcore.paths.denoiser import Denoiser, DenoiserBase, scalar_coefficients
from diffcore.paths.predictions import affine_x0_eps
from diffcore.streaming.guidance import GUIDANCE_MODES, GuidanceMode, guided, virtual_residual
from diffcore.streaming.steps import SlotCoefficients

__all__ = ["NOISE_MODES", "STEP_RULES", "NoiseMode", "StepRule", "StreamBatch"]

StepRule = Literal["consistency", "ddim"]
NoiseMode = Literal["fixed", "fresh"]
STEP_RULES: tuple[str, ...] = ("consistency", "ddim")
NOISE_MODES: tuple[str, ...] = ("fixed", "fresh")


def _batch_of(cond: dict[str, Any], name: str, batch: int) -> None:
    for key, value in cond.items():
        if not isinstance(value, Tensor) or value.ndim < 1 or value.shape[0] != batch:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name}[{key!r}]: expected a tensor with a leading batch of {batch}, got {got}")


class StreamBatch:
    """Stream-batch denoising of a frame stream with one batched network call per frame.

    Args:
        denoiser: any :class:`~diffcore.paths.denoiser.DenoiserBase` (a plain ``Denoiser`` of any network,
            schedule and prediction, or a consistency student's); called as ``x0_eps(x, t, **cond)`` with
            ``x: (n B, *shape)`` and per-sample times ``t: (n B,)``.
        times: ``(t_0, ..., t_{n-1})``, decreasing, in ``(0, 1]`` (``t = 1`` noise).
        shape: ``(C, H, W)`` (or any per-sample shape) of the diffused tensor.
        batch_size: frames per call ``B``.
        step_rule: ``consistency`` or ``ddim`` (module docstring).
        guidance: ``none``, ``full`` (CFG), ``self`` or ``initialize`` (RCFG): :mod:`diffcore.streaming.guidance`.
        guidance_scale: the scale ``w`` (ignored by ``none``).
        cond: network keyword arguments shared by every frame (a prompt's embedding), leading batch 1 or ``B``.
        uncond: the unconditional keyword arguments (``full`` and ``initialize``), leading batch 1 or ``B``.
        noise: ``fixed`` or ``fresh`` re-noising (``consistency`` only).
        generator: draws the fixed noises (at construction) and the fresh ones (at each call).
        device, dtype: where the buffers live and their dtype.
    """

    def __init__(
        self,
        denoiser: DenoiserBase,
        times: Sequence[float],
        shape: Sequence[int],
        *,
        batch_size: int = 1,
        step_rule: StepRule = "consistency",
        guidance: GuidanceMode = "none",
        guidance_scale: float = 1.0,
        cond: dict[str, Tensor] | None = None,
        uncond: dict[str, Tensor] | None = None,
        noise: NoiseMode = "fixed",
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not isinstance(denoiser, DenoiserBase):
            raise TypeError(f"denoiser: expected a DenoiserBase, got {type(denoiser).__name__}")
        if step_rule not in STEP_RULES:
            raise ValueError(f"step_rule: expected one of {STEP_RULES}, got {step_rule!r}")
        if guidance not in GUIDANCE_MODES:
            raise ValueError(f"guidance: expected one of {GUIDANCE_MODES}, got {guidance!r}")
        if noise not in NOISE_MODES:
            raise ValueError(f"noise: expected one of {NOISE_MODES}, got {noise!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        if guidance in ("full", "initialize") and not uncond:
            raise ValueError(
                f"uncond: guidance {guidance!r} needs the unconditional network keyword arguments"
            )
        self.denoiser, self.step_rule, self.guidance = denoiser, step_rule, guidance
        self.scale, self.noise_mode, self.generator = float(guidance_scale), noise, generator
        self.shape, self.batch_size = tuple(int(s) for s in shape), batch_size
        self.device, self.dtype = torch.device(device), dtype
        n, b = len(times), batch_size
        self.n = n
        self.coef = SlotCoefficients.of(denoiser.schedule, times, 1 + len(self.shape), self.device, dtype)
        self.t_net = self.coef.t.repeat_interleave(b)  # (n B,): slot-major, like x.flatten(0, 1)
        self.t_uncond = self.t_net[:b].clone()  # initialize: slot 0's times
        self.cond = self._expand(cond or {}, "cond", n * b)
        self.uncond = self._expand(uncond or {}, "uncond", n * b if guidance == "full" else b)
        if guidance == "full":
            self.t_net = torch.cat([self.t_net, self.t_net])
        elif guidance == "initialize":
            self.t_net = torch.cat([self.t_net, self.t_uncond])
        self.affine = self._affine_rows(times) if isinstance(denoiser, Denoiser) else None
        zeros = torch.zeros((n, b, *self.shape), device=self.device, dtype=dtype)
        self.x = zeros.clone()  # (n, B, ...) the state of every slot at its time t_i
        self.ref = zeros.clone()  # RCFG references x_ref per slot
        self.renoise = zeros.clone()  # z_{i+1} used after slot i (consistency)
        self.frame_cond: dict[str, Tensor] = {}  # per-frame conditioning that travels with the frame
        self.entry_noise = zeros[0].clone()
        if noise == "fixed":
            self.entry_noise.copy_(self.randn())
            for i in range(n - 1):
                self.renoise[i].copy_(self.randn())

    # ------------------------------------------------------------------ set-up

    def _expand(self, cond: dict[str, Tensor], name: str, rows: int) -> dict[str, Tensor]:
        """``cond``'s tensors (leading batch 1 or ``B``) repeated to ``rows`` rows, slot-major like
        ``x.flatten(0, 1)``."""
        out = {}
        for key, value in cond.items():
            if not isinstance(value, Tensor) or value.ndim < 1 or value.shape[0] not in (1, self.batch_size):
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"{name}[{key!r}]: expected a tensor with a leading batch of 1 or B, got {got}"
                )
            out[key] = value.to(self.device).repeat(rows // value.shape[0], *([1] * (value.ndim - 1)))
        return out

    def _affine_rows(self, times: Sequence[float]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per network row, the affine map ``(x0_x, x0_out, eps_x, eps_out)`` from ``(x_t, out)`` to ``(x0, eps)``
        of the denoiser's prediction at the row's time, as ``(rows, 1, ...)`` float32 tensors (computed once on the
        host: a call evaluates no schedule on the device)."""
        den = self.denoiser
        assert isinstance(den, Denoiser)
        maps = [affine_x0_eps(den.prediction, scalar_coefficients(den.schedule, t)) for t in times]
        per_slot = torch.tensor([[m.x0_x, m.x0_out, m.eps_x, m.eps_out] for m in maps], dtype=torch.float32)
        rows = per_slot.repeat_interleave(self.batch_size, dim=0)
        if self.guidance == "full":
            rows = torch.cat([rows, rows])
        elif self.guidance == "initialize":
            rows = torch.cat([rows, rows[: self.batch_size]])
        shape = (rows.shape[0],) + (1,) * len(self.shape)
        x0_x, x0_out, eps_x, eps_out = (rows[:, j].reshape(shape).to(self.device) for j in range(4))
        return x0_x, x0_out, eps_x, eps_out

    def _x0_eps(self, x: Tensor, t: Tensor, cond: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(x0, eps)`` of the network rows ``x`` at times ``t``: a plain ``Denoiser``'s raw output through the
        precomputed affine maps (in float32 at least), any other denoiser's ``x0_eps``."""
        if self.affine is None:
            return self.denoiser.x0_eps(x, t, **cond)
        assert isinstance(self.denoiser, Denoiser)
        out = self.denoiser.raw(x, t, **cond)
        x0_x, x0_out, eps_x, eps_out = self.affine
        xf, outf = (x, out) if x.dtype == torch.float64 else (x.float(), out.float())
        return (x0_x * xf + x0_out * outf).to(x.dtype), (eps_x * xf + eps_out * outf).to(x.dtype)

    def randn(self) -> Tensor:
        """A standard normal draw shaped like one frame's state, ``(B, *shape)``, from the stream's generator."""
        return torch.randn(
            (self.batch_size, *self.shape), generator=self.generator, device=self.device, dtype=self.dtype
        )

    def state(self) -> dict[str, Tensor]:
        """Every buffer the stream mutates (to save before a CUDA-graph warm-up and restore after)."""
        parts = {"x": self.x, "ref": self.ref, "renoise": self.renoise, "entry_noise": self.entry_noise}
        return {**parts, **{f"frame_cond.{k}": v for k, v in self.frame_cond.items()}}

    def reset(self) -> None:
        """Empty the pipeline (states and references to zero); fixed noises are kept."""
        self.x.zero_()
        self.ref.zero_()

    # ------------------------------------------------------------------ one call

    def entry(self, latent: Tensor | None, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(x_{t_0}, x_ref)`` of a new frame: ``alpha_0 latent + sigma_0 z`` (image-to-image, SDEdit's start)
        or ``sigma_0 z`` (text-to-image, ``latent=None``), with ``z = noise``, else the fixed entry noise, else a
        fresh draw; the reference is ``latent`` (or 0)."""
        if noise is None:
            noise = self.entry_noise if self.noise_mode == "fixed" else self.randn()
        a0, s0 = self.coef.points[0].alpha, self.coef.points[0].sigma
        if latent is None:
            return s0 * noise.to(self.dtype), torch.zeros_like(self.entry_noise)
        latent = latent.to(self.device, self.dtype)
        return a0 * latent + s0 * noise.to(self.dtype), latent

    def draw_noise(self) -> None:
        """Draw the re-noising noises afresh (``fresh`` mode with the ``consistency`` rule; else nothing). Kept
        apart from :meth:`step` so that a captured step draws nothing itself."""
        if self.noise_mode == "fresh" and self.step_rule == "consistency":
            for i in range(self.n - 1):
                self.renoise[i].copy_(self.randn())

    def __call__(
        self,
        latent: Tensor | None = None,
        *,
        noise: Tensor | None = None,
        frame_cond: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """One frame in, one out: :meth:`draw_noise`, :meth:`entry` and :meth:`step`. ``latent``: ``(B, ...)``
        the frame to denoise from (image-to-image) or None (text-to-image); ``noise``: its entry noise (default:
        the fixed one, or a fresh draw). Returns the finished frame's ``x0`` ``(B, ...)``."""
        self.draw_noise()
        return self.step(*self.entry(latent, noise), frame_cond)

    def ensure_frame_cond(self, frame_cond: dict[str, Tensor]) -> None:
        """Allocate the per-frame conditioning buffers ``(n, B, ...)`` on first sight of each key."""
        _batch_of(frame_cond, "frame_cond", self.batch_size)
        for key, value in frame_cond.items():
            if key not in self.frame_cond:
                self.frame_cond[key] = torch.zeros(
                    (self.n, *value.shape), device=self.device, dtype=value.dtype
                )

    def step(self, x_entry: Tensor, x_ref: Tensor, frame_cond: dict[str, Tensor] | None = None) -> Tensor:
        """Admit a frame (its state ``x_entry`` at ``t_0`` and RCFG reference ``x_ref``, ``(B, ...)``; its
        per-frame conditioning ``frame_cond``, batch ``B``), run every slot one step, and return the ``x0`` of
        the frame that finished, ``(B, ...)``. ``frame_cond`` keys must be the same at every call."""
        frame_cond = frame_cond or {}
        self.ensure_frame_cond(frame_cond)
        if set(frame_cond) != set(self.frame_cond):
            raise ValueError(
                f"frame_cond: expected the keys {sorted(self.frame_cond)} at every call, got {sorted(frame_cond)}"
            )
        self.x[0].copy_(x_entry)
        self.ref[0].copy_(x_ref)
        for key, value in frame_cond.items():
            self.frame_cond[key][0].copy_(value)
        x0, eps = self._estimate()
        out = x0[-1].clone()
        if self.n > 1:
            c = self.coef
            z = self.renoise[:-1] if self.step_rule == "consistency" else eps[:-1]
            self.x[1:].copy_(c.alpha_next[:-1] * x0[:-1] + c.sigma_next[:-1] * z)
            self.ref[1:].copy_(self.ref[:-1].clone())
            for buf in self.frame_cond.values():
                buf[1:].copy_(buf[:-1].clone())
        return out

    @staticmethod
    def _joined(cond: dict[str, Tensor], uncond: dict[str, Tensor]) -> dict[str, Tensor]:
        """The conditional rows followed by the unconditional ones, key by key (the same keys on both sides)."""
        if set(cond) != set(uncond):
            raise ValueError(
                f"uncond: expected the keys of the conditioning {sorted(cond)} (shared and per-frame), "
                f"got {sorted(uncond)}"
            )
        return {k: torch.cat([v, uncond[k]]) for k, v in cond.items()}

    def _estimate(self) -> tuple[Tensor, Tensor]:
        """The guided ``(x0, eps)`` of every slot, ``(n, B, ...)``, from one network call."""
        n, b, shape = self.n, self.batch_size, self.shape
        x = self.x.flatten(0, 1)
        per_frame = {k: v.flatten(0, 1) for k, v in self.frame_cond.items()}
        cond = {**self.cond, **per_frame}
        if self.guidance == "full":  # per-frame keys the uncond names (a null label) take its value
            both = self._joined(cond, {**per_frame, **self.uncond})
            x0, eps = self._x0_eps(torch.cat([x, x]), self.t_net, both)
            x0_c, x0_u = x0.view(2, n, b, *shape).unbind(0)
            eps_c, eps_u = eps.view(2, n, b, *shape).unbind(0)
            return guided(x0_c, eps_c, x0_u, eps_u, self.scale)
        if self.guidance == "initialize":  # one extra row per frame: slot 0's unconditional estimate
            first = {**{k: v[0] for k, v in self.frame_cond.items()}, **self.uncond}
            both = self._joined(cond, first)
            x0, eps = self._x0_eps(torch.cat([x, self.x[0]]), self.t_net, both)
            self.ref[0].copy_(
                x0[n * b :].view(b, *shape)
            )  # the one-time negative's x0: the frame's reference
            x0, eps = x0[: n * b], eps[: n * b]
        else:
            x0, eps = self._x0_eps(x, self.t_net, cond)
        x0, eps = x0.view(n, b, *shape), eps.view(n, b, *shape)
        if self.guidance == "none":
            return x0, eps
        c = self.coef
        return guided(x0, eps, self.ref, virtual_residual(self.x, self.ref, c.alpha, c.sigma), self.scale)
