"""Measures computed from the waveform alone: fundamental frequency (YIN), pitch accuracy, where a sound ends,
timing accuracy, onsets, SI-SDR, multi-resolution STFT distance, silence and clipping rates.

Audio is ``(channels, samples)`` or ``(samples,)`` float (channels are averaged where a measure needs one
signal); batches are lists or ``(B, channels, samples)`` tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from diff_audio.models.vae import multi_resolution_stft_loss

__all__ = [
    "clipping_rate",
    "estimate_f0",
    "midi_from_hz",
    "mrstft_distance",
    "onset_f1",
    "onset_times",
    "pitch_accuracy",
    "si_sdr",
    "silence_rate",
    "sound_end_seconds",
    "timing_accuracy",
]


def _mono(audio: Tensor) -> Tensor:
    audio = torch.as_tensor(audio, dtype=torch.float64)
    if audio.ndim == 2:
        return audio.mean(0)
    if audio.ndim != 1:
        raise ValueError(f"audio: expected (samples,) or (channels, samples), got {tuple(audio.shape)}")
    return audio


def midi_from_hz(hz: float | Tensor) -> float | Tensor:
    """MIDI number of a frequency (A4 = 69 = 440 Hz); fractional between semitones."""
    if isinstance(hz, Tensor):
        return 69.0 + 12.0 * torch.log2(hz / 440.0)
    return 69.0 + 12.0 * math.log2(hz / 440.0)


def _yin_frames(frames: Tensor, tau_min: int, tau_max: int) -> tuple[Tensor, Tensor]:
    """Cumulative mean normalised difference ``d'(tau)`` (de Cheveigne & Kawahara 2002, Eq. 6 and 8) of frames
    ``(F, W)`` for ``tau`` in ``[0, tau_max]``, computed with FFTs: ``d(tau) = e(0) + e(tau) - 2 r(tau)`` over a
    window of ``W - tau_max`` samples; returns ``(d', energy of the window)``."""
    f, w = frames.shape
    n = w - tau_max
    size = 1 << (w + n - 1).bit_length()
    spec_full = torch.fft.rfft(frames, size)
    spec_head = torch.fft.rfft(frames[:, :n], size)
    r = torch.fft.irfft(spec_full * spec_head.conj(), size)[:, : tau_max + 1]  # sum_j x_j x_{j + tau}
    sq = torch.cat([frames.new_zeros(f, 1), frames.pow(2).cumsum(1)], dim=1)
    taus = torch.arange(tau_max + 1)
    e_tau = sq[:, taus + n] - sq[:, taus]  # sum_{j < n} x_{j + tau}^2
    d = (e_tau[:, :1] + e_tau - 2 * r).clamp_min(0)
    cum = d[:, 1:].cumsum(1)
    cmnd = torch.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / cum.clamp_min(1e-12)
    return cmnd, e_tau[:, 0]


def estimate_f0(
    audio: Tensor,
    sample_rate: int,
    fmin: float = 80.0,
    fmax: float = 1600.0,
    threshold: float = 0.15,
    frame_seconds: float = 0.064,
    hop_seconds: float = 0.016,
    silence_db: float = -40.0,
) -> float:
    """The fundamental frequency of a (mostly) monophonic clip in Hz by YIN (de Cheveigne & Kawahara 2002):
    per frame, the first ``tau`` whose cumulative mean normalised difference falls below ``threshold`` (step 4; the
    global minimum when none does), refined to its local minimum and by parabolic interpolation (step 5); the
    clip's value is the median over sounding frames (within ``silence_db`` of the loudest). ``nan`` for silence."""
    x = _mono(audio)
    tau_min, tau_max = max(2, int(sample_rate / fmax)), math.ceil(sample_rate / fmin)
    w = max(int(frame_seconds * sample_rate), 2 * tau_max + 2)
    hop = max(1, int(hop_seconds * sample_rate))
    if x.numel() < w:
        x = torch.nn.functional.pad(x, (0, w - x.numel()))
    frames = x.unfold(0, w, hop)
    cmnd, energy = _yin_frames(frames, tau_min, tau_max)
    loud = energy > energy.max() * 10 ** (silence_db / 10) if energy.max() > 0 else energy > 0
    f0s = []
    for i in torch.nonzero(loud).flatten().tolist():
        d = cmnd[i]
        below = torch.nonzero(d[tau_min:] < threshold).flatten()
        # step 4: the first dip below the threshold, or else the global minimum
        tau = int(below[0]) + tau_min if below.numel() else int(d[tau_min:].argmin()) + tau_min
        while tau + 1 <= tau_max and d[tau + 1] < d[tau]:
            tau += 1
        if 1 <= tau < tau_max:
            a, b, c = float(d[tau - 1]), float(d[tau]), float(d[tau + 1])
            denom = a - 2 * b + c
            shift = 0.5 * (a - c) / denom if denom > 0 else 0.0
        else:
            shift = 0.0
        f0s.append(sample_rate / (tau + shift))
    return float(torch.tensor(f0s).median()) if f0s else math.nan


def pitch_accuracy(
    audios: Sequence[Tensor] | Tensor, target_midi: Sequence[float], sample_rate: int, tolerance: float = 1.0
) -> tuple[float, list[float]]:
    """Fraction of clips whose YIN f0 is within ``tolerance`` semitones of ``target_midi`` (unvoiced clips count
    as misses), and each clip's error in semitones (``nan`` when unvoiced)."""
    if len(audios) != len(target_midi):
        raise ValueError(f"target_midi: expected {len(audios)} targets, got {len(target_midi)}")
    errors = []
    for audio, midi in zip(audios, target_midi):
        f0 = estimate_f0(audio, sample_rate)
        errors.append(abs(midi_from_hz(f0) - midi) if f0 == f0 else math.nan)
    hits = sum(1 for e in errors if e == e and e <= tolerance)
    return hits / max(1, len(errors)), errors


def _frame_db(audio: Tensor, sample_rate: int, frame_seconds: float, hop_seconds: float) -> Tensor:
    x = _mono(audio)
    w, hop = max(1, int(frame_seconds * sample_rate)), max(1, int(hop_seconds * sample_rate))
    if x.numel() < w:
        x = torch.nn.functional.pad(x, (0, w - x.numel()))
    rms = x.unfold(0, w, hop).pow(2).mean(1).sqrt()
    return 20 * torch.log10(rms.clamp_min(1e-10))


def sound_end_seconds(
    audio: Tensor,
    sample_rate: int,
    relative_db: float = -40.0,
    floor_db: float = -60.0,
    frame_seconds: float = 0.02,
    hop_seconds: float = 0.01,
) -> float:
    """Where the sound really ends: the end of the last 20 ms frame whose RMS is within ``relative_db`` of the
    loudest frame and above ``floor_db`` dBFS; 0 for a silent clip."""
    db = _frame_db(audio, sample_rate, frame_seconds, hop_seconds)
    level = max(float(db.max()) + relative_db, floor_db)
    on = torch.nonzero(db > level).flatten()
    if on.numel() == 0:
        return 0.0
    return min(_mono(audio).numel() / sample_rate, (int(on[-1]) * hop_seconds + frame_seconds))


def timing_accuracy(
    audios: Sequence[Tensor] | Tensor,
    seconds_total: Sequence[float],
    sample_rate: int,
    tolerance: float = 0.25,
) -> tuple[float, list[float]]:
    """Fraction of clips whose sound ends within ``tolerance`` seconds of the asked ``seconds_total``, and the
    signed errors (``end - seconds_total``)."""
    errors = [
        sound_end_seconds(a, sample_rate) - float(s) for a, s in zip(audios, seconds_total, strict=True)
    ]
    return sum(abs(e) <= tolerance for e in errors) / max(1, len(errors)), errors


def onset_times(
    audio: Tensor, sample_rate: int, n_fft: int = 1024, hop: int = 256, delta: float = 0.1
) -> list[float]:
    """Note onsets in seconds by half-wave-rectified log-spectral flux (Bello et al. 2005, Sec. III-C) with peak
    picking: local maxima above ``delta`` plus a running mean of the normalised flux, at least 50 ms apart."""
    x = _mono(audio).float()
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True, center=True).abs()
    logspec = torch.log1p(100 * spec)
    flux = (logspec[:, 1:] - logspec[:, :-1]).clamp_min(0).sum(0)
    flux = torch.cat([flux.new_zeros(1), flux])
    if flux.max() <= 0:
        return []
    flux = flux / flux.max()
    kernel = torch.ones(1, 1, 9) / 9
    mean = torch.nn.functional.conv1d(flux[None, None], kernel, padding=4)[0, 0]
    gap = int(0.05 * sample_rate / hop)
    out: list[int] = []
    for i in range(len(flux)):
        lo, hi = max(0, i - 2), min(len(flux), i + 3)
        if flux[i] == flux[lo:hi].max() and flux[i] > mean[i] + delta and (not out or i - out[-1] > gap):
            out.append(i)
    return [i * hop / sample_rate for i in out]


def onset_f1(estimated: Sequence[float], reference: Sequence[float], tolerance: float = 0.05) -> float:
    """F-measure of onsets matched one-to-one within ``tolerance`` seconds (MIREX convention); 1 when both are empty."""
    if not estimated and not reference:
        return 1.0
    used: set[int] = set()
    hits = 0
    for r in reference:
        best = min(
            (j for j in range(len(estimated)) if j not in used and abs(estimated[j] - r) <= tolerance),
            key=lambda j: abs(estimated[j] - r), default=None,
        )  # fmt: skip
        if best is not None:
            used.add(best)
            hits += 1
    precision, recall = hits / max(1, len(estimated)), hits / max(1, len(reference))
    return 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)


def si_sdr(estimate: Tensor, reference: Tensor) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019, Eq. 1-3), zero-mean signals,
    over all channels of one clip."""
    est = torch.as_tensor(estimate, dtype=torch.float64).flatten()
    ref = torch.as_tensor(reference, dtype=torch.float64).flatten()
    if est.shape != ref.shape:
        raise ValueError(
            f"estimate: expected the reference's shape {tuple(reference.shape)}, got {tuple(estimate.shape)}"
        )
    est, ref = est - est.mean(), ref - ref.mean()
    target = (est @ ref) / (ref @ ref).clamp_min(1e-20) * ref
    noise = est - target
    return float(10 * torch.log10((target @ target).clamp_min(1e-20) / (noise @ noise).clamp_min(1e-20)))


def mrstft_distance(
    estimate: Tensor, reference: Tensor, fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128)
) -> float:
    """The multi-resolution STFT loss (spectral convergence + log magnitude, Yamamoto et al. 2020) as a distance;
    0 for identical clips. ``(B, C, T)``, ``(C, T)`` or ``(T,)``."""
    est, ref = torch.as_tensor(estimate).float(), torch.as_tensor(reference).float()
    while est.ndim < 3:
        est, ref = est[None], ref[None]
    return float(multi_resolution_stft_loss(est, ref, fft_sizes))


def silence_rate(audios: Sequence[Tensor] | Tensor, threshold_db: float = -60.0) -> float:
    """Fraction of clips whose peak is below ``threshold_db`` dBFS."""
    peaks = [float(torch.as_tensor(a).abs().max()) for a in audios]
    return sum(p < 10 ** (threshold_db / 20) for p in peaks) / max(1, len(peaks))


def clipping_rate(audios: Sequence[Tensor] | Tensor, level: float = 0.999) -> float:
    """Fraction of all samples at or beyond ``level`` in magnitude (clipped)."""
    flat = torch.cat([torch.as_tensor(a).flatten() for a in audios])
    return float((flat.abs() >= level).double().mean())
