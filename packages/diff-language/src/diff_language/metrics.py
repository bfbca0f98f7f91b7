"""Measures of generated text: per-sample token entropy, distinct-n, and grammaticality under the HMM."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from diff_language.synthetic import SparseHMM

__all__ = ["distinct_n", "grammaticality", "perplexity", "token_entropy"]


def perplexity(nelbo_per_token: float) -> float:
    """``exp(NELBO per token)``: an upper bound on the perplexity (nats in, no unit out)."""
    return math.exp(nelbo_per_token)


def token_entropy(samples: Sequence[Sequence[int]]) -> float:
    """Mean over samples of the entropy (nats) of each sample's token histogram (BD3-LM Table 7's "entropy";
    low values flag repetitive text)."""
    values = []
    for s in samples:
        if len(s) == 0:
            continue
        counts = torch.tensor(list(Counter(s).values()), dtype=torch.float64)
        p = counts / counts.sum()
        values.append(float(-(p * p.log()).sum()))
    return sum(values) / len(values) if values else 0.0


def distinct_n(samples: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams / all n-grams over all samples (Li et al. 2016); 0 when there is no n-gram."""
    if n < 1:
        raise ValueError(f"n: expected >= 1, got {n}")
    grams = [tuple(s[i : i + n]) for s in samples for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def grammaticality(hmm: SparseHMM, samples: Sequence[Sequence[int]]) -> float:
    """Fraction of samples that the HMM generates with non-zero probability."""
    if not samples:
        raise ValueError("samples: expected at least one sample")
    ok = 0
    for s in samples:
        if len(s) == 0:
            ok += 1
            continue
        ok += int(torch.isfinite(hmm.log_prob(torch.tensor([list(s)])))[0])
    return ok / len(samples)
