"""The default backbone data set, generated offline: ideal geometry, Ramachandran-sampled dihedrals.

Every backbone is built residue by residue with NeRF (ideal Engh & Huber bonds and angles, trans
peptides) from backbone dihedrals drawn from the helix, strand and loop regions of the
Ramachandran plot. Secondary-structure elements (SSEs) are joined by loops into three topologies:

* ``helical_hairpin``: two antiparallel helices packed side by side (axis distance 7.5-11 A);
* ``helix_bundle``: three or four helices, each antiparallel to and packed against the previous
  one and close to all others;
* ``beta_hairpin``: two antiparallel strands joined by a type I' two-residue turn (strand spacing
  4.0-6.0 A).

Loops are found by rejection sampling: for each loop a batch of candidate (loop + next SSE) pieces is
built, rigidly attached to the chain so far, and the first candidate that packs as required and
makes no clash (CA-CA < 3.0 A between residues with |i - j| >= 3) is kept. Everything is
deterministic from the seed. Per-residue labels use biotite's ``annotate_sse`` codes:
``a`` (helix), ``b`` (strand), ``c`` (coil).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffcore.io import atomic_path
from torch.utils.data import Dataset

from diff_protein import geometry as geo
from diff_protein.frames import frames_from_backbone

__all__ = [
    "RAMACHANDRAN",
    "SS_CODES",
    "TOPOLOGIES",
    "SyntheticBackbone",
    "SyntheticBackboneConfig",
    "SyntheticBackbones",
    "generate_backbone",
    "has_clash",
]

SS_CODES = ("a", "b", "c")
"""Secondary-structure codes, as biotite's ``annotate_sse``; index = integer label."""

TOPOLOGIES = ("helical_hairpin", "helix_bundle", "beta_hairpin")

# (phi, psi) means and standard deviation in degrees, with mixture weights for loops.
RAMACHANDRAN: dict[str, list[tuple[float, float, float, float]]] = {
    # weight, phi, psi, std
    "a": [(1.0, -63.0, -42.0, 4.0)],
    "b": [(1.0, -120.0, 130.0, 6.0)],
    "c": [
        (0.45, -68.0, 145.0, 12.0),
        (0.3, -90.0, 0.0, 12.0),
        (0.15, -120.0, 150.0, 12.0),
        (0.1, 65.0, 35.0, 10.0),
    ],
}
# Type I' beta turn (i+1, i+2), the common two-residue hairpin turn (Sibanda & Thornton 1985).
_TURN_I_PRIME = ((60.0, 30.0), (90.0, 0.0))

_HELIX_SPACING = (7.5, 11.0)
_STRAND_SPACING = (4.0, 6.0)


@dataclass(frozen=True)
class SyntheticBackboneConfig:
    """Settings of the synthetic backbone set.

    ``min_length``/``max_length``: residues per chain (inclusive); ``topologies``: subset of
    :data:`TOPOLOGIES`, drawn uniformly; ``beta_max_length``: longest beta hairpin (two very long
    isolated strands are unphysical); ``clash_distance``: CA-CA cut (A) between residues with
    ``|i - j| >= 3``; ``candidates``: loop candidates built per batch; ``max_batches``: batches per
    loop before the chain is restarted.
    """

    num_samples: int = 512
    min_length: int = 40
    max_length: int = 128
    topologies: tuple[str, ...] = TOPOLOGIES
    beta_max_length: int = 64
    clash_distance: float = 3.0
    candidates: int = 64
    max_batches: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if not 24 <= self.min_length <= self.max_length:
            raise ValueError(
                f"min_length, max_length: expected 24 <= min <= max, got {self.min_length}, {self.max_length}"
            )
        unknown = set(self.topologies) - set(TOPOLOGIES)
        if not self.topologies or unknown:
            raise ValueError(
                f"topologies: expected a non-empty subset of {TOPOLOGIES}, got {self.topologies}"
            )
        if self.num_samples < 1 or self.candidates < 1 or self.max_batches < 1:
            raise ValueError("num_samples, candidates, max_batches: expected positive integers")


@dataclass(frozen=True)
class SyntheticBackbone:
    """One generated chain: ``atoms: (L, 4, 3)`` float32 (N, CA, C, O; CA centroid at the origin),
    ``ss``: one code of :data:`SS_CODES` per residue, and its ``topology``."""

    atoms: torch.Tensor
    ss: str
    topology: str = field(default="")


