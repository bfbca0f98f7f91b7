"""Networks of diff-materials: a periodic E(3)-invariant message-passing denoiser and a property predictor.

Both are built on one :class:`CrystalEncoder`, a stack of torch-geometric ``MessagePassing`` layers over the
atoms of each crystal (DiffCSP's CSPNet, Jiao et al. 2023, Eq. 6-8, with MatterGen's property adapters,
Zeni et al. 2025, Sec. 2.3):

- nodes: an embedding of the atom type (the mask type too), plus the time embedding and, per property, a
  property embedding passed through a zero-initialised adapter (so a pretrained unconditional network is
  unchanged until the adapters learn). Every property has its own embedding, its own null embedding (used where
  the property is dropped or free) and its own adapters, whose outputs add to the hidden state, so several
  properties condition one network at once (MatterGen, Sec. 2.3). Scalars enter as sinusoidal features, a
  chemical system as the multi-hot of its elements, a space group as a one-hot of 1..230
  (:mod:`diff_materials.properties`);
- edges: every ordered pair of atoms of one crystal (``edges="fc"``, DiffCSP's fully connected graph), or
  every pair within ``cutoff`` angstrom over periodic images (``edges="radius"``, :func:`periodic_radius_graph`,
  in plain torch). Edge features are Fourier features ``sin / cos(2 pi k d)``, ``k = 1..num_freqs``, of the
  fractional difference ``d = f_j - f_i`` (periodic, so invariant to periodic translation) and, with
  ``wave_order > 0``, its plane waves ``sin / cos(2 pi k . d)`` over integer wave vectors
  (:func:`plane_wave_features`), the crystal's rotation-invariant lattice ``S`` (:mod:`diff_materials.lattice`) and, for the radius graph, the distance;
- every input is invariant to rotations of the lattice, to translations of all atoms (also across the cell
  boundary) and equivariant to permutations of the atoms, so the outputs are too.

:class:`CrystalDenoiser` returns, for noisy inputs at time ``t`` in [0, 1] (0 = data, 1 = noise):
``frac``: (M, 3) the normalised score of the wrapped normal of the fractional coordinates (DiffCSP Eq. 11);
``lattice``: (B, 6) the noise ``eps`` of the standardised lattice; ``types``: (M, K + 1) logits of the clean
atom type. :class:`PropertyPredictor` returns (B, P) standardised property values.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from diffcore.nn.embeddings import TimestepEmbedder
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from diff_materials.data.crystals import NUM_TYPES
from diff_materials.lattice import unnormalise_lattice
from diff_materials.properties import NUM_SPACE_GROUPS, PropertyKind, property_slices

__all__ = [
    "CrystalDenoiser",
    "CrystalDenoiserConfig",
    "CrystalEncoder",
    "PropertyPredictor",
    "PropertyPredictorConfig",
    "fourier_features",
    "fully_connected_edges",
    "periodic_radius_graph",
    "plane_wave_features",
]

Edges = Literal["fc", "radius"]


def fully_connected_edges(num_atoms: Tensor) -> Tensor:
    """``(2, E)`` edges ``(source j, target i)`` of every ordered pair ``i != j`` within each crystal.

    num_atoms: (B,) atoms per crystal; atoms are numbered crystal after crystal (the batch layout)."""
    dev = num_atoms.device
    offsets = torch.cumsum(num_atoms, 0) - num_atoms
    pairs = num_atoms * num_atoms
    crystal = torch.repeat_interleave(torch.arange(len(num_atoms), device=dev), pairs)
    k = torch.arange(int(pairs.sum()), device=dev) - (torch.cumsum(pairs, 0) - pairs)[crystal]
    n = num_atoms[crystal]
    src, dst = k // n, k % n
    keep = src != dst
    off = offsets[crystal][keep]
    return torch.stack([src[keep] + off, dst[keep] + off])


def periodic_radius_graph(
    frac: Tensor, lattice: Tensor, num_atoms: Tensor, cutoff: float, max_images: int = 1
) -> tuple[Tensor, Tensor, Tensor]:
    """Every pair of atoms (an atom with its own images too) closer than ``cutoff`` angstrom over periodic
    images ``n`` in ``{-max_images..max_images}^3``: returns ``edges (2, E)`` (source j, target i),
    ``shift (E, 3)`` (the image ``n`` of ``j``) and ``distance (E,)``, with distance ``|(f_j + n - f_i) L|``.

    frac: (M, 3); lattice: (B, 3, 3) rows are vectors; num_atoms: (B,). Pure torch (no pyg-lib or
    torch-cluster), vectorised over all pairs and images of a crystal; cells shorter than ``cutoff /
    max_images`` need a larger ``max_images``.
    """
    r = torch.arange(-max_images, max_images + 1, device=frac.device, dtype=frac.dtype)
    images = torch.cartesian_prod(r, r, r)  # (I, 3)
    offsets = torch.cumsum(num_atoms, 0) - num_atoms
    out_e, out_s, out_d = [], [], []
    for b, (n, off) in enumerate(zip(num_atoms.tolist(), offsets.tolist())):
        f = frac[off : off + n]
        d = f[None, :, None, :] + images[None, None] - f[:, None, None, :]  # (i, j, I, 3)
        cart = d @ lattice[b]
        dist = cart.norm(dim=-1)
        i, j, k = torch.nonzero((dist < cutoff) & (dist > 1e-8), as_tuple=True)
        out_e.append(torch.stack([j + off, i + off]))
        out_s.append(images[k])
        out_d.append(dist[i, j, k])
    return torch.cat(out_e, 1), torch.cat(out_s), torch.cat(out_d)


def fourier_features(d: Tensor, num_freqs: int) -> Tensor:
    """``(E, 3)`` fractional differences -> ``(E, 6 num_freqs)`` ``[sin(2 pi k d), cos(2 pi k d)]``, k = 1..F."""
    k = torch.arange(1, num_freqs + 1, device=d.device, dtype=d.dtype)
    x = 2 * math.pi * d[..., None] * k  # (E, 3, F)
    return torch.cat([torch.sin(x), torch.cos(x)], dim=-1).flatten(1)


@functools.lru_cache(maxsize=4)
def _wave_vectors(order: int) -> Tensor:
    """``(K, 3)`` integer wave vectors ``k`` with ``max |k_a| <= order``, ``k != 0``, one of each pair ``+-k``."""
    r = range(-order, order + 1)
    ks = [k for k in itertools.product(r, r, r) if k > (0, 0, 0)]  # lexicographically positive: one of +-k
    return torch.tensor(ks, dtype=torch.float64)


def plane_wave_features(d: Tensor, order: int) -> Tensor:
    """``(E, 3)`` fractional differences -> ``(E, 2 K)`` ``[sin(2 pi k . d), cos(2 pi k . d)]`` over the wave
    vectors ``k`` of :func:`_wave_vectors` (``K = ((2 order + 1)^3 - 1) / 2``: 13 for order 1, 62 for 2).

    The plane waves of the 3-torus up to ``order``: unlike the per-axis features of :func:`fourier_features`
    (the wave vectors along the axes), they hold products across axes, so a site offset such as
    ``(1/2, 1/2, 0)`` and its neighbours ``(1/2, 0, 0)``, ``(1/2, 1/2, 1/2)`` differ in single features
    (``cos(2 pi (d_x + d_y))``) instead of in products the edge network has to learn."""
    k = _wave_vectors(order).to(device=d.device, dtype=d.dtype)
    x = 2 * math.pi * d @ k.T  # (E, K)
    return torch.cat([torch.sin(x), torch.cos(x)], dim=-1)


def _rbf(distance: Tensor, cutoff: float, num: int = 16) -> Tensor:
    centres = torch.linspace(0.0, cutoff, num, device=distance.device, dtype=distance.dtype)
    return torch.exp(-((distance[:, None] - centres) ** 2) / (2 * (cutoff / num) ** 2))


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.SiLU(), nn.Linear(h, o))


class CrystalLayer(MessagePassing):
    """One message-passing block (DiffCSP Eq. 6-7): ``m_ij = phi_m(h_i, h_j, e_ij)``, mean over ``j``, then
    ``h_i <- h_i + phi_h(h_i, mean_j m_ij)``."""

    def __init__(self, hidden: int, edge_dim: int) -> None:
        super().__init__(aggr="mean")
        self.norm = nn.LayerNorm(hidden)
        self.edge_mlp = _mlp(2 * hidden + edge_dim, hidden, hidden)
        self.node_mlp = _mlp(2 * hidden, hidden, hidden)

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """Node features ``h: (M, hidden)`` updated by one round of messages over ``edge_index`` ``(2, E)``
        with edge features ``edge_attr`` ``(E, edge_dim)``."""
        x = self.norm(h)
        # The first linear map of phi_m acts on [h_i, h_j, e_ij]: its h_i and h_j blocks are applied once per
        # atom, not once per edge (the same function as concatenating, with a fraction of the work on the
        # N (N - 1) edges of a fully connected crystal).
        w = self.edge_mlp[0].weight
        k = x.shape[-1]
        x_dst, x_src = x @ w[:, :k].T, x @ w[:, k : 2 * k].T
        agg = self.propagate(
            edge_index, x_dst=x_dst, x_src=x_src, edge_attr=edge_attr, size=(h.shape[0], h.shape[0])
        )
        return h + self.node_mlp(torch.cat([x, agg], dim=-1))

    def message(self, x_dst_i: Tensor, x_src_j: Tensor, edge_attr: Tensor) -> Tensor:
        """``phi_m(h_i, h_j, e_ij)`` for every edge (DiffCSP Eq. 6), from the atoms' parts of its first linear
        map (see :meth:`forward`)."""
        first = self.edge_mlp[0]
        pre = (
            x_dst_i
            + x_src_j
            + nn.functional.linear(edge_attr, first.weight[:, 2 * x_dst_i.shape[-1] :], first.bias)
        )
        return self.edge_mlp[2](self.edge_mlp[1](pre))


@dataclass
class EncoderConfig:
    """Sizes of the message-passing encoder shared by the denoiser and the property predictor.

    Attributes:
        hidden: width of node features.
        layers: message-passing blocks.
        num_freqs: Fourier frequencies of fractional differences (DiffCSP uses 128 on MP-20).
        wave_order: also the plane waves ``sin / cos(2 pi k . d)`` of the fractional difference with every
            integer wave vector ``max |k_a| <= wave_order`` (:func:`plane_wave_features`); 0: the per-axis
            features alone (DiffCSP's).
        edges: ``fc`` (every pair of atoms of a crystal) or ``radius`` (pairs within ``cutoff`` over images).
        cutoff: radius of the ``radius`` graph, angstrom.
        num_properties: conditioning properties (0: unconditional); each gets an embedding and adapters.
        property_kinds: per property ``scalar``, ``chemical_system`` or ``space_group`` (empty: all scalar,
            as networks saved before categorical properties); fixes the packed layout of ``properties``.
        lattice_mean, lattice_std: standardisation of the six lattice entries (set from the training data).
        lattice_bound: the largest magnitude of a standardised lattice entry in the training data plus one;
            the sampler clips its estimate of the clean lattice to it (DDPM's clip to the data range). 0: no
            clip (networks saved before it was kept).
        property_mean, property_std: standardisation of the properties (set from the training data).
    """

    hidden: int = 128
    layers: int = 4
    num_freqs: int = 32
    wave_order: int = 0
    edges: Edges = "fc"
    cutoff: float = 7.0
    num_properties: int = 0
    property_kinds: list[str] = field(default_factory=list)
    lattice_mean: list[float] = field(default_factory=lambda: [0.0] * 6)
    lattice_std: list[float] = field(default_factory=lambda: [1.0] * 6)
    lattice_bound: float = 0.0
    property_mean: list[float] = field(default_factory=list)
    property_std: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "num_freqs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.wave_order < 0:
            raise ValueError(f"wave_order: expected >= 0, got {self.wave_order}")
        if self.edges not in ("fc", "radius"):
            raise ValueError(f"edges: expected 'fc' or 'radius', got {self.edges!r}")
        if len(self.lattice_mean) != 6 or len(self.lattice_std) != 6:
            raise ValueError("lattice_mean, lattice_std: expected 6 numbers each")
        if self.lattice_bound < 0:
            raise ValueError(f"lattice_bound: expected >= 0, got {self.lattice_bound}")
        if self.num_properties < 0:
            raise ValueError(f"num_properties: expected >= 0, got {self.num_properties}")
        if not self.property_kinds:
            self.property_kinds = ["scalar"] * self.num_properties
        if len(self.property_kinds) != self.num_properties or any(
            k not in ("scalar", "chemical_system", "space_group") for k in self.property_kinds
        ):
            raise ValueError(
                f"property_kinds: expected {self.num_properties} of scalar / chemical_system / space_group, "
                f"got {self.property_kinds}"
            )


class CrystalEncoder(nn.Module):
    """Atom features of noisy crystals: type embedding + time + property adapters, then message passing.

    forward(frac (M, 3), lattice (B, 6) standardised, types (M,) in [0, K] (K = mask), t (B,), num_atoms (B,),
    properties (B, D) packed (:mod:`diff_materials.properties`; scalars standardised), property_mask (B, P)
    bool) -> (M, hidden)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.type_embed = nn.Embedding(NUM_TYPES + 1, h)
        self.time_embed = TimestepEmbedder(h)
        waves = 2 * len(_wave_vectors(config.wave_order)) if config.wave_order else 0
        edge_dim = 6 * config.num_freqs + waves + 6 + (16 if config.edges == "radius" else 0)
        self.layers = nn.ModuleList([CrystalLayer(h, edge_dim) for _ in range(config.layers)])
        p = config.num_properties
        self.property_embed = nn.ModuleList([_mlp(_FEATURES[k], h, h) for k in config.property_kinds])
        self.property_null = nn.Parameter(torch.zeros(p, h))
        # MatterGen's adapters: one zero-initialised linear map per layer and property.
        self.adapters = nn.ModuleList(
            [nn.ModuleList([nn.Linear(h, h) for _ in range(p)]) for _ in range(config.layers + 1)]
        )
        for layer in self.adapters:
            for lin in layer:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.register_buffer("lattice_mean", torch.tensor(config.lattice_mean), persistent=False)
        self.register_buffer("lattice_std", torch.tensor(config.lattice_std), persistent=False)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """What fine-tuning on properties trains (MatterGen Sec. 2.3): property embeddings and adapters."""
        return [*self.property_embed.parameters(), self.property_null, *self.adapters.parameters()]

    def _edges(self, frac: Tensor, lattice: Tensor, num_atoms: Tensor) -> tuple[Tensor, Tensor]:
        if self.config.edges == "fc":
            edges = fully_connected_edges(num_atoms)
            return edges, self._periodic_features(frac[edges[0]] - frac[edges[1]])
        matrix = unnormalise_lattice(lattice.float(), num_atoms, self.lattice_mean, self.lattice_std)
        edges, _shift, dist = periodic_radius_graph(frac, matrix, num_atoms, self.config.cutoff)
        d = frac[edges[0]] - frac[edges[1]]
        return edges, torch.cat([self._periodic_features(d), _rbf(dist, self.config.cutoff)], -1)

    def _periodic_features(self, d: Tensor) -> Tensor:
        feats = fourier_features(d, self.config.num_freqs)
        if self.config.wave_order:
            feats = torch.cat([feats, plane_wave_features(d, self.config.wave_order)], -1)
        return feats

    def _property_terms(self, properties: Tensor | None, mask: Tensor | None, b: int) -> list[Tensor]:
        p = self.config.num_properties
        if p == 0:
            return []
        if properties is None:
            width = property_slices(self.config.property_kinds)[-1].stop
            properties = self.property_null.new_zeros(b, width)
            mask = torch.zeros(b, p, dtype=torch.bool, device=properties.device)
        elif mask is None:
            mask = torch.ones(b, p, dtype=torch.bool, device=properties.device)
        terms = []
        kinds, slices = self.config.property_kinds, property_slices(self.config.property_kinds)
        for k in range(p):
            emb = self.property_embed[k](_property_features(kinds[k], properties[:, slices[k]]))
            terms.append(torch.where(mask[:, k, None], emb, self.property_null[k].expand_as(emb)))
        return terms

    def forward(
        self,
        frac: Tensor,
        lattice: Tensor,
        types: Tensor,
        t: Tensor,
        num_atoms: Tensor,
        properties: Tensor | None = None,
        property_mask: Tensor | None = None,
    ) -> Tensor:
        """Atom features ``(M, hidden)`` of the noisy crystals; the arguments' shapes are in the class
        docstring."""
        batch = torch.repeat_interleave(torch.arange(len(num_atoms), device=frac.device), num_atoms)
        edges, feats = self._edges(frac, lattice, num_atoms)
        edge_attr = torch.cat([feats, lattice[batch[edges[1]]]], dim=-1)
        h = self.type_embed(types) + self.time_embed(t)[batch]
        props = self._property_terms(properties, property_mask, len(num_atoms))
        for depth, layer in enumerate(self.layers):
            for k, term in enumerate(props):
                h = h + self.adapters[depth][k](term)[batch]
            h = layer(h, edges, edge_attr)
        for k, term in enumerate(props):
            h = h + self.adapters[-1][k](term)[batch]
        return h


_FEATURES = {"scalar": 32, "chemical_system": NUM_TYPES, "space_group": NUM_SPACE_GROUPS}


def _property_features(kind: PropertyKind, columns: Tensor) -> Tensor:
    """A property's packed columns (B, width) -> the input of its embedding MLP: sinusoidal features of a
    standardised scalar (B, 32), the multi-hot of a chemical system as it is (B, 100), the one-hot of a space
    group 1..230 (B, 230; a masked row's placeholder 0 maps to group 1 and is replaced by the null embedding)."""
    if kind == "scalar":
        return _scalar_features(columns[:, 0])
    if kind == "chemical_system":
        return columns
    index = columns[:, 0].round().long().clamp(1, NUM_SPACE_GROUPS) - 1
    return nn.functional.one_hot(index, NUM_SPACE_GROUPS).to(columns.dtype)


def _scalar_features(x: Tensor, num: int = 16) -> Tensor:
    """``(B,)`` standardised scalars -> ``(B, 32)`` sinusoidal features (MatterGen's scalar embedding)."""
    freqs = torch.exp(torch.linspace(math.log(0.25), math.log(16.0), num, device=x.device, dtype=x.dtype))
    a = x[:, None] * freqs
    return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)


@dataclass
class CrystalDenoiserConfig(EncoderConfig):
    """The joint denoiser: :class:`EncoderConfig` sizes; its heads predict the fractional-coordinate score,
    the lattice noise and the atom-type logits."""


class CrystalDenoiser(PretrainedModel):
    """The joint denoiser (see the module docstring). ``forward(...) -> {"frac": (M, 3), "lattice": (B, 6),
    "types": (M, K + 1)}``."""

    config_class = CrystalDenoiserConfig

    def __init__(self, config: CrystalDenoiserConfig) -> None:
        super().__init__(config)
        h = config.hidden
        self.encoder = CrystalEncoder(config)
        self.frac_head = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, 3, bias=False))
        self.type_head = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, NUM_TYPES + 1))
        self.lattice_head = nn.Sequential(nn.LayerNorm(h), _mlp(h, h, 6))

    def forward(
        self,
        frac: Tensor,
        lattice: Tensor,
        types: Tensor,
        t: Tensor,
        num_atoms: Tensor,
        properties: Tensor | None = None,
        property_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """See :class:`CrystalEncoder` for the inputs; t: (B,) in [0, 1], 0 = data."""
        h = self.encoder(frac, lattice, types, t, num_atoms, properties, property_mask)
        batch = torch.repeat_interleave(torch.arange(len(num_atoms), device=frac.device), num_atoms)
        pooled = scatter(h, batch, dim=0, dim_size=len(num_atoms), reduce="mean")
        return {"frac": self.frac_head(h), "lattice": self.lattice_head(pooled), "types": self.type_head(h)}


@dataclass
class PropertyPredictorConfig(EncoderConfig):
    """A property regressor on (possibly noisy) crystals: :class:`EncoderConfig` sizes.

    Attributes:
        outputs: number of predicted properties.
    """

    outputs: int = 1


class PropertyPredictor(PretrainedModel):
    """Regresses ``outputs`` standardised properties from a crystal at time ``t`` (t = 0: a clean crystal).

    Used for classifier guidance (trained on noisy crystals, as Dhariwal & Nichol 2021 train their classifier)
    and, trained on clean held data only, as the independent judge of property-guided samples.
    ``forward(frac, lattice, types, t, num_atoms) -> (B, outputs)``."""

    config_class = PropertyPredictorConfig

    def __init__(self, config: PropertyPredictorConfig) -> None:
        super().__init__(config)
        self.encoder = CrystalEncoder(config)
        self.head = nn.Sequential(
            nn.LayerNorm(config.hidden), _mlp(config.hidden, config.hidden, config.outputs)
        )

    def forward(self, frac: Tensor, lattice: Tensor, types: Tensor, t: Tensor, num_atoms: Tensor) -> Tensor:
        """Standardised properties ``(B, outputs)``: the encoder's atom features averaged per crystal, then
        the head."""
        h = self.encoder(frac, lattice, types, t, num_atoms)
        batch = torch.repeat_interleave(torch.arange(len(num_atoms), device=frac.device), num_atoms)
        return self.head(scatter(h, batch, dim=0, dim_size=len(num_atoms), reduce="mean"))
