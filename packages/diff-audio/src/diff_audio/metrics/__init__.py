"""The field's own measures, offline: pitch, timing, onsets, reconstruction (:mod:`diff_audio.metrics.signal`),
instrument accuracy, FAD-local, structure adherence (:mod:`diff_audio.metrics.features`)."""

from diff_audio.metrics.features import (
    InstrumentClassifier,
    frechet_distance,
    log_mel_stats,
    structure_score,
    train_instrument_classifier,
)
from diff_audio.metrics.signal import (
    clipping_rate,
    estimate_f0,
    midi_from_hz,
    mrstft_distance,
    onset_f1,
    onset_times,
    pitch_accuracy,
    si_sdr,
    silence_rate,
    sound_end_seconds,
    timing_accuracy,
)

__all__ = [
    "InstrumentClassifier",
    "clipping_rate",
    "estimate_f0",
    "frechet_distance",
    "log_mel_stats",
    "midi_from_hz",
    "mrstft_distance",
    "onset_f1",
    "onset_times",
    "pitch_accuracy",
    "si_sdr",
    "silence_rate",
    "sound_end_seconds",
    "structure_score",
    "timing_accuracy",
    "train_instrument_classifier",
]
