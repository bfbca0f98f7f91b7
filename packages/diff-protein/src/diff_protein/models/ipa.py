"""An SE(3)-equivariant frame denoiser built from Invariant Point Attention.

IPA is AlphaFold 2's structure-module attention (Jumper et al. 2021, Suppl. Alg. 22): scalar
attention plus attention on 3-D points placed in each residue's frame, whose squared global
distances are invariant under a global rigid motion. The trunk follows FrameDiff's score network
(Yim et al. 2023, Sec. 4.1 / App. I.1): per block IPA -> LayerNorm -> transition MLP -> backbone update
(AF2 Alg. 23, a quaternion ``(1, b, c, d)`` and a translation applied on the right, ``T <- T o dT``)
-> pair update; gradients flow through the rotations of every block (FrameDiff's and FrameFlow's
score networks do not detach them). Each block also reads the exact geometry of every residue's chain
neighbours in its frame (relative position, rotation and a fine radial basis of the CA-CA distance), so
bond lengths are seen at full precision. Every input the network reads apart from the frames is invariant
(time, residue index, motif flag, distances, relative neighbour geometry), so the predicted frames move with the input frames: for
any rigid motion ``G``, ``net(G o T) = G o net(T)``, and the per-residue features are unchanged.

Contract: ``net(rots, trans, t, **cond) -> Rigid`` of the clean frames, ``rots: (B, L, 3, 3)``,
``trans: (B, L, 3)`` in angstrom, ``t: (B,)`` in [0, 1] (0 = data). Conditioning keywords:
``mask (B, L)`` bool (padding), ``fixed_mask (B, L)`` bool (motif residues, never moved),
``self_cond (B, L, 3)`` the previous CA prediction (self-conditioning, Chen et al. 2022).
"""

from __future__ import annotations

import math

import torch
from diffcore.manifolds import so3
from diffcore.nn.embeddings import TimestepEmbedder, sincos_embedding_1d
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn

from diff_protein.frames import Rigid
from diff_protein.models.configs import FrameDenoiserConfig

__all__ = [
    "NEIGHBOUR_FEATURES",
    "NEIGHBOUR_RBF_CENTRES",
    "FrameDenoiser",
    "FrameDenoiserConfig",
    "InvariantPointAttention",
    "distogram",
    "neighbour_geometry",
    "outer_linear",
    "point_distances",
]


def distogram(ca: Tensor, num_bins: int, max_distance: float) -> Tensor:
    """One-hot CA-CA distance bins ``(B, L, L, num_bins)`` from ``ca: (B, L, 3)`` (angstrom).

    Bins are uniform on ``[0, max_distance]``; the last bin also takes every longer distance.
    """
    d = torch.cdist(ca, ca)
    index = (d / max_distance * (num_bins - 1)).floor().clamp(0, num_bins - 1).long()
    return nn.functional.one_hot(index, num_bins).to(ca.dtype)


def outer_linear(weight: Tensor, bias: Tensor | None, z: Tensor | None, s: Tensor) -> Tensor:
    """``cat([z, s_i, s_j], -1) @ weight.T + bias`` ``(B, L, L, out)`` without building the concatenation.

    ``weight: (out, C + 2D)`` with columns ``[z | s_i | s_j]``, ``z: (B, L, L, C)`` or ``None`` (``C = 0``),
    ``s: (B, L, D)``. A linear map of a concatenation is the sum of the maps of its parts, so the pair tensor
    costs ``O(L^2 C out)`` instead of ``O(L^2 (C + 2D) out)`` and the ``(B, L, L, C + 2D)`` input is never
    stored for the backward pass.
    """
    d = s.shape[-1]
    c = weight.shape[1] - 2 * d
    out = (s @ weight[:, c : c + d].T)[:, :, None] + (s @ weight[:, c + d :].T)[:, None]
    if bias is not None:
        out = out + bias
    if z is not None:
        out = out + z @ weight[:, :c].T
    return out


_RBF_STEP = 0.25  # angstrom: spacing and width of the neighbour-distance radial basis
NEIGHBOUR_RBF_CENTRES = tuple(_RBF_STEP * k for k in range(33))
"""Centres (angstrom) of the radial basis on neighbour CA distances: 0 to 8 A every 0.25 A."""
NEIGHBOUR_FEATURES = 2 * (3 + 9 + len(NEIGHBOUR_RBF_CENTRES) + 1)
"""Width of :func:`neighbour_geometry`: per neighbour (previous, next) position, rotation, RBF, flag."""


def neighbour_geometry(frames: Rigid, mask: Tensor, coordinate_scale: float = 1.0) -> Tensor:
    """Invariant local geometry of each residue's chain neighbours ``(B, L, NEIGHBOUR_FEATURES)``.

    For residue ``i`` and each neighbour ``j = i - 1, i + 1``: the neighbour's origin in ``i``'s frame
    ``R_i^T (x_j - x_i)`` (angstrom / 4), the relative rotation ``R_i^T R_j`` (9 entries), a Gaussian
    radial basis of the distance ``|x_j - x_i|`` (width 0.25 A, centres :data:`NEIGHBOUR_RBF_CENTRES`) and
    a presence flag (0 at chain ends and padding, where the other entries are 0 too). ``frames`` hold
    translations in angstrom times ``coordinate_scale``; ``mask (B, L)`` is True on real residues. Every
    entry is invariant under a global rigid motion ``x -> G x + g`` (it reads only relative quantities), so
    equivariance of the trunk is kept.
    """
    frames = Rigid(frames.rots, frames.trans * (1.0 / coordinate_scale))  # angstrom
    to_local = frames.invert()
    # Built on the device (no host-to-device copy, so the forward can be captured in a CUDA graph).
    rbf_centres = _RBF_STEP * torch.arange(
        len(NEIGHBOUR_RBF_CENTRES), dtype=frames.trans.dtype, device=frames.trans.device
    )
    feats = []
    for shift in (1, -1):  # previous residue (j = i - 1), then next (j = i + 1)
        neighbour = Rigid(torch.roll(frames.rots, shift, dims=1), torch.roll(frames.trans, shift, dims=1))
        rel = to_local.compose(neighbour)  # (R_i^T R_j, R_i^T (x_j - x_i))
        present = mask & torch.roll(mask, shift, dims=1)
        present[:, 0 if shift == 1 else -1] = False
        dist = torch.sqrt((rel.trans**2).sum(-1, keepdim=True) + 1e-10)
        rbf = torch.exp(-(((dist - rbf_centres) / _RBF_STEP) ** 2))
        p = present[..., None].to(dist.dtype)
        feats.append(
            torch.cat([rel.trans / 4.0, rel.rots.flatten(-2), rbf, torch.ones_like(dist)], dim=-1) * p
        )
    return torch.cat(feats, dim=-1)


class InvariantPointAttention(nn.Module):
    """AF2 Suppl. Alg. 22. ``s: (B, L, C_s)``, ``z: (B, L, L, C_z)``, frames ``(B, L)`` -> ``(B, L, C_s)``."""

    def __init__(
        self, node_dim: int, pair_dim: int, num_heads: int, head_dim: int, qk_points: int, v_points: int
    ):
        super().__init__()
        self.h, self.c, self.pq, self.pv = num_heads, head_dim, qk_points, v_points
        self.q = nn.Linear(node_dim, num_heads * head_dim)
        self.kv = nn.Linear(node_dim, 2 * num_heads * head_dim)
        self.q_pts = nn.Linear(node_dim, num_heads * qk_points * 3)
        self.kv_pts = nn.Linear(node_dim, num_heads * (qk_points + v_points) * 3)
        self.bias = nn.Linear(pair_dim, num_heads)
        self.head_weights = nn.Parameter(torch.full((num_heads,), math.log(math.e - 1)))  # softplus -> 1
        out_in = num_heads * (pair_dim + head_dim + v_points * 4)
        self.out = nn.Linear(out_in, node_dim)

    def forward(self, s: Tensor, z: Tensor, frames: Rigid, mask: Tensor) -> Tensor:
        """Node features ``s: (B, L, C_s)`` updated from pair features ``z: (B, L, L, C_z)`` and the residues'
        frames; ``mask: (B, L)`` marks real residues. Invariant to a global rotation and translation of the
        frames."""
        b, n, _ = s.shape
        h, c, pq, pv = self.h, self.c, self.pq, self.pv
        q = self.q(s).view(b, n, h, c)
        k, v = self.kv(s).view(b, n, h, 2 * c).split(c, dim=-1)
        # Points in the local frames, moved to global coordinates: (B, L, H * P, 3).
        q_pts = _apply(frames, self.q_pts(s).view(b, n, h * pq, 3))
        kv_pts = _apply(frames, self.kv_pts(s).view(b, n, h * (pq + pv), 3)).view(b, n, h, pq + pv, 3)
        k_pts, v_pts = kv_pts.split([pq, pv], dim=-2)
        q_pts = q_pts.view(b, n, h, pq, 3)

        w_l = math.sqrt(1.0 / 3.0)
        w_c = math.sqrt(2.0 / (9.0 * pq))
        logits = torch.einsum("bihc,bjhc->bhij", q, k) / math.sqrt(c)
        logits = logits + self.bias(z).permute(0, 3, 1, 2)
        d2 = point_distances(q_pts, k_pts)
        gamma = nn.functional.softplus(self.head_weights)
        logits = w_l * (logits - 0.5 * w_c * gamma[None, :, None, None] * d2)
        pair_mask = mask[:, None, :, None] & mask[:, None, None, :]
        logits = logits.masked_fill(~pair_mask, -1e9)
        a = torch.softmax(logits, dim=-1)  # (B, H, I, J)

        o = torch.einsum("bhij,bjhc->bihc", a, v).reshape(b, n, h * c)
        o_pair = torch.einsum("bhij,bijd->bihd", a, z).reshape(b, n, -1)
        o_pts_global = torch.einsum("bhij,bjhpx->bihpx", a, v_pts).reshape(b, n, h * pv, 3)
        o_pts = _invert_apply(frames, o_pts_global)  # back to the local frames: invariant
        o_norm = torch.sqrt((o_pts**2).sum(-1) + 1e-8)
        feats = torch.cat([o, o_pts.reshape(b, n, -1), o_norm, o_pair], dim=-1)
        return self.out(feats)


