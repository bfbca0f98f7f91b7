"""A synthetic music set generated on the fly, deterministic by seed: every parameter of every sound is known.

Instruments (``INSTRUMENTS``):

- ``organ``: additive synthesis, harmonics ``k = 1..8`` with amplitude ``1 / k`` and a smooth attack/release;
- ``pluck``: a plucked string by Karplus-Strong (Karplus & Strong 1983): a noise burst in a delay line of one
  period, averaged and decayed each round trip; run at 4x the sample rate so the period's rounding error
  stays below 0.15 semitone, then resampled down with torchaudio;
- ``bell``: FM synthesis (Chowning 1973): carrier ``f``, modulator ``1.4 f`` (inharmonic sidebands) with an index
  decaying in about 0.1 s, so the strike is bright and the ring settles on the carrier (the note's pitch);
- ``drums``: noise-based kick (a pitch sweep 150 -> 45 Hz), snare (band-passed noise + 180 Hz body) and hat
  (high-passed noise); unpitched, ``pitches`` hold the drum names' MIDI numbers of General MIDI (36, 38, 42).

Three kinds of example (:class:`SynthConfig` ``kind``):

- ``notes``: one note per clip, onset at ``0``, lasting until ``seconds_total`` (then silence to the clip's end);
- ``phrases``: a melody of 2-6 notes on a tempo grid (``bpm``);
- ``pieces``: multi-section pieces (``intro``, ``verse``, ``chorus`` with repeats, e.g. ``intro verse chorus verse
  chorus``): each section label is one phrase, repeated verbatim where the label repeats; ``sections`` lists
  ``(label, start_s, end_s)`` for the structure metric.

Audio is ``(channels, samples)`` float32 in ``[-1, 1]``; peaks at ``loudness_db`` dBFS (-14 to -3). Stereo
places the instrument with a constant-power pan. Captions name the instrument, the notes and the tempo:
``"a plucked string plays C4 E4 G4 at 120 bpm"``. Timing fields follow Stable Audio: ``seconds_start`` (the
crop's offset in the source, 0 here) and ``seconds_total`` (the length of the sound; the clip is silent after).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torchaudio.functional as AF

__all__ = [
    "INSTRUMENTS",
    "PITCHED",
    "SynthConfig",
    "SynthExample",
    "SyntheticMusic",
    "midi_to_hz",
    "midi_to_name",
    "name_to_midi",
    "render_note",
]

INSTRUMENTS = ("organ", "pluck", "bell", "drums")
PITCHED = ("organ", "pluck", "bell")
INSTRUMENT_WORDS = {"organ": "an organ", "pluck": "a plucked string", "bell": "an FM bell", "drums": "drums"}
DRUMS = {"kick": 36, "snare": 38, "hat": 42}
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MIDI_RANGE = (48, 84)
SECTION_FORMS = (
    ("intro", "verse", "chorus", "verse", "chorus"),
    ("verse", "chorus", "verse", "chorus"),
    ("intro", "chorus", "verse", "chorus"),
)
MAJOR = (0, 2, 4, 5, 7, 9, 11)


def midi_to_hz(midi: float) -> float:
    """Equal temperament, A4 = MIDI 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def midi_to_name(midi: int) -> str:
    """``60 -> "C4"`` (scientific pitch notation, sharps)."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def name_to_midi(name: str) -> int:
    """``"C4" -> 60``; raises ``ValueError`` naming the bad note."""
    match = re.fullmatch(r"([A-G]#?)(-?\d)", name)
    if match is None or match[1] not in NOTE_NAMES:
        raise ValueError(f"note: expected a name like C4 or F#3, got {name!r}")
    return NOTE_NAMES.index(match[1]) + 12 * (int(match[2]) + 1)


@dataclass
class SynthConfig:
    """The synthetic music set.

    Attributes:
        kind: ``notes`` (one note per clip), ``phrases`` (2-6 notes on a tempo grid) or ``pieces`` (multi-section
            pieces with repeats).
        length: examples in the set (example ``i`` is drawn from ``(seed, i)``, so any subset is reproducible).
        seed: seeds the set; different seeds give disjoint draws (use one for training, another for testing).
        sample_rate: samples per second (16000 by default; 44100 for Stable Audio's rate).
        channels: 1 (mono) or 2 (stereo, constant-power pan).
        clip_seconds: length of every clip; the sound lasts ``seconds_total`` <= this, silence after.
        min_seconds: shortest ``seconds_total`` drawn.
        instruments: the instruments drawn from (a subset of ``organ, pluck, bell, drums``).
        midi_low: lowest MIDI pitch (48 = C3).
        midi_high: highest MIDI pitch (84 = C6).
    """

    kind: Literal["notes", "phrases", "pieces"] = "notes"
    length: int = 2048
    seed: int = 0
    sample_rate: int = 16000
    channels: int = 1
    clip_seconds: float = 1.0
    min_seconds: float = 0.4
    instruments: tuple[str, ...] = PITCHED
    midi_low: int = MIDI_RANGE[0]
    midi_high: int = MIDI_RANGE[1]

    def __post_init__(self) -> None:
        self.instruments = tuple(self.instruments)
        if self.kind not in ("notes", "phrases", "pieces"):
            raise ValueError(f"kind: expected notes, phrases or pieces, got {self.kind!r}")
        bad = [i for i in self.instruments if i not in INSTRUMENTS]
        if bad or not self.instruments:
            raise ValueError(
                f"instruments: expected a non-empty subset of {INSTRUMENTS}, got {self.instruments}"
            )
        if self.length < 1:
            raise ValueError(f"length: expected >= 1, got {self.length}")
        if self.sample_rate < 4000:
            raise ValueError(f"sample_rate: expected >= 4000 Hz, got {self.sample_rate}")
        if self.channels not in (1, 2):
            raise ValueError(f"channels: expected 1 (mono) or 2 (stereo), got {self.channels}")
        if not 0 < self.min_seconds <= self.clip_seconds:
            raise ValueError(
                f"min_seconds: expected in (0, clip_seconds={self.clip_seconds}], got {self.min_seconds}"
            )
        if not MIDI_RANGE[0] <= self.midi_low <= self.midi_high <= MIDI_RANGE[1] + 12:
            raise ValueError(
                f"midi_low, midi_high: expected 48 <= low <= high <= 96, got {self.midi_low}, {self.midi_high}"
            )
        if midi_to_hz(self.midi_high) * 2 > self.sample_rate / 2:
            raise ValueError(
                f"sample_rate: {self.sample_rate} Hz cannot hold MIDI {self.midi_high}'s second harmonic"
            )

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sample_rate)


@dataclass
class SynthExample:
    """One generated clip and everything it was made from.

    ``audio``: ``(channels, samples)`` float32. ``pitches``, ``onsets`` (s), ``durations`` (s): one entry per
    note. ``sections``: ``(label, start_s, end_s)`` of a piece, else empty.
    """

    audio: torch.Tensor
    caption: str
    instrument: str
    pitches: list[int]
    onsets: list[float]
    durations: list[float]
    bpm: float
    loudness_db: float
    seconds_start: float
    seconds_total: float
    sections: list[tuple[str, float, float]] = field(default_factory=list)

    def as_item(self) -> dict[str, Any]:
        """The dataset item: ``audio``, ``caption``, ``seconds_start``, ``seconds_total`` and the metadata."""
        meta = {k: v for k, v in vars(self).items() if k != "audio"}
        return {"audio": self.audio, **meta}


# ----------------------------------------------------------------------------------------- instruments


def _envelope(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    """Linear attack of ``attack`` s, sustain, raised-cosine release over the last ``release`` s (ends at 0)."""
    env = np.ones(n)
    a = min(n, max(1, int(attack * sr)))
    env[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    r = min(n - a, max(1, int(release * sr)))
    if r > 0:
        env[n - r :] *= 0.5 * (1 + np.cos(np.linspace(0, math.pi, r)))
    return env


def _organ(f: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    out = np.zeros(n)
    for k in range(1, 9):
        if k * f >= sr / 2:
            break
        out += np.sin(2 * math.pi * k * f * t + rng.uniform(0, 2 * math.pi)) / k
    return out * _envelope(n, sr, 0.02, 0.05)


def _pluck(f: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Karplus-Strong at ``4 sr``: ``y[m] = d (y[m - N] + y[m - N - 1]) / 2`` (period ``N + 1/2`` samples)."""
    over = 4
    srh = sr * over
    period = srh / f - 0.5  # the two-point average delays by half a sample
    big_n = max(2, round(period))
    total = n * over
    decay = 0.5 ** (1.0 / (f * 0.6))  # about -6 dB per 0.6 s, per round trip
    y = np.zeros(total + big_n + 1)
    y[1 : big_n + 1] = rng.uniform(-1, 1, big_n)  # y[0] is the zero before the burst
    for start in range(big_n + 1, total + big_n + 1, big_n):
        stop = min(start + big_n, total + big_n + 1)
        m = stop - start
        y[start:stop] = (
            decay
            * 0.5
            * (y[start - big_n : start - big_n + m] + y[start - big_n - 1 : start - big_n - 1 + m])
        )
    wave = torch.from_numpy(y[1 : total + 1]).float()
    down = AF.resample(wave, srh, sr).numpy().astype(np.float64)[:n]
    return down * _envelope(n, sr, 0.002, 0.03)


def _bell(f: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    index = 2.5 * np.exp(-t / 0.06)  # a bright inharmonic strike decaying to the carrier
    mod = np.sin(2 * math.pi * 1.4 * f * t)
    out = np.sin(2 * math.pi * f * t + index * mod + rng.uniform(0, 2 * math.pi))
    return out * np.exp(-t / 0.8) * _envelope(n, sr, 0.003, 0.05)


def _drum(name: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    noise = rng.standard_normal(n)
    if name == "kick":
        freq = 45 + 105 * np.exp(-t / 0.04)
        phase = 2 * math.pi * np.cumsum(freq) / sr
        out = np.sin(phase) * np.exp(-t / 0.25) + 0.1 * noise * np.exp(-t / 0.01)
    elif name == "snare":
        band = AF.bandpass_biquad(torch.from_numpy(noise).float(), sr, 2000.0, 0.7).numpy()
        out = 0.8 * band * np.exp(-t / 0.12) + 0.4 * np.sin(2 * math.pi * 180 * t) * np.exp(-t / 0.08)
    else:
        high = AF.highpass_biquad(torch.from_numpy(noise).float(), sr, min(7000.0, 0.4 * sr)).numpy()
        out = high * np.exp(-t / 0.04)
    return out * _envelope(n, sr, 0.001, 0.02)


def render_note(
    instrument: str, pitch: int, seconds: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """One note (or drum hit: ``pitch`` 36 kick, 38 snare, 42 hat) of ``seconds`` as float64 ``(samples,)``,
    normalised to peak 1 and silent at its last sample."""
    n = max(8, round(seconds * sample_rate))
    if instrument == "drums":
        name = {v: k for k, v in DRUMS.items()}.get(pitch)
        if name is None:
            raise ValueError(f"pitch: drums play {DRUMS} (General MIDI), got {pitch}")
        wave = _drum(name, n, sample_rate, rng)
    elif instrument in PITCHED:
        synth = {"organ": _organ, "pluck": _pluck, "bell": _bell}[instrument]
        wave = synth(midi_to_hz(pitch), n, sample_rate, rng)
    else:
        raise ValueError(f"instrument: expected one of {INSTRUMENTS}, got {instrument!r}")
    peak = np.abs(wave).max()
    return wave / peak if peak > 0 else wave


# ----------------------------------------------------------------------------------------- examples


def _caption(instrument: str, pitches: list[int], bpm: float | None, forms: tuple[str, ...] = ()) -> str:
    who = INSTRUMENT_WORDS[instrument]
    if instrument == "drums":
        inv = {v: k for k, v in DRUMS.items()}
        notes = " ".join(inv[p] for p in pitches)
    else:
        notes = " ".join(midi_to_name(p) for p in pitches)
    verb = "play" if instrument == "drums" else "plays"
    text = f"{who} {verb} {notes}"
    if bpm is not None:
        text += f" at {int(bpm)} bpm"
    if forms:
        text += ", " + " ".join(forms)
    return text


def _draw_pitch(rng: np.random.Generator, cfg: SynthConfig, instrument: str) -> int:
    if instrument == "drums":
        return int(rng.choice(list(DRUMS.values())))
    return int(rng.integers(cfg.midi_low, cfg.midi_high + 1))


def _phrase(
    rng: np.random.Generator, cfg: SynthConfig, instrument: str, beat: float, span: float
) -> list[tuple[int, float, float]]:
    """Notes ``(pitch, onset, duration)`` on a grid of ``beat`` seconds within ``[0, span)``: a walk on the
    major scale of a random tonic (or drum hits)."""
    beats = max(1, int(span / beat))
    count = int(min(beats, rng.integers(2, 7)))
    slots = np.sort(rng.choice(beats, size=count, replace=False))
    tonic = int(rng.integers(cfg.midi_low, max(cfg.midi_low + 1, cfg.midi_high - 11)))
    degree = int(rng.integers(0, 7))
    notes = []
    for i, slot in enumerate(slots):
        nxt = slots[i + 1] if i + 1 < len(slots) else beats
        if instrument == "drums":
            pitch = _draw_pitch(rng, cfg, instrument)
        else:
            degree = int(np.clip(degree + rng.integers(-2, 3), 0, 13))
            pitch = tonic + 12 * (degree // 7) + MAJOR[degree % 7]
            pitch = int(np.clip(pitch, cfg.midi_low, cfg.midi_high))
        notes.append((pitch, float(slot * beat), float((nxt - slot) * beat)))
    return notes


def _mix(
    notes: list[tuple[int, float, float]], instrument: str, n: int, cfg: SynthConfig, rng: np.random.Generator
) -> np.ndarray:
    out = np.zeros(n)
    sr = cfg.sample_rate
    for pitch, onset, duration in notes:
        start = round(onset * sr)
        wave = render_note(instrument, pitch, duration, sr, rng)[: n - start]
        out[start : start + len(wave)] += wave
    return out


def generate_example(cfg: SynthConfig, index: int) -> SynthExample:
    """Example ``index`` of the set ``cfg`` (a pure function of ``(cfg, index)``)."""
    rng = np.random.default_rng([cfg.seed, index, 0xA0D10])
    sr, n = cfg.sample_rate, cfg.clip_samples
    instrument = str(rng.choice(cfg.instruments))
    total = float(rng.uniform(cfg.min_seconds, cfg.clip_seconds))
    total = round(total * sr) / sr
    bpm = float(rng.choice([80, 90, 100, 110, 120, 130, 140]))
    sections: list[tuple[str, float, float]] = []
    if cfg.kind == "notes":
        notes = [(_draw_pitch(rng, cfg, instrument), 0.0, total)]
        caption = _caption(instrument, [notes[0][0]], None)
    elif cfg.kind == "phrases":
        notes = _phrase(rng, cfg, instrument, 60.0 / bpm, total)
        caption = _caption(instrument, [p for p, _, _ in notes], bpm)
    else:
        form = SECTION_FORMS[int(rng.integers(len(SECTION_FORMS)))]
        span = total / len(form)
        phrases = {
            label: _phrase(rng, cfg, instrument, 60.0 / bpm / 2, span) for label in dict.fromkeys(form)
        }
        notes = []
        for k, label in enumerate(form):
            notes += [(p, k * span + o, d) for p, o, d in phrases[label]]
            sections.append((label, k * span, (k + 1) * span))
        caption = _caption(instrument, [p for p, _, _ in phrases[form[0]]], bpm, form)
    mono = _mix(notes, instrument, n, cfg, rng)
    mono[round(total * sr) :] = 0.0
    loudness = float(rng.uniform(-14.0, -3.0))
    peak = np.abs(mono).max()
    mono = mono / peak * 10 ** (loudness / 20) if peak > 0 else mono
    if cfg.channels == 2:
        pan = float(rng.uniform(0.15, 0.85)) * math.pi / 2
        audio = np.stack([math.cos(pan) * mono, math.sin(pan) * mono]) * math.sqrt(2)
        audio = audio / max(1.0, np.abs(audio).max() / 10 ** (loudness / 20))
    else:
        audio = mono[None]
    return SynthExample(
        audio=torch.from_numpy(audio.astype(np.float32)),
        caption=caption,
        instrument=instrument,
        pitches=[p for p, _, _ in notes],
        onsets=[o for _, o, _ in notes],
        durations=[d for _, _, d in notes],
        bpm=bpm,
        loudness_db=loudness,
        seconds_start=0.0,
        seconds_total=total,
        sections=sections,
    )


class SyntheticMusic(torch.utils.data.Dataset):
    """The synthetic set as a map-style dataset: item ``i`` is :func:`generate_example` ``(config, i)`` as a dict
    (``audio`` ``(channels, samples)``, ``caption``, ``seconds_start``, ``seconds_total``, ``instrument``,
    ``pitches``, ``onsets``, ``durations``, ``bpm``, ``loudness_db``, ``sections``)."""

    def __init__(self, config: SynthConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else SynthConfig()
        self.config = SynthConfig(**{**vars(base), **overrides}) if overrides else base

    def __len__(self) -> int:
        return self.config.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index: {index} out of range for {len(self)} examples")
        return self.example(index % len(self)).as_item()

    def example(self, index: int) -> SynthExample:
        """Example ``index`` with its metadata as a :class:`SynthExample`."""
        return generate_example(self.config, index)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate
