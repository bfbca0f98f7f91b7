"""Where does a trained backbone model lose the balance between topologies? Noise training chains, denoise.

For short training chains of each topology (default: helical and beta hairpins of 40-64 residues, the
lengths where the synthetic set mixes them about evenly), corrupt each chain to time ``t0``
(``process.corrupt``; ``t = 1`` is the prior, ``t = 0`` the data), run the sampler's own steps from ``t0`` to
0, and classify the result as strand-rich (P-SEA strand fraction > 0.2) or not. For each ``t0`` it prints
the share of chains that keep their class. A model whose modes are balanced loses a chain's identity
evenly in both directions as ``t0`` grows. If one topology flips to the other far more often at some
``t0``, the bias enters at that noise level. Prints a table and writes
``benchmarks/results/protein_mode_flips[-<tag>]-cpu.json`` (``--out`` elsewhere; it runs on the CPU).

    python benchmarks/protein/protein_mode_flips.py runs/p44k/backbone_model --chains 12 --draws 4 --tag 44k
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diff_protein.bench import FULL, synthetic_chains
from diff_protein.diffusion.base import centre
from diff_protein.diffusion.sampling import sample_frames
from diff_protein.frames import Rigid, backbone_from_frames, frames_from_backbone
from diff_protein.metrics import sse_composition
from diff_protein.pipeline import ProteinPipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def strand_rich(atoms: np.ndarray) -> bool:
    return sse_composition(atoms)["b"] > 0.2


@torch.no_grad()
def denoise_from(run, atoms: torch.Tensor, t0: float, draws: int, steps: int, seed: int) -> list[np.ndarray]:
    """``draws`` chains: ``atoms (L, 4, 3)`` corrupted to ``t0`` and sampled back to 0 with the run's process
    (``sample_frames(start=, t_start=t0)``, the sampler's grid of ``steps`` from ``t0`` down)."""
    g = torch.Generator().manual_seed(seed)
    length = atoms.shape[0]
    f = frames_from_backbone(atoms[:, 0], atoms[:, 1], atoms[:, 2])
    mask = torch.ones(draws, length, dtype=torch.bool)
    frames0 = Rigid(f.rots.expand(draws, length, 3, 3), centre(f.trans[None].expand(draws, length, 3), mask))
    start = run.process.corrupt(frames0, torch.full((draws,), t0), mask, g)
    frames = sample_frames(
        run.backbone.eval(), run.process, draws, length, steps, generator=g, start=start, t_start=t0
    )
    return list(backbone_from_frames(frames.to(torch.float64)).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a saved backbone pipeline (or a diff-protein 0.1 run folder)")
    parser.add_argument("--chains", type=int, default=12, help="training chains per topology")
    parser.add_argument("--draws", type=int, default=4, help="noise draws per chain and t0")
    parser.add_argument("--t0", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--lengths", type=int, nargs=2, default=[40, 64], help="chain length range")
    parser.add_argument("--topologies", nargs="+", default=["helical_hairpin", "beta_hairpin"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pool", type=int, default=200, help="first training chains to pick from")
    parser.add_argument("--tag", default=None, help="result file variant, e.g. the model: 44k")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default: see above)")
    args = parser.parse_args()
    run = ProteinPipeline.from_pretrained(args.run)
    data = synthetic_chains(FULL, args.pool).items
    lo, hi = args.lengths
    report: dict[str, dict] = {
        "run": str(args.run),
        "draws": args.draws,
        "steps": args.steps,
        "topologies": {},
    }
    print(
        "| topology | chains | strand-rich as data | "
        + " | ".join(f"kept from t0 = {t}" for t in args.t0)
        + " |"
    )
    print("| --- " * (3 + len(args.t0)) + "|")
    for topology in args.topologies:
        chains = [b for b in data if b.topology == topology and lo <= b.atoms.shape[0] <= hi][: args.chains]
        if not chains:
            raise SystemExit(f"--topologies: no {topology} chains of {lo}-{hi} residues in the FULL set")
        start = time.perf_counter()
        original = [strand_rich(b.atoms.numpy()) for b in chains]
        kept = {}
        for t0 in args.t0:
            same = [
                strand_rich(out) == was
                for i, (b, was) in enumerate(zip(chains, original, strict=True))
                for out in denoise_from(run, b.atoms, t0, args.draws, args.steps, seed=i)
            ]
            kept[str(t0)] = float(np.mean(same))
        report["topologies"][topology] = {
            "chains": len(chains), "strand_rich_data": float(np.mean(original)), "kept": kept,
            "seconds": time.perf_counter() - start,
        }  # fmt: skip
        print(f"| {topology} | {len(chains)} | {np.mean(original):.2f} | " + " | ".join(f"{kept[str(t)]:.2f}" for t in args.t0) + " |")  # fmt: skip
    out = write_result(report, script="protein_mode_flips", variant=args.tag, device="cpu",
                       packages=("diff-protein",), path=args.out)  # fmt: skip
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
