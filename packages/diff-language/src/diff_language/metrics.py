"""Measures of diff-language: the validation NELBO (a bound on the perplexity) and measures of generated text.

Generated text: per-sample token entropy, distinct-n, grammaticality under the synthetic HMM language, and for
the Python corpus the fraction of samples that parse as Python (:func:`python_parse_fraction`).

The NELBO: a precise Monte-Carlo estimate of it on validation windows, with its standard errors.

The continuous-time NELBO of a block (BD3-LM, Arriola et al. 2025, Eq. 8; MDLM, Sahoo et al. 2024, Eq. 10)
is ``E_t E_mask [-alpha'/(1-alpha) sum_masked -log p(x^i | x_t)]``. Its one-sample estimate has a heavy tail
(the weight ``1/t`` of the log-linear schedule at small ``t``; for ``L' = 1`` its variance grows like
``log(1/eps)``), so many draws are needed to separate models whose bounds differ by 1 %.

Because the denoiser does not depend on ``t`` (only on which tokens are masked), the time can be integrated
out exactly: given ``k`` masked tokens out of ``L'``, ``int_0^1 -alpha'/(1-alpha) P(k | t) dt = 1/k`` for any
schedule, so the block's NELBO is

    sum_{k=1}^{L'} E_{S: |S| = k} [ (1/k) sum_{i in S} -log p(x^i | x_{S masked}) ]
      = L' * E_{k ~ U{1..L'}} E_S [ (1/k) sum_{i in S} -log p(x^i | x_{S masked}) ]

(the any-order autoregressive form: Hoogeboom et al. 2022, ARDM; Ou et al. 2024, RADD, Thm. 1; Zheng et al.
2024). It is the same number as the NELBO of Eq. 8 on the full range (so the bound is unbiased whatever clip
range training used), with a bounded estimator: exact for ``L' = 1``. Each block's ``k`` is stratified over
``repeats`` draws, ``k = floor(((u_b + r / R) mod 1) L') + 1``, and the masked subset is uniform given ``k``.

The repeats are split into two independent halves with their own offsets ``u``; half the squared difference
of the halves' means estimates the Monte-Carlo variance of each window's value. Reported:

- ``stderr``: standard error of the NELBO per token over the validation windows (data and Monte-Carlo noise);
- ``mc_stderr``: the Monte-Carlo part alone (what more repeats would remove);
- ``per_window``: the per-window estimates (nats/token), so two models evaluated on the same windows can be
  compared by paired differences (:func:`paired_difference`), which cancels most of the data variance.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from diffcore.discrete import subs_log_probs
from diffcore.rng import make_generator
from torch import Tensor

from diff_language.data.windows import fixed_windows
from diff_language.models import BD3LM

if TYPE_CHECKING:
    from diff_language.data.synthetic import SparseHMM

__all__ = [
    "NelboEstimate",
    "count_nelbo_terms",
    "distinct_n",
    "estimate_nelbo",
    "grammaticality",
    "paired_difference",
    "perplexity",
    "python_parse_fraction",
    "python_parses",
    "token_entropy",
    "validation_nelbo",
]


@dataclass
class NelboEstimate:
    """Validation NELBO in nats/token, its standard errors and the per-window values (N,) (float64, CPU)."""

    nelbo: float
    stderr: float
    mc_stderr: float
    per_window: Tensor
    tokens: int
    repeats: int

    @property
    def perplexity(self) -> float:
        """The perplexity bound ``exp(nelbo)``."""
        return math.exp(self.nelbo)

    def as_dict(self) -> dict[str, float]:
        """Scalars only (for JSON): nelbo, perplexity, stderr, mc_stderr, tokens, repeats."""
        return {
            "nelbo": self.nelbo,
            "perplexity": self.perplexity,
            "stderr": self.stderr,
            "mc_stderr": self.mc_stderr,
            "tokens": self.tokens,
            "repeats": self.repeats,
        }


def count_nelbo_terms(
    model: BD3LM, x0: Tensor, offset: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Per-token terms (B, L) of the masked-count form of the NELBO; ``terms.sum(-1)`` estimates the NELBO.

    x0: (B, L) clean tokens. offset: (B, L / L') uniforms in [0, 1) choosing each block's number of masked
    tokens ``k = floor(offset * L') + 1``; the ``k`` masked positions are uniform within the block. A masked
    token's term is ``(L' / k) * -log p(x^i | x_t)`` (see the module docstring), zero elsewhere.
    """
    b, n = x0.shape
    block = model.config.block_size
    k = (offset * block).floor().clamp(max=block - 1).long() + 1  # (B, n_blocks) in 1..L'
    scores = torch.rand((b, n // block, block), generator=generator, device=x0.device)
    ranks = scores.argsort(-1).argsort(-1)  # a uniform random permutation of each block
    masked = (ranks < k[..., None]).reshape(b, n)
    x_t = torch.where(masked, torch.full_like(x0, model.mask_id), x0)
    log_probs = subs_log_probs(model(x_t, x0=x0), x_t, model.mask_id)
    nll = -log_probs.gather(-1, x0[..., None]).squeeze(-1).double()
    weight = (block / k.double()).repeat_interleave(block, dim=1)
    return torch.where(masked, weight * nll, torch.zeros_like(nll))


def _stratified_half(model: BD3LM, x0: Tensor, repeats: int, generator: torch.Generator) -> Tensor:
    """Mean over ``repeats`` stratified draws of each window's NELBO (nats/token), shape (B,)."""
    b, n = x0.shape
    n_blocks = n // model.config.block_size
    u = torch.rand((b, n_blocks), generator=generator, device=x0.device, dtype=torch.float64)
    x_rep = x0.repeat(repeats, 1)  # (R * B, L): repeat r of window i is row r * B + i
    shift = torch.arange(repeats, device=x0.device, dtype=torch.float64).repeat_interleave(b) / repeats
    offset = (u.repeat(repeats, 1) + shift[:, None]) % 1.0
    terms = count_nelbo_terms(model, x_rep, offset, generator)
    return terms.sum(-1).view(repeats, b).mean(0) / n


@torch.no_grad()
def estimate_nelbo(
    model: BD3LM,
    windows: Tensor,
    *,
    repeats: int = 32,
    batch_size: int = 256,
    seed: int = 0,
) -> NelboEstimate:
    """NELBO per token of ``model`` over every row of ``windows`` (N, L), full time range [0, 1].

    repeats: stratified draws per window (even, >= 2; split into two independent halves). batch_size:
    sequences per forward pass (windows times repeats). Noise comes from a generator on the model's device
    seeded by ``seed``, so two calls with the same arguments agree.
    """
    if repeats < 2 or repeats % 2:
        raise ValueError(f"repeats: expected an even number >= 2, got {repeats}")
    if windows.dim() != 2 or windows.shape[1] != model.config.seq_len or len(windows) < 2:
        raise ValueError(
            f"windows: expected (N >= 2, {model.config.seq_len}) token ids, got {tuple(windows.shape)}"
        )
    device = next(model.parameters()).device
    half = repeats // 2
    per_batch = max(1, batch_size // half)
    g = make_generator(seed, device)
    was_training = model.training
    model.eval()
    halves: list[Tensor] = []
    for i in range(0, len(windows), per_batch):
        x0 = windows[i : i + per_batch].to(device)
        halves.append(torch.stack([_stratified_half(model, x0, half, g) for _ in range(2)]))
    model.train(was_training)
    a, b = torch.cat(halves, dim=1).cpu()
    per_window = (a + b) / 2
    n = per_window.numel()
    # Var[(a + b) / 2] = Var[a] / 2, and E[(a - b)^2] = 2 Var[a]: so (a - b)^2 / 4 estimates it per window.
    mc_var = ((a - b) ** 2 / 4).sum() / n**2
    return NelboEstimate(
        nelbo=float(per_window.mean()),
        stderr=float(per_window.std() / math.sqrt(n)),
        mc_stderr=float(mc_var.sqrt()),
        per_window=per_window,
        tokens=windows.numel(),
        repeats=repeats,
    )


def paired_difference(a: NelboEstimate, b: NelboEstimate) -> tuple[float, float]:
    """``(mean, stderr)`` of ``a - b`` over the same windows (nats/token): is ``a``'s bound really higher?"""
    if a.per_window.shape != b.per_window.shape:
        raise ValueError(
            f"a, b: expected estimates over the same windows, got {a.per_window.numel()} and {b.per_window.numel()}"
        )
    d = a.per_window - b.per_window
    return float(d.mean()), float(d.std() / math.sqrt(d.numel()))


def validation_nelbo(
    model: BD3LM,
    stream: Tensor,
    *,
    max_windows: int | None = None,
    repeats: int = 32,
    batch_size: int = 256,
    seed: int = 0,
) -> NelboEstimate:
    """:func:`estimate_nelbo` on the non-overlapping windows of ``stream`` (rows, length), the first
    ``max_windows`` of them (all by default)."""
    windows = fixed_windows(stream, model.config.seq_len, max_windows)
    if len(windows) < 2:
        raise ValueError(
            f"stream: expected at least 2 windows of seq_len={model.config.seq_len} tokens, got {len(windows)}"
        )
    return estimate_nelbo(model, windows, repeats=repeats, batch_size=batch_size, seed=seed)


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


def python_parses(text: str, *, complete: bool = True) -> bool:
    """Whether ``text`` is valid Python for :func:`ast.parse` (under the running interpreter's grammar).

    ``complete=False`` is for text cut at a length limit: its last, possibly unfinished line is dropped
    first (a text of one line is then empty and does not count as parsing).
    """
    if not complete:
        if "\n" not in text:
            return False
        text = text[: text.rindex("\n")]
    if not text.strip():
        return False
    try:
        with warnings.catch_warnings():  # invalid escape sequences in generated strings warn; not our concern
            warnings.simplefilter("ignore")
            ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def python_parse_fraction(texts: Sequence[str], ended: Sequence[bool]) -> float:
    """Fraction of ``texts`` that parse as Python; ``ended[i]`` says whether text ``i`` ended with EOS (a whole
    document) or was cut at the length limit (then judged without its last line, :func:`python_parses`)."""
    if len(texts) != len(ended) or not texts:
        raise ValueError(f"texts, ended: expected equal, non-zero lengths, got {len(texts)} and {len(ended)}")
    return sum(python_parses(t, complete=e) for t, e in zip(texts, ended, strict=True)) / len(texts)
