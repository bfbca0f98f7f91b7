"""Where a training step of the shapes text-to-image model spends its time (CPU measurements).

All times are CPU seconds of one core (``time.process_time`` with one torch thread), so other processes on
the machine do not inflate them. Splits one step at batch ``--batch`` into: scene rendering (per item, as the old per-item DataLoader did),
caption tokenisation, the per-item collate, the gather from the pre-rendered device tensors that replaced all
three, and the model's forward + backward (FLOPs counted by ``torch.utils.flop_counter``); then the cost of
sampling (one network evaluation per sampler step and CFG branch) and of the pixel adherence check.

    OMP_NUM_THREADS=2 uv run python benchmarks/image/image_shapes_profile.py            # ~2 min
    OMP_NUM_THREADS=2 uv run python benchmarks/image/image_shapes_profile.py --quick    # seconds

Writes benchmarks/results/image_shapes_profile[-quick]-cpu.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from diff_image.bench import BenchSettings, _shapes_config
from diff_image.data.shapes import PALETTE, RELATIONS, SHAPES, ShapesConfig, ShapesDataset
from diff_image.data.shapes_render import render_shapes
from diff_image.metrics import caption_adherence
from diff_image.models import TextConditionedModel, TextEncoder, build_backbone, caption_vocabulary
from diff_image.pipeline.datasets import DeviceBatches, _Items, collate, tokenize_unique
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def _timed(fn, repeat: int = 1) -> float:
    """CPU seconds of this process per call (robust to other processes sharing the cores; one torch thread)."""
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Tiny sizes (checks the script).")
    parser.add_argument("--batch", type=int, default=256, help="Training batch size of the GPU run.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = BenchSettings.full()
    b = 8 if args.quick else args.batch
    cfg = _shapes_config(settings, Path("unused"), ("red",))
    shapes_cfg = ShapesConfig(image_size=cfg.data.image_size, holdout=cfg.data.holdout)
    items = _Items(ShapesDataset(10_000, seed=0, config=shapes_cfg), False, True)
    out: dict[str, float] = {"batch": float(b)}
    batch_items: list = []
    out["render_per_item_step_s"] = _timed(
        lambda: batch_items.__setitem__(slice(None), [items[i] for i in range(b)])
    )
    out["collate_step_s"] = _timed(lambda: collate(batch_items))
    rendered = render_shapes(4 * b, seed=0, config=shapes_cfg, workers=0)
    words = caption_vocabulary([*sorted(set(rendered.captions)), " ".join((*PALETTE, *SHAPES, *RELATIONS))])
    m = cfg.model
    enc = TextEncoder.from_scratch(words, m.text_width, m.text_layers, m.text_heads, m.text_max_length)
    caps = [it["caption"] for it in batch_items]
    out["tokenize_step_s"] = _timed(lambda: enc.tokenize(caps), 3)
    ids = tokenize_unique(rendered.captions, enc.tokenize)
    data = DeviceBatches(rendered.images, ids, "cpu")
    idx = torch.randperm(len(data))[:b].tolist()
    out["cached_gather_step_s"] = _timed(lambda: data.__getitems__(idx), 5)
    width, depth = (64, 1) if args.quick else (m.width, m.depth)
    backbone = build_backbone(
        type(m)(**{**vars(m), "width": width, "depth": depth, "heads": max(1, width // 64)}),
        (3, cfg.data.image_size, cfg.data.image_size), context_dim=enc.width, pooled_dim=enc.width,
    )  # fmt: skip
    net = TextConditionedModel(backbone, enc)
    fb = min(b, 16)  # a CPU forward + backward of the whole batch takes minutes; time a slice and scale
    batch = data.__getitems__(idx[:fb])
    t = torch.rand(fb)

    def step() -> None:
        net(batch["x"], t, input_ids=batch["input_ids"]).square().mean().backward()

    step()  # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    out["model_gflop_per_sample_fwd_bwd"] = counter.get_total_flops() / fb / 1e9
    out["model_params_m"] = sum(p.numel() for p in net.parameters()) / 1e6
    out["model_fwd_bwd_step_s"] = _timed(step) * b / fb
    with torch.no_grad():
        fwd = _timed(lambda: net(batch["x"], t, input_ids=batch["input_ids"]))
    n_eval, nfe = 2 * settings.shapes_eval, 2 * settings.shapes_sample_steps  # CFG: two branches per step
    out["sampling_eval_set_s"] = fwd / fb * n_eval * nfe
    imgs = rendered.images[:64].float() / 127.5 - 1.0
    out["adherence_per_image_s"] = _timed(lambda: caption_adherence(imgs, rendered.captions[:64])) / 64
    for k, v in out.items():
        print(f"{k:34s} {v:12.4f}")
    report = {"quick": args.quick, "device": "cpu", "metrics": out}
    variant = "quick" if args.quick else None
    path = write_result(
        report, script="image_shapes_profile", variant=variant, device="cpu", packages=("diff-image",)
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
