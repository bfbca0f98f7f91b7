"""Exact denoisers of small enumerable distributions: the reference for testing discrete samplers and NELBOs.

For a distribution ``p`` over all ``K^L`` sequences of length ``L`` the posterior of the clean sequence given a
corrupted one is computable by enumeration, so ``p(x_0^l | x_t)`` is exact. With it the continuous-time NELBO
equals the entropy ``H(p)`` and an exact sampler reproduces ``p``; both are checked in the tests.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from diffcore.discrete.schedules import DiscreteSchedule

__all__ = ["EnumerableDistribution"]


class EnumerableDistribution:
    """A distribution over sequences in ``{0..K-1}^L`` given by the probability of every sequence.

    probs: tensor of shape ``(K,) * L`` (any non-negative weights; normalised here).
    """

    def __init__(self, probs: Tensor) -> None:
        if probs.dim() < 1 or len(set(probs.shape)) != 1:
            raise ValueError(f"probs: expected shape (K,)*L, got {tuple(probs.shape)}")
        if bool((probs < 0).any()) or not float(probs.sum()) > 0:
            raise ValueError("probs: expected non-negative weights with a positive sum")
        self.vocab_size = int(probs.shape[0])
        self.length = probs.dim()
        self.probs = (probs / probs.sum()).double().flatten()
        grid = itertools.product(range(self.vocab_size), repeat=self.length)
        self.states = torch.tensor(list(grid), dtype=torch.long)  # (N, L), row-major like flatten()
        self._onehot = torch.nn.functional.one_hot(self.states, self.vocab_size).double()  # (N, L, K)

    @classmethod
    def factorised(cls, marginals: Tensor) -> EnumerableDistribution:
        """Product distribution from per-position marginals (L, K)."""
        joint = marginals[0].double()
        for m in marginals[1:]:
            joint = joint.unsqueeze(-1) * m.double()
        return cls(joint)

    def entropy(self) -> float:
        """``H(p)`` in nats."""
        p = self.probs[self.probs > 0]
        return float(-(p * p.log()).sum())

    def index(self, x: Tensor) -> Tensor:
        """Row of each sequence of ``x`` (B, L) in :attr:`states`, shape (B,)."""
        weights = self.vocab_size ** torch.arange(self.length - 1, -1, -1)
        return (x.long().cpu() * weights).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws, (n, L) int64."""
        rows = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        return self.states[rows]

    def _marginals(self, log_w: Tensor) -> Tensor:
        """Per-position posterior marginals from log-weights over states (B, N) -> (B, L, K)."""
        w = torch.softmax(log_w, dim=-1)
        return torch.einsum("bn,nlk->blk", w, self._onehot)

    def masked_denoiser(self, mask_id: int | None = None):
        """``(x_t, t) -> log p(x_0 | x_t)`` (B, L, K+1) for the absorbing process; the mask token is ``K`` by default.

        Time-independent, as the absorbing posterior is.
        """
        mask = self.vocab_size if mask_id is None else mask_id
        log_p = self.probs.log()

        def denoiser(x_t: Tensor, t: Tensor) -> Tensor:
            xt = x_t.cpu().unsqueeze(1)  # (B, 1, L)
            consistent = ((xt == mask) | (xt == self.states.unsqueeze(0))).all(-1)  # (B, N)
            log_w = torch.where(
                consistent, log_p.unsqueeze(0), torch.full_like(consistent, -math.inf, dtype=torch.float64)
            )
            marg = self._marginals(log_w)
            out = torch.zeros(*marg.shape[:-1], self.vocab_size + 1, dtype=torch.float64)
            clean = [i for i in range(self.vocab_size + 1) if i != mask]
            out[..., clean] = marg
            return out.clamp(min=1e-300).log().masked_fill(out == 0, -math.inf).float().to(x_t.device)

        return denoiser

    def uniform_denoiser(self, schedule: DiscreteSchedule):
        """``(x_t, t) -> log p(x_0 | x_t)`` (B, L, K) for the uniform process with ``schedule``."""
        k = self.vocab_size
        log_p = self.probs.log()

        def denoiser(x_t: Tensor, t: Tensor) -> Tensor:
            a = schedule.alpha(t.double().cpu()).view(-1, 1, 1)  # (B, 1, 1)
            same = (x_t.cpu().unsqueeze(1) == self.states.unsqueeze(0)).double()  # (B, N, L)
            log_q = torch.log(a * same + (1.0 - a) / k).sum(-1)  # (B, N)
            marg = self._marginals(log_p.unsqueeze(0) + log_q)
            return marg.clamp(min=1e-300).log().float().to(x_t.device)

        return denoiser