def point_distances(q_pts: Tensor, k_pts: Tensor) -> Tensor:
    """``d2[b, h, i, j] = sum_p |q[b, i, h, p] - k[b, j, h, p]|^2`` ``(B, H, I, J)`` for points ``(B, L, H, P, 3)``.

    Expanded as ``|q_i|^2 + |k_j|^2 - 2 q_i . k_j`` over the flattened points, so the ``(B, I, J, H, P, 3)``
    difference tensor is never built (IPA's point term, AF2 Suppl. Alg. 22 line 7).
    """
    q, k = q_pts.flatten(-2), k_pts.flatten(-2)  # (B, L, H, P * 3)
    qq = q.pow(2).sum(-1).permute(0, 2, 1)[..., None]  # (B, H, I, 1)
    kk = k.pow(2).sum(-1).permute(0, 2, 1)[:, :, None]  # (B, H, 1, J)
    return qq + kk - 2 * torch.einsum("bihp,bjhp->bhij", q, k)


def _apply(frames: Rigid, points: Tensor) -> Tensor:
    """``R_i p + x_i`` for ``points: (B, L, K, 3)`` in the frames ``(B, L)``."""
    return points @ frames.rots.transpose(-1, -2) + frames.trans[..., None, :]


def _invert_apply(frames: Rigid, points: Tensor) -> Tensor:
    """``R_i^T (p - x_i)`` for ``points: (B, L, K, 3)``."""
    return (points - frames.trans[..., None, :]) @ frames.rots


class _BackboneUpdate(nn.Module):
    """AF2 Suppl. Alg. 23: ``s -> dT = (quaternion (1, b, c, d) normalised, t)``, applied as ``T o dT``."""

    def __init__(self, node_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(node_dim, 6)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, s: Tensor, frames: Rigid, update_mask: Tensor) -> Rigid:
        bcd, t = self.linear(s).split(3, dim=-1)
        m = update_mask.to(s.dtype)[..., None]
        quat = torch.cat([torch.ones_like(bcd[..., :1]), bcd * m], dim=-1)
        delta = Rigid(so3.quaternion_to_matrix(quat), t * m)
        return frames.compose(delta)


class _Block(nn.Module):
    def __init__(self, config: FrameDenoiserConfig) -> None:
        super().__init__()
        cs, cz = config.node_dim, config.pair_dim
        self.ipa = InvariantPointAttention(
            cs, cz, config.num_heads, config.head_dim, config.qk_points, config.v_points
        )
        self.ipa_norm = nn.LayerNorm(cs)
        self.neighbours = nn.Linear(NEIGHBOUR_FEATURES, cs) if config.neighbour_features else None
        self.coordinate_scale = config.coordinate_scale
        self.transition = nn.Sequential(
            nn.Linear(cs, cs), nn.ReLU(), nn.Linear(cs, cs), nn.ReLU(), nn.Linear(cs, cs)
        )
        self.transition_norm = nn.LayerNorm(cs)
        self.update = _BackboneUpdate(cs)
        self.pair_update = nn.Sequential(nn.Linear(cz + 2 * cs, cz), nn.ReLU(), nn.Linear(cz, cz))
        self.pair_norm = nn.LayerNorm(cz)

    def forward(
        self,
        s: Tensor,
        z: Tensor,
        frames: Rigid,
        mask: Tensor,
        update_mask: Tensor,
    ) -> tuple[Tensor, Tensor, Rigid]:
        if self.neighbours is not None:
            s = s + self.neighbours(neighbour_geometry(frames, mask, self.coordinate_scale))
        s = self.ipa_norm(s + self.ipa(s, z, frames, mask))
        s = self.transition_norm(s + self.transition(s))
        frames = self.update(s, frames, update_mask)
        first = self.pair_update[0]
        hidden = outer_linear(first.weight, first.bias, z, s)  # pair_update on [z, s_i, s_j]
        z = self.pair_norm(z + self.pair_update[1:](hidden))
        return s, z, frames


