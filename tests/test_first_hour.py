"""A new user's first hour with diff-image (issue #23), played end to end on the CPU at tiny size.

Fresh folders of generated images in the three layouts a user brings (flat; class sub-folders;
``metadata.jsonl`` captions) are trained with ``diffuse image train`` on the defaults (only the model and the
number of steps are made tiny), sampled with ``diffuse image sample`` on its defaults, and the samples are
checked not to be noise: their per-channel mean and standard deviation must be much closer to the training
images' than to those of pure noise (what the issue's user got: a pipeline whose EMA weights were still mostly
the random initialisation). The data have distinctive colours, so the statistics tell the cases apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffcore.cli import build_app
from PIL import Image
from typer.testing import CliRunner

SIZE = 16
PER_KIND = 24
TINY_MODEL = ["--set", "model.width=32", "--set", "model.depth=2", "--set", "model.heads=2",
              "--set", "model.patch_size=2"]  # fmt: skip
TINY_TEXT = ["--set", "model.text_width=32", "--set", "model.text_layers=1", "--set", "model.text_heads=2"]
STEPS = "200"

# Two looks with distinctive colours: a flat background with a small square of another colour.
LOOKS = {
    "orange": ((235, 130, 20), (20, 60, 70)),
    "green": ((40, 190, 70), (10, 80, 30)),
}

runner = CliRunner()


def _draw(look: str, rng: np.random.Generator) -> Image.Image:
    background, square = LOOKS[look]
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = background
    side = int(rng.integers(3, 7))
    x, y = rng.integers(0, SIZE - side, 2)
    img[y : y + side, x : x + side] = square
    return Image.fromarray(img)


def _write(folder: Path, looks: list[str], layout: str) -> None:
    """``PER_KIND`` images of each look under ``folder`` in ``layout`` (flat, classes or captions)."""
    rng = np.random.default_rng(0)
    lines = []
    for look in looks:
        for i in range(PER_KIND):
            name = f"{look}/{i:02d}.png" if layout == "classes" else f"{look}-{i:02d}.png"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            _draw(look, rng).save(folder / name)
            lines.append(json.dumps({"file_name": name, "text": f"a picture in {look}"}))
    if layout == "captions":
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def _stats(images: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation of ``(N, C, H, W)`` images in [-1, 1]: ``(2C,)``."""
    return torch.cat([images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3))])


def _data_stats(look: str) -> torch.Tensor:
    rng = np.random.default_rng(1)
    images = np.stack([np.asarray(_draw(look, rng)) for _ in range(256)])
    return _stats(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0)


def _read(folder: Path) -> torch.Tensor:
    files = sorted(folder.glob("*.png"))
    assert files, f"no samples in {folder}"
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


NOISE_STATS = _stats(torch.randn(256, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)).clamp(-1, 1))


def _assert_like(samples: torch.Tensor, look: str, other: str | None = None) -> None:
    """The samples' statistics are much closer to ``look``'s data than to noise (and than to ``other``'s data)."""
    got = _stats(samples)
    to_data = float((got - _data_stats(look)).norm())
    to_noise = float((got - NOISE_STATS).norm())
    assert to_data < 0.3 * to_noise, (look, to_data, to_noise, got.tolist())
    if other is not None:
        to_other = float((got - _data_stats(other)).norm())
        assert to_data < 0.3 * to_other, (look, other, to_data, to_other, got.tolist())


def _diffuse(*args: str) -> str:
    result = runner.invoke(build_app(), list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _train(folder: Path, out: Path, *extra: str) -> str:
    return _diffuse("image", "train", "--dataset", "folder", "--data-path", str(folder), "--steps", STEPS,
                    "--out", str(out), "--device", "cpu", *TINY_MODEL, *extra)  # fmt: skip


def _sample(out: Path, name: str, *extra: str) -> torch.Tensor:
    folder = out / name
    _diffuse("image", "sample", "--pipeline", str(out / "pipeline"), "-n", "32", "--out", str(folder),
             "--device", "cpu", *extra)  # fmt: skip
    return _read(folder / "images")


def test_the_statistics_tell_data_from_noise():
    """The check itself: noise fails it, the data pass it, and the two looks are told apart."""
    rng = np.random.default_rng(2)
    orange = torch.from_numpy(np.stack([np.asarray(_draw("orange", rng)) for _ in range(32)]))
    orange = orange.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    _assert_like(orange, "orange", other="green")
    noise = torch.randn(32, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3)).clamp(-1, 1)
    with pytest.raises(AssertionError):
        _assert_like(noise, "orange")
    with pytest.raises(AssertionError):
        _assert_like(orange, "green")


@pytest.mark.slow
def test_a_flat_folder_trains_unconditionally_and_samples_are_not_noise(tmp_path):
    _write(tmp_path / "data", ["orange"], "flat")
    out = _train(tmp_path / "data", tmp_path / "run")
    assert "note: conditioning: none" in out and f"note: image size: {SIZE} px" in out
    assert "unconditional" in out and "warning" not in out  # the EMA is not the initialisation
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert (
        saved["config"]["model"]["conditioning"] == "none" and saved["config"]["data"]["image_size"] == SIZE
    )
    _assert_like(_sample(tmp_path / "run", "samples"), "orange")  # the default guidance applies to none
    r = runner.invoke(build_app(), ["image", "sample", "--pipeline", str(tmp_path / "run" / "pipeline"),
                                    "--guidance", "2", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 2 and "guidance" in r.output and "unconditional" in r.output
    r = runner.invoke(build_app(), ["image", "train", "--dataset", "folder", "--data-path", str(tmp_path / "data"),
                                    "--out", str(tmp_path / "run"), "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 2 and "--resume latest" in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_class_folders_train_a_class_conditional_model(tmp_path):
    _write(tmp_path / "data", ["orange", "green"], "classes")
    out = _train(tmp_path / "data", tmp_path / "run")
    assert "note: conditioning: class (2 class sub-folders" in out and "class-conditional" in out
    green, orange = 0, 1  # the classes are the sorted sub-folder names
    _assert_like(_sample(tmp_path / "run", "orange", "--label", str(orange)), "orange", other="green")
    _assert_like(_sample(tmp_path / "run", "green", "--label", str(green)), "green", other="orange")


@pytest.mark.slow
def test_captions_train_a_text_to_image_model(tmp_path):
    _write(tmp_path / "data", ["orange", "green"], "captions")
    out = _train(tmp_path / "data", tmp_path / "run", *TINY_TEXT)
    assert "note: conditioning: text (captions of 48 images" in out and "text-conditioned" in out
    _assert_like(
        _sample(tmp_path / "run", "orange", "--prompt", "a picture in orange"), "orange", other="green"
    )
    _assert_like(
        _sample(tmp_path / "run", "green", "--prompt", "a picture in green"), "green", other="orange"
    )
