"""Local image folders: both layouts, corrupt files skipped and reported, clear errors, transforms."""

import json

import numpy as np
import pytest
import torch
from diff_image.data.folder import ImageFolderDataset
from diff_image.data.transforms import ImageTransform, pil_to_tensor
from PIL import Image


def _png(path, colour, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _corrupt(root):
    (root / "garbage.png").write_bytes(b"this is not a png at all")
    good = root / "good.png"
    _png(good, (1, 2, 3), size=(64, 64))
    data = good.read_bytes()
    good.unlink()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    return [root / "garbage.png", root / "truncated.png"]


def test_class_folders_with_corrupt_files_are_skipped_and_reported(tmp_path):
    _png(tmp_path / "cats" / "a.png", (255, 0, 0))
    _png(tmp_path / "cats" / "nested" / "b.jpg", (250, 0, 0))
    _png(tmp_path / "dogs" / "c.png", (0, 0, 255))
    bad = _corrupt(tmp_path / "dogs")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image, silently ignored")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        ds = ImageFolderDataset(tmp_path, ImageTransform(size=8))
    assert ds.layout == "classes" and ds.classes == ["cats", "dogs"]
    assert sorted(s.path for s in ds.skipped) == sorted(bad) and all(s.reason for s in ds.skipped)
    assert len(ds) == 3
    labels = [ds[i]["label"] for i in range(3)]
    assert labels == [0, 0, 1]
    dog = ds[2]["image"]
    assert dog.shape == (3, 8, 8)
    assert torch.allclose(dog[:, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))


def test_file_breaking_after_the_scan_is_skipped_not_fatal(tmp_path):
    _png(tmp_path / "x" / "a.png", (0, 255, 0))
    _png(tmp_path / "x" / "b.png", (0, 0, 255))
    ds = ImageFolderDataset(tmp_path, ImageTransform(size=8))
    (tmp_path / "x" / "a.png").write_bytes(b"broken now")
    with pytest.warns(UserWarning, match="skipping unreadable"):
        item = ds[0]
    assert item["index"] == 1 and len(ds.skipped) == 1


def test_captions_from_metadata_jsonl(tmp_path):
    _png(tmp_path / "img" / "1.png", (255, 255, 0))
    _png(tmp_path / "img" / "2.png", (0, 255, 255))
    _corrupt(tmp_path)
    lines = [
        {"file_name": "img/1.png", "text": "a yellow picture"},
        "{not json",
        {"file_name": "img/missing.png", "text": "gone"},
        {"file_name": "garbage.png", "text": "corrupt"},
        {"file_name": "img/2.png", "text": "a cyan picture"},
        {"file_name": "img/2.png"},
    ]
    (tmp_path / "metadata.jsonl").write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    )
    with pytest.warns(UserWarning):
        ds = ImageFolderDataset(tmp_path, ImageTransform(size=6))
    assert ds.layout == "captions"
    assert [ds[i]["caption"] for i in range(len(ds))] == ["a yellow picture", "a cyan picture"]
    assert len(ds.skipped) == 4  # bad JSON, missing file, corrupt image, no "text" key
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 6, 6) and batch["caption"] == ["a yellow picture", "a cyan picture"]


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no readable images"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "only.png").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="1 file"):
        ImageFolderDataset(tmp_path)


def test_transform_resize_crop_flip(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    centre = ImageTransform(size=10, interpolation="nearest")(img)
    assert centre.shape == (3, 10, 10)
    assert (centre[:, :, :5] == 1).all() and (centre[:, :, 5:] == -1).all()
    flipped = ImageTransform(size=10, interpolation="nearest", flip_prob=1.0)(img)
    assert torch.equal(flipped, centre.flip(-1))
    rand = ImageTransform(size=10, crop="random", interpolation="nearest")
    a = rand(img, torch.Generator().manual_seed(3))
    assert torch.equal(a, rand(img, torch.Generator().manual_seed(3)))
    crops = {rand(img, torch.Generator().manual_seed(s)).mean().item() for s in range(20)}
    assert len(crops) > 3
    grey = ImageTransform(size=10, mode="L")(img)
    assert grey.shape == (1, 10, 10)
    with pytest.raises(ValueError, match="crop"):
        ImageTransform(crop="middle")


def test_pil_to_tensor_range_and_alpha():
    rgba = Image.new("RGBA", (2, 2), (0, 0, 0, 0))  # fully transparent -> white background
    assert torch.equal(pil_to_tensor(rgba), torch.ones(3, 2, 2))
    assert torch.equal(pil_to_tensor(Image.new("RGB", (2, 2), (0, 0, 0))), -torch.ones(3, 2, 2))
