"""Regenerate the pictures of the tutorials (docs/images/tutorials/) and of the roadmap (docs/images/roadmap/)
from the examples.

Each example runs at the step count below (its default where none is given; on a CPU: minutes each), under
``runs/tutorial_pictures/<example>``, and the files the pages show are copied under ``docs/images``. The
step counts are the ones the pages state; change both together. PNGs are re-encoded with a 64-colour palette
to keep the repository small.

    uv run python scripts/tutorial_pictures.py                   # every tutorial
    uv run python scripts/tutorial_pictures.py --only video_shapes audio_notes
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PICTURES = ROOT / "docs" / "images"

# example -> (training steps or None for the default, [(file under the example's --out, path under docs/images)])
TUTORIALS: dict[str, tuple[int | None, list[tuple[str, str]]]] = {
    "ddim_vs_ddpm": (None, [("ddim_vs_ddpm.png", "roadmap/ddim_vs_ddpm.png")]),
    "fast_solvers": (None, [("convergence.png", "roadmap/convergence.png")]),
    "guidance_2d": (None, [("guidance.png", "roadmap/guidance.png")]),
    "image_digits": (1500, [("digits.png", "tutorials/image_digits.png")]),
    "video_shapes": (
        150,
        [
            ("samples/grid.png", "tutorials/video_grid.png"),
            ("samples/sample_000.gif", "tutorials/video_sample.gif"),
        ],
    ),
    "audio_notes": (
        300,
        [
            ("spectrograms.png", "tutorials/audio_spectrograms.png"),
            ("sample_0.wav", "tutorials/audio_sample.wav"),
        ],
    ),
    "splats_3d": (
        200,
        [
            ("samples/grid.png", "tutorials/3d_grid.png"),
            ("samples/turntable_000.gif", "tutorials/3d_turntable.gif"),
        ],
    ),
    "protein_backbones": (300, [("backbones.png", "tutorials/protein_backbones.png")]),
    "crystals": (300, [("samples/samples.png", "tutorials/crystals.png")]),
    "language_bd3lm": (300, [("samples.txt", "tutorials/language_samples.txt")]),
    "timeseries_text": (200, [("samples/samples.png", "tutorials/timeseries.png")]),
}


def make(example: str) -> None:
    steps, files = TUTORIALS[example]
    out = ROOT / "runs" / "tutorial_pictures" / example
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(ROOT / "examples" / f"{example}.py"), "--out", str(out)]
    cmd += ["--steps", str(steps)] if steps is not None else []
    print("+", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    for src, dst in files:
        (PICTURES / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / src, PICTURES / dst)
        if dst.endswith(".png"):
            shrink(PICTURES / dst)


def shrink(path: Path, colours: int = 64) -> None:
    """Re-encode a PNG with an adaptive palette (plots and sample grids stay readable at a fraction of the size)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colours)
    small.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(TUTORIALS), default=sorted(TUTORIALS))
    for example in parser.parse_args().only:
        make(example)


if __name__ == "__main__":
    main()
