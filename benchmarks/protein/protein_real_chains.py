"""FrameFlow trained only on real chains: the data checks behind the fix, the training, and the targets.

Part 1, data checks (printed and stored under ``checks``), on the training windows (``ChainWindows``: every
protein chain of ``--data``, split at chain breaks and non-standard residues, cropped to windows of
``--min-length``-``--max-length`` residues) and, for comparison, on what the model was trained on before
(``StructureDataset``: the first chain of each file, whole, 40-256 residues, no break or crop):

* units: CA-CA distance of chain neighbours (3.80 A for a trans peptide: coordinates are angstrom) and the
  fraction of neighbour pairs that are chain breaks (> 4.2 A) the network would read as bonds;
* centring: the largest norm of an item's CA centroid (0: centred);
* frames: RMSD of N, CA, C rebuilt from the frames built from the real N, CA, C (ideal geometry);
* spread: the standard deviation of the translations in flow units (``coordinate_scale``) against the
  prior's 1, and the largest coordinate;
* cropping: number of items and their lengths.

Part 2 trains FrameFlow on the windows only (``train_backbones``), samples at the windows' lengths and reports
the targets against the windows: CA-CA valid (>= 0.95), clash-free (>= 0.80), helix / strand / coil within 0.15
of the real set; diversity (mean pairwise TM-score of the samples) and novelty (TM-score to the nearest
training window), by TM-align when tmtools is installed. ``--compare-whole-chains`` also trains the earlier
setting (whole first chains) with the same budget.

    uv run python benchmarks/protein/protein_real_chains.py --quick        # CPU, about 3 minutes
    uv run python benchmarks/protein/protein_real_chains.py --max-seconds 240 --out runs/real   # one H100, ~5.5 min
    uv run python benchmarks/protein/protein_real_chains.py --max-seconds 240 --out runs/real2 \
        --init-from runs/real/windows/model        # a further schedule from the first call's model

Writes benchmarks/results/protein_real_chains[-quick]-<device>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from diff_protein import metrics as M
from diff_protein.bench import FULL, QUICK, backbone_train_config
from diff_protein.data.structures import StructureDataset, StructureFilter
from diff_protein.data.windows import ChainWindows, WindowConfig
from diff_protein.frames import Rigid, backbone_from_frames
from diff_protein.pipeline import evaluate_backbones, sample_backbones, train_backbones
from diffcore.device import resolve_device
from diffcore.rng import make_generator
from diffcore.training import steady_samples_per_sec
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

DEFAULT_DATA = Path("/work/shared/data/proteins")
TARGETS = {"ca_ca_valid": 0.95, "clash_free": 0.80, "sse_gap": 0.15}


def data_checks(data: Dataset, coordinate_scale: float) -> dict[str, float]:
    """The numbers of Part 1 (module docstring) over every item of ``data``."""
    bonds, centroid, rebuild, trans, lengths = [], [], [], [], []
    for i in range(len(data)):
        item = data[i]
        atoms = item["atoms"].double()
        ca = atoms[:, 1]
        bonds.append(torch.linalg.vector_norm(ca[1:] - ca[:-1], dim=-1))
        centroid.append(float(torch.linalg.vector_norm(ca.mean(0))))
        frames = Rigid(item["rots"].double(), item["trans"].double())
        rebuilt = backbone_from_frames(frames)[:, :3]
        rebuild.append(((rebuilt - atoms[:, :3]) ** 2).sum(-1).flatten())
        trans.append(item["trans"].double() * coordinate_scale)
        lengths.append(len(ca))
    b = torch.cat(bonds)
    t = torch.cat(trans)
    sse = np.mean([list(M.sse_composition(data[i]["atoms"].numpy()).values()) for i in range(len(data))], 0)
    return {
        "items": float(len(data)),
        "length_min": float(min(lengths)),
        "length_max": float(max(lengths)),
        "length_mean": float(np.mean(lengths)),
        "ca_ca_mean": float(b.mean()),
        "ca_ca_valid": float(((b - 3.80).abs() < 0.1).double().mean()),
        "break_fraction": float((b > 4.2).double().mean()),
        "breaks": float((b > 4.2).sum()),
        "centroid_max": max(centroid),
        "frame_rebuild_rmsd": float(torch.cat(rebuild).mean().sqrt()),
        "trans_std_flow_units": float(t.std()),
        "trans_abs_max_flow_units": float(t.abs().max()),
        "helix": float(sse[0]),
        "strand": float(sse[1]),
        "coil": float(sse[2]),
    }


def _train_config(data: Dataset, settings, steps: int, max_seconds: float | None, out: Path, log_every=None):
    config = backbone_train_config(settings, steps, out)
    train = dataclasses.replace(config.train, max_seconds=max_seconds)
    if log_every is not None:
        train = dataclasses.replace(train, log_every=log_every)
    return dataclasses.replace(
        config, batch_size=min(settings.backbone_batch, len(data)), init_from=None, train=train
    )


def planned_steps(data: Dataset, settings, max_seconds: float, out: Path, pilot: int = 60) -> int:
    """Steps that fit ``max_seconds`` on this device, from a ``pilot``-step run (its last log window), so that
    the learning-rate schedule completes before the wall-time cap (as ``protein_full.py`` does)."""
    train_backbones(_train_config(data, settings, pilot, None, out, log_every=pilot // 3), data)
    rate = steady_samples_per_sec(out, after_step=2 * pilot // 3) / min(settings.backbone_batch, len(data))
    return max(1, int(0.95 * rate * max_seconds))


def train_and_evaluate(
    data: Dataset,
    settings,
    steps: int,
    max_seconds: float | None,
    out: Path,
    num_samples: int,
    tm: bool,
    init_from: Path | None = None,
) -> dict[str, float]:
    """FrameFlow trained on ``data`` for ``steps`` (on a GPU: as many as fit ``max_seconds``, by a pilot run);
    samples at the data's lengths; the targets against the data, diversity and novelty."""
    if max_seconds is not None and settings.device != "cpu":
        steps = min(steps, planned_steps(data, settings, max_seconds, out / "pilot"))
    config = _train_config(data, settings, steps, max_seconds, out / "train")
    if init_from is not None:
        config = dataclasses.replace(config, init_from=str(init_from))
    t0 = time.perf_counter()
    pipe = train_backbones(config, data)
    train_s = time.perf_counter() - t0
    pipe.save_pretrained(out / "model")
    device = resolve_device(settings.device)
    rng = np.random.default_rng(settings.seed)
    lengths = [int(n) for n in rng.choice(pipe.lengths, size=num_samples)]
    t0 = time.perf_counter()
    samples = sample_backbones(
        pipe,
        lengths,
        steps=settings.sample_steps,
        generator=make_generator(settings.seed, device),
        device=device,
    )
    sample_s = time.perf_counter() - t0
    reference = [data[i]["atoms"].numpy() for i in range(len(data))]
    result = evaluate_backbones(samples, reference)
    result |= {"train_s": train_s, "sample_s": sample_s, "train_steps": float(steps)}
    result["met_ca_ca_valid"] = float(result["ca_ca_valid"] >= TARGETS["ca_ca_valid"])
    result["met_clash_free"] = float(result["clash_free"] >= TARGETS["clash_free"])
    result["met_sse"] = float(result["sse_max_abs_diff"] <= TARGETS["sse_gap"])
    metric = "tm" if tm else "rmsd"
    if len(samples) > 1:
        result[f"diversity_{metric}_mean"] = M.pairwise_structure_similarity(samples, metric=metric)["mean"]
    result[f"novelty_{metric}_median"] = float(np.nanmedian(M.novelty(samples, reference, metric=metric)))
    result["similarity_metric_tm"] = float(tm)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder of PDB / mmCIF / BinaryCIF files"
    )
    parser.add_argument(
        "--quick", action="store_true", help="CPU run: 48-residue windows, small model, 300 steps"
    )
    parser.add_argument("--min-length", type=int, default=None, help="shortest window (default 64; quick 48)")
    parser.add_argument("--max-length", type=int, default=None, help="longest window (default 128; quick 48)")
    parser.add_argument("--stride", type=int, default=None, help="window step in long segments (default 16)")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps (default 300 quick, 100000 GPU)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=None, help="training wall-time cap (GPU default 240)"
    )
    parser.add_argument("--num-samples", type=int, default=None, help="samples drawn (default 8 quick, 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--aux-clash",
        type=float,
        default=0.0,
        help="weight of the steric-violation loss (BenchSettings.aux_clash)",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="a saved model (OUT/windows/model of an earlier call) whose weights start the training: a further "
        "schedule, for training longer than one call may run",
    )
    parser.add_argument(
        "--compare-whole-chains", action="store_true", help="also train on whole first chains"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the training runs (default: a new temporary folder)",
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="result JSON path (default under results/)"
    )
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"error: --data: no folder at {args.data}")
    cpu = args.quick or not torch.cuda.is_available()
    settings = dataclasses.replace(
        QUICK if cpu else FULL, seed=args.seed, device="cpu" if cpu else "auto", aux_clash=args.aux_clash
    )
    if args.quick:
        settings = dataclasses.replace(settings, sample_steps=50, backbone_lr=1e-3)
    window = WindowConfig(
        min_length=args.min_length or (48 if args.quick else 64),
        max_length=args.max_length or (48 if args.quick else 128),
        stride=args.stride or 16,
    )
    steps = args.steps or (300 if args.quick else 100_000)
    max_seconds = args.max_seconds if args.max_seconds is not None else (None if cpu else 240.0)
    num_samples = args.num_samples or (8 if args.quick else 64)
    torch.manual_seed(args.seed)
    out = args.out or Path(tempfile.mkdtemp(prefix="protein_real_chains_"))

    windows = ChainWindows(args.data, window)
    whole = StructureDataset(args.data, StructureFilter(min_length=40, max_length=256))
    scale = 0.1  # FrameFlowConfig.coordinate_scale: angstrom -> flow units
    checks = {"windows": data_checks(windows, scale), "whole_chains": data_checks(whole, scale)}
    checks["windows"] |= {f"stat_{k}": float(v) for k, v in windows.stats.items()}
    print("| check | windows | whole first chains (before) |")
    print("| --- | --- | --- |")
    for key in checks["whole_chains"]:
        print(f"| {key} | {checks['windows'][key]:.4g} | {checks['whole_chains'][key]:.4g} |")
    print("windows:", windows.stats, "skipped:", {p.name: r for p, r in windows.skipped.items()})

    tm = M.tmtools_available()
    runs = {
        "windows": train_and_evaluate(
            windows, settings, steps, max_seconds, out / "windows", num_samples, tm, args.init_from
        )
    }
    if args.compare_whole_chains:
        runs["whole_chains"] = train_and_evaluate(
            whole, settings, steps, max_seconds, out / "whole", num_samples, tm
        )
    keys = ("ca_ca_valid", "clash_free", "helix", "ref_helix", "strand", "ref_strand", "coil", "ref_coil",
            "sse_max_abs_diff", "rg_vs_ref")  # fmt: skip
    print("| trained on | " + " | ".join(keys) + " |")
    print("| --- |" + " --- |" * len(keys))
    for name, r in runs.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    for name, r in runs.items():
        extra = {k: round(v, 3) for k, v in r.items() if k.startswith(("diversity", "novelty", "train_s"))}
        print(name, extra)
    report = {
        "settings": dataclasses.asdict(settings) | {"window": dataclasses.asdict(window), "steps": steps,
                                                     "max_seconds": max_seconds, "num_samples": num_samples,
                                                     "init_from": str(args.init_from or "")},
        "targets": TARGETS,
        "checks": checks,
        "metrics": {f"{name}_{k}": v for name, r in runs.items() for k, v in r.items()},
    }  # fmt: skip
    device = "cpu" if cpu else "cuda"
    path = write_result(
        report,
        script="protein_real_chains",
        variant="quick" if args.quick else None,
        device=device,
        packages=("diff-protein",),
        path=args.results,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
