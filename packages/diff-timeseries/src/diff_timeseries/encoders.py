"""The metrics' own models, trained offline by the package: a TS2Vec-style series encoder (for C-FID) and a
CLIP-style caption / series model (for MRR@10 of text-to-series retrieval).

- :class:`SeriesEncoder`: dilated residual 1D convolutions (TS2Vec's encoder, Yue et al. 2022, Sec. 3.2),
  per-step features ``(B, D, L)``, max-pooled over time for a series vector ``(B, D)``.
- :func:`train_ts2vec`: its hierarchical contrastive loss (Yue et al. 2022, Sec. 3.3, Algorithm 1): two
  overlapping random crops of each series, the instance-wise and the temporal contrastive loss on the
  overlap, at every scale of a max-pooling pyramid.
- :func:`train_retrieval`: a series encoder and a :class:`~diff_timeseries.models.CaptionEncoder` trained
  with the symmetric InfoNCE loss (CLIP, Radford et al. 2021, Fig. 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffcore.rng import seeded
from torch import Tensor, nn

from diff_timeseries.models import CaptionEncoder

__all__ = ["RetrievalModel", "SeriesEncoder", "train_retrieval", "train_ts2vec"]


class _DilatedBlock(nn.Module):
    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


class SeriesEncoder(nn.Module):
    """``(B, C, L)`` -> per-step features ``(B, D, L)`` (:meth:`forward`) or a series vector ``(B, D)``
    (:meth:`embed`, max over time)."""

    def __init__(self, channels: int = 1, width: int = 64, depth: int = 5) -> None:
        super().__init__()
        self.inp = nn.Conv1d(channels, width, 1)
        self.blocks = nn.Sequential(*[_DilatedBlock(width, 2**i) for i in range(depth)])

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, L)`` -> per-step features ``(B, D, L)``."""
        return self.blocks(self.inp(x))

    def embed(self, x: Tensor) -> Tensor:
        """``(B, C, L)`` -> one vector per series ``(B, D)``: the per-step features' maximum over time."""
        return self.forward(x).amax(-1)


def _instance_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Instance-wise contrast at each step: ``z1, z2`` ``(B, T, D)``; positives are the same series."""
    b = z1.shape[0]
    if b == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], 0).transpose(0, 1)  # (T, 2B, D)
    sim = z @ z.transpose(1, 2)
    logits = torch.tril(sim, -1)[:, :, :-1] + torch.triu(sim, 1)[:, :, 1:]  # drop the diagonal
    logits = -F.log_softmax(logits, -1)
    i = torch.arange(b, device=z.device)
    return (logits[:, i, b + i - 1].mean() + logits[:, b + i, i].mean()) / 2


def _temporal_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Temporal contrast within each series: positives are the same step in the two views."""
    t = z1.shape[1]
    if t == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], 1)  # (B, 2T, D)
    sim = z @ z.transpose(1, 2)
    logits = torch.tril(sim, -1)[:, :, :-1] + torch.triu(sim, 1)[:, :, 1:]
    logits = -F.log_softmax(logits, -1)
    i = torch.arange(t, device=z.device)
    return (logits[:, i, t + i - 1].mean() + logits[:, t + i, i].mean()) / 2


def hierarchical_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """TS2Vec's loss (Yue et al. 2022, Algorithm 1): ``z1, z2`` ``(B, T, D)`` features of the overlap."""
    loss, depth = z1.new_zeros(()), 0
    while z1.shape[1] > 1:
        loss = loss + _instance_loss(z1, z2) + _temporal_loss(z1, z2)
        depth += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), 2).transpose(1, 2)
        z2 = F.max_pool1d(z2.transpose(1, 2), 2).transpose(1, 2)
    if z1.shape[1] == 1:
        loss = loss + _instance_loss(z1, z2)
        depth += 1
    return loss / depth


def _batches(values: Sequence[np.ndarray], batch: int, steps: int, rng: np.random.Generator):
    for step in range(steps):
        v = values[step % len(values)]
        idx = rng.choice(len(v), size=min(batch, len(v)), replace=False)
        yield idx, torch.from_numpy(v[idx]).float()


