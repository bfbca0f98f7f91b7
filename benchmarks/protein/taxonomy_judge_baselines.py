"""Judge baselines for the taxonomy benchmark: how accurately can a classifier trained only on held-out clusters
name the vertebrate class of real sequences it never saw (the training clusters)?

Same data, labels and cluster split as ``protein_taxonomy.py`` (the split is made on the window rows). Judges:
multinomial logistic regression (scikit-learn) on per-position one-hot residues, plain and with balanced class
weights, on (a) the ``--length`` query-column window the generator models and (b) the full query-aligned row
(``-`` for a deletion as a 21st symbol; no generator change needed to judge the window, this only measures how much
signal the window drops). Reports accuracy and balanced accuracy (mean per-class recall) on the training clusters,
and the majority-class rate.

    uv run python benchmarks/protein/taxonomy_judge_baselines.py   # CPU, under a minute

Writes benchmarks/results/taxonomy_judge_baselines-cpu.json (``--cluster-identity 0.6`` and ``0.95``: the
``-id0.6`` / ``-id0.95`` files, written with ``--results``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from diff_protein.data.sequences import read_a3m
from diff_protein.data.taxonomy import (
    aligned_window,
    class_table,
    cluster_by_identity,
    one_hot_rows,
    split_clusters,
    taxon_class,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_io import write_result

DEFAULT_DATA = Path("/work/shared/data/sequences/1a00_A_uniref90.a3m")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--start", type=int, default=34)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--cluster-identity", type=float, default=0.8)
    parser.add_argument("--held-out", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split seeds")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength (fixed, not tuned)")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"error: --data: no alignment at {args.data}")
    t0 = time.perf_counter()
    records = read_a3m(args.data, keep_gaps=True)
    table = class_table()
    rows = aligned_window(records, args.start, args.length)
    kept = [(i, w, taxon_class(records[i].header, table)) for i, w in rows]
    kept = [(i, w, c) for i, w, c in kept if c is not None]
    window = [w for _, w, _ in kept]
    full = [records[i].sequence.upper() for i, _, _ in kept]
    if len({len(f) for f in full}) != 1:
        raise SystemExit("error: --data: query-aligned rows differ in length")
    y = np.array([c for _, _, c in kept])
    clusters = cluster_by_identity(window, args.cluster_identity)
    features = {"window": one_hot_rows(window), "full_row": one_hot_rows(full)}
    metrics: dict[str, float] = {}
    per_seed: dict[str, list[float]] = {}
    for seed in args.seeds:
        held = split_clusters(clusters, args.held_out, seed)
        test = ~held
        per_seed.setdefault("majority_rate", []).append(Counter(y[test]).most_common(1)[0][1] / test.sum())
        for feat, x in features.items():
            for weight in (None, "balanced"):
                clf = LogisticRegression(C=args.C, max_iter=2000, class_weight=weight)
                clf.fit(x[held], y[held])
                pred = clf.predict(x[test])
                name = f"logreg_{feat}_{'balanced' if weight else 'plain'}"
                per_seed.setdefault(f"{name}_accuracy", []).append(float((pred == y[test]).mean()))
                per_seed.setdefault(f"{name}_balanced_accuracy", []).append(
                    float(balanced_accuracy_score(y[test], pred))
                )
        print(seed, {k: round(v[-1], 3) for k, v in per_seed.items()}, flush=True)
    for k, v in per_seed.items():
        metrics[f"{k}_mean"] = float(np.mean(v))
        metrics[f"{k}_se"] = float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    data = {
        "rows": float(len(y)),
        "clusters": float(clusters.max() + 1),
        "full_row_length": float(len(full[0])),
    }
    data |= {f"rows_{c}": float(n) for c, n in Counter(y.tolist()).items()}
    report = {
        "seconds": time.perf_counter() - t0,
        "settings": vars(args) | {"data": str(args.data), "results": None},
        "data": data,
        "metrics": metrics,
    }
    for k in sorted(metrics):
        print(f"{k}: {metrics[k]:.3f}")
    path = write_result(report, script="taxonomy_judge_baselines", variant=None, device="cpu",
                        packages=("diff-protein",), path=args.results)  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
