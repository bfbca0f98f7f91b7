"""Pipeline: metrics against the issue's targets, train -> save -> load -> sample round trips (tiny)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from diff_protein import metrics as M
from diff_protein.data.profiles import ProfileFamilies, ProfileFamiliesConfig
from diff_protein.data.synthetic import SyntheticBackboneConfig, SyntheticBackbones
from diff_protein.diffusion.objective import collate_frames
from diff_protein.models.ipa import FrameDenoiserConfig
from diff_protein.models.sequence import SequenceDenoiserConfig
from diff_protein.pipeline import (
    FitConfig,
    evaluate_backbones,
    evaluate_sequences,
    fit,
    generate_sequences,
    load_backbone_run,
    load_sequence_run,
    make_process,
    sample_backbones,
    train_backbones,
    train_sequences,
    train_taxonomy_classifier,
)


@pytest.fixture(scope="module")
def synthetic() -> SyntheticBackbones:
    data = SyntheticBackbones(
        SyntheticBackboneConfig(num_samples=4, min_length=24, max_length=28, topologies=("helical_hairpin",))
    )
    data.materialize()
    return data


def test_evaluate_backbones_on_the_training_set_meets_every_target(synthetic) -> None:
    ref = [synthetic.backbone(i).atoms.numpy() for i in range(len(synthetic))]
    m = evaluate_backbones(ref, ref)
    assert m["ca_ca_valid"] == 1.0 and m["clash_free"] == 1.0 and m["sse_max_abs_diff"] < 1e-12
    assert m["met_ca_ca_valid"] == m["met_clash_free"] == m["met_sse"] == 1.0
    assert m["rg_vs_ref"] == pytest.approx(1.0) and m["rg_ratio"] == pytest.approx(m["ref_rg_ratio"])
    stretched = [a * 1.1 for a in ref]
    bad = evaluate_backbones(stretched, ref)
    assert bad["ca_ca_valid"] == 0.0 and bad["met_ca_ca_valid"] == 0.0
    assert bad["rg_vs_ref"] == pytest.approx(1.1)
    # pooled over all bonds, not averaged per chain
    half = [ref[0], ref[1] * 1.1]
    bonds = [len(ref[0]) - 1, len(ref[1]) - 1]
    assert evaluate_backbones(half, ref)["ca_ca_valid"] == pytest.approx(bonds[0] / sum(bonds))
    assert M.clash_count(ref[0]) == 0


def test_evaluate_backbones_compares_composition_at_the_samples_lengths() -> None:
    # Beta hairpins are short and helix bundles long in the synthetic set: samples of the short lengths only
    # must be judged against the short training chains, not against the whole set's mix.
    def chains_of(topology: str, min_length: int, max_length: int) -> list[np.ndarray]:
        cfg = SyntheticBackboneConfig(
            num_samples=3, min_length=min_length, max_length=max_length, topologies=(topology,)
        )
        data = SyntheticBackbones(cfg)
        return [data.backbone(i).atoms.numpy() for i in range(len(data))]

    strands, helical = chains_of("beta_hairpin", 40, 50), chains_of("helix_bundle", 80, 90)
    assert all(M.sse_composition(c)["b"] > 0.2 for c in strands)  # (the premise)
    assert all(M.sse_composition(c)["b"] == 0.0 for c in helical)
    chains = strands + helical
    matched = evaluate_backbones(strands, chains)
    assert matched["sse_max_abs_diff"] == pytest.approx(0.0, abs=1e-12) and matched["met_sse"] == 1.0
    assert matched["rg_vs_ref"] == pytest.approx(1.0)
    plain = evaluate_backbones(strands, chains, match_lengths=False)
    assert plain["sse_max_abs_diff"] > 0.1 and plain["met_sse"] == 0.0


def test_draw_sample_lengths_spreads_samples_over_many_training_lengths() -> None:
    from diff_protein.bench import draw_sample_lengths

    train = list(range(40, 97))
    lengths = draw_sample_lengths(train, 64, seed=0)
    assert len(lengths) == 64 and set(lengths) <= set(train)
    assert all(lengths[i] == lengths[i + 1] for i in range(0, 64, 2))  # pairs: one batched loop per length
    assert len(set(lengths)) >= 20  # 32 draws from 57 lengths, not 8
    assert lengths == draw_sample_lengths(train, 64, seed=0) != draw_sample_lengths(train, 64, seed=1)
    assert (
        draw_sample_lengths(train, 5, seed=0, per_length=8)
        == [draw_sample_lengths(train, 5, seed=0, per_length=8)[0]] * 5
    )
    assert len(draw_sample_lengths(train, 7, seed=0)) == 7
    with pytest.raises(ValueError, match="num_samples"):
        draw_sample_lengths([], 4, seed=0)


def test_make_process_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        make_process("ddpm")


@pytest.mark.parametrize("kind", ["diffusion", "flow"])
def test_backbone_train_save_load_sample(tmp_path, synthetic, kind) -> None:
    cfg = FrameDenoiserConfig(node_dim=16, pair_dim=8, num_blocks=1, num_heads=2, head_dim=4)
    fit = FitConfig(steps=2, batch_size=2, lr=1e-3, cpu=True, output_dir=str(tmp_path / "train"), log_every=1)
    run = train_backbones(synthetic, cfg, fit, kind)
    assert sorted(run.lengths) == sorted(synthetic[i]["trans"].shape[0] for i in range(4))
    run.save(tmp_path / "run")
    again = load_backbone_run(tmp_path / "run")
    assert again.process_kind == kind
    samples = sample_backbones(again, [24, 26, 24], steps=3, seed=0)
    assert [s.shape for s in samples] == [(24, 4, 3), (26, 4, 3), (24, 4, 3)]
    assert all(np.isfinite(s).all() for s in samples)
    # Batches of two, padded (sample_frames(mask=), tested in test_se3_diffusion): the requested order comes back.
    mixed = sample_backbones(again, [26, 24, 25, 24], steps=3, seed=1, batch_size=2)
    assert [s.shape[0] for s in mixed] == [26, 24, 25, 24] and all(np.isfinite(s).all() for s in mixed)
    with pytest.raises(ValueError, match="batch_size"):
        sample_backbones(again, [24], batch_size=0)


def test_length_batches_bound_size_and_padding() -> None:
    from diff_protein.pipeline import _length_batches

    lengths = [96, 40, 50, 41, 64, 80, 51, 40]
    batches = _length_batches(lengths, batch_size=2, max_length_ratio=1.25)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(
        len(b) <= 2 and max(lengths[i] for i in b) <= 1.25 * min(lengths[i] for i in b) for b in batches
    )
    assert [[lengths[i] for i in b] for b in batches] == [[40, 40], [41, 50], [51], [64, 80], [96]]
    assert len(_length_batches(lengths, batch_size=256, max_length_ratio=3.0)) == 1


def test_sequence_train_save_load_generate_evaluate(tmp_path) -> None:
    families = ProfileFamilies(ProfileFamiliesConfig(num_families=2, length=12))
    data = families.dataset(8, torch.Generator().manual_seed(0))
    fit = FitConfig(steps=2, batch_size=8, lr=1e-3, cpu=True, output_dir=str(tmp_path / "t"), log_every=1)
    run = train_sequences(data, SequenceDenoiserConfig(hidden_size=16, depth=1, num_heads=2), fit)
    run.classifier = train_taxonomy_classifier(data, fit, hidden_size=16, depth=1)
    run.save(tmp_path / "run")
    again = load_sequence_run(tmp_path / "run")
    assert again.vocabulary.labels == data.vocabulary.labels and again.length == 12
    labels = torch.tensor([1, 1, 2, 2])
    tokens = generate_sequences(again, labels, guidance_scale=2.0, steps=4)
    assert tokens.shape == (4, 12) and (tokens < 20).all()
    m = evaluate_sequences(tokens, labels, again.classifier, families, reference=["ACDEFGHIK"])
    expected = float((families.classify(tokens) == labels - 1).float().mean())
    assert m["adherence_bayes"] == pytest.approx(expected)
    assert 0.0 <= m["adherence_classifier"] <= 1.0 and 0.0 <= m["composition_jsd"] <= 1.0
    # samples drawn from the true profiles are judged by the Bayes classifier's own accuracy
    true = families.sample(labels - 1, torch.Generator().manual_seed(1))
    assert evaluate_sequences(true, labels, families=families)["adherence_bayes"] == pytest.approx(
        float((families.classify(true) == labels - 1).float().mean())
    )


def test_bench_dataset_matches_the_synthetic_set(synthetic) -> None:
    from diff_protein.bench import BackboneList, generate_synthetic

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        items = BackboneList(generate_synthetic(synthetic.config, workers=0))
        assert torch.get_num_threads() == 2  # generating in this process leaves its thread count alone
    finally:
        torch.set_num_threads(threads)
    assert len(items) == len(synthetic)
    for i in range(len(items)):
        for key in ("atoms", "rots", "trans"):
            assert torch.equal(items[i][key], synthetic[i][key])


def test_fit_stops_at_the_time_budget(tmp_path) -> None:
    """``FitConfig.max_seconds`` ends training early (with a warning) and still returns the model."""

    class _Slow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

    calls = []

    def objective(model, batch, generator=None):
        calls.append(1)
        time.sleep(0.05)
        return (model.w - 1.0) ** 2

    items = [{"rots": torch.eye(3).expand(4, 3, 3), "trans": torch.zeros(4, 3)}] * 4
    cfg = FitConfig(steps=1000, batch_size=2, lr=1e-2, cpu=True, output_dir=str(tmp_path), max_seconds=0.3)
    with pytest.warns(UserWarning, match="max_seconds"):
        model = fit(_Slow(), objective, items, collate_frames, cfg)
    assert 1 <= len(calls) < 100 and 0 < float(model.w.detach()) < 1  # Adam moved w, but far from 1000 steps
    # a later training in the same process runs normally
    again = fit(
        _Slow(),
        objective,
        items,
        collate_frames,
        FitConfig(steps=3, batch_size=2, lr=1e-2, cpu=True, output_dir=str(tmp_path / "again")),
    )
    assert float(again.w.detach()) > 0
    with pytest.raises(ValueError, match="max_seconds"):
        FitConfig(max_seconds=0)


def test_backbone_training_starts_from_a_saved_run_and_pads_for_cuda_graphs(tmp_path, synthetic) -> None:
    from diff_protein.diffusion.objective import BackboneObjectiveConfig

    cfg = FrameDenoiserConfig(node_dim=16, pair_dim=8, num_blocks=1, num_heads=2, head_dim=4)
    first = FitConfig(steps=3, batch_size=2, lr=1e-2, cpu=True, output_dir=str(tmp_path / "a"), log_every=1)
    run = train_backbones(synthetic, cfg, first, "flow")
    run.save(tmp_path / "run")
    # A vanishing lr keeps the loaded weights: the second run ends where the first one did, not at a fresh init.
    again = FitConfig(steps=1, batch_size=4, lr=1e-12, cpu=True, output_dir=str(tmp_path / "b"), log_every=1)
    graphs = BackboneObjectiveConfig(cuda_graphs=True)  # on the CPU: padded batches, eager replays
    cont = train_backbones(synthetic, cfg, again, "flow", objective_config=graphs, init_from=tmp_path / "run")
    for a, b in zip(run.model.state_dict().values(), cont.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    fresh = train_backbones(
        synthetic, cfg, dataclasses.replace(again, output_dir=str(tmp_path / "d")), "flow"
    )
    assert any(not torch.equal(a, b) for a, b in zip(run.model.parameters(), fresh.model.parameters()))
    with pytest.raises(ValueError, match="init_from"):
        train_backbones(synthetic, FrameDenoiserConfig(node_dim=8, pair_dim=8, num_blocks=1, num_heads=2,
                        head_dim=4), again, "flow", init_from=tmp_path / "run")  # fmt: skip
    with pytest.raises(ValueError, match="batch_size"):
        big = FitConfig(steps=1, batch_size=8, cpu=True, output_dir=str(tmp_path / "c"))
        train_backbones(synthetic, cfg, big, "flow", objective_config=graphs)
