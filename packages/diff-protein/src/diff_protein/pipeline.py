"""``ProteinPipeline`` and the three verbs of every modality: :func:`train`, :func:`sample`, :func:`evaluate`.

A pipeline holds what one training run made: a backbone model (FrameDiff / FrameFlow with the IPA network, and
the frame process it samples with) or a sequence model (TaxDiff, with its label vocabulary and the independent
taxonomy classifier that judges it). Its setting ``what`` says which, and the verbs dispatch on it::

    pipe = train(ProteinTrainConfig(what="backbone"))       # runs/protein/pipeline
    out = sample(pipe, ProteinSampleConfig(num_samples=8, length=80))
    out.save("samples")                                      # sample_000.pdb, ...
    metrics = evaluate(pipe, ProteinEvaluateConfig())

The building blocks below the verbs take datasets and tensors (:func:`train_backbones`,
:func:`train_sequences`, :func:`train_taxonomy_classifier`, :func:`sample_backbones`, :func:`generate_sequences`,
:func:`evaluate_backbones`, :func:`evaluate_sequences`); the benchmarks use them directly.

Targets of the backbone issue, reported by :func:`evaluate_backbones`: at least 98 % of all CA-CA
bonds within 0.1 A of 3.80 A, at least 90 % clash-free backbones, helix/strand/coil fractions within
0.1 of the training set. For sequences (:func:`evaluate_sequences`): label adherence of CFG samples
of at least 90 % by the independent classifier (and by the exact Bayes classifier when the profile
families are known).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffcore.device import resolve_device
from diffcore.io import read_json
from diffcore.pipeline import PIPELINE_FILE, Pipeline
from diffcore.rng import make_generator, seeded
from diffcore.training import TrainConfig, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from diff_protein import io
from diff_protein import metrics as M
from diff_protein.config import (
    PROCESSES,
    WHATS,
    ProteinEvaluateConfig,
    ProteinSampleConfig,
    ProteinTrainConfig,
)
from diff_protein.data.profiles import ProfileFamilies, ProfileFamiliesConfig
from diff_protein.data.sequences import (
    LabelVocabulary,
    SequenceDataset,
    detokenize,
    read_a3m,
    read_fasta,
)
from diff_protein.data.structures import StructureDataset
from diff_protein.data.synthetic import SyntheticBackboneConfig, SyntheticBackbones
from diff_protein.data.windows import ChainWindows, WindowConfig
from diff_protein.diffusion import (
    AuxLossConfig,
    FrameDiffusion,
    FrameDiffusionConfig,
    FrameFlow,
    FrameFlowConfig,
    FrameProcess,
)
from diff_protein.diffusion.objective import BackboneObjective, BackboneObjectiveConfig, collate_frames
from diff_protein.diffusion.sampling import ClashGuidance, Motif, sample_frames
from diff_protein.diffusion.sequence import SequenceObjective, collate_sequences, sample_sequences
from diff_protein.frames import backbone_from_frames, frames_from_backbone
from diff_protein.models.ipa import FrameDenoiser
from diff_protein.models.sequence import SequenceDenoiser, TaxonomyClassifier

__all__ = [
    "BACKBONE_TARGETS",
    "SEQUENCE_TARGETS",
    "ProteinPipeline",
    "ProteinSamples",
    "draw_sample_lengths",
    "evaluate",
    "evaluate_backbones",
    "evaluate_sequences",
    "fit",
    "generate_sequences",
    "make_process",
    "objective_config",
    "parse_ranges",
    "process_config",
    "sample",
    "sample_backbones",
    "train",
    "train_backbones",
    "train_sequences",
    "train_taxonomy_classifier",
]

LEGACY_RUN_FILE = "run.json"
"""What diff-protein 0.1 wrote beside ``model/`` (and ``classifier/``);
:meth:`ProteinPipeline.from_pretrained` still reads such folders."""
BACKBONE_TARGETS = {"ca_ca_valid": 0.98, "clash_free": 0.90, "sse_max_abs_diff": 0.10}
SEQUENCE_TARGETS = {"adherence_classifier": 0.90}


# ----------------------------------------------------------------------------------------------------
# The pipeline.


class ProteinPipeline(Pipeline):
    """A trained backbone model or sequence model, with what it needs to sample and be judged.

    ``what="backbone"``: ``backbone`` (:class:`FrameDenoiser`), the frame ``process`` (``"flow"`` or
    ``"diffusion"``) with its ``process_config`` overrides (FrameFlow's sampling rotation schedule), and the
    training chains' ``lengths``. ``what="sequence"``: ``sequence`` (:class:`SequenceDenoiser`), its label
    ``vocabulary``, the generated ``sequence_length`` and, when one was trained, the independent
    ``classifier`` (:class:`TaxonomyClassifier`). ``data`` describes the training data (so that
    :func:`evaluate` can rebuild its reference): ``{"kind": "synthetic" | "structures" | "families" |
    "sequence_file", ...}``, or empty when unknown.

    On disk (:meth:`save_pretrained`): ``pipeline.json`` and one folder per component (``backbone/``, or
    ``sequence/`` and ``classifier/``).
    """

    def __init__(
        self,
        what: str,
        *,
        backbone: FrameDenoiser | None = None,
        process: str = "flow",
        process_config: dict[str, Any] | None = None,
        lengths: Sequence[int] = (),
        sequence: SequenceDenoiser | None = None,
        vocabulary: LabelVocabulary | None = None,
        sequence_length: int = 0,
        classifier: TaxonomyClassifier | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        if what not in WHATS:
            raise ValueError(f"what: expected one of {' | '.join(WHATS)}, got {what!r}")
        if process not in PROCESSES:
            raise ValueError(f"process: expected one of {' | '.join(PROCESSES)}, got {process!r}")
        if what == "backbone" and not isinstance(backbone, FrameDenoiser):
            raise ValueError(
                f"backbone: a backbone pipeline needs a FrameDenoiser, got {type(backbone).__name__}"
            )
        if what == "sequence":
            if not isinstance(sequence, SequenceDenoiser) or vocabulary is None:
                raise ValueError(
                    "sequence, vocabulary: a sequence pipeline needs a SequenceDenoiser and its labels"
                )
            if sequence_length < 1:
                raise ValueError(f"sequence_length: expected >= 1, got {sequence_length}")
        self.what = what
        self.backbone = backbone
        self.process_kind = process
        self.process_config = dict(process_config or {})
        self.lengths = [int(n) for n in lengths]
        self.sequence = sequence
        self.vocabulary = vocabulary
        self.sequence_length = int(sequence_length)
        self.classifier = classifier
        self.data = dict(data or {})

    @property
    def process(self) -> FrameProcess:
        """The frame process of a backbone pipeline, with its settings."""
        return make_process(self.process_kind, **self.process_config)

    def components(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "sequence": self.sequence, "classifier": self.classifier}

    def pipeline_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"what": self.what, "data": self.data}
        if self.what == "backbone":
            config |= {
                "process": self.process_kind,
                "process_config": self.process_config,
                "lengths": self.lengths,
            }
        else:
            assert self.vocabulary is not None
            config |= {"labels": self.vocabulary.labels, "sequence_length": self.sequence_length}
        return config

    @classmethod
    def from_parts(cls, config: dict[str, Any], components: dict[str, Any]) -> ProteinPipeline:
        parts = {name: c.eval() for name, c in components.items()}
        labels = config.get("labels")
        return cls(
            config.get("what", ""),
            backbone=parts.get("backbone"),
            process=config.get("process", "flow"),
            process_config=config.get("process_config"),
            lengths=config.get("lengths", ()),
            sequence=parts.get("sequence"),
            vocabulary=LabelVocabulary(labels[1:]) if labels else None,
            sequence_length=int(config.get("sequence_length", 0)),
            classifier=parts.get("classifier"),
            data=config.get("data"),
        )

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> ProteinPipeline:
        """Load a folder written by :meth:`save_pretrained` (or a diff-protein 0.1 run folder with
        ``run.json``) onto ``device``."""
        folder = Path(directory)
        if not (folder / PIPELINE_FILE).is_file() and (folder / LEGACY_RUN_FILE).is_file():
            return _from_legacy_run(folder, torch.device(device))
        return super().from_pretrained(folder, device)


def _from_legacy_run(folder: Path, device: torch.device) -> ProteinPipeline:
    """A diff-protein 0.1 run folder: ``run.json`` with ``model/`` (and ``classifier/`` for sequences)."""
    run_file = folder / LEGACY_RUN_FILE
    info = read_json(run_file, "a diff-protein 0.1 run description")
    try:
        return _legacy_pipeline(folder, info, device)
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f"directory: {run_file} lacks a usable setting ({type(exc).__name__}: {exc})"
        ) from exc


def _legacy_pipeline(folder: Path, info: dict, device: torch.device) -> ProteinPipeline:
    kind = info.get("kind")
    if kind == "backbone":
        model = FrameDenoiser.from_pretrained(folder / "model", device=device).eval()
        return ProteinPipeline(
            "backbone",
            backbone=model,
            process=info["process"],
            process_config=info.get("process_config"),
            lengths=info.get("lengths", []),
        )
    if kind == "sequence":
        model = SequenceDenoiser.from_pretrained(folder / "model", device=device).eval()
        classifier = None
        if (folder / "classifier").is_dir():
            classifier = TaxonomyClassifier.from_pretrained(folder / "classifier", device=device).eval()
        return ProteinPipeline(
            "sequence",
            sequence=model,
            vocabulary=LabelVocabulary(info["labels"][1:]),
            sequence_length=int(info["length"]),
            classifier=classifier,
        )
    raise ValueError(
        f"directory: {folder / LEGACY_RUN_FILE} holds a {kind!r} run, expected backbone or sequence"
    )


@dataclass
class ProteinSamples:
    """What :func:`sample` returns: backbones or sequences.

    Attributes:
        what: backbone or sequence.
        backbones: one ``(L, 4, 3)`` float array per sample (N, CA, C, O; angstrom); empty for sequences.
        tokens: ``(B, L)`` int64 amino-acid tokens of sequence samples (``data.sequences`` order); None for
            backbones.
        labels: the taxonomy label each sequence was generated for; empty for backbones.
    """

    what: str
    backbones: list[np.ndarray] = field(default_factory=list)
    tokens: Tensor | None = None
    labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.backbones) if self.what == "backbone" else len(self.labels)

    @property
    def sequences(self) -> list[str]:
        """One-letter sequences of sequence samples."""
        return [] if self.tokens is None else [detokenize(t) for t in self.tokens]

    def save(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write ``sample_000.pdb, ...`` (backbones) or ``samples.fasta`` (headers ``sample_i Tax=label``)."""
        out = Path(folder)
        if self.what == "backbone":
            return [io.write_backbone(out / f"sample_{i:03d}.pdb", a) for i, a in enumerate(self.backbones)]
        records = [(f"sample_{i} Tax={y}", s) for i, (s, y) in enumerate(zip(self.sequences, self.labels))]
        return [io.write_fasta(out / "samples.fasta", records)]


# ----------------------------------------------------------------------------------------------------
# The verbs.


def train(config: ProteinTrainConfig) -> ProteinPipeline:
    """Train what ``config.what`` says on ``config.data_path`` (or the generated default set); writes the run
    under ``config.train.output_dir`` and the pipeline in its ``pipeline/`` folder."""
    out = Path(config.train.output_dir)
    if config.what == "backbone":
        dataset, info = _backbone_data(config)
        pipe = train_backbones(config, dataset, data_info=info)
    else:
        dataset, judge_data, info = _sequence_data(config)
        pipe = train_sequences(config, dataset, classifier_data=judge_data, data_info=info)
    pipe.card.record_training(config)
    pipe.save_pretrained(out / "pipeline")
    return pipe


def sample(
    pipeline: ProteinPipeline, config: ProteinSampleConfig, *, generator: torch.Generator | None = None
) -> ProteinSamples:
    """Draw ``config.num_samples`` backbones (``(L, 4, 3)`` arrays) or sequences per label, as the pipeline
    holds, on ``config.device`` (the pipeline is moved there). ``generator`` (on that device) overrides
    ``config.seed``."""
    device = resolve_device(config.device)
    pipeline.to(device)
    gen = make_generator(config.seed if generator is None else generator, device)
    if pipeline.what == "backbone":
        return _sample_backbone_pipeline(pipeline, config, gen)
    if config.motif_path or config.clash_radius or config.rotation_rate_t_max is not None:
        raise ValueError(
            "motif_path, clash_radius, rotation_rate_t_max: backbone settings; this pipeline holds sequences"
        )
    names = list(config.labels) or pipeline.vocabulary.labels[1:]  # type: ignore[union-attr]
    ids = torch.tensor(_label_ids(pipeline, names)).repeat_interleave(config.num_samples)
    tokens = generate_sequences(pipeline, ids, config.guidance_scale, config.steps, generator=gen)
    labels = [n for n in names for _ in range(config.num_samples)]
    return ProteinSamples("sequence", tokens=tokens.cpu(), labels=labels)


def evaluate(pipeline: ProteinPipeline, config: ProteinEvaluateConfig) -> dict[str, float]:
    """Score the pipeline with the field's metrics (see :class:`ProteinEvaluateConfig`); metric -> value."""
    if pipeline.what == "backbone":
        return _evaluate_backbone_pipeline(pipeline, config)
    return _evaluate_sequence_pipeline(pipeline, config)


# ----------------------------------------------------------------------------------------------------
# Training.


def fit(
    model: nn.Module,
    objective: Callable[..., Any],
    dataset: Dataset,
    collate: Callable[[list], dict[str, Tensor]],
    train: TrainConfig,
    batch_size: int,
    *,
    drop_last: bool = False,
) -> nn.Module:
    """Train ``model`` with :class:`diffcore.training.Trainer`; returns the EMA model if any, else the model.

    With ``train.max_seconds`` training ends (with a warning) once that much wall time has passed, after
    writing a resumable checkpoint; ``train.resume`` (a checkpoint folder, or ``"latest"`` under
    ``train.output_dir``) continues such a run (the Trainer restores weights, optimizer, EMA, schedule, RNG
    and the position in the data).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate, drop_last=drop_last)
    trainer = Trainer(model, objective, loader, train)
    summary = trainer.fit()
    if summary.stopped_by_time:
        warnings.warn(
            f"training stopped by max_seconds={train.max_seconds} at step {summary.steps} of {train.steps}",
            stacklevel=2,
        )
    trained = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
    return trained.eval()


def make_process(kind: str, **overrides: Any) -> FrameProcess:
    """``"diffusion"`` (FrameDiff) or ``"flow"`` (FrameFlow), with config overrides."""
    if kind == "diffusion":
        return FrameDiffusion(FrameDiffusionConfig(**overrides))
    if kind == "flow":
        return FrameFlow(FrameFlowConfig(**overrides))
    raise ValueError(f"kind: expected 'diffusion' or 'flow', got {kind!r}")


def process_config(config: ProteinTrainConfig) -> dict[str, Any]:
    """The process overrides a backbone pipeline keeps: FrameFlow's sampling rotation schedule (only sampling
    reads it); none for FrameDiff (the paper's settings)."""
    if config.process == "flow":
        return {
            "rotation_schedule": config.rotation_schedule,
            "rotation_rate": config.rotation_rate,
            "rotation_rate_t_max": config.rotation_rate_t_max,
        }
    return {}


def objective_config(config: ProteinTrainConfig) -> BackboneObjectiveConfig:
    """The backbone loss: the papers' auxiliary-loss window unless ``aux_t_max`` is set, ``t < 0.25`` for
    FrameDiff (Yim et al. 2023, Sec. 4.2), ``t < 0.75`` for FrameFlow (its ``aux_loss_t_pass = 0.25`` in the
    flow's time direction, t = 1 data)."""
    t_max = config.aux_t_max if config.aux_t_max is not None else (0.75 if config.process == "flow" else 0.25)
    return BackboneObjectiveConfig(
        motif_prob=config.motif_prob,
        aux=AuxLossConfig(t_max=t_max, clash=config.aux_clash),
        cuda_graphs=config.cuda_graphs,
    )


def train_backbones(
    config: ProteinTrainConfig,
    dataset: Dataset,
    data_info: dict[str, Any] | None = None,
    objective: BackboneObjectiveConfig | None = None,
) -> ProteinPipeline:
    """Train a :class:`FrameDenoiser` of sizes ``config.backbone`` on a dataset of ``{"rots", "trans"}`` items
    (e.g. :class:`~diff_protein.data.synthetic.SyntheticBackbones`,
    :class:`~diff_protein.data.windows.ChainWindows`); returns a backbone pipeline on the CPU.

    ``objective`` replaces the loss settings of ``config`` (:func:`objective_config`), e.g. to train only some
    times. ``config.init_from``: a saved pipeline whose weights start the training.
    """
    if len(dataset) == 0:
        raise ValueError("dataset: no training chains (check data_path and the structure filters)")
    objective = objective or objective_config(config)
    with seeded(config.train.seed):
        model = FrameDenoiser(config.backbone)
    if config.init_from:
        start = ProteinPipeline.from_pretrained(config.init_from)
        if start.backbone is None or start.backbone.config != config.backbone:
            held = None if start.backbone is None else start.backbone.config
            raise ValueError(
                f"init_from: {config.init_from} holds a network of config {held}, expected {config.backbone}"
            )
        model.load_state_dict(start.backbone.state_dict())
    lengths = [int(dataset[i]["trans"].shape[0]) for i in range(len(dataset))]
    collate: Callable[[list], dict[str, Tensor]] = collate_frames
    drop_last = False
    if objective.cuda_graphs:
        # CUDA graphs replay one shape: every batch padded to the longest chain, whole batches only.
        if config.batch_size > len(dataset):
            raise ValueError(
                f"batch_size: {config.batch_size} exceeds the dataset ({len(dataset)} items), which leaves "
                "no whole batch to train on with cuda_graphs"
            )
        collate, drop_last = functools.partial(collate_frames, pad_to=max(lengths)), True
    process = make_process(config.process, **process_config(config))
    model = fit(
        model,
        BackboneObjective(process, objective),
        dataset,
        collate,
        config.train,
        config.batch_size,
        drop_last=drop_last,
    )
    return ProteinPipeline(
        "backbone",
        backbone=model.cpu(),
        process=config.process,  # type: ignore[arg-type]
        process_config=process_config(config),
        lengths=lengths,
        data=data_info,
    )


def train_sequences(
    config: ProteinTrainConfig,
    dataset: SequenceDataset,
    classifier_data: SequenceDataset | None = None,
    data_info: dict[str, Any] | None = None,
) -> ProteinPipeline:
    """Train a taxonomy-conditioned :class:`SequenceDenoiser` (``num_classes`` set from the vocabulary) and,
    on ``classifier_data`` (default: ``dataset``) unless ``config.classifier_steps == 0``, the independent
    :class:`TaxonomyClassifier`; returns a sequence pipeline on the CPU."""
    if len(dataset) == 0:
        raise ValueError("dataset: no training sequences")
    net = dataclasses.replace(config.sequence, num_classes=len(dataset.vocabulary))
    with seeded(config.train.seed):
        model = SequenceDenoiser(net)
    model = fit(
        model,
        SequenceObjective(p_uncond=config.p_uncond),
        dataset,
        collate_sequences,
        config.train,
        config.batch_size,
    )
    classifier = None
    if config.classifier_steps != 0:
        classifier = train_taxonomy_classifier(classifier_data or dataset, config)
    length = max(len(t) for t in dataset.tokens)
    return ProteinPipeline(
        "sequence",
        sequence=model.cpu(),
        vocabulary=dataset.vocabulary,  # type: ignore[arg-type]
        sequence_length=length,
        classifier=classifier,
        data=data_info,
    )


def _classifier_objective(
    model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None = None
) -> tuple[Tensor, dict[str, float]]:
    logits = model(batch["tokens"], batch["mask"])
    loss = nn.functional.cross_entropy(logits, batch["label"])
    return loss, {"accuracy": float((logits.argmax(-1) == batch["label"]).float().mean())}


def train_taxonomy_classifier(dataset: SequenceDataset, config: ProteinTrainConfig) -> TaxonomyClassifier:
    """Train the independent :class:`TaxonomyClassifier` (sizes ``config.classifier``) on clean labelled
    sequences, for ``config.classifier_steps`` (default ``train.steps``) with the rest of ``config.train``.

    Its training run is written to ``<train.output_dir>/classifier`` (so it never collides with the
    generator's run).
    """
    steps = config.classifier_steps or config.train.steps
    train_cfg = dataclasses.replace(
        config.train, steps=steps, output_dir=str(Path(config.train.output_dir) / "classifier")
    )
    net = dataclasses.replace(config.classifier, num_classes=len(dataset.vocabulary))
    with seeded(train_cfg.seed):
        model = TaxonomyClassifier(net)
    trained = fit(model, _classifier_objective, dataset, collate_sequences, train_cfg, config.batch_size)
    return trained.cpu()  # type: ignore[return-value]


def _backbone_data(config: ProteinTrainConfig) -> tuple[Dataset, dict[str, Any]]:
    """The training chains of ``config`` and their description (kept in the pipeline)."""
    if config.data_path:
        root = Path(config.data_path)
        if not root.is_dir():
            raise FileNotFoundError(
                f"data_path: no folder at {root} (expected PDB / mmCIF / BinaryCIF files)"
            )
        window = WindowConfig(min_length=config.min_length, max_length=config.max_length)
        structures = ChainWindows(root, window)
        if len(structures) == 0:
            reasons = "; ".join(f"{p.name}: {r}" for p, r in list(structures.skipped.items())[:3])
            raise ValueError(
                f"data_path: no structure file in {root} gives a window of {window.min_length}-{window.max_length} "
                f"residues ({reasons or 'none found'})"
            )
        return structures, {"kind": "structures", "path": str(root), "windows": dataclasses.asdict(window)}
    synthetic = SyntheticBackboneConfig(
        num_samples=config.num_examples,
        min_length=config.synthetic_min_length,
        max_length=config.max_length,
        seed=config.train.seed,
    )
    return SyntheticBackbones(synthetic), {"kind": "synthetic", "config": dataclasses.asdict(synthetic)}


def _families_config(config: ProteinTrainConfig) -> ProfileFamiliesConfig:
    return ProfileFamiliesConfig(
        num_families=config.num_families, length=config.length, seed=config.train.seed
    )


def _sequence_data(config: ProteinTrainConfig) -> tuple[SequenceDataset, SequenceDataset, dict[str, Any]]:
    """Training sequences, the classifier's sequences (an independent draw of the generated families; the
    same file otherwise) and their description."""
    if config.data_path:
        path = Path(config.data_path)
        if not path.is_file():
            raise FileNotFoundError(f"data_path: no FASTA / A3M file at {path}")
        records = read_a3m(path) if path.suffix.lower() == ".a3m" else read_fasta(path)
        data = SequenceDataset.from_uniref_records(records, max_length=config.length)
        return data, data, {"kind": "sequence_file", "path": str(path)}
    families = ProfileFamilies(_families_config(config))
    seed = config.train.seed
    data = families.dataset(config.num_examples, make_generator(seed))
    judge = families.dataset(config.num_examples, make_generator(seed + 1))
    info = {
        "kind": "families",
        "config": dataclasses.asdict(families.config),
        "per_family": config.num_examples,
        "seed": seed,
    }
    return data, judge, info


# ----------------------------------------------------------------------------------------------------
# Sampling.


def sample_backbones(
    pipeline: ProteinPipeline,
    lengths: Sequence[int],
    steps: int = 100,
    motif: Motif | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    clash_guidance: ClashGuidance | None = None,
    batch_size: int = 256,
    max_length_ratio: float | None = None,
    process: FrameProcess | None = None,
) -> list[np.ndarray]:
    """One backbone ``(L, 4, 3)`` (N, CA, C, O; angstrom) per requested length, in the requested order.

    Runs on ``device`` (default: the pipeline's; the backbone model is moved there) with ``generator`` (on
    that device; default: seeded from the OS) and the pipeline's process unless ``process`` is given.
    Chains are sampled together in batches padded to their longest chain (``sample_frames(mask=)``): sorted by
    length, at most ``batch_size`` per batch, and a batch's longest chain at most ``max_length_ratio`` times its
    shortest, which bounds the compute spent on padding. ``None``: no bound on CUDA, where kernel launches
    dominate and one large batch is fastest (256 samples of 40-96 residues: 8 s on an H100, against 87 s one
    length at a time), 1.25 elsewhere, where arithmetic dominates. With a ``motif`` every length must be the
    motif's. ``clash_guidance``: steer the samples away from steric clashes (off by default; see :class:`ClashGuidance`)."""
    if pipeline.backbone is None:
        raise ValueError(f"pipeline: holds a {pipeline.what} model, not a backbone model")
    device = torch.device(device) if device is not None else pipeline.device
    if max_length_ratio is None:
        max_length_ratio = float("inf") if device.type == "cuda" else 1.25
    if batch_size < 1 or max_length_ratio < 1:
        raise ValueError(
            f"batch_size >= 1, max_length_ratio >= 1 expected; got {batch_size}, {max_length_ratio}"
        )
    g = make_generator(generator, device)
    model = pipeline.backbone.to(device)
    process = process or pipeline.process
    out: list[np.ndarray | None] = [None] * len(lengths)
    for chunk in _length_batches(lengths, batch_size, max_length_ratio):
        sizes = torch.tensor([lengths[i] for i in chunk], device=device)
        longest = int(sizes.max())
        mask = torch.arange(longest, device=device)[None] < sizes[:, None]
        frames = sample_frames(
            model,
            process,
            len(chunk),
            longest,
            steps,
            motif=motif,
            generator=g,
            device=device,
            clash_guidance=clash_guidance,
            mask=mask,
        )
        atoms = backbone_from_frames(frames.to(torch.float64)).cpu().numpy()
        for row, i in enumerate(chunk):
            out[i] = atoms[row, : lengths[i]]
    return out  # type: ignore[return-value]


def _length_batches(lengths: Sequence[int], batch_size: int, max_length_ratio: float) -> list[list[int]]:
    """Indices of ``lengths`` in batches: sorted by length, at most ``batch_size`` each, longest at most
    ``max_length_ratio`` times the shortest."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda k: lengths[k]):
        b = batches[-1] if batches else None
        if b is None or len(b) == batch_size or lengths[i] > max_length_ratio * lengths[b[0]]:
            batches.append([i])
        else:
            b.append(i)
    return batches


def draw_sample_lengths(
    train_lengths: list[int], num_samples: int, seed: int, per_length: int = 2
) -> list[int]:
    """``num_samples`` sample lengths drawn from the training lengths, ``per_length`` samples at each drawn length
    (equal lengths are sampled as one batch). Few samples per length keep the draw representative: the
    synthetic set's composition depends on length (beta hairpins only up to 64 residues), and with 8 lengths per
    64 samples the share of short chains in a draw, and so the measured secondary-structure gap, varied
    between 0.09 and 0.23 for one model (docs/diff-protein.md)."""
    if num_samples < 1 or per_length < 1 or not train_lengths:
        raise ValueError(
            f"num_samples, per_length, train_lengths: expected >= 1, >= 1, non-empty; got {num_samples}, "
            f"{per_length}, {len(train_lengths)} lengths"
        )
    per_length = min(per_length, num_samples)
    drawn = np.random.default_rng(seed).choice(train_lengths, size=-(-num_samples // per_length))
    return [int(x) for x in np.repeat(drawn, per_length)][:num_samples]


def parse_ranges(text: str, length: int) -> Tensor:
    """A ``(length,)`` bool mask of 0-based inclusive residue ranges ``"5-14,30-35"`` (or single residues)."""
    mask = torch.zeros(length, dtype=torch.bool)
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        try:
            start, end = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"fixed: expected ranges like '5-14,30-35', got {part!r}") from None
        if not 0 <= start <= end < length:
            raise ValueError(f"fixed: range {part!r} is outside the motif's residues 0-{length - 1}")
        mask[start : end + 1] = True
    return mask


def _read_motif(config: ProteinSampleConfig) -> Motif:
    chain = io.read_backbone(config.motif_path)
    atoms = torch.as_tensor(np.asarray(chain.coords), dtype=torch.float32)
    fixed = parse_ranges(config.fixed, len(atoms))
    if not fixed.any():
        raise ValueError("fixed: name the motif's residues to keep, e.g. '5-14' (0-based)")
    return Motif(frames_from_backbone(atoms[:, 0], atoms[:, 1], atoms[:, 2]), fixed)


def _sample_backbone_pipeline(
    pipeline: ProteinPipeline, config: ProteinSampleConfig, generator: torch.Generator
) -> ProteinSamples:
    if config.labels:
        raise ValueError("labels: a sequence setting; this pipeline holds a backbone model")
    overrides: dict[str, Any] = {}
    if config.rotation_rate_t_max is not None:
        if pipeline.process_kind != "flow":
            raise ValueError("rotation_rate_t_max: only FrameFlow pipelines (process 'flow') have it")
        overrides["rotation_rate_t_max"] = config.rotation_rate_t_max
    motif = _read_motif(config) if config.motif_path else None
    length = len(motif.fixed) if motif is not None else config.length
    guide = ClashGuidance(radius=config.clash_radius) if config.clash_radius > 0 else None
    process = make_process(pipeline.process_kind, **(pipeline.process_config | overrides))
    atoms = sample_backbones(
        pipeline,
        [length] * config.num_samples,
        config.steps,
        motif=motif,
        generator=generator,
        clash_guidance=guide,
        batch_size=config.batch_size,
        process=process,
    )
    return ProteinSamples("backbone", backbones=atoms)


def _label_ids(pipeline: ProteinPipeline, names: Sequence[str]) -> list[int]:
    vocabulary = pipeline.vocabulary
    assert vocabulary is not None
    unknown = [n for n in names if n not in vocabulary.labels]
    if unknown:
        raise ValueError(f"labels: {unknown} not among the pipeline's labels {vocabulary.labels[1:]}")
    return [vocabulary.encode(n) for n in names]


def generate_sequences(
    pipeline: ProteinPipeline,
    labels: Tensor,
    guidance_scale: float = 2.0,
    steps: int = 64,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Tokens ``(B, pipeline.sequence_length)`` for label ids ``labels: (B,)`` with classifier-free guidance,
    on the pipeline's device (``generator`` on that device; default: seeded from the OS)."""
    if pipeline.sequence is None:
        raise ValueError(f"pipeline: holds a {pipeline.what} model, not a sequence model")
    g = make_generator(generator, pipeline.device)
    return sample_sequences(
        pipeline.sequence,
        labels,
        pipeline.sequence_length,
        steps=steps,
        guidance_scale=guidance_scale,
        generator=g,
    )


# ----------------------------------------------------------------------------------------------------
# Evaluation.


def evaluate_backbones(
    samples: Sequence[np.ndarray], reference: Sequence[np.ndarray], match_lengths: bool = True
) -> dict[str, float]:
    """The issue's targets on generated backbones against a reference (training) set.

    ``ca_ca_valid``: fraction of all consecutive CA-CA distances within 0.1 A of 3.80 A (pooled over
    samples); ``clash_free``: fraction of backbones without a CA clash (metrics.clash_count);
    ``helix/strand/coil`` and ``ref_*``: mean P-SEA fractions; ``sse_max_abs_diff``: the largest gap;
    ``rg_ratio`` and ``ref_rg_ratio``: mean Rg over the compact-globule law ``2.2 L^0.38`` of samples and
    reference; ``rg_vs_ref``: their quotient (:func:`metrics.rg_vs_reference`, 1.0 = as compact as the
    training set); ``met_*``: 1.0 where a target is met. With ``match_lengths`` (the default) every
    reference mean is taken at the samples' lengths (:func:`metrics.length_matched_weights`): the
    composition of a training set can depend on length, and a few drawn lengths need not represent it.
    """
    if not samples or not reference:
        raise ValueError("samples, reference: expected non-empty lists of (L, 4, 3) backbones")
    weights = M.reference_weights(samples, reference, match_lengths)
    bonds = np.concatenate([np.linalg.norm(np.diff(s[:, 1], axis=0), axis=-1) for s in samples])
    ref_rg = float(weights @ np.array([M.rg_ratio(r) for r in reference]))
    result = {
        "num_samples": float(len(samples)),
        "ca_ca_valid": float(np.mean(np.abs(bonds - 3.80) < 0.1)),
        "ca_ca_mean": float(bonds.mean()),
        "clash_free": float(np.mean([M.clash_count(s) == 0 for s in samples])),
        "rg_ratio": float(np.mean([M.rg_ratio(s) for s in samples])),
        "ref_rg_ratio": ref_rg,
    }
    result["rg_vs_ref"] = result["rg_ratio"] / ref_rg
    gen = np.mean([list(M.sse_composition(s).values()) for s in samples], axis=0)
    ref = weights @ np.array([list(M.sse_composition(r).values()) for r in reference])
    for name, g_val, r_val in zip(("helix", "strand", "coil"), gen, ref):
        result[name], result[f"ref_{name}"] = float(g_val), float(r_val)
    result["sse_max_abs_diff"] = float(np.max(np.abs(gen - ref)))
    result["met_ca_ca_valid"] = float(result["ca_ca_valid"] >= BACKBONE_TARGETS["ca_ca_valid"])
    result["met_clash_free"] = float(result["clash_free"] >= BACKBONE_TARGETS["clash_free"])
    result["met_sse"] = float(result["sse_max_abs_diff"] <= BACKBONE_TARGETS["sse_max_abs_diff"])
    return result


@torch.no_grad()
def evaluate_sequences(
    tokens: Tensor,
    labels: Tensor,
    classifier: TaxonomyClassifier | None = None,
    families: ProfileFamilies | None = None,
    family_of_label: Callable[[int], int] | None = None,
    reference: Sequence[str] | None = None,
) -> dict[str, float]:
    """Label adherence of generated ``tokens (B, L)`` for requested ``labels (B,)``.

    ``adherence_classifier``: fraction the independent classifier assigns to the requested label;
    ``adherence_bayes``: the same for the exact Bayes classifier of ``families`` (``family_of_label``
    maps a label id to a family index; default ``id - 1``, i.e. "unknown" is id 0);
    ``log_likelihood``: mean exact ``log p(x | requested family)`` per residue; ``composition_jsd``:
    amino-acid composition divergence to ``reference``; ``identity``: mean pairwise identity.
    """
    result: dict[str, float] = {"num_samples": float(len(tokens))}
    if classifier is not None:
        device = next(classifier.parameters()).device
        pred = classifier(tokens.to(device)).argmax(-1).cpu()
        result["adherence_classifier"] = float((pred == labels.cpu()).float().mean())
        result["met_adherence"] = float(
            result["adherence_classifier"] >= SEQUENCE_TARGETS["adherence_classifier"]
        )
    tokens = tokens.cpu()
    if families is not None and tokens.shape[-1] == families.length:
        to_family = family_of_label or (lambda i: i - 1)
        fam = torch.tensor([to_family(int(y)) for y in labels])
        result["adherence_bayes"] = float((families.classify(tokens) == fam).float().mean())
        ll = families.log_likelihood(tokens).gather(-1, fam[:, None])[:, 0]
        result["log_likelihood_per_residue"] = float(ll.mean() / families.length)
    strings = [detokenize(t) for t in tokens]
    if reference:
        result["composition_jsd"] = M.composition_divergence(strings, reference)
    if len(strings) > 1:
        result["identity"] = M.pairwise_identity(strings, max_pairs=200)
    return result


def _structure_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what}: no folder at {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in io.SUFFIXES)
    if not files:
        raise ValueError(f"{what}: no {' / '.join(io.SUFFIXES)} files in {folder}")
    return files