def train_ts2vec(
    values: Sequence[np.ndarray],
    steps: int = 300,
    *,
    width: int = 64,
    batch: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> SeriesEncoder:
    """A :class:`SeriesEncoder` trained on ``values`` (a list of ``(N, C, L)`` arrays, one per length, used in
    turn) with the hierarchical contrastive loss; returned in eval mode."""
    rng = np.random.default_rng(seed)
    with seeded(seed):
        enc = SeriesEncoder(values[0].shape[1], width).to(device)
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-3)
    for _, x in _batches(values, batch, steps, rng):
        x = x.to(device)
        n = x.shape[-1]
        crop = int(rng.integers(max(2, n // 2), n + 1))
        a1, b2 = sorted(rng.choice(np.arange(n + 1), 2, replace=False)) if n > crop else (0, n)
        a1, b2 = int(a1), int(max(b2, a1 + crop))
        if b2 > n:
            a1, b2 = n - crop, n
        a2 = int(rng.integers(a1, a1 + (b2 - a1) // 2 + 1))
        b1 = int(rng.integers(a1 + (b2 - a1) // 2 + 1, b2 + 1))
        b1 = max(b1, a2 + 2)
        z1 = enc(x[..., a1:b1] + 0.05 * torch.randn_like(x[..., a1:b1])).transpose(1, 2)
        z2 = enc(x[..., a2:b2] + 0.05 * torch.randn_like(x[..., a2:b2])).transpose(1, 2)
        loss = hierarchical_contrastive_loss(z1[:, a2 - a1 :], z2[:, : b1 - a2])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return enc.eval()


class RetrievalModel(nn.Module):
    """Caption and series embeddings in one normalised space: ``similarity(ids, x) -> (N_text, N_series)``."""

    def __init__(self, text: CaptionEncoder, series: SeriesEncoder, dim: int = 64) -> None:
        super().__init__()
        self.text, self.series = text, series
        self.text_proj = nn.Linear(text.config.width, dim)
        self.series_proj = nn.Linear(series.inp.out_channels, dim)
        self.log_temp = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

    def embed_text(self, ids: Tensor) -> Tensor:
        """Unit-norm caption embeddings ``(N, D)`` of token ids ``ids: (N, M)``."""
        return F.normalize(self.text_proj(self.text(ids)[2]), dim=-1)

    def embed_series(self, x: Tensor) -> Tensor:
        """Unit-norm series embeddings ``(N, D)`` of ``x: (N, C, L)``."""
        return F.normalize(self.series_proj(self.series.embed(x)), dim=-1)

    @torch.no_grad()
    def similarity(self, captions: list[str], x: Tensor) -> np.ndarray:
        """Cosine similarities ``(len(captions), N)`` between each caption and each series of
        ``x: (N, C, L)``."""
        device = next(self.parameters()).device
        t = self.embed_text(self.text.tokenize(captions).to(device))
        s = self.embed_series(x.to(device).float())
        return (t @ s.T).cpu().numpy()


def train_retrieval(
    values: Sequence[np.ndarray],
    captions: Sequence[list[str]],
    steps: int = 300,
    *,
    batch: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> RetrievalModel:
    """A :class:`RetrievalModel` trained on pairs ``(captions[k][i], values[k][i])`` (one array per length,
    used in turn) with the symmetric InfoNCE loss; returned in eval mode."""
    rng = np.random.default_rng(seed)
    with seeded(seed):
        text = CaptionEncoder.from_captions([c for cs in captions for c in cs], width=64, layers=2)
        model = RetrievalModel(text, SeriesEncoder(values[0].shape[1], 64)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step, (idx, x) in enumerate(_batches(values, batch, steps, rng)):
        caps = [captions[step % len(values)][i] for i in idx]
        t = model.embed_text(text.tokenize(caps).to(device))
        s = model.embed_series(x.to(device))
        logits = model.log_temp.exp().clamp(max=100) * t @ s.T
        # captions repeat (many series share one): every series of the same caption is a positive
        same = torch.tensor([[a == b for b in caps] for a in caps], device=device, dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = (
            -(target * F.log_softmax(logits, 1)).sum(1).mean()
            - (target * F.log_softmax(logits.T, 1)).sum(1).mean()
        ) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
