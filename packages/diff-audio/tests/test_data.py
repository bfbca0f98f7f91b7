"""The synthetic music set and the folder loader: deterministic, with the parameters it claims, and honest
about files it cannot read."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from diff_audio.data import (
    AudioFolder,
    SynthConfig,
    SyntheticMusic,
    midi_to_name,
    name_to_midi,
    read_metadata,
)
from diff_audio.data.synth import INSTRUMENTS, PITCHED
from diff_audio.io import write_audio
from diff_audio.metrics import estimate_f0, midi_from_hz, sound_end_seconds, structure_score


def test_note_names_round_trip_and_bad_names_are_refused():
    assert name_to_midi("C4") == 60 and name_to_midi("A4") == 69 and name_to_midi("F#3") == 54
    assert all(name_to_midi(midi_to_name(m)) == m for m in range(48, 85))
    with pytest.raises(ValueError, match="note"):
        name_to_midi("H2")


def test_the_same_seed_and_index_give_the_same_clip_and_other_seeds_differ():
    a, b = SyntheticMusic(length=4, seed=3), SyntheticMusic(length=4, seed=3)
    assert torch.equal(a[2]["audio"], b[2]["audio"]) and a[2]["caption"] == b[2]["caption"]
    assert not torch.equal(a[2]["audio"], SyntheticMusic(length=4, seed=4)[2]["audio"])


@pytest.mark.parametrize("instrument", PITCHED)
def test_every_pitched_instrument_sounds_at_the_captioned_note(instrument):
    ds = SyntheticMusic(length=6, instruments=(instrument,), seed=11)
    for i in range(6):
        ex = ds.example(i)
        assert midi_to_name(ex.pitches[0]) in ex.caption.split()
        f0 = estimate_f0(ex.audio, ds.sample_rate)
        assert abs(midi_from_hz(f0) - ex.pitches[0]) < 0.5, (instrument, ex.pitches[0], f0)


def test_clips_are_silent_after_seconds_total_and_peak_at_their_loudness():
    ds = SyntheticMusic(length=12, instruments=INSTRUMENTS, min_seconds=0.3)
    for i in range(12):
        ex = ds.example(i)
        cut = round(ex.seconds_total * ds.sample_rate)
        assert ex.audio.shape == (1, ds.config.clip_samples)
        assert torch.all(ex.audio[:, cut:] == 0)
        end = sound_end_seconds(ex.audio, ds.sample_rate)
        if ex.instrument in PITCHED:  # sustained notes last until seconds_total
            assert abs(end - ex.seconds_total) < 0.06
        else:  # a drum hit decays on its own, before seconds_total
            assert end <= ex.seconds_total + 0.02
        assert abs(20 * np.log10(float(ex.audio.abs().max())) - ex.loudness_db) < 1e-3


def test_stereo_at_44k_pans_one_source_over_two_channels():
    ds = SyntheticMusic(length=2, sample_rate=44100, channels=2, clip_seconds=0.5, min_seconds=0.3)
    audio = ds[0]["audio"]
    assert audio.shape == (2, 22050)
    left, right = audio[0], audio[1]
    ratio = float(left.abs().max() / right.abs().max())
    assert torch.allclose(left / left.abs().max(), right / right.abs().max(), atol=1e-5) and ratio > 0


def test_pieces_repeat_their_sections_and_captions_name_the_form():
    ds = SyntheticMusic(kind="pieces", length=3, clip_seconds=6.0, min_seconds=5.0)
    for i in range(3):
        ex = ds.example(i)
        labels = [s[0] for s in ex.sections]
        assert " ".join(labels) in ex.caption
        assert len(set(labels)) < len(labels)  # some label repeats
        assert structure_score(ex.audio, ds.sample_rate, ex.sections) > 0.9


def test_bad_settings_name_the_parameter():
    with pytest.raises(ValueError, match="instruments"):
        SynthConfig(instruments=("kazoo",))
    with pytest.raises(ValueError, match="channels"):
        SynthConfig(channels=3)
    with pytest.raises(ValueError, match="min_seconds"):
        SynthConfig(min_seconds=2.0, clip_seconds=1.0)


def _tone(seconds, rate, channels=1, f=220.0):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * f * t)
    return np.stack([wave] * channels).astype(np.float32)


def test_folder_reads_metadata_captions_resamples_crops_and_reports_unreadable_files(tmp_path):
    write_audio(tmp_path / "a.wav", _tone(2.0, 8000), 8000)  # longer than the clip: cropped
    write_audio(tmp_path / "b.flac", _tone(0.5, 16000, channels=2), 16000)  # shorter: padded, stereo -> mono
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    write_audio(tmp_path / "unlisted.wav", _tone(0.5, 16000), 16000)
    lines = [{"file": "a.wav", "caption": "a low tone"}, {"file": "b.flac", "caption": "a short tone"},
             {"file": "broken.wav", "caption": "x"}]  # fmt: skip
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    folder = AudioFolder(tmp_path, sample_rate=16000, channels=1, clip_seconds=1.0, seed=0)
    assert [e.path.name for e in folder.entries] == ["a.wav", "b.flac"]
    skipped = {p.name: why for p, why in folder.skipped}
    assert "unreadable" in skipped["broken.wav"] and "metadata" in skipped["unlisted.wav"]
    a, b = folder[0], folder[1]
    assert a["audio"].shape == b["audio"].shape == (1, 16000)
    assert a["caption"] == "a low tone" and a["seconds_total"] == pytest.approx(2.0)
    assert 0.0 <= a["seconds_start"] <= 1.0
    assert (
        abs(midi_from_hz(estimate_f0(a["audio"], 16000)) - midi_from_hz(220.0)) < 0.1
    )  # resampled 8k -> 16k
    assert b["seconds_start"] == 0 and b["seconds_total"] == pytest.approx(0.5)
    assert torch.all(b["audio"][:, 8000:] == 0)


def test_folder_takes_class_subfolders_as_captions(tmp_path):
    for name in ("organ", "piano"):
        write_audio(tmp_path / name / "x.wav", _tone(1.0, 16000), 16000)
    folder = AudioFolder(tmp_path, clip_seconds=0.5)
    assert folder.classes == ["organ", "piano"]
    assert [folder[i]["caption"] for i in range(2)] == ["organ", "piano"]
    assert [folder[i]["label"] for i in range(2)] == [0, 1]


def test_a_bad_metadata_line_names_the_file_and_line(tmp_path):
    (tmp_path / "metadata.jsonl").write_text('{"file": "a.wav", "caption": "ok"}\n{"file": 3}\n')
    with pytest.raises(ValueError, match=r"metadata.jsonl:2"):
        read_metadata(tmp_path / "metadata.jsonl")


def test_a_folder_without_readable_audio_is_an_error(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"nope")
    with pytest.raises(ValueError, match="no readable audio"):
        AudioFolder(tmp_path)
    sf.write(str(tmp_path / "y.wav"), np.zeros((100, 1)), 8000)
    assert len(AudioFolder(tmp_path, clip_seconds=0.1)) == 1
