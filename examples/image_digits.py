"""Images: train a class-conditional DiT on 8x8 digits, sample a grid with guidance, evaluate it (diff-image).

Uses diff-image's contract: ``train(ImageTrainConfig)`` (diffcore's Trainer, EMA, condition dropout for
classifier-free guidance), ``sample(pipeline, ImageSampleConfig)`` and ``evaluate`` (the accuracy of a
classifier trained on real digits, and the Frechet distance in its features against the test split).

    uv run python examples/image_digits.py                 # 1500 steps, a few minutes on a CPU
    uv run python examples/image_digits.py --steps 8000    # the full benchmark's length (use a GPU)
"""

import argparse
from dataclasses import replace
from pathlib import Path

from diff_image import (
    ImageDataConfig,
    ImageEvaluateConfig,
    ImageModelConfig,
    ImageSampleConfig,
    ImageTrainConfig,
    evaluate,
    sample,
    train,
)
from diff_image.io import save_grid

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=1500)
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/image_digits"))
args = parser.parse_args()
steps, width, evaluated = (10, 32, 50) if args.smoke else (args.steps, 96, 500)

config = ImageTrainConfig(
    model=ImageModelConfig(backbone="dit", conditioning="class", width=width, depth=4, heads=4),
    data=ImageDataConfig(dataset="digits"),
    objective="v",
)
config.train = replace(config.train, steps=steps, warmup_steps=min(100, steps // 2), output_dir=str(args.out / "run"),
                       device="cpu", progress_bar=False, tensorboard=False, resume="auto")  # fmt: skip
pipe = train(config)  # the run's checkpoints, log and pipeline/ under args.out / "run"
images = sample(pipe, ImageSampleConfig(num_samples=40, labels=tuple(range(10)), guidance=2.0, device="cpu"))
save_grid(images, args.out / "digits.png", nrow=10)  # (40, 1, 8, 8) in [-1, 1]: four of each digit per column
metrics = evaluate(pipe, ImageEvaluateConfig(num_samples=evaluated, guidance=2.0, device="cpu"))
print({k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
