"""Measures on learned or fixed features: log-mel statistics, the Frechet distance, the instrument classifier
behind instrument accuracy and "FAD-local", and structure adherence of multi-section pieces.

FAD-local is the Frechet distance (Heusel et al. 2017, Eq. 6; FAD, Kilgour et al. 2019) between feature
statistics of generated and real clips, where the features are the penultimate layer of
:class:`InstrumentClassifier`, a small network trained here on the synthetic set. It is NOT comparable with
published FAD numbers (those use VGGish / PANNs / CLAP / OpenL3 embeddings, which need downloaded weights); it
is compared with its own floor, the distance between two real splits of the same size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchaudio
from diffcore.metrics.frechet import frechet_distance
from diffcore.rng import make_generator, seeded
from torch import Tensor, nn

__all__ = [
    "InstrumentClassifier",
    "frechet_distance",
    "log_mel_stats",
    "structure_score",
    "train_instrument_classifier",
]


def _mel(sample_rate: int, n_mels: int) -> torchaudio.transforms.MelSpectrogram:
    n_fft = 1 << int(math.log2(sample_rate * 0.064))  # ~64 ms windows
    return torchaudio.transforms.MelSpectrogram(
        sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels
    )


def log_mel(audio: Tensor, sample_rate: int, n_mels: int = 64) -> Tensor:
    """``(B, C, T)`` audio -> log-mel spectrogram of the channel mean ``(B, n_mels, frames)`` (natural log, +1e-5)."""
    audio = torch.as_tensor(audio).float()
    if audio.ndim == 2:
        audio = audio[None]
    return torch.log(_mel(sample_rate, n_mels)(audio.mean(1)) + 1e-5)


def log_mel_stats(audio: Tensor, sample_rate: int, n_mels: int = 64) -> Tensor:
    """Fixed features ``(B, 3 * n_mels)``: per mel band the mean and standard deviation of the log-mel over time,
    and its mean over the first quarter of the frames (the attack)."""
    lm = log_mel(audio, sample_rate, n_mels)
    head = lm[..., : max(1, lm.shape[-1] // 4)]
    return torch.cat([lm.mean(-1), lm.std(-1), head.mean(-1)], dim=-1)


class InstrumentClassifier(nn.Module):
    """An MLP on standardised :func:`log_mel_stats`: ``features`` -> ``embed`` (the FAD-local features, ``(B,
    hidden)``) -> logits over ``classes``."""

    def __init__(self, classes: Sequence[str], sample_rate: int, n_mels: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.classes, self.sample_rate, self.n_mels = list(classes), sample_rate, n_mels
        self.register_buffer("mean", torch.zeros(3 * n_mels))
        self.register_buffer("std", torch.ones(3 * n_mels))
        self.body = nn.Sequential(
            nn.Linear(3 * n_mels, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.head = nn.Linear(hidden, len(self.classes))

    def features(self, audio: Tensor) -> Tensor:
        """Standardised :func:`log_mel_stats` of ``audio`` ``(B, T)``: the classifier's input ``(B, 3 * n_mels)``."""
        return (log_mel_stats(audio, self.sample_rate, self.n_mels) - self.mean) / self.std

    @torch.no_grad()
    def embed(self, audio: Tensor, batch_size: int = 256) -> Tensor:
        """Audio ``(B, C, T)`` -> penultimate features ``(B, hidden)`` (eval mode)."""
        self.eval()
        return torch.cat(
            [self.body(self.features(audio[i : i + batch_size])) for i in range(0, len(audio), batch_size)]
        )

    @torch.no_grad()
    def predict(self, audio: Tensor) -> list[str]:
        """The most likely class of each clip."""
        return [self.classes[i] for i in self.head(self.embed(audio)).argmax(-1).tolist()]


def train_instrument_classifier(
    audio: Tensor, labels: Sequence[str], sample_rate: int, steps: int = 300, seed: int = 0
) -> InstrumentClassifier:
    """Fit an :class:`InstrumentClassifier` on clips ``(N, C, T)`` with their instrument names (Adam, full batch
    of precomputed features, ``steps`` steps); deterministic given ``seed``."""
    classes = sorted(set(labels))
    with seeded(seed):
        model = InstrumentClassifier(classes, sample_rate)
    raw = log_mel_stats(audio, sample_rate, model.n_mels)
    model.mean.copy_(raw.mean(0))
    model.std.copy_(raw.std(0).clamp_min(1e-3))
    x = (raw - model.mean) / model.std
    y = torch.tensor([classes.index(label) for label in labels])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = make_generator(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (min(256, len(x)),), generator=gen)
        loss = nn.functional.cross_entropy(model.head(model.body(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def structure_score(audio: Tensor, sample_rate: int, sections: Sequence[tuple[str, float, float]]) -> float:
    """Structure adherence of one piece: over every pair of section pairs (one pair with the same label, one with
    different labels, sharing a section), the fraction where the same-label pair is more similar (cosine
    similarity of mean log-mel vectors). 1: repeats are always closer than non-repeats; 0.5: no structure.
    ``nan`` when the piece has no repeated label."""
    lm = log_mel(audio, sample_rate)[0]
    frames_per_s = lm.shape[-1] / (torch.as_tensor(audio).shape[-1] / sample_rate)
    vecs = []
    for _, start, end in sections:
        lo, hi = int(start * frames_per_s), max(int(start * frames_per_s) + 1, int(end * frames_per_s))
        v = lm[:, lo:hi].mean(-1)
        vecs.append(v - v.mean())
    sim = torch.nn.functional.cosine_similarity(torch.stack(vecs)[:, None], torch.stack(vecs)[None], dim=-1)
    labels = [s[0] for s in sections]
    wins, total = 0.0, 0
    for i in range(len(labels)):
        same = [j for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        other = [j for j in range(len(labels)) if labels[j] != labels[i]]
        for j in same:
            for k in other:
                total += 1
                wins += 1.0 if sim[i, j] > sim[i, k] else 0.5 if sim[i, j] == sim[i, k] else 0.0
    return wins / total if total else math.nan
