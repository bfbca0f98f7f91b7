"""StreamDiffusion's stochastic similarity filter (Kodaira et al. 2023, Sec. 3.5).

A new input whose cosine similarity ``S`` with the last *processed* input is high is skipped with probability

    p = max(0, 1 - (1 - S) / (1 - eta))            (eta: the threshold)

and the previous output is shown again: a static scene costs almost no GPU work, while any change (``S <=
eta`` gives ``p = 0``) is processed at once. After ``max_skip`` consecutive skips the next input is processed
whatever its similarity (a forced refresh, so a slowly drifting scene is never frozen). The draw comes from a
``torch.Generator`` passed in (host side: the decision must be known on the host to skip the GPU work, so each
check reads one number from the device).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["SimilarityFilter", "cosine_similarity", "skip_probability"]


def cosine_similarity(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of ``a`` and ``b`` flattened (any equal shapes), in float32 at least; 1 for two zero
    tensors (nothing changed)."""
    if a.shape != b.shape:
        raise ValueError(
            f"input: expected shape {tuple(b.shape)} (that of the last input), got {tuple(a.shape)}"
        )
    a32, b32 = a.reshape(-1).float(), b.reshape(-1).float()
    na, nb = a32.norm(), b32.norm()
    dot, norms = float(a32 @ b32), float(na * nb)
    if norms == 0.0:
        return 1.0 if float(na) == float(nb) else 0.0
    return dot / norms


def skip_probability(similarity: float, threshold: float) -> float:
    """``max(0, 1 - (1 - S) / (1 - eta))`` (Kodaira et al. 2023, Eq. 10); 0 for ``eta >= 1`` (never skip)."""
    if threshold >= 1.0:
        return 0.0
    return max(0.0, 1.0 - (1.0 - similarity) / (1.0 - threshold))


@dataclass
class SimilarityFilter:
    """Decides, input by input, whether to skip the work (:meth:`skip`).

    Attributes:
        threshold: ``eta`` in ``(-1, 1]``: similarities at or below it are never skipped (StreamDiffusion: 0.98).
        max_skip: consecutive skips after which the next input is processed anyway (>= 0; 0: never skip).
        skipped: inputs skipped so far; ``seen``: inputs checked so far.
    """

    threshold: float = 0.98
    max_skip: int = 10
    skipped: int = field(default=0, init=False)
    seen: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not -1.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold: expected a cosine similarity in (-1, 1], got {self.threshold}")
        if not isinstance(self.max_skip, int) or self.max_skip < 0:
            raise ValueError(f"max_skip: expected an integer >= 0, got {self.max_skip!r}")
        self._last: Tensor | None = None
        self._run = 0

    def reset(self) -> None:
        """Forget the last processed input and the counts."""
        self._last, self._run, self.skipped, self.seen = None, 0, 0, 0

    @property
    def skip_fraction(self) -> float:
        """Skipped inputs over checked inputs (0 before any)."""
        return self.skipped / self.seen if self.seen else 0.0

    def skip(self, x: Tensor, generator: torch.Generator | None = None) -> bool:
        """Whether to skip the input ``x`` (any shape, the same at every call). A processed input (False)
        becomes the new reference; a skipped one does not. ``generator``: a CPU generator for the draw."""
        self.seen += 1
        if self._last is not None and self._run < self.max_skip:
            p = skip_probability(cosine_similarity(x, self._last), self.threshold)
            if p > 0.0 and float(torch.rand((), generator=generator)) < p:
                self._run += 1
                self.skipped += 1
                return True
        self._run = 0
        self._last = x.detach().clone()
        return False
