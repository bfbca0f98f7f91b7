"""LoRA concept test on CPU (diff-image): a base that never saw the colour red learns it from 8 images.

1. Train an unconditional pixel DiT on 16x16 shapes scenes drawn WITHOUT red (``holdout=("red",)``).
2. Fine-tune a rank-8 LoRA adapter (DreamBooth-style) on 8 scenes that each hold a red object.
3. Draw samples from the base and from the base + adapter with the same noise; the concept rate is the
   fraction of samples holding a red object, read from the pixels (``diff_image.lora.concept_rate``).

Target of the issue: the concept appears in at least half of the adapter's samples and in none of the base's.

    OMP_NUM_THREADS=1 uv run python benchmarks/image/image_lora_concept.py    # ~15 min on a busy 2-core CPU
    uv run python benchmarks/image/image_lora_concept.py --quick                # seconds: checks the script

Prints the metrics and writes benchmarks/results/image_lora_concept[-quick]-cpu.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from diff_image.config import ImageDataConfig, ImageLoraConfig, ImageModelConfig, ImageTrainConfig
from diff_image.io import save_grid
from diff_image.lora import concept_images, concept_rate, finetune_lora
from diff_image.pipeline import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="Tiny run that checks the script, not the target."
    )
    parser.add_argument("--out", type=Path, default=Path("runs/image_lora_concept"))
    parser.add_argument("--steps", type=int, default=1500, help="Base training steps.")
    parser.add_argument("--lora-steps", type=int, default=300)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    steps, lora_steps, n = (3, 2, 4) if args.quick else (args.steps, args.lora_steps, args.samples)
    concept = "red"
    start = time.perf_counter()
    cfg = ImageTrainConfig(
        model=ImageModelConfig(backbone="dit", conditioning="none", width=32 if args.quick else 96,
                               depth=1 if args.quick else 4, heads=4, patch_size=4),
        data=ImageDataConfig(dataset="shapes", image_size=16, shapes_length=20_000, holdout=(concept,)),
        objective="v", batch_size=64,
        train=replace(ImageTrainConfig().train, steps=steps, lr=1e-3, warmup_steps=min(100, steps - 1),
                      ema_decay=0.995, output_dir=str(args.out / "base"), device=args.device, seed=0),
    )  # fmt: skip
    pipe = train(cfg)
    base_seconds = time.perf_counter() - start
    gen = torch.Generator(device=pipe.device).manual_seed(0)
    before = pipe.sample(n, sampler="dpmpp_2m", steps=20, generator=gen).cpu()
    images, _ = concept_images(concept, 8, image_size=16)
    lora = ImageLoraConfig(
        concept=concept, num_images=8, rank=8, alpha=8, steps=lora_steps, batch_size=8, lr=1e-3
    )
    finetune_lora(pipe, images, lora, args.out / "lora")
    gen.manual_seed(0)
    after = pipe.sample(n, sampler="dpmpp_2m", steps=20, generator=gen).cpu()
    args.out.mkdir(parents=True, exist_ok=True)
    save_grid(torch.cat([before, after]), args.out / "before_after.png", nrow=8)
    metrics = {
        "concept_rate_base": concept_rate(before, concept),
        "concept_rate_lora": concept_rate(after, concept),
        "adapter_bytes": (args.out / "lora" / "adapter" / "adapter_model.safetensors").stat().st_size,
        "base_train_seconds": base_seconds,
        "total_seconds": time.perf_counter() - start,
        "samples": n,
    }
    for k, v in metrics.items():
        print(f"{k:22s} {v}")
    report = {"quick": args.quick, "metrics": metrics}
    variant = "quick" if args.quick else None
    path = write_result(
        report, script="image_lora_concept", variant=variant, device="cpu", packages=("diff-image",)
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
