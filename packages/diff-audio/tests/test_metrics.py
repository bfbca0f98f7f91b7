"""Each metric against an answer known in closed form."""

import math

import numpy as np
import pytest
import torch
from diff_audio.metrics import (
    clipping_rate,
    estimate_f0,
    frechet_distance,
    midi_from_hz,
    mrstft_distance,
    onset_f1,
    onset_times,
    pitch_accuracy,
    si_sdr,
    silence_rate,
    sound_end_seconds,
    structure_score,
    timing_accuracy,
)

SR = 16000


def tone(f, seconds=0.5, sr=SR, harmonics=1, stop=None):
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    wave = sum(torch.sin(2 * math.pi * k * f * t) / k for k in range(1, harmonics + 1))
    if stop is not None:
        wave[int(stop * sr) :] = 0
    return (0.5 * wave / wave.abs().max()).float()[None]


@pytest.mark.parametrize("f", [110.0, 130.81, 261.63, 440.0, 1046.5])
@pytest.mark.parametrize("harmonics", [1, 6])
def test_yin_finds_the_fundamental_of_pure_and_harmonic_tones(f, harmonics):
    assert estimate_f0(tone(f, harmonics=harmonics), SR) == pytest.approx(f, rel=0.005)


def test_yin_is_nan_on_silence_and_noise_is_not_a_note():
    assert math.isnan(estimate_f0(torch.zeros(1, 8000), SR))
    acc, errors = pitch_accuracy([torch.zeros(1, 8000)], [60], SR)
    assert acc == 0.0 and math.isnan(errors[0])


def test_pitch_accuracy_counts_within_one_semitone():
    a4 = tone(440.0)
    near = tone(440.0 * 2 ** (0.8 / 12))  # 0.8 semitone sharp
    far = tone(440.0 * 2 ** (1.5 / 12))
    acc, errors = pitch_accuracy([a4, near, far], [69, 69, 69], SR)
    assert acc == pytest.approx(2 / 3)
    assert errors[1] == pytest.approx(0.8, abs=0.02) and errors[2] == pytest.approx(1.5, abs=0.02)
    assert midi_from_hz(261.6256) == pytest.approx(60.0, abs=1e-4)


def test_sound_end_and_timing_accuracy_find_where_a_tone_stops():
    clip = tone(220.0, seconds=1.0, stop=0.6)
    assert sound_end_seconds(clip, SR) == pytest.approx(0.6, abs=0.02)
    assert sound_end_seconds(torch.zeros(1, SR), SR) == 0.0
    acc, err = timing_accuracy([clip, clip], [0.5, 0.9], SR)
    assert acc == 0.5 and err[0] == pytest.approx(0.1, abs=0.02) and err[1] == pytest.approx(-0.3, abs=0.02)


def test_onsets_of_a_note_train_are_found_within_30_ms():
    clip = torch.zeros(1, SR)
    truth = [0.1, 0.35, 0.6, 0.8]
    for on in truth:
        clip[:, int(on * SR) : int(on * SR) + 2000] += tone(330.0, seconds=2000 / SR) * torch.linspace(
            1, 0, 2000
        )
    assert onset_f1(onset_times(clip, SR), truth, tolerance=0.03) == 1.0
    assert onset_f1([0.1, 0.5], [0.1, 0.35]) == pytest.approx(0.5)
    assert onset_f1([], []) == 1.0


def test_si_sdr_is_scale_invariant_and_matches_a_known_snr():
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(1, 16000, generator=gen, dtype=torch.float64)
    assert si_sdr(3.0 * ref, ref) > 100
    noise = torch.randn(1, 16000, generator=gen, dtype=torch.float64)
    noise = noise - (noise.flatten() @ ref.flatten()) / (ref.flatten() @ ref.flatten()) * ref  # orthogonal
    noise = noise / noise.norm() * ref.norm() * 10 ** (-10 / 20)  # 10 dB below the reference
    assert si_sdr(ref + noise, ref) == pytest.approx(10.0, abs=0.05)


def test_mrstft_distance_is_zero_for_identical_clips_and_grows_with_distortion():
    clip = tone(220.0, harmonics=4)
    assert mrstft_distance(clip, clip) == pytest.approx(0.0, abs=1e-6)
    noisy = clip + 0.01 * torch.randn(clip.shape, generator=torch.Generator().manual_seed(0))
    assert 0 < mrstft_distance(noisy, clip) < mrstft_distance(clip + 10 * (noisy - clip), clip)


def test_silence_and_clipping_rates():
    assert silence_rate(
        [torch.zeros(1, 10), torch.full((1, 10), 1e-4), torch.full((1, 10), 0.5)]
    ) == pytest.approx(2 / 3)
    assert clipping_rate([torch.tensor([[1.0, -1.0, 0.2, 0.3]])]) == 0.5


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 3))
    b = rng.standard_normal((20000, 3)) * 2.0 + np.array([1.0, 0.0, 0.0])
    # |mu|^2 + tr(I + 4I - 2 * 2I) = 1 + 3
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="feature"):
        frechet_distance(a[:, :2], b)


def test_structure_score_rewards_repeats_and_is_one_half_without_structure():
    a, b = tone(220.0, 0.5, harmonics=3), tone(330.0, 0.5, harmonics=1)
    aba = torch.cat([a, b, a], dim=-1)
    sections = [("verse", 0.0, 0.5), ("chorus", 0.5, 1.0), ("verse", 1.0, 1.5)]
    assert structure_score(aba, SR, sections) == 1.0
    assert structure_score(aba, SR, [("verse", 0.0, 0.5), ("verse", 0.5, 1.0), ("chorus", 1.0, 1.5)]) < 0.5
    assert math.isnan(structure_score(aba, SR, [("a", 0.0, 0.5), ("b", 0.5, 1.0), ("c", 1.0, 1.5)]))