class FrameDenoiser(PretrainedModel):
    """IPA trunk predicting clean residue frames (see the module docstring for the contract)."""

    config_class = FrameDenoiserConfig

    def __init__(self, config: FrameDenoiserConfig) -> None:
        super().__init__(config)
        cs, cz = config.node_dim, config.pair_dim
        self.time = TimestepEmbedder(cs)
        self.node_in = nn.Linear(2 * cs + 1, cs)
        n_rel = 2 * config.max_relpos + 1
        self.pair_in = nn.Linear(n_rel + 2 * config.num_bins + 2 * cs, cz)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_blocks))

    def forward(
        self,
        rots: Tensor,
        trans: Tensor,
        t: Tensor,
        mask: Tensor | None = None,
        fixed_mask: Tensor | None = None,
        self_cond: Tensor | None = None,
    ) -> Rigid:
        """Predicted clean frames ``Rigid (B, L)`` (translations in angstrom)."""
        return self.trunk(rots, trans, t, mask, fixed_mask, self_cond)[0]

    def trunk(
        self,
        rots: Tensor,
        trans: Tensor,
        t: Tensor,
        mask: Tensor | None = None,
        fixed_mask: Tensor | None = None,
        self_cond: Tensor | None = None,
    ) -> tuple[Rigid, Tensor]:
        """The predicted frames and the final single representation ``(B, L, node_dim)`` (invariant)."""
        b, n = trans.shape[:2]
        if rots.shape != (b, n, 3, 3) or t.shape != (b,):
            raise ValueError(
                f"rots, trans, t: expected (B, L, 3, 3), (B, L, 3), (B,); got {tuple(rots.shape)}, "
                f"{tuple(trans.shape)}, {tuple(t.shape)}"
            )
        dev = trans.device
        mask = torch.ones(b, n, dtype=torch.bool, device=dev) if mask is None else mask.bool()
        fixed = torch.zeros(b, n, dtype=torch.bool, device=dev) if fixed_mask is None else fixed_mask.bool()
        if self_cond is None or not self.config.self_condition:
            self_cond = torch.zeros_like(trans)
        s, z = self._embed(trans, t, mask, fixed, self_cond)
        frames = Rigid(rots, trans * self.config.coordinate_scale)
        update_mask = mask & ~fixed
        # Rotations are not detached between blocks: AF2 does (Suppl. Alg. 20, line 20) because it trains
        # every block with an auxiliary FAPE loss; with one loss on the final frames (FrameDiff, FrameFlow)
        # a detach leaves the rotation updates without any gradient.
        for block in self.blocks:
            s, z, frames = block(s, z, frames, mask, update_mask)
        out = Rigid(frames.rots, frames.trans / self.config.coordinate_scale)
        return out, s

    def _embed(
        self, trans: Tensor, t: Tensor, mask: Tensor, fixed: Tensor, self_cond: Tensor
    ) -> tuple[Tensor, Tensor]:
        c = self.config
        b, n = trans.shape[:2]
        dtype = self.node_in.weight.dtype
        idx = torch.arange(n, device=trans.device)
        pos = sincos_embedding_1d(c.node_dim, idx.to(torch.float32)).to(dtype)[None].expand(b, -1, -1)
        temb = self.time(t)[:, None].expand(-1, n, -1)
        s = self.node_in(torch.cat([pos, temb, fixed[..., None].to(dtype)], dim=-1)) * mask[..., None]
        # pair_in reads [one-hot relative index | noisy distogram | self-conditioning distogram | s_i | s_j]. The
        # one-hot blocks go through a matmul with their weight columns; the s_i / s_j blocks are projected per
        # residue and broadcast (outer_linear), so the (B, L, L, 2 node_dim) part is never built. (Gathering the
        # weight columns by index instead is exact too, but its backward is an index_put with ~10^5 duplicates
        # per row, which made the H100 training step 3.5x slower.)
        n_rel, nb = 2 * c.max_relpos + 1, c.num_bins
        w = self.pair_in.weight  # (pair_dim, inputs)
        rel = (idx[None, :] - idx[:, None]).clamp(-c.max_relpos, c.max_relpos) + c.max_relpos
        rel = (
            nn.functional.one_hot(rel, n_rel).to(dtype) @ w[:, :n_rel].T
        )  # (L, L, pair_dim), batch-independent
        has_sc = (self_cond.abs().sum((-1, -2)) > 0).to(dtype)[:, None, None, None]
        dists = torch.cat(
            [
                distogram(trans.to(dtype), nb, c.max_distance),
                distogram(self_cond.to(dtype), nb, c.max_distance) * has_sc,
            ],
            dim=-1,
        )
        z = rel + dists @ w[:, n_rel : n_rel + 2 * nb].T
        return s, z + outer_linear(w[:, n_rel + 2 * nb :], self.pair_in.bias, None, s)
