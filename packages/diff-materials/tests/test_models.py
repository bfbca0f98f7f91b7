"""The denoiser's symmetries (permutation, lattice rotation, periodic translation) and the periodic radius graph
against pymatgen's neighbour lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diff_materials.data import Crystal, CrystalDataset, collate_crystals
from diff_materials.lattice import lattice_to_sym, normalise_lattice, sym_to_lattice, unnormalise_lattice
from diff_materials.models import CrystalDenoiser, CrystalDenoiserConfig, periodic_radius_graph


def _random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _triclinic(seed: int = 0, n: int = 4) -> Crystal:
    rng = np.random.default_rng(seed)
    lattice = np.diag([4.0, 5.0, 6.0]) + rng.normal(0, 0.6, (3, 3))
    return Crystal(lattice, rng.random((n, 3)), rng.integers(1, 40, n), "tri")


def _inputs(crystals, model):
    b = collate_crystals([CrystalDataset(crystals)[i] for i in range(len(crystals))])
    enc = model.encoder
    x = normalise_lattice(
        b["lattice"].double(), b["num_atoms"], enc.lattice_mean.double(), enc.lattice_std.double()
    )
    return b["frac"].double(), x, b["types"], b["num_atoms"]


@pytest.fixture(params=[("fc", 0), ("radius", 0), ("fc", 2)])
def model(request):
    torch.manual_seed(0)  # test-local: the network's initialisation
    edges, waves = request.param
    cfg = CrystalDenoiserConfig(hidden=32, layers=2, num_freqs=4, wave_order=waves, edges=edges, cutoff=4.0,
                                lattice_mean=[4.5, 4.5, 4.5, 0, 0, 0], lattice_std=[1.0] * 6)  # fmt: skip
    return CrystalDenoiser(cfg).double().eval()


def _run(model, crystals, t=0.3):
    frac, x, types, n = _inputs(crystals, model)
    return model(frac, x, types, torch.full((len(n),), t, dtype=torch.float64), n)


def test_symmetric_lattice_has_the_gram_matrix_and_ignores_rotations():
    c = _triclinic()
    lat = torch.tensor(c.lattice)[None]
    s = sym_to_lattice(lattice_to_sym(lat))
    assert torch.allclose(s @ s.transpose(-1, -2), lat @ lat.transpose(-1, -2), atol=1e-10)
    assert torch.allclose(s, s.transpose(-1, -2))
    rotated = lat @ torch.tensor(_random_rotation(1)).T
    assert torch.allclose(lattice_to_sym(rotated), lattice_to_sym(lat), atol=1e-10)
    n = torch.tensor([4])
    mean, std = torch.rand(6, dtype=torch.float64), torch.rand(6, dtype=torch.float64) + 0.5
    back = unnormalise_lattice(normalise_lattice(lat, n, mean, std), n, mean, std)
    assert torch.allclose(back, s, atol=1e-10)


def test_outputs_are_invariant_to_rotating_the_lattice(model):
    c = _triclinic()
    rotated = Crystal(c.lattice @ _random_rotation(2).T, c.frac, c.numbers)
    a, b = _run(model, [c]), _run(model, [rotated])
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-8), k


def test_outputs_are_invariant_to_a_periodic_translation(model):
    c = _triclinic()
    shifted = Crystal(c.lattice, c.frac + np.array([0.37, 0.81, 0.55]), c.numbers)  # wrapped across the cell
    a, b = _run(model, [c]), _run(model, [shifted])
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-8), k


def test_outputs_follow_a_permutation_of_the_atoms(model):
    c = _triclinic(n=5)
    perm = np.array([3, 0, 4, 1, 2])
    permuted = Crystal(c.lattice, c.frac[perm], c.numbers[perm])
    a, b = _run(model, [c]), _run(model, [permuted])
    assert torch.allclose(a["frac"][perm], b["frac"], atol=1e-8)
    assert torch.allclose(a["types"][perm], b["types"], atol=1e-8)
    assert torch.allclose(a["lattice"], b["lattice"], atol=1e-8)


def test_crystals_of_a_batch_do_not_see_each_other(model):
    c, d = _triclinic(0), _triclinic(5, n=3)
    alone = _run(model, [c])
    together = _run(model, [c, d])
    assert torch.allclose(alone["frac"], together["frac"][:4], atol=1e-8)
    assert torch.allclose(alone["lattice"], together["lattice"][:1], atol=1e-8)


@pytest.mark.parametrize("cutoff", [3.0, 5.5])
def test_periodic_radius_graph_matches_pymatgen_neighbour_lists(cutoff):
    c = _triclinic(3)
    s = c.to_structure()
    expected = sorted(
        (i, round(nb.nn_distance, 6)) for i, nbs in enumerate(s.get_all_neighbors(cutoff)) for nb in nbs
    )
    edges, shift, dist = periodic_radius_graph(
        torch.tensor(c.frac), torch.tensor(c.lattice)[None], torch.tensor([4]), cutoff, max_images=3
    )
    got = sorted((int(i), round(float(d), 6)) for i, d in zip(edges[1], dist))
    assert got == expected
    cart = (torch.tensor(c.frac)[edges[0]] + shift - torch.tensor(c.frac)[edges[1]]) @ torch.tensor(c.lattice)
    assert torch.allclose(cart.norm(dim=-1), dist)


def test_a_layer_applies_its_first_edge_map_per_atom_as_the_concatenated_map_per_edge():
    """:class:`CrystalLayer` splits the first linear map of ``phi_m([h_i, h_j, e_ij])`` into per-atom parts:
    the same messages as concatenating on every edge (DiffCSP Eq. 6), mean-aggregated over each atom's edges."""
    from diff_materials.models import CrystalLayer, fully_connected_edges

    torch.manual_seed(0)
    layer = CrystalLayer(16, 10)
    n = torch.tensor([5, 3])
    edges = fully_connected_edges(n)
    h, e = torch.randn(8, 16), torch.randn(edges.shape[1], 10)
    x = layer.norm(h)
    messages = layer.edge_mlp(torch.cat([x[edges[1]], x[edges[0]], e], -1))
    count = torch.zeros(8).index_add_(0, edges[1], torch.ones(edges.shape[1]))
    agg = torch.zeros(8, 16).index_add_(0, edges[1], messages) / count[:, None]
    want = h + layer.node_mlp(torch.cat([x, agg], -1))
    assert torch.allclose(layer(h, edges, e), want, atol=1e-5)