def _reference_backbones(pipeline: ProteinPipeline, config: ProteinEvaluateConfig) -> list[np.ndarray]:
    """``config.reference_path``'s chains, or the first ``config.num_reference`` of the training data."""
    if config.reference_path:
        files = _structure_files(Path(config.reference_path), "reference_path")
        return [np.asarray(io.read_backbone(p).coords) for p in files]
    data = pipeline.data
    if data.get("kind") == "synthetic":
        cfg = dict(data["config"]) | {"num_samples": min(config.num_reference, data["config"]["num_samples"])}
        cfg["topologies"] = tuple(cfg["topologies"])
        chains = SyntheticBackbones(SyntheticBackboneConfig(**cfg))  # item i as in training
        return [chains.backbone(i).atoms.numpy() for i in range(len(chains))]
    if data.get("kind") == "structures":
        if "windows" in data:  # the windows it was trained on
            structures: Dataset = ChainWindows(data["path"], WindowConfig(**data["windows"]))
        else:  # a pipeline trained on whole first chains (before windows)
            structures = StructureDataset(data["path"])
        n = min(config.num_reference, len(structures))
        return [structures[i]["atoms"].numpy() for i in range(n)]  # type: ignore[union-attr]
    raise ValueError(
        "reference_path: the pipeline does not record its training data; give a folder of structures"
    )


