"""Files: wav / flac round trips through soundfile, out-of-range audio refused, PNG spectrograms that decode."""

import struct
import zlib

import numpy as np
import pytest
import torch
from diff_audio.io import read_audio, save_spectrogram_grid, write_audio


@pytest.mark.parametrize(("suffix", "tolerance"), [(".wav", 1 / 2**15), (".flac", 1 / 2**23)])
def test_stereo_round_trip_within_the_formats_quantisation(tmp_path, suffix, tolerance):
    audio = 0.9 * torch.sin(torch.linspace(0, 300, 4410))[None].repeat(2, 1)
    audio[1] *= -0.5
    path = write_audio(tmp_path / f"x{suffix}", audio, 44100)
    back, rate = read_audio(path)
    assert rate == 44100 and back.shape == (2, 4410)
    assert (back - audio).abs().max() <= tolerance


def test_audio_outside_the_unit_range_or_not_finite_is_refused_not_clipped(tmp_path):
    with pytest.raises(ValueError, match=r"peaks at 1\.500"):
        write_audio(tmp_path / "loud.wav", torch.full((1, 10), 1.5), 8000)
    with pytest.raises(ValueError, match="NaN"):
        write_audio(tmp_path / "nan.wav", torch.tensor([[0.0, float("nan")]]), 8000)
    with pytest.raises(ValueError, match="must end in"):
        write_audio(tmp_path / "x.mp4", torch.zeros(1, 10), 8000)
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ValueError, match="cannot read"):
        (tmp_path / "bad.wav").write_bytes(b"junk")
        read_audio(tmp_path / "bad.wav")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat = data[data.index(b"IDAT") + 4 :]
    raw = zlib.decompress(idat[: struct.unpack(">I", data[data.index(b"IDAT") - 4 : data.index(b"IDAT")])[0]])
    assert len(raw) == height * (1 + 3 * width)  # one filter byte + RGB per row
    return width, height


def test_spectrogram_grid_is_a_valid_png_with_one_tile_per_clip(tmp_path):
    clips = [0.5 * torch.sin(torch.arange(8000) * f)[None] for f in (0.1, 0.2, 0.3)]
    path = save_spectrogram_grid(clips, tmp_path / "grid.png", 16000, ncol=2, height=32)
    width, height = _png_size(path.read_bytes())
    assert height == 2 * (32 + 2) and width >= 2 * 128
    assert np.isfinite(width)