def test_plane_waves_are_every_wave_vector_once_and_separate_site_offsets_in_one_feature():
    from diff_materials.models import fourier_features, plane_wave_features

    d = torch.tensor(
        [[0.5, 0.5, 0.0], [0.5, 0.0, 0.0], [0.5, 0.5, 0.5], [0.2, -0.3, 0.7]], dtype=torch.float64
    )
    f = plane_wave_features(d, 2)
    assert f.shape == (4, 2 * 62)  # (5^3 - 1) / 2 wave vectors, one of each +-k
    assert torch.allclose(plane_wave_features(d + torch.tensor([1.0, -2.0, 3.0]), 2), f, atol=1e-9)
    # k = (1, 1, 0): cos(2 pi (d_x + d_y)) is +1 at the face offset (1/2, 1/2, 0) and -1 at the edge offset
    # (1/2, 0, 0); no per-axis feature (any frequency) tells (1/2, 1/2, 0) from (1/2, 1/2, 1/2) on x and y alone
    r = range(-2, 3)
    ks = [k for k in __import__("itertools").product(r, r, r) if k > (0, 0, 0)]
    cos = f[:, 62 + ks.index((1, 1, 0))]
    assert torch.allclose(cos[:3], torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(cos[3], torch.cos(torch.tensor(2 * torch.pi * -0.1, dtype=torch.float64)))
    axis = fourier_features(d, 4)
    assert torch.allclose(axis[0, :24].view(3, 8)[:2], axis[2, :24].view(3, 8)[:2])  # x, y rows equal
