"""Files a person can open (MP4 through PyAV, GIF, PNG) and the video-folder loader read back through one
decoding interface (PyAV, and decord where installed)."""

import json

import numpy as np
import pytest
import torch
from diff_video.data.decode import available_decoders, probe, read_frames, read_video
from diff_video.data.folder import BucketBatchSampler, VideoFolder
from diff_video.data.shapes import MovingShapes, ShapesConfig
from diff_video.io import save_clips, save_gif, save_mp4, to_uint8_frames
from PIL import Image

DECODERS = available_decoders()


@pytest.fixture(scope="module")
def clips():
    cfg = ShapesConfig(
        frames=10, height=16, width=24, num_objects=(1,), events=(), length=4, shapes=("square",)
    )
    return MovingShapes(cfg).render(4)


@pytest.mark.parametrize(
    "decoder", ["pyav", "auto"]
)  # auto: decord where installed, PyAV for 24-pixel frames
def test_an_mp4_written_with_pyav_reads_back_close_to_the_clip(tmp_path, clips, decoder):
    clip = clips[0][0]
    save_mp4(clip, tmp_path / "a.mp4", fps=5, crf=0)
    info = probe(tmp_path / "a.mp4", decoder)
    assert (info.frames, info.height, info.width) == (10, 16, 24) and info.fps == pytest.approx(5)
    back = read_video(tmp_path / "a.mp4", decoder)
    assert back.shape == clip.shape
    assert (back - clip).abs().mean() < 0.05  # yuv420 chroma subsampling blurs colour edges a little
    frames = read_frames(tmp_path / "a.mp4", [9, 0, 0], decoder)
    assert frames.shape == (3, 16, 24, 3) and np.array_equal(frames[1], frames[2])


def test_decord_and_pyav_give_the_same_frames(tmp_path):
    if "decord" not in DECODERS:
        pytest.skip("decord (the decord extra) is not installed")
    cfg = ShapesConfig(frames=8, height=64, width=64, num_objects=(2,), events=(), length=1)
    save_mp4(MovingShapes(cfg)[0]["x"], tmp_path / "b.mp4")
    a = read_frames(tmp_path / "b.mp4", [0, 3, 7], "pyav")
    b = read_frames(tmp_path / "b.mp4", [0, 3, 7], "decord")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_gif_strip_and_grid_are_images_a_person_can_open(tmp_path, clips):
    written = save_clips(clips[0][:2], tmp_path, captions=clips[1][:2])
    names = sorted(p.name for p in written)
    assert names == ["captions.json", "grid.png", "sample_000.gif", "sample_000.mp4", "sample_000.png",
                     "sample_001.gif", "sample_001.mp4", "sample_001.png"]  # fmt: skip
    with Image.open(tmp_path / "sample_000.gif") as gif:
        assert gif.n_frames == 10 and gif.size == (24 * 4, 16 * 4)
    with Image.open(tmp_path / "sample_000.png") as strip:
        assert strip.size == (10 * 25 - 1, 16)
    assert json.loads((tmp_path / "captions.json").read_text())["sample_001"] == clips[1][1]


def test_values_outside_minus_one_one_are_refused_not_clipped(tmp_path):
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        save_gif(torch.full((3, 2, 8, 8), 1.5), tmp_path / "x.gif")
    assert to_uint8_frames(torch.ones(1, 2, 4, 4)).shape == (2, 4, 4, 3)


def _write_folder(root, clips, names):
    for name, clip in zip(names, clips):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        save_mp4(clip, root / name)


def test_a_metadata_folder_gives_captioned_clips_and_skips_unreadable_files(tmp_path, clips):
    _write_folder(tmp_path, clips[0][:2], ["a.mp4", "sub/b.mkv"])
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    rows = [{"file_name": "a.mp4", "text": clips[1][0]}, {"file_name": "sub/b.mkv", "text": clips[1][1]},
            {"file_name": "broken.mp4", "text": "x"}]  # fmt: skip
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    folder = VideoFolder(tmp_path, frames=4, stride=2, decoder="pyav")
    assert len(folder) == 2 and folder.clip_shape == (3, 4, 16, 24)
    assert [p.name for p, _ in folder.skipped] == ["broken.mp4"] and "broken.mp4" in folder.notes[0]
    item = folder[0]
    assert item["caption"] == clips[1][0] and item["x"].shape == (3, 4, 16, 24)
    assert folder.frame_indices(0, start=1) == [1, 3, 5, 7]
    first = folder.clip(0, start=0)
    assert (first - clips[0][0][:, ::2][:, :4]).abs().mean() < 0.05


def test_a_bad_metadata_line_is_named_with_its_file_and_line(tmp_path, clips):
    _write_folder(tmp_path, clips[0][:1], ["a.mp4"])
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.mp4", "text": "x"}\n{"file_name": "a.mp4"}\n')
    with pytest.raises(ValueError, match=r"metadata\.jsonl, line 2"):
        VideoFolder(tmp_path, frames=4, decoder="pyav")


def test_class_folders_resizing_and_buckets(tmp_path, clips):
    _write_folder(tmp_path, clips[0][:3], ["cats/a.mp4", "dogs/b.mp4", "dogs/c.webm"])
    folder = VideoFolder(tmp_path, frames=3, decoder="pyav")
    assert folder.class_names == ["cats", "dogs"] and folder.labels == [0, 1, 1] and folder[2]["y"] == 1
    with pytest.raises(ValueError, match="is 16x24, expected 8x8"):
        VideoFolder(tmp_path, frames=3, height=8, width=8, decoder="pyav")
    crop = VideoFolder(tmp_path, frames=3, height=8, width=8, resize="center-crop", decoder="pyav")
    assert crop[0]["x"].shape == (3, 3, 8, 8)
    too_long = VideoFolder(tmp_path / "cats", frames=3, stride=1, decoder="pyav")
    assert len(too_long) == 1
    with pytest.raises(ValueError, match="no usable video"):
        VideoFolder(tmp_path / "cats", frames=30, decoder="pyav")
    batches = list(BucketBatchSampler([(4, 8, 8), (4, 16, 16), (4, 8, 8)], batch_size=4))
    assert sorted(map(sorted, batches)) == [[0, 2], [1]]
