"""A synthetic language with a computable likelihood: a sparse hidden Markov model generated from a seed.

Every state moves to a few states and emits a few of the ``vocab_size`` symbols, so most symbol strings are
impossible: the probability of any string is exact (forward algorithm), which gives the true entropy of the
windows a model is evaluated on and the *grammaticality* of generated text (probability > 0).
Chains start from the stationary distribution, so every window of a long run is a stationary sample.
"""

from __future__ import annotations

import math

import torch
from diffcore.rng import make_generator
from torch import Tensor

__all__ = ["SparseHMM"]


class SparseHMM:
    """Hidden Markov model with ``n_states`` states, ``branching`` successors and ``emit`` symbols per state.

    The cycle ``s -> s + 1`` is always allowed, which makes the chain irreducible; a self-loop makes it aperiodic.
    """

    def __init__(
        self, n_states: int = 8, vocab_size: int = 24, branching: int = 3, emit: int = 4, seed: int = 0
    ) -> None:
        if not 1 <= branching <= n_states:
            raise ValueError(f"branching: expected in [1, n_states={n_states}], got {branching}")
        if not 1 <= emit <= vocab_size:
            raise ValueError(f"emit: expected in [1, vocab_size={vocab_size}], got {emit}")
        g = make_generator(seed)
        self.n_states, self.vocab_size = n_states, vocab_size
        trans = torch.zeros(n_states, n_states, dtype=torch.float64)
        emis = torch.zeros(n_states, vocab_size, dtype=torch.float64)
        for s in range(n_states):
            succ = {(s + 1) % n_states, s if s == 0 else (s + 1) % n_states}
            for j in torch.randperm(n_states, generator=g).tolist():
                if len(succ) >= branching:
                    break
                succ.add(j)
            trans[s, sorted(succ)] = torch.rand(len(succ), generator=g, dtype=torch.float64) + 0.2
            sym = torch.randperm(vocab_size, generator=g)[:emit]
            emis[s, sym] = torch.rand(emit, generator=g, dtype=torch.float64) + 0.2
        self.trans = trans / trans.sum(1, keepdim=True)
        self.emis = emis / emis.sum(1, keepdim=True)
        self.stationary = self._stationary()

    def _stationary(self) -> Tensor:
        p = torch.full((self.n_states,), 1.0 / self.n_states, dtype=torch.float64)
        for _ in range(10000):
            q = p @ self.trans
            if float((q - p).abs().max()) < 1e-15:
                break
            p = q
        return q / q.sum()

    def sample(self, rows: int, length: int, generator: torch.Generator | None = None) -> Tensor:
        """``rows`` independent stationary runs of ``length`` symbols, (rows, length) int64."""
        state = torch.multinomial(self.stationary, rows, replacement=True, generator=generator)
        out = torch.empty(rows, length, dtype=torch.long)
        for i in range(length):
            out[:, i] = torch.multinomial(self.emis[state], 1, generator=generator).squeeze(1)
            state = torch.multinomial(self.trans[state], 1, generator=generator).squeeze(1)
        return out

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact ``log p(x)`` (nats) of each row of ``x`` (B, T) from the stationary start; ``-inf`` if impossible.

        Ids outside [0, vocab_size) have probability 0.
        """
        x = x.long().cpu()
        valid = ((x >= 0) & (x < self.vocab_size)).all(-1)
        xs = x.clamp(0, self.vocab_size - 1)
        log_e = self.emis.log().T  # (V, S)
        log_a = self.trans.log()
        alpha = self.stationary.log()[None, :] + log_e[xs[:, 0]]
        for i in range(1, x.shape[1]):
            alpha = torch.logsumexp(alpha[:, :, None] + log_a[None], dim=1) + log_e[xs[:, i]]
        lp = torch.logsumexp(alpha, dim=-1)
        return torch.where(valid, lp, torch.full_like(lp, -math.inf))

    def window_entropy(
        self, length: int, samples: int = 4000, generator: torch.Generator | None = None
    ) -> tuple[float, float]:
        """Monte-Carlo ``H(X_1..X_length) / length`` in nats/token and its standard error.

        This is the entropy a model evaluated on windows of ``length`` tokens (no earlier context) can reach.
        """
        lp = self.log_prob(self.sample(samples, length, generator)) / length
        return float(-lp.mean()), float(lp.std() / samples**0.5)

    def entropy_rate(self, length: int = 20000, generator: torch.Generator | None = None) -> float:
        """Asymptotic entropy rate ``lim H(X_n | X_<n)`` estimated as ``-log p(x_1..x_n) / n`` on one long run."""
        return float(-self.log_prob(self.sample(1, length, generator))[0] / length)
