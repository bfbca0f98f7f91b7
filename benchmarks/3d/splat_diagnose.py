"""diff-3d diagnosis: which stage of the splat generator fails, each with a number (CPU, minutes).

    OMP_NUM_THREADS=1 uv run python benchmarks/3d/splat_diagnose.py --representation diffgs \
        --autoencoder-seconds 60 --train-seconds 30 --out runs/splat_diagnose

(a) the autoencoder alone: the training objects encoded and decoded at their budget; Chamfer distance of the
    decoded centres to the input centres, per class, beside the floor (two independent surface samples of the same
    shape) and the class adherence of renders of the reconstructions (the bench's render classifier, trained on
    true renders), beside the same classifier on renders of the inputs (the ceiling). It must be near that before
    latent diffusion can help.
(b) the latent diffusion on that autoencoder: class adherence of class-conditional samples at each ``--guidance``
    scale (``--train-seconds 0`` skips it).

Settings are the quick bench's (:meth:`diff_3d.bench.BenchSettings.quick`) unless overridden with
``--set name=value`` (a BenchSettings field) or ``--model name=value`` (a SplatModelConfig field). Prints and writes
``OUT/diagnosis.json`` (``--record NAME``: also ``benchmarks/results/splat_diagnose-NAME-cpu.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch


def _parse(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in pairs:
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def main() -> None:
    from diff_3d.bench import BenchSettings, train_config
    from diff_3d.classifier import train_render_classifier
    from diff_3d.data.primitives import sample_surface
    from diff_3d.metrics import chamfer_distance
    from diff_3d.pipeline import train
    from diff_3d.pipeline.data import build_training_set, features_to_gaussians
    from diff_3d.pipeline.evaluation import reference_objects
    from diff_3d.views import render_views, view_cameras

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--representation", default="diffgs")
    parser.add_argument("--autoencoder-seconds", type=float, default=60.0)
    parser.add_argument("--train-seconds", type=float, default=30.0)
    parser.add_argument("--set", action="append", default=[], help="BenchSettings field=value")
    parser.add_argument("--model", action="append", default=[], help="SplatModelConfig field=value")
    parser.add_argument("--recon", type=int, default=24, help="training objects reconstructed")
    parser.add_argument(
        "--guidance", type=float, action="append", default=[], help="CFG scales of (b); repeat"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/splat_diagnose"))
    parser.add_argument(
        "--record", default="", help="also write benchmarks/results/splat_diagnose-<this>-cpu.json"
    )
    args = parser.parse_args()

    s = dataclasses.replace(
        BenchSettings.quick(), representation=args.representation, autoencoder_seconds=args.autoencoder_seconds,
        train_seconds=max(args.train_seconds, 1e-3), **_parse(args.set),
    )  # fmt: skip
    if args.train_seconds <= 0:
        s.steps = 1
    shutil.rmtree(args.out, ignore_errors=True)
    config = train_config(s, args.out / "run", resume=False)
    config.model = dataclasses.replace(config.model, **_parse(args.model))
    start = time.perf_counter()
    pipe = train(config)
    train_s = time.perf_counter() - start
    log = [
        json.loads(x) for x in (args.out / "run" / "autoencoder" / "log.jsonl").read_text().splitlines() if x
    ]
    last = {k: v for k, v in log[-1].items() if isinstance(v, float)} if log else {}

    # (a) reconstructions of the training objects
    data = build_training_set(config)
    n = min(args.recon, len(data))
    feats = data.features[:n]
    gen = torch.Generator().manual_seed(0)
    ae = pipe.autoencoder.eval()
    with torch.no_grad():
        rec = ae.decode_latents(ae.encode_latents(feats), s.budget, generator=gen)
    cd, floor = [], []
    for i in range(n):
        cd.append(float(chamfer_distance(rec[i][:, :3], feats[i, :, :3])))
        other = sample_surface(data.shapes[i], s.budget, torch.Generator().manual_seed(100 + i))[0]
        floor.append(float(chamfer_distance(other, feats[i, :, :3])))
    names = data.class_names
    labels = data.labels[:n]
    per_class = {
        names[c]: round(sum(cd[i] for i in range(n) if labels[i] == c) / max(1, int((labels == c).sum())), 5)
        for c in range(len(names))
    }
    # the render classifier of evaluate(), trained on true renders
    cams = view_cameras(s.views, s.image_size, 1.0)
    train_ref = reference_objects(pipe, max(8 * len(names), 48), 8, 1_000_004)
    clf = train_render_classifier(render_views(train_ref.objects, cams), train_ref.labels, len(names),
                                  s.classifier_steps, 0)  # fmt: skip
    rec_views = render_views([features_to_gaussians(r) for r in rec], cams)
    rec_pred = clf.logits(rec_views).argmax(-1)
    rec_adh = float((rec_pred == labels).float().mean())
    # the ceiling: the same classifier on renders of the autoencoder's inputs
    in_pred = clf.logits(render_views([features_to_gaussians(x) for x in feats], cams)).argmax(-1)
    in_adh = float((in_pred == labels).float().mean())
    result: dict[str, object] = {
        "representation": args.representation,
        "model": dataclasses.asdict(config.model),
        "train_seconds": round(train_s, 1),
        "autoencoder_steps": max((r.get("step", 0) for r in log), default=0),
        "autoencoder_last_log": last,
        "recon_chamfer": round(sum(cd) / n, 5),
        "recon_chamfer_floor": round(sum(floor) / n, 5),
        "recon_chamfer_per_class": per_class,
        "recon_class_adherence": rec_adh,
        "input_class_adherence": in_adh,
        "recon_misclassified": [
            f"{names[labels[i]]} -> {names[rec_pred[i]]}" for i in range(n) if rec_pred[i] != labels[i]
        ],
        "input_misclassified": [
            f"{names[labels[i]]} -> {names[in_pred[i]]}" for i in range(n) if in_pred[i] != labels[i]
        ],
        "classifier_accuracy": clf.val_accuracy,
    }
    # (b) class-conditional samples
    if args.train_seconds > 0:
        k = 4 * len(names)
        want = torch.arange(k) % len(names)
        for scale in args.guidance or [s.guidance]:
            objs = pipe.generate(k, classes=want.tolist(), guidance=scale, steps=s.sample_steps,
                                 generator=torch.Generator().manual_seed(1))  # fmt: skip
            views = render_views(objs, cams)
            adherence = float((clf.logits(views).argmax(-1) == want).float().mean())
            result[f"sample_class_adherence@{scale:g}"] = adherence
        lat = torch.cat([ae.encode_latents(feats)])
        result["latent_std"] = float(lat.std())
    print(json.dumps(result, indent=1))
    from diffcore.io import write_json

    write_json(result, args.out / "diagnosis.json")  # the run's own copy; --record writes the result file
    if args.record:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
        from results_io import write_result

        result["command"] = "python benchmarks/3d/splat_diagnose.py " + " ".join(sys.argv[1:])
        print(
            f"wrote {write_result(result, script='splat_diagnose', variant=args.record, device='cpu', packages=('diff-3d',))}"
        )


if __name__ == "__main__":
    main()
