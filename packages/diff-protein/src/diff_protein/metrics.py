"""Quality measures of generated backbones and sequences, computed offline.

Backbone inputs are ``atoms: (L, 4, 3)`` (N, CA, C, O) or ``ca: (L, 3)`` arrays in angstrom (numpy or
torch). Conventions, following FrameDiff (Yim et al. 2023) and the usual designability checks:

* CA-CA validity: fraction of consecutive CA-CA distances within ``tol`` (0.1 A) of 3.80 A;
* clashes: CA pairs with ``|i - j| >= 3`` closer than 3.0 A;
* radius of gyration against the compact-globule law ``Rg ~ 2.2 L^0.38`` A (Skolnick et al. 1997);
* secondary structure: biotite's ``annotate_sse`` (P-SEA, CA only): ``a`` helix, ``b`` strand, ``c`` coil;
* diversity and novelty: TM-score (TM-align through ``tmtools``, the ``diff-protein[tm]`` extra) when
  installed, else CA RMSD after Kabsch superposition (equal lengths only).

Sequence measures: amino-acid composition and its Jensen-Shannon divergence to a reference, and
diversity as mean pairwise identity.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Sequence

import biotite.structure as struc
import numpy as np
import torch

from diff_protein import geometry as geo
from diff_protein.data.sequences import AMINO_ACIDS

__all__ = [
    "aa_composition",
    "annotate_sse",
    "backbone_report",
    "ca_ca_valid_fraction",
    "clash_count",
    "composition_divergence",
    "kabsch_rmsd",
    "length_matched_weights",
    "n_ca_c_angle_deviation",
    "nearest_identity",
    "novelty",
    "pairwise_identity",
    "pairwise_structure_similarity",
    "positional_profile_distance",
    "radius_of_gyration",
    "reference_weights",
    "rg_ratio",
    "rg_vs_reference",
    "sequence_identity",
    "sse_composition",
    "tm_score",
    "tmtools_available",
]


def _np(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return (
        x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    )


def _ca(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """CA coordinates ``(L, 3)`` of an ``(L, 4, 3)`` backbone or of an ``(L, 3)`` CA trace."""
    a = _np(x)
    if a.ndim == 3 and a.shape[1:] == (4, 3):
        return a[:, 1]
    if a.ndim == 2 and a.shape[1] == 3:
        return a
    raise ValueError(f"atoms: expected (L, 4, 3) backbone or (L, 3) CA coordinates, got {a.shape}")


def ca_ca_valid_fraction(atoms: np.ndarray | torch.Tensor, tol: float = 0.1) -> float:
    """Fraction of consecutive CA-CA distances within ``tol`` A of 3.80 A."""
    ca = _ca(atoms)
    d = np.linalg.norm(ca[1:] - ca[:-1], axis=-1)
    return float(np.mean(np.abs(d - geo.CA_CA_DISTANCE) < tol)) if len(d) else float("nan")


def n_ca_c_angle_deviation(atoms: np.ndarray | torch.Tensor) -> float:
    """Mean absolute deviation (degrees) of the N-CA-C angle from the ideal 111.2 deg. ``atoms: (L, 4, 3)``."""
    a = torch.from_numpy(_np(atoms))
    if a.ndim != 3 or a.shape[1] < 3:
        raise ValueError(f"atoms: expected an (L, 4, 3) backbone, got {tuple(a.shape)}")
    angle = geo.bond_angle(a[:, 0], a[:, 1], a[:, 2])
    return float(torch.rad2deg((angle - geo.ANGLE_N_CA_C).abs()).mean())


def clash_count(atoms: np.ndarray | torch.Tensor, cutoff: float = 3.0, min_separation: int = 3) -> int:
    """Number of CA pairs with ``|i - j| >= min_separation`` closer than ``cutoff`` A."""
    ca = _ca(atoms)
    d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
    i, j = np.triu_indices(len(ca), k=min_separation)
    return int(np.sum(d[i, j] < cutoff))


def radius_of_gyration(atoms: np.ndarray | torch.Tensor) -> float:
    """Radius of gyration of the CA atoms (A)."""
    ca = _ca(atoms)
    return float(np.sqrt(np.mean(np.sum((ca - ca.mean(0)) ** 2, -1))))


def rg_ratio(atoms: np.ndarray | torch.Tensor) -> float:
    """``Rg / (2.2 L^0.38)``: ~1 for compact globular chains, > 1.5 for extended ones."""
    ca = _ca(atoms)
    return radius_of_gyration(ca) / (2.2 * len(ca) ** 0.38)


def length_matched_weights(sample_lengths: Sequence[int], reference_lengths: Sequence[int]) -> np.ndarray:
    """Weights ``(R,)`` over the reference chains, summing to 1, that give the reference the samples' lengths.

    Each of the N samples contributes ``1 / N``, shared equally by the reference chains nearest to it in
    length (all of them at the smallest ``|L_ref - L|``). A reference mean taken with these weights is what
    the training set shows *at the generated lengths*. That matters whenever composition depends on length:
    in the synthetic set, beta hairpins are at most 64 residues long and helix bundles fill the longer
    lengths, so a plain mean is off for any draw of lengths that is not representative. For a set
    against itself the weighted mean equals the plain one.
    """
    if len(sample_lengths) == 0 or len(reference_lengths) == 0:
        raise ValueError("sample_lengths, reference_lengths: expected non-empty sequences")
    ref = np.asarray(reference_lengths)
    weights = np.zeros(len(ref))
    lengths, counts = np.unique(np.asarray(sample_lengths), return_counts=True)
    for length, count in zip(lengths, counts, strict=True):
        gap = np.abs(ref - length)
        nearest = gap == gap.min()
        weights[nearest] += count / (nearest.sum() * len(sample_lengths))
    return weights


def reference_weights(
    samples: Sequence[np.ndarray | torch.Tensor],
    reference: Sequence[np.ndarray | torch.Tensor],
    match_lengths: bool = True,
) -> np.ndarray:
    """Weights ``(R,)`` of the reference chains in a reference mean: :func:`length_matched_weights` of the two
    sets' lengths, or equal weights without ``match_lengths``."""
    if not match_lengths:
        return np.full(len(reference), 1.0 / len(reference))
    return length_matched_weights([len(_ca(s)) for s in samples], [len(_ca(r)) for r in reference])