def has_clash(ca: torch.Tensor, cutoff: float = 3.0, min_separation: int = 3) -> torch.Tensor:
    """Whether any CA pair with ``|i - j| >= min_separation`` is closer than ``cutoff``. ``(..., L, 3) -> (...)``."""
    d = torch.cdist(ca, ca)
    idx = torch.arange(ca.shape[-2], device=ca.device)
    far = (idx[:, None] - idx[None, :]).abs() >= min_separation
    return ((d < cutoff) & far).flatten(-2).any(-1)


def _dihedrals(ss: str, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` candidate rows of (phi, psi) in radians for the residues of ``ss``: ``(n, len(ss))`` each."""
    phi = torch.empty(n, len(ss), dtype=torch.float64)
    psi = torch.empty(n, len(ss), dtype=torch.float64)
    for i, code in enumerate(ss):
        modes = RAMACHANDRAN[code]
        weights = torch.tensor([m[0] for m in modes], dtype=torch.float64)
        k = torch.multinomial(weights, n, replacement=True, generator=g)
        table = torch.tensor([m[1:] for m in modes], dtype=torch.float64)[k]
        z = torch.randn(n, 2, generator=g, dtype=torch.float64)
        phi[:, i] = table[:, 0] + table[:, 2] * z[:, 0]
        psi[:, i] = table[:, 1] + table[:, 2] * z[:, 1]
    return torch.deg2rad(phi), torch.deg2rad(psi)


def _axis(ca: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and unit direction of an SSE from its CAs ``(..., M, 3)`` (averages over 4 residues ~ a turn)."""
    k = min(4, ca.shape[-2] // 2)
    start, end = ca[..., :k, :].mean(-2), ca[..., -k:, :].mean(-2)
    return ca.mean(-2), torch.nn.functional.normalize(end - start, dim=-1)


def _line_distance(point: torch.Tensor, centre: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    v = point - centre
    return torch.linalg.vector_norm(v - (v * direction).sum(-1, keepdim=True) * direction, dim=-1)


@dataclass
class _Chain:
    atoms: torch.Tensor  # (L, 4, 3) float64
    ss: str
    sse_spans: list[tuple[int, int]]  # [start, end) of each helix/strand


def _attach(
    prefix: torch.Tensor, psi_last: torch.Tensor, phi: torch.Tensor, psi: torch.Tensor
) -> torch.Tensor:
    """Candidates ``(n, L + M, 4, 3)``: the prefix ``(L, 4, 3)`` continued by residues with ``phi, psi: (n, M)``.

    ``psi_last: (n,)`` is the psi of the prefix's last residue, which fixes where the next N goes
    and re-places that residue's O.
    """
    n_cand = phi.shape[0]
    n0, ca0, c0 = (prefix[-1, j].expand(n_cand, 3) for j in range(3))
    n1 = geo.place_atom(n0, ca0, c0, geo.BOND_C_N, geo.ANGLE_CA_C_N, psi_last)
    ca1 = geo.place_atom(ca0, c0, n1, geo.BOND_N_CA, geo.ANGLE_C_N_CA, math.pi)
    c1 = geo.place_atom(c0, n1, ca1, geo.BOND_CA_C, geo.ANGLE_N_CA_C, phi[:, 0])
    piece = geo.backbone_from_dihedrals(phi, psi)  # first residue in the identity frame
    frame = frames_from_backbone(n1, ca1, c1)
    placed = frame.apply(piece.reshape(n_cand, -1, 3)).reshape(piece.shape)
    o_last = geo.place_atom(n0, ca0, c0, geo.BOND_C_O, geo.ANGLE_CA_C_O, psi_last + math.pi)
    head = prefix.expand(n_cand, *prefix.shape).clone()
    head[:, -1, 3] = o_last
    return torch.cat([head, placed], 1)


def _packs(cand: torch.Tensor, chain: _Chain, span: tuple[int, int], code: str, bundle: bool) -> torch.Tensor:
    """Which candidates place the new SSE ``span`` antiparallel and packed against the previous SSE."""
    ca = cand[:, :, 1]
    centre, direction = _axis(ca[:, span[0] : span[1]])
    p0, p1 = chain.sse_spans[-1]
    prev_centre, prev_dir = _axis(ca[:, p0:p1])
    lo, hi = _HELIX_SPACING if code == "a" else _STRAND_SPACING
    dist = _line_distance(centre, prev_centre, prev_dir)
    ok = ((direction * prev_dir).sum(-1) < -0.6) & (dist > lo) & (dist < hi)
    if bundle:
        for s0, s1 in chain.sse_spans[:-1]:
            other_centre, _ = _axis(ca[:, s0:s1])
            ok &= torch.linalg.vector_norm(centre - other_centre, dim=-1) < 1.6 * hi
    return ok


def _segment_lengths(topology: str, length: int, g: torch.Generator) -> list[tuple[str, int]]:
    """The (code, length) segments of a chain of ``length`` residues."""

    def randint(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    if topology == "beta_hairpin":
        caps = (randint(1, 3), randint(1, 3))
        strands = length - 2 - sum(caps)
        s1 = strands // 2
        return [("c", caps[0]), ("b", s1), ("t", 2), ("b", strands - s1), ("c", caps[1])]
    n_helix = 2 if topology == "helical_hairpin" else (3 if length < 90 else randint(3, 4))
    caps = (randint(1, 3), randint(1, 3))
    loops = [randint(3, 5) for _ in range(n_helix - 1)]
    body = length - sum(caps) - sum(loops)
    cuts = sorted(randint(-2, 2) + body * (k + 1) // n_helix for k in range(n_helix - 1))
    helices = [b - a for a, b in zip([0, *cuts], [*cuts, body])]
    segments = [("c", caps[0])]
    for i, h in enumerate(helices):
        segments.append(("a", h))
        segments.append(("c", loops[i] if i < len(loops) else caps[1]))
    return segments


def _try_build(
    topology: str, length: int, config: SyntheticBackboneConfig, g: torch.Generator
) -> _Chain | None:
    segments = _segment_lengths(topology, length, g)
    # First group: N-terminal cap + first SSE, built directly (one candidate).
    cap, first = segments[0], segments[1]
    ss0 = cap[0] * cap[1] + first[0] * first[1]
    phi, psi = _dihedrals(ss0, 1, g)
    chain = _Chain(geo.backbone_from_dihedrals(phi, psi)[0], ss0, [(cap[1], cap[1] + first[1])])
    rest = segments[2:]
    for k in range(0, len(rest), 2):
        group = rest[k : k + 2] + (rest[k + 2 : k + 3] if k + 3 == len(rest) else [])
        chain = _extend(chain, group, topology, config, g)
        if chain is None:
            return None
        if k + 3 == len(rest):
            break
    return chain


def _extend(
    chain: _Chain,
    group: list[tuple[str, int]],
    topology: str,
    config: SyntheticBackboneConfig,
    g: torch.Generator,
) -> _Chain | None:
    """Add a loop + SSE (+ C-terminal cap) by batched rejection sampling; ``None`` if nothing fits."""
    ss_new = "".join(("c" if code == "t" else code) * n for code, n in group)
    start = len(chain.ss) + group[0][1]
    span = (start, start + group[1][1])
    n = config.candidates
    for _ in range(config.max_batches):
        phi, psi = _dihedrals(ss_new, n, g)
        psi_last = _dihedrals(chain.ss[-1], n, g)[1][:, 0]
        if group[0][0] == "t":  # type I' turn, with loop-like spread
            for j, (tp, ts) in enumerate(_TURN_I_PRIME):
                phi[:, j] = math.radians(tp) + math.radians(8.0) * torch.randn(
                    n, generator=g, dtype=torch.float64
                )
                psi[:, j] = math.radians(ts) + math.radians(8.0) * torch.randn(
                    n, generator=g, dtype=torch.float64
                )
        cand = _attach(chain.atoms, psi_last, phi, psi)
        ok = _packs(cand, chain, span, group[1][0], bundle=topology == "helix_bundle")
        ok &= ~has_clash(cand[:, :, 1], config.clash_distance)
        if ok.any():
            i = int(ok.nonzero()[0])
            return _Chain(cand[i], chain.ss + ss_new, [*chain.sse_spans, span])
    return None


def generate_backbone(
    topology: str, length: int, generator: torch.Generator, config: SyntheticBackboneConfig | None = None
) -> SyntheticBackbone:
    """One backbone of ``topology`` with ``length`` residues; restarts until every loop fits.

    Raises ``RuntimeError`` after 50 restarts (not seen for the default settings).
    """
    config = config or SyntheticBackboneConfig()
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology: expected one of {TOPOLOGIES}, got {topology!r}")
    if length < 24:
        raise ValueError(f"length: expected >= 24 residues, got {length}")
    for _ in range(50):
        chain = _try_build(topology, length, config, generator)
        if chain is not None:
            atoms = chain.atoms - chain.atoms[:, 1].mean(0)
            return SyntheticBackbone(atoms.to(torch.float32), chain.ss, topology)
    raise RuntimeError(f"could not build a clash-free {topology} of {length} residues in 50 attempts")


class SyntheticBackbones(Dataset):
    """Map-style dataset of generated backbones; item ``i`` is a deterministic function of ``(seed, i)``.

    Items are dicts: ``atoms (L, 4, 3)``, ``rots (L, 3, 3)``, ``trans (L, 3)`` (residue frames, see
    :mod:`diff_protein.frames`), ``ss (L,)`` int64 indices into :data:`SS_CODES`, ``topology`` str.
    Generated on first access and memoised. With ``cache_dir``, :meth:`materialize` writes the whole
    set to ``cache_dir/synthetic_<hash of config>.npz`` and later instances load it instead of
    generating (about 0.1-1 s per chain on one CPU core).
    """

    def __init__(
        self, config: SyntheticBackboneConfig | None = None, cache_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.config = config or SyntheticBackboneConfig()
        self._cache: dict[int, SyntheticBackbone] = {}
        self.cache_path = None
        if cache_dir is not None:
            key = json.dumps(dataclasses.asdict(self.config), sort_keys=True) + "-v1"
            self.cache_path = Path(cache_dir) / f"synthetic_{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
            if self.cache_path.is_file():
                self._cache = _load_set(self.cache_path)

    def materialize(self) -> None:
        """Generate every item now (and write the cache file when ``cache_dir`` was given)."""
        for i in range(len(self)):
            self.backbone(i)
        if self.cache_path is not None and not self.cache_path.is_file():
            _save_set([self._cache[i] for i in range(len(self))], self.cache_path)

    def __len__(self) -> int:
        return self.config.num_samples

    def backbone(self, index: int) -> SyntheticBackbone:
        """The :class:`SyntheticBackbone` at ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index: expected 0 <= index < {len(self)}, got {index}")
        if index not in self._cache:
            g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + index)
            topo = self.config.topologies[int(torch.randint(len(self.config.topologies), (1,), generator=g))]
            hi = self.config.max_length
            if topo == "beta_hairpin":
                hi = max(self.config.min_length, min(hi, self.config.beta_max_length))
            length = int(torch.randint(self.config.min_length, hi + 1, (1,), generator=g))
            self._cache[index] = generate_backbone(topo, length, g, self.config)
        return self._cache[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        bb = self.backbone(index)
        frames = frames_from_backbone(bb.atoms[:, 0], bb.atoms[:, 1], bb.atoms[:, 2])
        ss = torch.tensor([SS_CODES.index(s) for s in bb.ss], dtype=torch.long)
        return {
            "atoms": bb.atoms,
            "rots": frames.rots,
            "trans": frames.trans,
            "ss": ss,
            "topology": bb.topology,
        }


def _save_set(items: list[SyntheticBackbone], path: Path) -> None:
    """All items in one ``.npz``: concatenated atoms, per-item lengths, SS strings and topologies."""
    with atomic_path(path) as tmp:  # ends in .npz, so numpy adds no suffix of its own
        np.savez(
            tmp,
            atoms=torch.cat([b.atoms for b in items]).numpy(),
            lengths=np.array([len(b.ss) for b in items]),
            ss=np.array([b.ss for b in items]),
            topology=np.array([b.topology for b in items]),
        )


def _load_set(path: Path) -> dict[int, SyntheticBackbone]:
    with np.load(path) as d:
        atoms = torch.from_numpy(d["atoms"])
        bounds = np.concatenate([[0], np.cumsum(d["lengths"])])
        return {
            i: SyntheticBackbone(
                atoms[bounds[i] : bounds[i + 1]].clone(), str(d["ss"][i]), str(d["topology"][i])
            )
            for i in range(len(d["lengths"]))
        }