def _evaluate_backbone_pipeline(pipeline: ProteinPipeline, config: ProteinEvaluateConfig) -> dict[str, float]:
    if config.samples_path:
        files = _structure_files(Path(config.samples_path), "samples_path")
        samples = [np.asarray(io.read_backbone(p).coords) for p in files]
    else:
        if not pipeline.lengths:
            raise ValueError(
                "num_samples: the pipeline records no training lengths to draw from; give samples_path"
            )
        lengths = draw_sample_lengths(pipeline.lengths, config.num_samples, config.seed)
        device = resolve_device(config.device)
        samples = sample_backbones(
            pipeline, lengths, config.steps, generator=make_generator(config.seed, device), device=device
        )
    return evaluate_backbones(samples, _reference_backbones(pipeline, config))


def _evaluate_sequence_pipeline(pipeline: ProteinPipeline, config: ProteinEvaluateConfig) -> dict[str, float]:
    vocabulary = pipeline.vocabulary
    assert vocabulary is not None
    if config.samples_path:
        records = read_fasta(config.samples_path)
        data = SequenceDataset.from_uniref_records(records, vocabulary=vocabulary)
        if len({len(t) for t in data.tokens}) > 1:
            raise ValueError(f"samples_path: {config.samples_path} holds sequences of different lengths")
        tokens, labels = torch.stack(data.tokens), data.labels
    else:
        samples = sample(
            pipeline,
            ProteinSampleConfig(
                num_samples=config.num_samples,
                steps=config.steps,
                guidance_scale=config.guidance_scale,
                seed=config.seed,
                device=config.device,
            ),
        )
        assert samples.tokens is not None
        tokens, labels = samples.tokens, torch.tensor(_label_ids(pipeline, samples.labels))
    families, reference, to_family = None, None, None
    if pipeline.data.get("kind") == "families" and bool((labels > 0).all()):  # "unknown" has no family
        families = ProfileFamilies(ProfileFamiliesConfig(**pipeline.data["config"]))
        train_set = families.dataset(pipeline.data["per_family"], make_generator(pipeline.data["seed"]))
        reference = [detokenize(t) for t in train_set.tokens]
        names = families.names

        def to_family(label_id: int) -> int:
            return names.index(vocabulary.decode(label_id))

    return evaluate_sequences(tokens, labels, pipeline.classifier, families, to_family, reference)
