"""The default sequence data set: families drawn from position-specific profile models, one per taxon.

Each family ``k`` is a profile ``P_k: (L, 20)`` of independent per-position amino-acid distributions
(a PSSM without insertions). Profiles share an ancestral profile (the "fold") and differ by a
family-specific composition (the "taxon"), so families are related but separable::

    A_j ~ Dirichlet(alpha_anc * 1)                 ancestral profile at position j
    b_k ~ Dirichlet(alpha_bg * 1)                  taxon composition
    P_kj ~ Dirichlet(kappa * (w A_j + (1 - w) b_k))

The exact log-likelihood ``log p(x | k) = sum_j log P_k[j, x_j]`` is available, hence the exact
posterior over taxa and the Bayes classifier: the reference for judging whether a
taxonomy-conditioned generator (TaxDiff, Zongying et al. 2024) produces each taxon's sequences.
Deterministic from the seed (numpy's PCG64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diff_protein.data.sequences import AMINO_ACIDS, SequenceDataset, detokenize

__all__ = ["ProfileFamilies", "ProfileFamiliesConfig"]


@dataclass(frozen=True)
class ProfileFamiliesConfig:
    """Settings: ``num_families`` taxa, profiles of ``length`` positions, Dirichlet concentrations
    (``ancestral_alpha`` smaller = more conserved positions), ``shared_weight`` ``w`` in [0, 1]
    (1 = identical families), ``kappa`` (larger = profiles closer to their mean), ``seed``."""

    num_families: int = 4
    length: int = 64
    ancestral_alpha: float = 0.3
    background_alpha: float = 2.0
    shared_weight: float = 0.5
    kappa: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_families < 1 or self.length < 1:
            raise ValueError(
                f"num_families, length: expected positive integers, got {self.num_families}, {self.length}"
            )
        if not 0.0 <= self.shared_weight <= 1.0:
            raise ValueError(f"shared_weight: expected a value in [0, 1], got {self.shared_weight}")
        if min(self.ancestral_alpha, self.background_alpha, self.kappa) <= 0:
            raise ValueError("ancestral_alpha, background_alpha, kappa: expected positive values")


class ProfileFamilies:
    """Profile models ``profiles: (K, L, 20)`` (float64 probabilities) with taxon names ``taxon_k``."""

    def __init__(self, config: ProfileFamiliesConfig | None = None) -> None:
        self.config = config or ProfileFamiliesConfig()
        c = self.config
        rng = np.random.default_rng(c.seed)
        ancestral = rng.dirichlet(np.full(20, c.ancestral_alpha), size=c.length)  # (L, 20)
        background = rng.dirichlet(np.full(20, c.background_alpha), size=c.num_families)  # (K, 20)
        mean = c.shared_weight * ancestral[None] + (1 - c.shared_weight) * background[:, None]
        # Dirichlet draws can underflow to exact zeros for tiny parameters; keep every residue possible.
        conc = np.maximum(c.kappa * mean, 1e-3)
        profiles = np.stack([[rng.dirichlet(a) for a in fam] for fam in conc])
        profiles = np.maximum(profiles, 1e-6)
        self.profiles = torch.from_numpy(profiles / profiles.sum(-1, keepdims=True))
        self.names = [f"taxon_{k}" for k in range(c.num_families)]

    @property
    def num_families(self) -> int:
        return self.profiles.shape[0]

    @property
    def length(self) -> int:
        return self.profiles.shape[1]

    def sample(self, family: torch.Tensor | int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Token sequences ``(N, L)`` int64, one per entry of ``family`` (an int gives one sequence)."""
        family = torch.as_tensor(family, dtype=torch.long).reshape(-1)
        if ((family < 0) | (family >= self.num_families)).any():
            raise ValueError(f"family: expected ids in [0, {self.num_families}), got {family.tolist()}")
        probs = self.profiles[family].reshape(-1, 20)
        return torch.multinomial(probs, 1, generator=generator).reshape(len(family), self.length)

    def log_likelihood(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(tokens | k)`` for every family: ``(..., L) -> (..., K)`` float64.

        Tokens must be standard residues (0..19) and the length must be the profile length.
        """
        if tokens.shape[-1] != self.length:
            raise ValueError(f"tokens: expected length {self.length}, got {tokens.shape[-1]}")
        if ((tokens < 0) | (tokens >= 20)).any():
            raise ValueError("tokens: expected standard residue ids in [0, 20) (no mask tokens)")
        log_p = torch.log(self.profiles)  # (K, L, 20)
        pos = torch.arange(self.length)
        return log_p[:, pos, tokens].movedim(0, -1).sum(-2)

    def posterior(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact ``p(k | tokens)`` under a uniform prior over families: ``(..., K)``."""
        return torch.softmax(self.log_likelihood(tokens), dim=-1)

    def classify(self, tokens: torch.Tensor) -> torch.Tensor:
        """The Bayes classifier: the most likely family of each sequence, ``(...)`` int64."""
        return self.log_likelihood(tokens).argmax(-1)

    def dataset(self, per_family: int, generator: torch.Generator | None = None) -> SequenceDataset:
        """A :class:`SequenceDataset` of ``per_family`` sequences of each taxon, labelled by name."""
        family = torch.arange(self.num_families).repeat_interleave(per_family)
        tokens = self.sample(family, generator)
        return SequenceDataset([detokenize(t) for t in tokens], [self.names[k] for k in family.tolist()])

    def consensus(self, family: int) -> str:
        """The most probable residue at each position of a family's profile."""
        return "".join(AMINO_ACIDS[i] for i in self.profiles[family].argmax(-1).tolist())
