"""``diffuse protein train | sample | evaluate`` and ``diffuse bench protein``.

Registered with the ``diffuse`` command line through the entry point ``diffcore.modalities``.
Backbones (``--what backbone``) train on the synthetic set or a folder of PDB/mmCIF files; sequences
(``--what sequence``) on the profile families or on FASTA / A3M files labelled by UniRef ``Tax=``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import typer
from diffcore.modality import Modality

from diff_protein import io
from diff_protein.bench import FULL, BenchSettings, backbone_objective_config, backbone_process_config, bench
from diff_protein.data.profiles import ProfileFamilies, ProfileFamiliesConfig
from diff_protein.data.sequences import SequenceDataset, detokenize, read_a3m, read_fasta
from diff_protein.data.structures import StructureDataset
from diff_protein.data.synthetic import SyntheticBackboneConfig, SyntheticBackbones
from diff_protein.diffusion.sampling import ClashGuidance, Motif
from diff_protein.frames import frames_from_backbone
from diff_protein.models.ipa import FrameDenoiserConfig
from diff_protein.models.sequence import SequenceDenoiserConfig
from diff_protein.pipeline import (
    RUN_FILE,
    FitConfig,
    evaluate_backbones,
    evaluate_sequences,
    generate_sequences,
    load_backbone_run,
    load_sequence_run,
    sample_backbones,
    train_backbones,
    train_sequences,
    train_taxonomy_classifier,
)

__all__ = ["app", "modality"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Protein diffusion: FrameDiff / FrameFlow backbones and TaxDiff sequences.",
)


def _run_kind(run: Path) -> str:
    path = run / RUN_FILE
    if not path.is_file():
        raise typer.BadParameter(f"{run} has no {RUN_FILE}; train a model into it first")
    return json.loads(path.read_text())["kind"]


def _sequence_data(
    data: Path | None, length: int, families: int, per_family: int, seed: int
) -> SequenceDataset:
    if data is None:
        fam = ProfileFamilies(ProfileFamiliesConfig(num_families=families, length=length, seed=seed))
        return fam.dataset(per_family, torch.Generator().manual_seed(seed))
    records = read_a3m(data) if data.suffix.lower() == ".a3m" else read_fasta(data)
    return SequenceDataset.from_uniref_records(records, max_length=length)


@app.command("train")
def train_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (model/, run.json, metrics)."),
    what: str = typer.Option("backbone", help="backbone | sequence"),
    data: Path = typer.Option(
        None, help="Structure folder (backbone) or FASTA/A3M file (sequence); default synthetic."
    ),
    process: str = typer.Option("flow", help="backbone: flow (FrameFlow) | diffusion (FrameDiff)"),
    steps: int = typer.Option(1000),
    batch_size: int = typer.Option(16),
    lr: float = typer.Option(3e-4),
    width: int = typer.Option(128, help="Node / hidden width."),
    depth: int = typer.Option(4, help="IPA blocks or transformer layers."),
    length: int = typer.Option(64, help="sequence: crop / profile length."),
    num_examples: int = typer.Option(256, help="Synthetic backbones, or sequences per family."),
    max_length: int = typer.Option(128, help="backbone: longest synthetic chain (>= 24)."),
    motif_prob: float = typer.Option(
        0.2, help="backbone: fraction of examples trained as motif scaffolding."
    ),
    cpu: bool = typer.Option(False, help="Train on the CPU even if a GPU is present."),
    cuda_graphs: bool = typer.Option(
        False,
        help="backbone: replay the network's training forward and backward from CUDA graphs on a GPU "
        "(batches padded to the longest chain; about 1.6x faster steps for small networks).",
    ),
    init_from: Path = typer.Option(
        None, help="backbone: a run folder written by `train` whose weights start the training."
    ),
    seed: int = typer.Option(0),
) -> None:
    """Train a backbone or a sequence model into OUT."""
    fit = FitConfig(
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, cpu=cpu, output_dir=str(out / "train")
    )
    if what == "backbone":
        dataset = (
            SyntheticBackbones(
                SyntheticBackboneConfig(
                    num_samples=num_examples, min_length=min(40, max_length), max_length=max_length, seed=seed
                )
            )
            if data is None
            else StructureDataset(data, cache_dir=out / "cache")
        )
        cfg = FrameDenoiserConfig(node_dim=width, pair_dim=width // 2, num_blocks=depth)
        # The benchmark's process and loss settings (FrameFlow: its auxiliary-loss window, rotations
        # sampled 20x faster below t = 0.9 as in FULL; FrameDiff: the paper's).
        settings = BenchSettings(
            process=process,
            motif_prob=motif_prob,
            cuda_graphs=cuda_graphs,
            rotation_rate_t_max=FULL.rotation_rate_t_max,
        )
        run = train_backbones(
            dataset,
            cfg,
            fit,
            process,
            process_config=backbone_process_config(settings),
            objective_config=backbone_objective_config(settings),
            init_from=init_from,
        )
    elif what == "sequence":
        dataset = _sequence_data(data, length, 4, num_examples, seed)
        run = train_sequences(dataset, SequenceDenoiserConfig(hidden_size=width, depth=depth), fit)
        run.classifier = train_taxonomy_classifier(dataset, fit)
    else:
        raise typer.BadParameter(f"--what: expected 'backbone' or 'sequence', got {what!r}")
    run.save(out)
    typer.echo(f"saved {what} model to {out}")


@app.command("sample")
def sample_cmd(
    run: Path = typer.Option(..., "--run", help="A folder written by `train`."),
    out: Path = typer.Option(..., "--out", help="Where PDB / FASTA files go."),
    num: int = typer.Option(8, help="Samples (per label for sequences)."),
    length: int = typer.Option(64, help="backbone: residues per chain."),
    steps: int = typer.Option(100),
    motif: Path = typer.Option(
        None, help="backbone: PDB/mmCIF whose residues --fixed are kept (inpainting)."
    ),
    fixed: str = typer.Option(
        "", help="backbone: fixed residue ranges of the motif file, e.g. '5-14,30-35' (0-based)."
    ),
    label: list[str] = typer.Option(None, help="sequence: taxonomy labels (default: every known label)."),
    guidance: float = typer.Option(2.0, help="sequence: classifier-free guidance scale (1 = none)."),
    clash_radius: float = typer.Option(
        0.0,
        help="backbone: steer sampling away from steric clashes, pushing predicted CAs >= 3 residues apart "
        "to at least this many angstrom while t >= 0.1 (0 = off; 5.0 is the measured setting).",
    ),
    rotation_rate_t_max: float = typer.Option(
        None,
        help="backbone (FrameFlow): sample rotations with the sped-up schedule only below this time and the "
        "plain geodesic ODE above it (default: the run's setting; 0.9 keeps the data's topology balance).",
    ),
    seed: int = typer.Option(0),
) -> None:
    """Generate backbones (PDB) or sequences (FASTA) from a trained run."""
    out.mkdir(parents=True, exist_ok=True)
    if _run_kind(run) == "backbone":
        model_run = load_backbone_run(run)
        if rotation_rate_t_max is not None:
            if model_run.process_kind != "flow":
                raise typer.BadParameter(
                    "--rotation-rate-t-max: only FrameFlow runs (process 'flow') have it"
                )
            model_run.process_config = model_run.process_config | {"rotation_rate_t_max": rotation_rate_t_max}
        m = None
        if motif is not None:
            chain = io.read_backbone(motif)
            atoms = torch.as_tensor(np.asarray(chain.coords), dtype=torch.float32)
            mask = torch.zeros(len(atoms), dtype=torch.bool)
            for part in filter(None, fixed.split(",")):
                lo, _, hi = part.partition("-")
                mask[int(lo) : int(hi or lo) + 1] = True
            m = Motif(frames_from_backbone(atoms[:, 0], atoms[:, 1], atoms[:, 2]), mask)
            length = len(atoms)
        guide = ClashGuidance(radius=clash_radius) if clash_radius > 0 else None
        samples = sample_backbones(
            model_run, [length] * num, steps=steps, motif=m, seed=seed, clash_guidance=guide
        )
        for i, a in enumerate(samples):
            io.write_backbone(out / f"sample_{i:03d}.pdb", a)
        typer.echo(f"wrote {len(samples)} backbones to {out}")
        return
    seq_run = load_sequence_run(run)
    names = label or seq_run.vocabulary.labels[1:]
    ids = torch.tensor([seq_run.vocabulary.encode(n) for n in names]).repeat_interleave(num)
    tokens = generate_sequences(seq_run, ids, guidance_scale=guidance, steps=steps, seed=seed)
    text = "".join(
        f">sample_{i} Tax={seq_run.vocabulary.decode(int(y))}\n{detokenize(t)}\n"
        for i, (t, y) in enumerate(zip(tokens, ids))
    )
    (out / "samples.fasta").write_text(text)
    typer.echo(f"wrote {len(tokens)} sequences to {out / 'samples.fasta'}")


@app.command("evaluate")
def evaluate_cmd(
    samples: Path = typer.Option(..., "--samples", help="Folder of PDB files, or a FASTA of sequences."),
    run: Path = typer.Option(None, "--run", help="sequence: the run whose classifier judges adherence."),
    reference: Path = typer.Option(
        None, help="backbone: folder of reference PDBs (default: the synthetic set)."
    ),
    out: Path = typer.Option(None, help="Write the metrics as JSON here."),
) -> None:
    """Metrics of generated backbones (geometry targets) or sequences (label adherence)."""
    if samples.is_dir():
        gen = [np.asarray(io.read_backbone(p).coords) for p in sorted(samples.glob("*.pdb"))]
        if not gen:
            raise typer.BadParameter(f"--samples: no .pdb files in {samples}")
        if reference is None:
            ref_set = SyntheticBackbones(SyntheticBackboneConfig(num_samples=64))
            ref = [ref_set.backbone(i).atoms.numpy() for i in range(len(ref_set))]
        else:
            ref = [np.asarray(io.read_backbone(p).coords) for p in sorted(reference.glob("*.pdb"))]
        metrics = evaluate_backbones(gen, ref)
    else:
        if run is None:
            raise typer.BadParameter("--run: needed to judge sequences (its classifier and vocabulary)")
        seq_run = load_sequence_run(run)
        records = read_fasta(samples)
        data = SequenceDataset.from_uniref_records(records, vocabulary=seq_run.vocabulary)
        tokens = torch.stack(data.tokens)
        metrics = evaluate_sequences(tokens, data.labels, seq_run.classifier)
    text = json.dumps(metrics, indent=2)
    typer.echo(text)
    if out is not None:
        out.write_text(text)


modality = Modality(
    name="protein",
    description="Protein diffusion: SE(3) frame diffusion for backbones and taxonomy-conditioned sequences.",
    app=app,
    bench=bench,
)
