"""Score folders of generated backbones (PDB files) against the ``FULL`` synthetic training set, two ways.

``matched``: every reference mean taken at the samples' lengths (``evaluate_backbones``' default, see
``diff_protein.metrics.length_matched_weights``); ``plain``: the whole training set's mean, as the
benchmark reported before the sixth session. Beta hairpins are at most 64 residues long in that set
and helix bundles fill the longer lengths, so composition depends on length and the plain comparison
can hide, or invent, a gap when the drawn lengths are few. Also prints the composition by sample length
next to the training set's at the same lengths. Prints tables and writes
``benchmarks/results/protein_evaluate_samples[-<tag>]-cpu.json`` (``--out`` elsewhere). The committed
``protein_evaluate_samples-h100.json`` scores the 64 samples of two H100 runs.

    python benchmarks/protein/protein_evaluate_samples.py runs/p44k/backbones --tag 44k
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from diff_protein import io
from diff_protein.bench import FULL, synthetic_chains
from diff_protein.metrics import rg_ratio, sse_composition
from diff_protein.pipeline import evaluate_backbones

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

SHOWN = ("clash_free", "ca_ca_valid", "helix", "ref_helix", "strand", "ref_strand", "coil", "ref_coil",
         "sse_max_abs_diff", "rg_vs_ref")  # fmt: skip


def by_length(samples: list[np.ndarray], reference: list[np.ndarray]) -> dict[int, dict[str, float]]:
    """Per sample length: strand-rich fraction (strand > 0.2), helix, strand and Rg ratio of the samples and
    of the reference chains of the same length."""

    def summary(chains: list[np.ndarray]) -> dict[str, float]:
        comp = [sse_composition(c) for c in chains]
        return {
            "n": float(len(chains)),
            "strand_rich": float(np.mean([c["b"] > 0.2 for c in comp])),
            "helix": float(np.mean([c["a"] for c in comp])),
            "strand": float(np.mean([c["b"] for c in comp])),
            "rg_ratio": float(np.mean([rg_ratio(c) for c in chains])),
        }

    groups: dict[int, list[np.ndarray]] = defaultdict(list)
    for s in samples:
        groups[len(s)].append(s)
    out = {}
    for length, chains in sorted(groups.items()):
        peers = [r for r in reference if len(r) == length]
        out[length] = {f"gen_{k}": v for k, v in summary(chains).items()}
        if peers:
            out[length] |= {f"ref_{k}": v for k, v in summary(peers).items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folders", nargs="+", type=Path, help="folders of generated PDB files (see --pattern)"
    )
    parser.add_argument("--pattern", default="backbone_sample_*.pdb", help="which files of a folder (glob)")
    parser.add_argument("--tag", default=None, help="result file variant, e.g. the model: 44k")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default: see above)")
    args = parser.parse_args()
    reference = [b.atoms.numpy() for b in synthetic_chains(FULL).items]
    report: dict[str, dict] = {}
    for folder in args.folders:
        paths = sorted(folder.glob(args.pattern))
        if not paths:
            raise SystemExit(f"folders: no {args.pattern} files in {folder}")
        samples = [np.asarray(io.read_backbone(p).coords) for p in paths]
        result = {
            "matched": evaluate_backbones(samples, reference),
            "plain": evaluate_backbones(samples, reference, match_lengths=False),
            "by_length": by_length(samples, reference),
        }
        report[str(folder)] = result
        print(f"\n{folder} ({len(samples)} samples, reference: {len(reference)} training chains)")
        print("| reference | " + " | ".join(SHOWN) + " |")
        print("| --- " * (len(SHOWN) + 1) + "|")
        for kind in ("matched", "plain"):
            print(f"| {kind} | " + " | ".join(f"{result[kind][k]:.3f}" for k in SHOWN) + " |")
        print("| length | n | strand-rich gen / ref | strand gen / ref | Rg ratio gen / ref |")
        print("| --- | --- | --- | --- | --- |")
        for length, row in result["by_length"].items():
            ref = {k: row.get(f"ref_{k}", float("nan")) for k in ("strand_rich", "strand", "rg_ratio")}
            print(f"| {length} | {row['gen_n']:.0f} | {row['gen_strand_rich']:.2f} / {ref['strand_rich']:.2f} | "
                  f"{row['gen_strand']:.2f} / {ref['strand']:.2f} | {row['gen_rg_ratio']:.2f} / {ref['rg_ratio']:.2f} |")  # fmt: skip
    out = write_result(report, script="protein_evaluate_samples", variant=args.tag, device="cpu",
                       packages=("diff-protein",), path=args.out)  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
