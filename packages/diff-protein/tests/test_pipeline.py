"""Pipeline: metrics against the issue's targets, train -> save -> load -> sample round trips (tiny)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from diff_protein import metrics as M
from diff_protein.config import ProteinTrainConfig, default_train_config
from diff_protein.data.profiles import ProfileFamilies, ProfileFamiliesConfig
from diff_protein.data.synthetic import SyntheticBackboneConfig, SyntheticBackbones
from diff_protein.diffusion.objective import collate_frames
from diff_protein.models.configs import TaxonomyClassifierConfig
from diff_protein.models.ipa import FrameDenoiserConfig
from diff_protein.models.sequence import SequenceDenoiserConfig
from diff_protein.pipeline import (
    ProteinPipeline,
    evaluate_backbones,
    evaluate_sequences,
    fit,
    generate_sequences,
    make_process,
    sample_backbones,
    train_backbones,
    train_sequences,
    train_taxonomy_classifier,
)
from diffcore.rng import make_generator

TINY = FrameDenoiserConfig(node_dim=16, pair_dim=8, num_blocks=1, num_heads=2, head_dim=4)


def _backbone_config(out, process: str = "flow", batch_size: int = 2, **train) -> ProteinTrainConfig:
    train = {"steps": 2, "lr": 1e-3, "device": "cpu", "log_every": 1} | train
    return ProteinTrainConfig(process=process, batch_size=batch_size, backbone=TINY,
                              train=default_train_config(output_dir=str(out), **train))  # fmt: skip


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
    pipe = train_backbones(_backbone_config(tmp_path / "train", kind), synthetic)
    assert sorted(pipe.lengths) == sorted(synthetic[i]["trans"].shape[0] for i in range(4))
    pipe.save_pretrained(tmp_path / "pipe")
    again = ProteinPipeline.from_pretrained(tmp_path / "pipe")
    assert again.what == "backbone" and again.process_kind == kind and again.lengths == pipe.lengths
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "pipe" / "README.md")  # the model card, in the Hub's form
    assert card.data.library_name == "diffcore" and "protein" in card.data.tags
    assert "diffuse protein sample --pipeline" in card.text
    assert again.process_config == pipe.process_config
    for a, b in zip(pipe.backbone.state_dict().values(), again.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    samples = sample_backbones(again, [24, 26, 24], steps=3, generator=make_generator(0))
    assert [s.shape for s in samples] == [(24, 4, 3), (26, 4, 3), (24, 4, 3)]
    assert all(np.isfinite(s).all() for s in samples)
    # The saved pipeline samples exactly what the trained one does from the same noise.
    before = sample_backbones(pipe, [24, 26, 24], steps=3, generator=make_generator(0))
    assert all(np.array_equal(a, b) for a, b in zip(samples, before, strict=True))
    # Batches of two, padded (sample_frames(mask=), tested in test_se3_diffusion): the requested order comes back.
    mixed = sample_backbones(again, [26, 24, 25, 24], steps=3, generator=make_generator(1), batch_size=2)
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
    config = ProteinTrainConfig(
        what="sequence", batch_size=8, sequence=SequenceDenoiserConfig(hidden_size=16, depth=1, num_heads=2),
        classifier=TaxonomyClassifierConfig(hidden_size=16, depth=1),
        train=default_train_config(steps=2, lr=1e-3, device="cpu", output_dir=str(tmp_path / "t"), log_every=1),
    )  # fmt: skip
    pipe = train_sequences(config, data)
    assert pipe.classifier is not None and pipe.classifier.config.num_classes == len(data.vocabulary) == 3
    assert (tmp_path / "t" / "classifier" / "log.jsonl").is_file()  # its own run, beside the generator's
    pipe.save_pretrained(tmp_path / "pipe")
    again = ProteinPipeline.from_pretrained(tmp_path / "pipe")
    assert again.vocabulary.labels == data.vocabulary.labels and again.sequence_length == 12
    labels = torch.tensor([1, 1, 2, 2])
    tokens = generate_sequences(again, labels, guidance_scale=2.0, steps=4, generator=make_generator(0))
    assert tokens.shape == (4, 12) and (tokens < 20).all()
    assert torch.equal(tokens, generate_sequences(pipe, labels, 2.0, 4, generator=make_generator(0)))
    m = evaluate_sequences(tokens, labels, again.classifier, families, reference=["ACDEFGHIK"])
    expected = float((families.classify(tokens) == labels - 1).float().mean())
    assert m["adherence_bayes"] == pytest.approx(expected)
    judged = float((again.classifier(tokens).argmax(-1) == labels).float().mean())
    assert m["adherence_classifier"] == pytest.approx(judged) and 0.0 <= m["composition_jsd"] <= 1.0
    # samples drawn from the true profiles are judged by the Bayes classifier's own accuracy
    true = families.sample(labels - 1, torch.Generator().manual_seed(1))
    assert evaluate_sequences(true, labels, families=families)["adherence_bayes"] == pytest.approx(
        float((families.classify(true) == labels - 1).float().mean())
    )
    # no classifier when none is asked for; a separately trained one has its own sizes and steps
    bare = train_sequences(dataclasses.replace(config, classifier_steps=0).with_train(output_dir=str(tmp_path / "u")),
                           data)  # fmt: skip
    assert bare.classifier is None and not (tmp_path / "u" / "classifier").exists()
    judge_config = dataclasses.replace(config, classifier_steps=1).with_train(output_dir=str(tmp_path / "j"))
    judge = train_taxonomy_classifier(data, judge_config)
    assert judge.config.hidden_size == 16 and judge.config.num_classes == 3


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
    """``train.max_seconds`` ends training early (with a warning) and still returns the model."""

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
    cfg = default_train_config(steps=1000, lr=1e-2, device="cpu", output_dir=str(tmp_path), max_seconds=0.3)
    with pytest.warns(UserWarning, match="max_seconds"):
        model = fit(_Slow(), objective, items, collate_frames, cfg, batch_size=2)
    assert 1 <= len(calls) < 100 and 0 < float(model.w.detach()) < 1  # Adam moved w, but far from 1000 steps
    # a later training in the same process runs normally
    again_cfg = default_train_config(steps=3, lr=1e-2, device="cpu", output_dir=str(tmp_path / "again"))
    again = fit(_Slow(), objective, items, collate_frames, again_cfg, batch_size=2)
    assert float(again.w.detach()) > 0
    with pytest.raises(ValueError, match="max_seconds"):
        default_train_config(max_seconds=0)
    with pytest.raises(ValueError, match="batch_size"):
        fit(_Slow(), objective, items, collate_frames, again_cfg, batch_size=0)


def test_backbone_training_starts_from_a_saved_pipeline_and_pads_for_cuda_graphs(tmp_path, synthetic) -> None:
    first = train_backbones(_backbone_config(tmp_path / "a", steps=3, lr=1e-2), synthetic)
    first.save_pretrained(tmp_path / "pipe")
    # A vanishing lr keeps the loaded weights: the second run ends where the first one did, not at a fresh init.
    again = _backbone_config(tmp_path / "b", batch_size=4, steps=1, lr=1e-12)
    graphs = dataclasses.replace(
        again, cuda_graphs=True, init_from=str(tmp_path / "pipe")
    )  # CPU: eager replays
    cont = train_backbones(graphs, synthetic)
    for a, b in zip(first.backbone.state_dict().values(), cont.backbone.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    fresh = train_backbones(dataclasses.replace(again, train=dataclasses.replace(again.train,
                            output_dir=str(tmp_path / "d"))), synthetic)  # fmt: skip
    assert any(
        not torch.equal(a, b) for a, b in zip(first.backbone.parameters(), fresh.backbone.parameters())
    )
    other = dataclasses.replace(graphs, backbone=FrameDenoiserConfig(node_dim=8, pair_dim=8, num_blocks=1,
                                num_heads=2, head_dim=4))  # fmt: skip
    with pytest.raises(ValueError, match="init_from"):
        train_backbones(other, synthetic)
    with pytest.raises(ValueError, match="batch_size"):
        train_backbones(dataclasses.replace(graphs, batch_size=8, init_from=None), synthetic)


def test_module_initialisation_is_seeded_without_touching_the_global_rng(tmp_path, synthetic) -> None:
    """The network's initial weights follow ``train.seed`` (through ``diffcore.rng.seeded``), and sampling draws
    only from its generator: the caller's global RNG state is left as it was."""
    one_step = {"steps": 1, "lr": 1e-12}
    a = train_backbones(_backbone_config(tmp_path / "a", **one_step), synthetic)
    b = train_backbones(_backbone_config(tmp_path / "b", **one_step), synthetic)
    c = train_backbones(_backbone_config(tmp_path / "c", seed=1, **one_step), synthetic)
    pa, pb, pc = (list(p.backbone.parameters()) for p in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb)) and any(
        not torch.equal(x, z) for x, z in zip(pa, pc)
    )
    state = torch.get_rng_state()
    sample_backbones(a, [24], steps=2, generator=make_generator(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_a_diff_protein_0_1_run_folder_still_loads(tmp_path) -> None:
    """0.1 wrote ``run.json`` beside ``model/`` (and ``classifier/``); ``from_pretrained`` reads such folders."""
    import json

    from diff_protein.models.ipa import FrameDenoiser
    from diff_protein.models.sequence import SequenceDenoiser, TaxonomyClassifier

    backbone = FrameDenoiser(TINY)
    backbone.save_pretrained(tmp_path / "bb" / "model")
    flow = {"rotation_schedule": "linear", "rotation_rate": 20.0, "rotation_rate_t_max": 0.9}
    info = {"kind": "backbone", "process": "flow", "process_config": flow, "lengths": [24, 26]}
    (tmp_path / "bb" / "run.json").write_text(json.dumps(info))
    pipe = ProteinPipeline.from_pretrained(tmp_path / "bb")
    assert (pipe.what, pipe.process_kind, pipe.process_config, pipe.lengths) == (
        "backbone",
        "flow",
        flow,
        [24, 26],
    )
    assert all(
        torch.equal(a, b) for a, b in zip(backbone.parameters(), pipe.backbone.parameters(), strict=True)
    )
    assert not pipe.backbone.training

    seq = SequenceDenoiser(SequenceDenoiserConfig(num_classes=3, hidden_size=16, depth=1, num_heads=2))
    seq.save_pretrained(tmp_path / "seq" / "model")
    TaxonomyClassifier(TaxonomyClassifierConfig(num_classes=3, hidden_size=16)).save_pretrained(
        tmp_path / "seq" / "classifier"
    )
    labels = ["<unknown>", "taxon_0", "taxon_1"]
    (tmp_path / "seq" / "run.json").write_text(
        json.dumps({"kind": "sequence", "labels": labels, "length": 12})
    )
    pipe = ProteinPipeline.from_pretrained(tmp_path / "seq")
    assert pipe.what == "sequence" and pipe.vocabulary.labels == labels and pipe.sequence_length == 12
    assert pipe.classifier is not None
    # and saved again, it is a pipeline folder
    pipe.save_pretrained(tmp_path / "new")
    assert ProteinPipeline.from_pretrained(tmp_path / "new").vocabulary.labels == labels


def test_protein_samples_save_and_sample_dispatch(tmp_path) -> None:
    from diff_protein.config import ProteinSampleConfig
    from diff_protein.models.ipa import FrameDenoiser
    from diff_protein.pipeline import ProteinSamples, parse_ranges, sample

    atoms = [np.zeros((3, 4, 3)) + np.arange(3)[:, None, None] * 3.8, np.zeros((2, 4, 3))]
    files = ProteinSamples("backbone", backbones=atoms).save(tmp_path / "bb")
    assert [f.name for f in files] == ["sample_000.pdb", "sample_001.pdb"]
    tokens = torch.tensor([[0, 1, 2], [19, 18, 17]])
    out = ProteinSamples("sequence", tokens=tokens, labels=["a", "b"])
    assert out.sequences == ["ACD", "YWV"] and len(out) == 2
    (fasta,) = out.save(tmp_path / "seq")
    assert fasta.read_text() == ">sample_0 Tax=a\nACD\n>sample_1 Tax=b\nYWV\n"
    assert parse_ranges("1-2, 4", 6).tolist() == [False, True, True, False, True, False]
    with pytest.raises(ValueError, match="fixed"):
        parse_ranges("3-9", 6)
    with pytest.raises(ValueError, match="fixed"):
        parse_ranges("a-b", 6)
    pipe = ProteinPipeline("backbone", backbone=FrameDenoiser(TINY), lengths=[24])
    state = torch.get_rng_state()
    first = sample(pipe, ProteinSampleConfig(num_samples=2, length=24, steps=2, device="cpu"))
    assert torch.equal(torch.get_rng_state(), state)  # the noise comes from config.seed's generator only
    again = sample(pipe, ProteinSampleConfig(num_samples=2, length=24, steps=2, device="cpu"),
                   generator=make_generator(0))  # fmt: skip
    assert all(np.array_equal(a, b) for a, b in zip(first.backbones, again.backbones, strict=True))
    with pytest.raises(ValueError, match="labels"):
        sample(pipe, ProteinSampleConfig(labels=("taxon_0",), device="cpu"))
    with pytest.raises(ValueError, match="what"):
        ProteinPipeline("structure", backbone=FrameDenoiser(TINY))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_verbs_on_a_gpu_train_with_cuda_graphs_and_sample_reproducibly(tmp_path) -> None:
    from diff_protein.config import ProteinEvaluateConfig, ProteinSampleConfig
    from diff_protein.pipeline import evaluate, sample, train

    config = dataclasses.replace(
        _backbone_config(tmp_path / "bb", steps=3, device="cuda"),
        num_examples=4,
        max_length=26,
        cuda_graphs=True,
    )
    train(config)
    pipe = ProteinPipeline.from_pretrained(tmp_path / "bb" / "pipeline", device="cuda")
    assert pipe.device.type == "cuda"
    settings = ProteinSampleConfig(num_samples=3, length=24, steps=3, device="cuda", seed=5)
    first, again = sample(pipe, settings), sample(pipe, settings)
    assert all(np.array_equal(a, b) for a, b in zip(first.backbones, again.backbones, strict=True))
    other = sample(pipe, dataclasses.replace(settings, seed=6))
    assert not np.array_equal(first.backbones[0], other.backbones[0])
    metrics = evaluate(pipe, ProteinEvaluateConfig(num_samples=2, steps=3, num_reference=4, device="cuda"))
    assert metrics["num_samples"] == 2 and 0 <= metrics["ca_ca_valid"] <= 1
    seq = dataclasses.replace(
        config, what="sequence", num_examples=4, length=8,
        sequence=SequenceDenoiserConfig(hidden_size=16, depth=1, num_heads=2),
        classifier=TaxonomyClassifierConfig(hidden_size=16, depth=1),
    ).with_train(output_dir=str(tmp_path / "seq"))  # fmt: skip
    seq_pipe = train(seq).to("cuda")
    drawn = sample(seq_pipe, ProteinSampleConfig(num_samples=2, steps=4, device="cuda"))
    assert drawn.tokens.shape == (8, 8) and drawn.tokens.device.type == "cpu"
    scores = evaluate(seq_pipe, ProteinEvaluateConfig(num_samples=2, steps=4, device="cuda"))
    assert 0 <= scores["adherence_classifier"] <= 1 and 0 <= scores["adherence_bayes"] <= 1


def test_backbone_training_on_a_structure_folder_uses_windows(tmp_path) -> None:
    """``data_path`` trains on :class:`ChainWindows` of the real chain (lysozyme 1AKI, 129 residues, cropped to
    48-residue windows), records the windows, and ``evaluate`` compares samples with those same windows."""
    from pathlib import Path

    from diff_protein import ProteinEvaluateConfig, evaluate, train
    from diff_protein.data.windows import ChainWindows, WindowConfig

    root = tmp_path / "real"
    root.mkdir()
    fixture = Path(__file__).parent / "data" / "1aki_backbone.pdb"
    (root / fixture.name).write_bytes(fixture.read_bytes())
    config = dataclasses.replace(
        _backbone_config(tmp_path / "run"), data_path=str(root), min_length=48, max_length=48
    )
    pipe = train(config)
    window = WindowConfig(min_length=48, max_length=48)
    assert pipe.data["windows"] == dataclasses.asdict(window)
    assert (
        pipe.lengths == [48] * len(ChainWindows(root, window)) and len(pipe.lengths) == 4
    )  # starts 0, 32, 64, 81
    metrics = evaluate(pipe, ProteinEvaluateConfig(num_samples=2, steps=2, device="cpu"))
    assert metrics["ref_coil"] == pytest.approx(
        np.mean([M.sse_composition(ChainWindows(root, window)[i]["atoms"].numpy())["c"] for i in range(4)])
    )