def rg_vs_reference(
    samples: Sequence[np.ndarray | torch.Tensor],
    reference: Sequence[np.ndarray | torch.Tensor],
    match_lengths: bool = True,
) -> float:
    """Size of generated chains relative to a reference (training) set, lengths accounted for.

    ``mean(rg_ratio(samples)) / mean(rg_ratio(reference))``: both sets are first put on the
    compact-globule scale ``2.2 L^0.38`` (Skolnick et al. 1997), so sets of different lengths compare.
    With ``match_lengths`` (the default) the reference mean is taken at the samples' lengths
    (:func:`length_matched_weights`), because the shape of training chains (and so their ratio) can
    depend on length too. 1.0 when the samples are as compact as the reference (exactly 1.0 for a set
    against itself), 2.0 when twice as spread out. :func:`rg_ratio` alone compares with globular proteins,
    not with the training set: the synthetic hairpins and bundles score ~1.7 on it themselves. Inputs:
    ``(L, 4, 3)`` or ``(L, 3)``.
    """
    if not samples or not reference:
        raise ValueError("samples, reference: expected non-empty lists of backbones")
    ref = float(
        reference_weights(samples, reference, match_lengths) @ np.array([rg_ratio(r) for r in reference])
    )
    return float(np.mean([rg_ratio(s) for s in samples])) / ref


def annotate_sse(atoms: np.ndarray | torch.Tensor) -> str:
    """Per-residue secondary structure by biotite's ``annotate_sse`` (P-SEA on CA): ``a``, ``b`` or ``c``."""
    ca = _ca(atoms)
    arr = struc.AtomArray(len(ca))
    arr.coord = ca.astype(np.float32)
    arr.atom_name[:] = "CA"
    arr.element[:] = "C"
    arr.res_name[:] = "GLY"
    arr.res_id = np.arange(1, len(ca) + 1)
    arr.chain_id[:] = "A"
    sse = struc.annotate_sse(arr)
    if np.asarray(sse).dtype.kind in "iu":  # biotite >= 2 returns PSeaElement codes, 1.x the symbols
        sse = struc.PSeaElement.to_symbols(sse)
    return "".join(str(code) for code in sse)


