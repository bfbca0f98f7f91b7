"""TaxDiff on a real alignment: taxonomy-conditioned sequences judged by a classifier trained on held-out clusters.

Data: the A3M alignment (default the shared OpenProteinSet haemoglobin-alpha UniRef90 hits), each row cut to the
query columns ``[--start, --start + --length)`` and kept when every column holds a standard amino acid. Labels:
the vertebrate class of the ``Tax=`` name (``diff_protein.data.taxonomy.class_table``: the shipped table and its
source); rows whose name the table lacks are left out and counted. Split: greedy clusters at ``--cluster-identity``
position-wise identity, whole clusters held out until ``--held-out`` of the rows are.

The generator (``train_sequences``) sees only the training clusters; two judges are trained only on the held-out
clusters: a linear one (logistic regression on per-position one-hot residues, balanced class weights; it judges
the targets) and the neural ``TaxonomyClassifier``. Their accuracy on the training clusters (real sequences
they never saw) says how far they can be trusted. At a 0.6 clustering threshold whole lineages fall on one side
and no judge beats the majority class on the other (``taxonomy_judge_baselines.py``), so the default is 0.8. Samples are requested in equal numbers per class and generated unguided (w = 0: the label
dropped), conditional (w = 1) and with classifier-free guidance (each w of ``--guidance``, the targets at the first). Reported per scale: label
adherence by each judge (targets, by the linear judge: >= 0.80 guided, and >= 0.20 above unguided), the median identity of each sample
to its nearest training sequence (no copying: < 0.9), and the per-position amino-acid distribution distance
(mean total variation over columns) of each class's samples to that class's held-out sequences, beside the same
distance between the training and held-out real sequences (the floor).

    uv run python benchmarks/protein/protein_taxonomy.py --quick    # CPU, about 1.5 minutes
    uv run python benchmarks/protein/protein_taxonomy.py            # one H100, about 3 minutes

Writes benchmarks/results/protein_taxonomy[-quick]-<device>.json.
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
from diff_protein.config import ProteinTrainConfig, default_train_config
from diff_protein.data.sequences import LabelVocabulary, SequenceDataset, detokenize, read_a3m
from diff_protein.data.taxonomy import (
    aligned_window,
    class_table,
    cluster_by_identity,
    one_hot_rows,
    split_clusters,
    taxon_class,
)
from diff_protein.models.configs import SequenceDenoiserConfig
from diff_protein.pipeline import (
    evaluate_sequences,
    generate_sequences,
    train_sequences,
    train_taxonomy_classifier,
)
from diffcore.rng import make_generator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

DEFAULT_DATA = Path("/work/shared/data/sequences/1a00_A_uniref90.a3m")
TARGETS = {"adherence_guided": 0.80, "adherence_gain": 0.20, "nearest_identity_median": 0.9}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="A3M alignment with UniRef Tax= headers"
    )
    parser.add_argument("--quick", action="store_true", help="CPU sizes: small model, 400 + 300 steps")
    parser.add_argument("--start", type=int, default=34, help="first query column of the window (0-based)")
    parser.add_argument("--length", type=int, default=64, help="window length (query columns)")
    parser.add_argument("--cluster-identity", type=float, default=0.8, help="clustering identity threshold")
    parser.add_argument("--held-out", type=float, default=0.3, help="fraction of rows in held-out clusters")
    parser.add_argument("--steps", type=int, default=None, help="generator steps (default 400 quick, 4000)")
    parser.add_argument("--classifier-steps", type=int, default=None, help="judge steps (default 300, 1500)")
    parser.add_argument("--per-class", type=int, default=None, help="samples per class (default 32, 128)")
    parser.add_argument(
        "--guidance",
        type=float,
        nargs="+",
        default=[2.0, 4.0],
        help="classifier-free guidance scales (> 1); the targets are judged at the first",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--results", type=Path, default=None, help="result JSON path (default under results/)"
    )
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"error: --data: no alignment at {args.data}")
    cpu = args.quick or not torch.cuda.is_available()
    device = "cpu" if cpu else "cuda"
    steps = args.steps or (400 if args.quick else 4000)
    judge_steps = args.classifier_steps or (300 if args.quick else 1500)
    per_class = args.per_class or (32 if args.quick else 128)
    hidden, depth = (64, 2) if args.quick else (256, 6)
    t0 = time.perf_counter()

    records = read_a3m(args.data, keep_gaps=True)
    table = class_table()
    rows = aligned_window(records, args.start, args.length)
    labelled = [(seq, taxon_class(records[i].header, table)) for i, seq in rows]
    unlabelled = sum(1 for _, c in labelled if c is None)
    labelled = [(s, c) for s, c in labelled if c is not None]
    seqs = [s for s, _ in labelled]
    classes = [c for _, c in labelled]
    clusters = cluster_by_identity(seqs, args.cluster_identity)
    held = split_clusters(clusters, args.held_out, args.seed)
    vocab = LabelVocabulary.from_counts(classes)
    train_seqs = [s for s, h in zip(seqs, held) if not h]
    train_cls = [c for c, h in zip(classes, held) if not h]
    held_seqs = [s for s, h in zip(seqs, held) if h]
    held_cls = [c for c, h in zip(classes, held) if h]
    data = {
        "rows_in_window": float(len(rows)),
        "rows_unlabelled": float(unlabelled),
        "rows_labelled": float(len(seqs)),
        "clusters": float(clusters.max() + 1),
        "train_rows": float(len(train_seqs)),
        "held_out_rows": float(len(held_seqs)),
        "train_max_identity_to_held_out_median": float(np.median(M.nearest_identity(held_seqs, train_seqs))),
    }
    for name in vocab.labels[1:]:
        data[f"train_{name}"] = float(train_cls.count(name))
        data[f"held_out_{name}"] = float(held_cls.count(name))
    print(data)

    out = Path(tempfile.mkdtemp(prefix="protein_taxonomy_"))
    train_ds = SequenceDataset(train_seqs, train_cls, vocab)
    held_ds = SequenceDataset(held_seqs, held_cls, vocab)
    config = ProteinTrainConfig(
        what="sequence",
        batch_size=64,
        length=args.length,
        sequence=SequenceDenoiserConfig(hidden_size=hidden, depth=depth),
        classifier_steps=0,
        train=default_train_config(steps=steps, lr=1e-3, warmup_steps=min(100, steps // 10), seed=args.seed,
                                   device=device, output_dir=str(out / "seq"), log_every=max(1, steps // 10)),
    )  # fmt: skip
    pipe = train_sequences(config, train_ds)
    judge = dataclasses.replace(
        config,
        classifier_steps=judge_steps,
        train=dataclasses.replace(config.train, steps=judge_steps, output_dir=str(out / "judge")),
    )
    pipe.classifier = train_taxonomy_classifier(held_ds, judge)
    pipe = pipe.to(device)
    real_eval = evaluate_sequences(torch.stack(train_ds.tokens), train_ds.labels, pipe.classifier)
    # the linear judge: balanced class weights, as the samples are requested in equal numbers per class
    linear = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    linear.fit(one_hot_rows(held_seqs), held_cls)
    linear_pred = linear.predict(one_hot_rows(train_seqs))
    metrics: dict[str, float] = {
        "judge_accuracy_on_train_clusters": real_eval["adherence_classifier"],
        "linear_judge_accuracy_on_train_clusters": float(np.mean(linear_pred == np.array(train_cls))),
        "linear_judge_balanced_accuracy_on_train_clusters": float(
            balanced_accuracy_score(train_cls, linear_pred)
        ),
        "majority_class_rate_on_train_clusters": max(train_cls.count(n) for n in set(train_cls))
        / len(train_cls),
    }

    ids = torch.arange(1, len(vocab)).repeat_interleave(per_class)
    if any(w <= 1.0 for w in args.guidance):
        raise SystemExit("error: --guidance: expected scales > 1 (0 and 1 are always sampled)")
    for w in (0.0, 1.0, *args.guidance):
        tokens = generate_sequences(
            pipe, ids, guidance_scale=w, generator=make_generator(args.seed, pipe.device)
        )
        key = {0.0: "unguided", 1.0: "conditional"}.get(w, f"guided_w{w:g}")
        ev = evaluate_sequences(tokens, ids, pipe.classifier)
        strings = [detokenize(t) for t in tokens.cpu()]
        metrics[f"{key}_adherence"] = ev["adherence_classifier"]
        wanted = np.array([vocab.labels[k] for k in ids.tolist()])
        metrics[f"{key}_linear_adherence"] = float(np.mean(linear.predict(one_hot_rows(strings)) == wanted))
        metrics[f"{key}_nearest_identity_median"] = float(np.median(M.nearest_identity(strings, train_seqs)))
        dists = []
        for k, name in enumerate(vocab.labels[1:], start=1):
            mine = [s for s, y in zip(strings, ids.tolist()) if y == k]
            real = [s for s, c in zip(held_seqs, held_cls) if c == name]
            if real:
                dists.append(M.positional_profile_distance(mine, real))
        metrics[f"{key}_profile_distance"] = float(np.mean(dists))
    floor = [
        M.positional_profile_distance([s for s, c in zip(train_seqs, train_cls) if c == n],
                                      [s for s, c in zip(held_seqs, held_cls) if c == n])
        for n in vocab.labels[1:] if n in held_cls and n in train_cls
    ]  # fmt: skip
    metrics["real_train_vs_held_out_profile_distance"] = float(np.mean(floor))
    guided = f"guided_w{args.guidance[0]:g}"
    # the targets are judged by the linear judge (the more accurate on unseen real rows; chosen on real rows only)
    metrics["adherence_gain"] = metrics[f"{guided}_linear_adherence"] - metrics["unguided_linear_adherence"]
    metrics["adherence_gain_neural_judge"] = metrics[f"{guided}_adherence"] - metrics["unguided_adherence"]
    metrics["met_adherence_guided"] = float(
        metrics[f"{guided}_linear_adherence"] >= TARGETS["adherence_guided"]
    )
    metrics["met_adherence_gain"] = float(metrics["adherence_gain"] >= TARGETS["adherence_gain"])
    metrics["met_no_copying"] = float(
        metrics[f"{guided}_nearest_identity_median"] < TARGETS["nearest_identity_median"]
    )
    print("| samples | adherence | linear-judge adherence | nearest identity (median) | profile distance |")
    print("| --- | --- | --- | --- | --- |")
    for key in ("unguided", "conditional", *(f"guided_w{w:g}" for w in args.guidance)):
        print(f"| {key} | {metrics[key + '_adherence']:.3f} | {metrics[key + '_linear_adherence']:.3f} | "
              f"{metrics[key + '_nearest_identity_median']:.3f} | {metrics[key + '_profile_distance']:.3f} |")  # fmt: skip
    print(f"linear judge on the training clusters: accuracy {metrics['linear_judge_accuracy_on_train_clusters']:.3f}, "
          f"balanced {metrics['linear_judge_balanced_accuracy_on_train_clusters']:.3f}; "
          f"majority rate {metrics['majority_class_rate_on_train_clusters']:.3f}")  # fmt: skip
    print(f"judge accuracy on the training clusters: {metrics['judge_accuracy_on_train_clusters']:.3f}; "
          f"real train vs held-out profile distance {metrics['real_train_vs_held_out_profile_distance']:.3f}")  # fmt: skip
    report = {
        "seconds": time.perf_counter() - t0,
        "settings": vars(args) | {"data": str(args.data), "steps": steps, "classifier_steps": judge_steps,
                                  "per_class": per_class, "hidden": hidden, "depth": depth, "results": None},
        "targets": TARGETS,
        "classes": vocab.labels[1:],
        "data": data,
        "metrics": metrics,
    }  # fmt: skip
    path = write_result(report, script="protein_taxonomy", variant="quick" if args.quick else None,
                        device=device, packages=("diff-protein",), path=args.results)  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
