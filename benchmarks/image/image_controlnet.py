"""ControlNet on the shapes data: does the requested layout appear? (diff-image issue, spatial control).

Trains (or loads, ``--pipeline``) a text-to-image base on shapes, keeps it frozen, trains one ControlNet per
``--kind`` (MMDiT: SD3-ControlNet copy of the first joint blocks; U-Net / DiT: the classic copies) and samples
held-out scenes' maps and captions with and without control from the same noise. The measure is the IoU of
the generated foreground with the scene's object pixels (``diff_image.metrics.control``): control works when
``iou_control`` is clearly above ``iou_no_control``.

    uv run python benchmarks/image/image_controlnet.py --pipeline runs/image_full/shapes_run/pipeline  # GPU, trained base
    uv run python benchmarks/image/image_controlnet.py            # trains a small MMDiT base first (GPU, or CPU)
    uv run python benchmarks/image/image_controlnet.py --quick    # tiny CPU run that checks the script works

Prints a table and writes benchmarks/results/image_controlnet[-quick]-<device>.json and grids under --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from diff_image.config import ImageDataConfig, ImageModelConfig, ImageTrainConfig
from diff_image.io import save_grid
from diff_image.pipeline import ImagePipeline, train
from diff_image.pipeline.control import evaluate_control, render_control, train_controlnets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def _base(args: argparse.Namespace, device: str) -> ImagePipeline:
    if args.pipeline is not None:
        return ImagePipeline.from_pretrained(args.pipeline, device=device)
    model = ImageModelConfig(backbone="mmdit", conditioning="text", width=args.width, depth=args.depth,
                             heads=max(1, args.width // 32), patch_size=2, text_width=args.width // 2)  # fmt: skip
    train_settings = replace(ImageTrainConfig().train, steps=args.base_steps, lr=args.base_lr,
                             warmup_steps=min(100, args.base_steps - 1), output_dir=str(args.out / "base_run"),
                             device=device, mixed_precision="bf16" if device == "cuda" else "no")  # fmt: skip
    cfg = ImageTrainConfig(model=model, objective="rectified_flow", batch_size=args.batch_size, train=train_settings,
                           data=ImageDataConfig(dataset="shapes", image_size=args.image_size,
                                                shapes_length=args.shapes_length))  # fmt: skip
    return train(cfg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="Tiny CPU run (checks the script, not the result).")
    p.add_argument(
        "--pipeline", type=Path, default=None, help="A trained shapes pipeline (else one is trained)."
    )
    p.add_argument("--out", type=Path, default=Path("runs/image_controlnet"), help="Runs and grids.")
    p.add_argument("--kind", action="append", default=None, help="edges | segmentation | boxes (repeatable).")
    p.add_argument("--image-size", type=int, default=32, help="Base training: image side.")
    p.add_argument("--width", type=int, default=256, help="Base training: MMDiT width.")
    p.add_argument("--depth", type=int, default=6, help="Base training: MMDiT depth.")
    p.add_argument("--base-steps", type=int, default=4000, help="Base training steps.")
    p.add_argument("--base-lr", type=float, default=5e-4, help="Base learning rate.")
    p.add_argument("--steps", type=int, default=2000, help="ControlNet training steps.")
    p.add_argument("--lr", type=float, default=1e-4, help="ControlNet learning rate.")
    p.add_argument("--num-blocks", type=int, default=0, help="Copied blocks per ControlNet (0: half).")
    p.add_argument("--batch-size", type=int, default=128, help="Batch size of both trainings.")
    p.add_argument("--shapes-length", type=int, default=50_000, help="Generated training scenes.")
    p.add_argument("--samples", type=int, default=256, help="Held-out scenes to sample.")
    p.add_argument("--sample-steps", type=int, default=30, help="Sampler steps.")
    p.add_argument("--guidance", type=float, default=3.0, help="CFG scale on the caption.")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto.")
    args = p.parse_args()
    if args.quick:
        args.image_size, args.width, args.depth, args.base_steps, args.steps = 16, 32, 2, 4, 4
        args.batch_size, args.shapes_length, args.samples, args.sample_steps, args.device = 8, 32, 4, 4, "cpu"
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    kinds = args.kind or ["segmentation"]
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pipe = _base(args, device)
    base_s = time.perf_counter() - start
    train_controlnets(pipe, kinds, args.steps, args.out / "control_run", batch_size=args.batch_size, lr=args.lr,
                      shapes_length=args.shapes_length, num_blocks=args.num_blocks or None, cond_dropout=0.1)  # fmt: skip
    control_s = time.perf_counter() - start - base_s
    metrics, ex, controlled, plain = evaluate_control(pipe, args.samples, steps=args.sample_steps,
                                                      guidance=args.guidance)  # fmt: skip
    pipe.save_pretrained(args.out / "pipeline")
    rows = torch.stack([render_control(ex.maps, ex.kinds), controlled, plain], dim=1)[:16]
    save_grid(rows.flatten(0, 1), args.out / "grid.png", nrow=3)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    metrics.update(base_seconds=base_s, controlnet_seconds=control_s, backbone=type(pipe.model).__name__)
    report = {"quick": args.quick, "device": name, "settings": {k: str(v) for k, v in vars(args).items()},
              "metrics": metrics}  # fmt: skip
    for key in ("iou_control", "iou_no_control", "iou_gain", "base_seconds", "controlnet_seconds"):
        print(f"{key:20s} {metrics[key]:10.4f}")
    variant = "quick" if args.quick else None
    out = write_result(
        report, script="image_controlnet", variant=variant, device=device, packages=("diff-image",)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