def sse_composition(atoms: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Fractions of helix ``a``, strand ``b`` and coil ``c`` by :func:`annotate_sse`."""
    sse = np.array(list(annotate_sse(atoms)))
    return {code: float(np.mean(sse == code)) for code in ("a", "b", "c")}


def _kabsch(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation ``R`` and the centred ``x`` such that ``x_c @ R.T`` best fits centred ``y`` (Kabsch 1976)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    u, _, vt = np.linalg.svd(xc.T @ yc)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, xc


def kabsch_rmsd(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """CA RMSD (A) after optimal superposition; both chains must have the same length."""
    a, b = _ca(x), _ca(y)
    if len(a) != len(b):
        raise ValueError(f"x, y: RMSD needs equal lengths, got {len(a)} and {len(b)}")
    r, ac = _kabsch(a, b)
    return float(np.sqrt(np.mean(np.sum((ac @ r.T - (b - b.mean(0))) ** 2, -1))))


def tmtools_available() -> bool:
    """Whether ``tmtools`` (TM-align bindings, the ``diff-protein[tm]`` extra) is importable."""
    return importlib.util.find_spec("tmtools") is not None


def tm_score(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    seq_x: str | None = None,
    seq_y: str | None = None,
) -> float:
    """TM-score of ``x`` against ``y`` by TM-align, normalised by the length of ``y``. Needs ``tmtools``."""
    if not tmtools_available():
        raise ImportError("tm_score needs tmtools: pip install 'diff-protein[tm]'")
    from tmtools import tm_align

    a, b = _ca(x), _ca(y)
    res = tm_align(a, b, seq_x or "A" * len(a), seq_y or "A" * len(b))
    return float(res.tm_norm_chain2)


def pairwise_structure_similarity(
    structures: Sequence[np.ndarray | torch.Tensor], metric: str = "auto"
) -> dict:
    """Mean pairwise similarity of a set of backbones (diversity = low similarity).

    ``metric``: ``"tm"`` (TM-score, higher = more similar), ``"rmsd"`` (Kabsch CA RMSD, equal lengths,
    higher = more diverse), or ``"auto"`` (``"tm"`` when tmtools is installed). Returns
    ``{"metric", "mean", "pairs"}``.
    """
    metric = _pick_metric(metric)
    cas = [_ca(s) for s in structures]
    if len(cas) < 2:
        raise ValueError(f"structures: expected at least 2 backbones, got {len(cas)}")
    fn = tm_score if metric == "tm" else kabsch_rmsd
    values = [fn(a, b) for a, b in itertools.combinations(cas, 2)]
    return {"metric": metric, "mean": float(np.mean(values)), "pairs": len(values)}


def _pick_metric(metric: str) -> str:
    if metric not in ("auto", "tm", "rmsd"):
        raise ValueError(f"metric: expected 'auto', 'tm' or 'rmsd', got {metric!r}")
    if metric == "auto":
        return "tm" if tmtools_available() else "rmsd"
    return metric


def novelty(
    samples: Sequence[np.ndarray | torch.Tensor],
    training: Sequence[np.ndarray | torch.Tensor],
    metric: str = "auto",
) -> np.ndarray:
    """For each sample, its closest match in the training set: max TM-score (``"tm"``; lower = more
    novel) or min CA RMSD over same-length training chains (``"rmsd"``; higher = more novel, NaN if
    no training chain has its length). Returns ``(num_samples,)``."""
    metric = _pick_metric(metric)
    train = [_ca(t) for t in training]
    out = []
    for s in samples:
        a = _ca(s)
        if metric == "tm":
            out.append(max(tm_score(a, t) for t in train))
        else:
            same = [kabsch_rmsd(a, t) for t in train if len(t) == len(a)]
            out.append(min(same) if same else float("nan"))
    return np.asarray(out)


def backbone_report(atoms: np.ndarray | torch.Tensor) -> dict[str, float]:
    """All single-structure measures of one ``(L, 4, 3)`` backbone in one dict."""
    sse = sse_composition(atoms)
    return {
        "length": float(len(_ca(atoms))),
        "ca_ca_valid": ca_ca_valid_fraction(atoms),
        "n_ca_c_dev_deg": n_ca_c_angle_deviation(atoms),
        "clashes": float(clash_count(atoms)),
        "rg": radius_of_gyration(atoms),
        "rg_ratio": rg_ratio(atoms),
        "helix": sse["a"],
        "strand": sse["b"],
        "coil": sse["c"],
    }


# ----------------------------------------------------------------------------------------------------
# Sequences.


def aa_composition(sequences: Sequence[str]) -> np.ndarray:
    """Frequencies ``(20,)`` of the standard amino acids over all sequences (others ignored)."""
    counts = np.zeros(20)
    index = {a: i for i, a in enumerate(AMINO_ACIDS)}
    for s in sequences:
        for ch in s.upper():
            if ch in index:
                counts[index[ch]] += 1
    if counts.sum() == 0:
        raise ValueError("sequences: no standard amino acid found")
    return counts / counts.sum()


def composition_divergence(sequences: Sequence[str], reference: Sequence[str]) -> float:
    """Jensen-Shannon divergence (bits, in [0, 1]) between the amino-acid compositions of two sets."""
    p, q = aa_composition(sequences), aa_composition(reference)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def positional_profile_distance(sequences: Sequence[str], reference: Sequence[str]) -> float:
    """Mean over positions of the total-variation distance (in [0, 1]) between the amino-acid distributions of
    two sets of equal-length aligned sequences at that position: 0 when every column has the same
    frequencies. Letters other than the 20 standard amino acids are ignored."""
    if not sequences or not reference:
        raise ValueError("sequences, reference: expected non-empty sets")
    lengths = {len(s) for s in sequences} | {len(s) for s in reference}
    if len(lengths) != 1:
        raise ValueError(f"sequences, reference: expected one common length, got {sorted(lengths)[:5]}")
    length = lengths.pop()

    def profile(seqs: Sequence[str]) -> np.ndarray:
        index = {a: i for i, a in enumerate(AMINO_ACIDS)}
        counts = np.zeros((length, 20))
        for s in seqs:
            for pos, ch in enumerate(s.upper()):
                if ch in index:
                    counts[pos, index[ch]] += 1
        return counts / counts.sum(1, keepdims=True).clip(min=1)

    return float(0.5 * np.abs(profile(sequences) - profile(reference)).sum(1).mean())


def nearest_identity(sequences: Sequence[str], training: Sequence[str]) -> np.ndarray:
    """For each of ``sequences``, its position-wise identity to the most similar of ``training`` (all of one
    length): ``(N,)``; near 1 means a copy."""
    if not sequences or not training:
        raise ValueError("sequences, training: expected non-empty sets")
    lengths = {len(s) for s in sequences} | {len(s) for s in training}
    if len(lengths) != 1:
        raise ValueError(f"sequences, training: expected one common length, got {sorted(lengths)[:5]}")
    codes = lambda seqs: np.frombuffer("".join(seqs).upper().encode(), np.uint8).reshape(len(seqs), -1)  # noqa: E731
    x, t = codes(sequences), codes(training)
    return np.array([(t == row).mean(1).max() for row in x])


def sequence_identity(a: str, b: str) -> float:
    """Identity of two sequences: position-wise for equal lengths, else over a global alignment
    (biotite, BLOSUM62, affine gaps -10/-1) as matches / length of the shorter sequence."""
    if not a or not b:
        raise ValueError("a, b: expected non-empty sequences")
    if len(a) == len(b):
        return sum(x == y for x, y in zip(a.upper(), b.upper())) / len(a)
    from biotite.sequence import ProteinSequence
    from biotite.sequence.align import SubstitutionMatrix, align_optimal

    clean = lambda s: "".join(ch if ch in AMINO_ACIDS else "X" for ch in s.upper())  # noqa: E731
    sa, sb = ProteinSequence(clean(a)), ProteinSequence(clean(b))
    ali = align_optimal(sa, sb, SubstitutionMatrix.std_protein_matrix(), gap_penalty=(-10, -1), max_number=1)[
        0
    ]
    codes = ali.trace
    matches = sum(1 for i, j in codes if i >= 0 and j >= 0 and sa.code[i] == sb.code[j])
    return matches / min(len(a), len(b))


def pairwise_identity(sequences: Sequence[str], max_pairs: int | None = None, seed: int = 0) -> float:
    """Mean pairwise identity of a set (diversity = 1 - this). ``max_pairs`` subsamples pairs at random."""
    pairs = list(itertools.combinations(range(len(sequences)), 2))
    if not pairs:
        raise ValueError(f"sequences: expected at least 2 sequences, got {len(sequences)}")
    if max_pairs is not None and len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = [pairs[i] for i in rng.choice(len(pairs), max_pairs, replace=False)]
    return float(np.mean([sequence_identity(sequences[i], sequences[j]) for i, j in pairs]))
