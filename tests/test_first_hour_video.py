"""A new user's first hour with diff-video (issue #23): a folder of their own short videos (MP4 files with
captions in ``metadata.jsonl``, the layout the README describes), trained with ``diffuse video train --data``
and sampled with ``diffuse video sample``, at tiny size on the CPU.

The videos are the user's own small ones: 8 frames of 16x16, one coloured square (red or green, named in the
caption) drifting on a black background; the user asks for ``--frames 4`` clips of them. Only the network and
the number of steps are made tiny, with the quick benchmark's learning rate (a tiny network needs it to learn
in a few hundred steps: at the default 3e-4, 200 steps of width 32 gave dark noise, not squares). The check:
the generated clips must look like the data, not noise: a mostly black background with a bright square of the
prompted colour. Their fraction of near-black pixels and the mean colour of their bright pixels must be much
closer to the data's (about 0.85 black, a saturated red or green) than to noise's (almost no black, grey), and
than to the other colour's. Motion direction is not checked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from diffcore.cli import build_app
from typer.testing import CliRunner

pytest.importorskip("diff_video")
av = pytest.importorskip("av")

runner = CliRunner()
SEED = os.environ.get("FIRST_HOUR_SEED", "0")  # to check the margins over seeds by hand
SIZE, LENGTH, FRAMES = 16, 8, 4
COLOURS = {"red": (220, 40, 30), "green": (40, 200, 50)}
PER_COLOUR = 16
STEPS = os.environ.get("FIRST_HOUR_STEPS", "300")  # FIRST_HOUR_STEPS=1: an untrained model, which must fail
# The quick benchmark's network width and learning rate (diff_video.bench.BenchSettings.quick), half its depth.
TINY = ["--set", "model.width=64", "--set", "model.depth=2", "--set", "model.heads=2", "--lr", "2e-3",
        "--set", "model.text_width=32", "--set", "model.text_layers=1", "--set", "model.text_heads=2"]  # fmt: skip


def _video(colour: str, rng: np.random.Generator) -> np.ndarray:
    """``(LENGTH, SIZE, SIZE, 3)`` uint8: a square of side 5-7 drifting half a pixel a frame on black."""
    side = int(rng.integers(5, 8))
    x, y = rng.integers(0, SIZE - side - LENGTH // 2, 2)
    dx, dy = rng.choice([(1, 0), (0, 1), (1, 1)])
    frames = np.zeros((LENGTH, SIZE, SIZE, 3), np.uint8)
    for t in range(LENGTH):
        u, v = x + (dx * t) // 2, y + (dy * t) // 2
        frames[t, v : v + side, u : u + side] = COLOURS[colour]
    return frames


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _read_mp4(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _stats(clips: np.ndarray) -> np.ndarray:
    """Of uint8 clips ``(..., H, W, 3)``: the fraction of near-black pixels and the mean colour (in [0, 1]) of
    the bright ones."""
    x = clips.reshape(-1, 3).astype(np.float64) / 255
    bright = x.max(1) > 0.35
    return np.array([1.0 - bright.mean(), *x[bright].mean(0)])


def _drawn_stats(colour: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    return _stats(np.stack([_video(colour, rng) for _ in range(64)]))


def _noise(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Standard normal noise in [-1, 1] written as uint8 pixels: what an untrained model's sampler gives."""
    return ((rng.normal(size=shape).clip(-1, 1) + 1) * 127.5).astype(np.uint8)


NOISE_STATS = _stats(_noise((64, FRAMES, SIZE, SIZE, 3), np.random.default_rng(0)))


def _assert_like(clips: np.ndarray, data: np.ndarray, other: np.ndarray) -> None:
    """The clips' statistics are much closer to the ``data``'s than to noise's and to the ``other`` colour's."""
    got = _stats(clips)
    to_data, to_noise = np.abs(got - data).max(), np.abs(got - NOISE_STATS).max()
    print(f"black fraction, bright RGB: samples {got.round(3)}, data {data.round(3)}, other {other.round(3)}, "
          f"noise {NOISE_STATS.round(3)}")  # fmt: skip
    assert to_data < 0.3 * to_noise, (got, data, NOISE_STATS)
    assert to_data < 0.5 * np.abs(got - other).max(), (got, data, other)


def test_the_statistics_tell_squares_on_black_from_noise():
    """The check itself: clips like the data pass; noise, a grey scene and the other colour's square fail."""
    rng = np.random.default_rng(2)
    red, green = _drawn_stats("red"), _drawn_stats("green")
    clips = np.stack([_video("red", rng) for _ in range(8)])
    _assert_like(clips, red, green)
    with pytest.raises(AssertionError):
        _assert_like(clips, green, red)
    with pytest.raises(AssertionError):
        _assert_like(_noise(clips.shape, rng), red, green)
    with pytest.raises(AssertionError):
        _assert_like(np.full(clips.shape, 128, np.uint8), red, green)
    with pytest.raises(AssertionError):  # the right colour, but over a grey background rather than black
        _assert_like((0.6 * clips.astype(float) + 100).astype(np.uint8), red, green)


def _diffuse(*args: str) -> None:
    result = runner.invoke(build_app(), list(args))
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_a_folder_of_my_own_videos_trains_and_samples_look_like_them(tmp_path):
    folder = tmp_path / "my_videos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for colour in COLOURS:
        for i in range(PER_COLOUR):
            name = f"{colour}_{i:02d}.mp4"
            _write_mp4(folder / name, _video(colour, rng))
            lines.append(json.dumps({"file_name": name, "text": f"a {colour} square"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    data = {c: _stats(np.stack([_read_mp4(f) for f in sorted(folder.glob(f"{c}_*.mp4"))])) for c in COLOURS}

    run = tmp_path / "run"
    _diffuse("video", "train", "--data", str(folder), "--frames", str(FRAMES), "--steps", STEPS, "--out", str(run),
             "--device", "cpu", "--seed", SEED, *TINY)  # fmt: skip
    assert (run / "pipeline").is_dir()

    for colour in COLOURS:
        out = tmp_path / f"samples_{colour}"
        _diffuse("video", "sample", "--pipeline", str(run / "pipeline"), "--prompt", f"a {colour} square",
                 "-n", "8", "--out", str(out), "--device", "cpu", "--seed", SEED)  # fmt: skip
        files = sorted(out.glob("sample_*.mp4"))
        assert len(files) == 8
        clips = np.stack([_read_mp4(f) for f in files])
        assert clips.shape == (8, FRAMES, SIZE, SIZE, 3)
        _assert_like(clips, data[colour], data[next(c for c in COLOURS if c != colour)])
