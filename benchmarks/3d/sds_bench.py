"""diff-3d benchmark of the 2D-prior part of issue #27: score distillation and sparse-view completion.

    PYTHONPATH=$(ls -d packages/*/src | paste -sd:) python benchmarks/3d/sds_bench.py --out runs/sds_bench  # one GPU
    OMP_NUM_THREADS=1 uv run python benchmarks/3d/sds_bench.py --quick                                    # CPU, minutes

Steps: (1) train the class-conditional prior on true renders of the primitives (one class per kind x colour);
(2) SDS (DreamFusion, CFG 100) and CSD (classifier score distillation, lower scale) on five prompts, each from
the same blob and seed; per prompt: silhouette IoU against the prompted primitive over 8 orbit views (plain and
best over scalings), the initial blob's IoU, the saturation statistics of the renders and of the true renders,
the Janus check; (3) train the view-conditioned prior on pairs of renders and run sparse-view completion on
held-out objects: held-out-view PSNR of (3 views + pseudo-views) against (3 views only).

Targets (GPU): silhouette IoU >= 0.7 per prompt, Janus count 0, sparse-view gain >= 2 dB. The quick mode is a
small version on the CPU that checks the whole path; its numbers are not the targets'. Writes
benchmarks/results/sds_bench[-quick]-<device>.json; PLY files, turntable GIFs and grids under --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import torch
from diff_3d.config import (
    FitSettings,
    PriorConfig,
    PriorNetwork,
    PriorViews,
    SDSSettings,
    SparseViewSettings,
    ViewPriorConfig,
)
from diff_3d.data.primitives import Primitive
from diff_3d.io import write_grid, write_ply, write_turntable
from diff_3d.prior import train_prior, train_view_prior
from diff_3d.render import render_views
from diff_3d.sds import evaluate_object, init_blob, optimise_sds
from diff_3d.sparse_view import complete_sparse_views
from diffcore.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

PROMPTS = ("a red sphere", "a blue cube", "a green cylinder", "a yellow cone", "a purple torus")
SPARSE_OBJECTS = (
    Primitive("capsule", "orange"),
    Primitive("cube", "cyan", "medium"),
    Primitive("cone", "red"),
)


@dataclasses.dataclass
class Settings:
    """One benchmark size."""

    resolution: int
    prior_steps: int
    prior_width: int
    channel_mult: tuple[int, ...]
    attention_levels: tuple[int, ...]
    views_per_class: int
    view_prior_steps: int
    view_objects: int
    view_pairs: int
    batch_size: int
    sds: SDSSettings
    csd_guidance: float
    sparse: SparseViewSettings
    prompts: tuple[str, ...]
    sparse_objects: tuple[Primitive, ...]
    train_seconds: float

    @classmethod
    def full(cls) -> Settings:
        return cls(resolution=32, prior_steps=6000, prior_width=96, channel_mult=(1, 2, 2), attention_levels=(2,), views_per_class=128, view_prior_steps=6000, view_objects=384,
                   view_pairs=32768, batch_size=128, sds=SDSSettings(steps=250, views_per_step=4, num_gaussians=1024),
                   csd_guidance=20.0, sparse=SparseViewSettings(fit=FitSettings(steps=250), sample_steps=25),
                   prompts=PROMPTS, sparse_objects=SPARSE_OBJECTS, train_seconds=100.0)  # fmt: skip

    @classmethod
    def quick(cls) -> Settings:
        return cls(resolution=16, prior_steps=300, prior_width=32, channel_mult=(1, 2), attention_levels=(1,), views_per_class=12, view_prior_steps=250, view_objects=48,
                   view_pairs=2048, batch_size=32, sds=SDSSettings(steps=60, views_per_step=2, num_gaussians=384),
                   csd_guidance=20.0, sparse=SparseViewSettings(fit=FitSettings(steps=60), sample_steps=10,
                   num_gaussians=256, pseudo_views=4, held_out_views=4), prompts=PROMPTS[:3],
                   sparse_objects=SPARSE_OBJECTS[:1], train_seconds=100.0)  # fmt: skip


def _train_config(steps: int, out: Path, device: str, seconds: float) -> TrainConfig:
    return TrainConfig(steps=steps, lr=1e-3, lr_schedule="cosine", warmup_steps=min(20, steps // 10), min_lr_ratio=0.1,
                       ema_decay=0.999, log_every=100, checkpoint_every=None, keep_last=1, tensorboard=False,
                       output_dir=str(out), device=device, max_seconds=seconds, progress_bar=False)  # fmt: skip


def run_sds(prior, s: Settings, out: Path, device: str) -> dict:
    rows = {}
    for method, guidance in (("sds", s.sds.guidance), ("csd", s.csd_guidance)):
        cfg = dataclasses.replace(s.sds, method=method, guidance=guidance)
        for i, prompt in enumerate(s.prompts):
            gen = torch.Generator().manual_seed(i)
            blob = init_blob(cfg.num_gaussians, cfg.init_radius, cfg.init_opacity, gen)
            shape = prior.classes[prior.label(prompt)]
            t0 = time.perf_counter()
            res = optimise_sds(prior, prompt, cfg, generator=gen, init=blob, progress=False)
            seconds = time.perf_counter() - t0
            scores = evaluate_object(prior, res.gaussians, shape, generator=torch.Generator().manual_seed(0))
            init_scores = evaluate_object(prior, blob.to(prior.device), shape)
            name = f"{method}-{prompt.replace(' ', '_')}"
            write_ply(res.gaussians.to("cpu"), out / f"{name}.ply")
            from diff_3d.cameras import orbit_cameras

            v = prior.views
            cams = orbit_cameras(24, v.radius, 20.0, width=v.resolution, height=v.resolution)
            with torch.no_grad():
                frames = render_views(res.gaussians, [c.to(prior.device) for c in cams], v.background).cpu()
            write_turntable(out / f"{name}.gif", frames, scale=4)
            rows[name] = {"method": method, "guidance": guidance, "prompt": prompt, "seconds": round(seconds, 1),
                          "iou_init": init_scores["iou"], **scores}  # fmt: skip
            print(f"{name:32s} iou {scores['iou']:.3f} (scaled {scores['iou_scaled']:.3f} at x{scores['scale']}, "
                  f"init {init_scores['iou']:.3f}) sat {scores['saturation']:.3f} (true {scores['saturation_true']:.3f}) "
                  f"clipped {scores['clipped']:.3f} janus {scores['janus']} {seconds:.0f}s", flush=True)  # fmt: skip
    return rows


def summarise(rows: dict, prompts: tuple[str, ...]) -> dict:
    out = {}
    for method in ("sds", "csd"):
        r = [v for v in rows.values() if v["method"] == method]

        def mean(k: str, r: list = r) -> float:
            return sum(float(x[k]) for x in r) / len(r)

        out[method] = {"iou_mean": mean("iou"), "iou_min": min(x["iou"] for x in r), "iou_scaled_mean": mean("iou_scaled"),
                       "iou_init_mean": mean("iou_init"), "saturation_mean": mean("saturation"),
                       "saturation_true_mean": mean("saturation_true"), "clipped_mean": mean("clipped"),
                       "janus_count": sum(bool(x["janus"]) for x in r),
                       "prompts_iou_ge_0.7": sum(x["iou"] >= 0.7 for x in r), "prompts": len(prompts)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="The small CPU version (a few minutes).")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/sds_bench"), help="Folder for the runs and files."
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args()
    s = Settings.quick() if args.quick else Settings.full()
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    started = time.perf_counter()
    net = PriorNetwork(width=s.prior_width, channel_mult=s.channel_mult, attention_levels=s.attention_levels)
    views = PriorViews(resolution=s.resolution)

    t0 = time.perf_counter()
    prior_cfg = PriorConfig(views_per_class=s.views_per_class, views=views, network=net, batch_size=s.batch_size,
                            train=_train_config(s.prior_steps, args.out / "prior_run", device, s.train_seconds))  # fmt: skip
    prior = train_prior(prior_cfg)
    prior_seconds = time.perf_counter() - t0
    print(f"prior: {len(prior.classes)} classes, {prior_seconds:.0f}s", flush=True)
    # the prior's own diffusion classifier on true renders (how much its labels can be trusted in the Janus check)
    from diff_3d.prior import render_class_views

    imgs, labels = render_class_views(prior.classes, 2, views, torch.Generator().manual_seed(123))
    logits = prior.classify(imgs.float() / 127.5 - 1, generator=torch.Generator().manual_seed(0))
    classifier_acc = float((logits.argmax(1).cpu() == labels).double().mean())
    kind_acc = float(
        sum(
            prior.classes[int(a)].kind == prior.classes[int(b)].kind
            for a, b in zip(logits.argmax(1).cpu(), labels)
        )
        / len(labels)
    )
    samples = prior.pipeline.sample(2 * 6, steps=20, guidance=3.0, y=list(range(0, len(prior.classes), 8)),
                                    generator=torch.Generator(prior.device).manual_seed(0))  # fmt: skip
    write_grid(args.out / "prior_samples.png", ((samples.permute(0, 2, 3, 1) + 1) / 2).cpu()[None], scale=2)

    rows = run_sds(prior, s, args.out, device)
    summary = summarise(rows, s.prompts)

    t0 = time.perf_counter()
    view_cfg = ViewPriorConfig(objects=s.view_objects, pairs=s.view_pairs, views=views, network=net,
                               batch_size=s.batch_size,
                               train=_train_config(s.view_prior_steps, args.out / "view_prior_run", device,
                                                   s.train_seconds))  # fmt: skip
    view_prior = train_view_prior(view_cfg)
    view_seconds = time.perf_counter() - t0
    sparse = {}
    for k, shape in enumerate(s.sparse_objects):
        r = complete_sparse_views(view_prior, shape, s.sparse, generator=torch.Generator().manual_seed(k))
        name = shape.caption.replace(" ", "_")
        write_grid(args.out / f"sparse-{name}.png", [list(r.pseudo_views), list(r.held_out)], scale=2)
        sparse[name] = {"psnr_inputs_only": r.psnr_inputs_only, "psnr_with_pseudo": r.psnr_with_pseudo,
                        "gain_db": r.gain, "pseudo_view_psnr": r.pseudo_psnr}  # fmt: skip
        print(f"sparse {name}: {r.psnr_inputs_only:.2f} -> {r.psnr_with_pseudo:.2f} dB (gain {r.gain:+.2f}), "
              f"pseudo-views {r.pseudo_psnr:.2f} dB", flush=True)  # fmt: skip
    gains = [v["gain_db"] for v in sparse.values()]
    total = time.perf_counter() - started
    result = {
        "settings": dataclasses.asdict(s) | {"sparse_objects": [o.caption for o in s.sparse_objects]},
        "prior": {
            "classes": len(prior.classes),
            "seconds": prior_seconds,
            "classifier_accuracy": classifier_acc,
            "classifier_kind_accuracy": kind_acc,
        },
        "sds": rows,
        "summary": summary,
        "sparse_view": {
            "objects": sparse,
            "gain_db_mean": sum(gains) / len(gains),
            "view_prior_seconds": view_seconds,
        },
        "targets": {"iou_per_prompt": 0.7, "janus_count": 0, "sparse_gain_db": 2.0, "gpu_minutes": 9},
        "total_seconds": total,
    }
    path = write_result(result, script="sds_bench", variant="quick" if args.quick else None, device=device,
                        packages=("diff-3d", "diff-image"))  # fmt: skip
    print(
        f"summary {summary}\nsparse gain {result['sparse_view']['gain_db_mean']:+.2f} dB; {total:.0f}s; {path}"
    )


if __name__ == "__main__":
    main()
