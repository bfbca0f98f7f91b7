"""Train, sample and evaluate: backbones (FrameDiff / FrameFlow + IPA) and sequences (TaxDiff).

Training runs on :class:`diffcore.training.Trainer` with the objectives of :mod:`diff_protein.diffusion`;
a run folder holds ``run.json`` (what was trained and how to rebuild the process), ``model/``
(``save_pretrained``) and, for sequences, ``classifier/`` (the independent taxonomy classifier) and
the label vocabulary.

Targets of the backbone issue, reported by :func:`evaluate_backbones`: at least 98 % of all CA-CA
bonds within 0.1 A of 3.80 A, at least 90 % clash-free backbones, helix/strand/coil fractions within
0.1 of the training set. For sequences (:func:`evaluate_sequences`): label adherence of CFG samples
of at least 90 % by the independent classifier (and by the exact Bayes classifier when the profile
families are known).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffcore.training import TrainConfig, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from diff_protein import metrics as M
from diff_protein.data.profiles import ProfileFamilies
from diff_protein.data.sequences import LabelVocabulary, SequenceDataset, detokenize
from diff_protein.diffusion import (
    FrameDiffusion,
    FrameDiffusionConfig,
    FrameFlow,
    FrameFlowConfig,
    FrameProcess,
)
from diff_protein.diffusion.objective import BackboneObjective, BackboneObjectiveConfig, collate_frames
from diff_protein.diffusion.sampling import ClashGuidance, Motif, sample_frames
from diff_protein.diffusion.sequence import SequenceObjective, collate_sequences, sample_sequences
from diff_protein.frames import backbone_from_frames
from diff_protein.models.ipa import FrameDenoiser, FrameDenoiserConfig
from diff_protein.models.sequence import (
    SequenceDenoiser,
    SequenceDenoiserConfig,
    TaxonomyClassifier,
    TaxonomyClassifierConfig,
)

__all__ = [
    "BACKBONE_TARGETS",
    "BackboneRun",
    "FitConfig",
    "SequenceRun",
    "evaluate_backbones",
    "evaluate_sequences",
    "fit",
    "generate_sequences",
    "load_backbone_run",
    "load_sequence_run",
    "make_process",
    "sample_backbones",
    "train_backbones",
    "train_sequences",
    "train_taxonomy_classifier",
]

RUN_FILE = "run.json"
BACKBONE_TARGETS = {"ca_ca_valid": 0.98, "clash_free": 0.90, "sse_max_abs_diff": 0.10}
SEQUENCE_TARGETS = {"adherence_classifier": 0.90}


@dataclass
class FitConfig:
    """Optimisation settings shared by every model here (a subset of :class:`diffcore.training.TrainConfig`)."""

    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    warmup_steps: int = 0
    ema_decay: float | None = None
    ema_warmup_steps: int = 0
    seed: int = 0
    cpu: bool = False
    output_dir: str = "runs/protein"
    log_every: int = 50
    max_seconds: float | None = None
    resume_from: str | None = None
    drop_last: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds: expected > 0 or None, got {self.max_seconds}")


def fit(
    model: nn.Module,
    objective: Callable[..., Any],
    dataset: Dataset,
    collate: Callable[[list], dict[str, Tensor]],
    config: FitConfig,
) -> nn.Module:
    """Train ``model`` with :class:`diffcore.training.Trainer`; returns the EMA model if any, else the model.

    With ``config.max_seconds`` training ends (with a warning) once that much wall time has passed, after
    writing a resumable checkpoint; ``config.resume_from`` (a checkpoint folder, or ``"latest"`` under
    ``output_dir``) continues such a run (the Trainer restores weights, optimizer, EMA, schedule, RNG and the
    position in the data).
    """
    loader = DataLoader(
        dataset, batch_size=config.batch_size, shuffle=True, collate_fn=collate, drop_last=config.drop_last
    )
    train_config = TrainConfig(
        steps=config.steps,
        lr=config.lr,
        warmup_steps=config.warmup_steps,
        lr_schedule="cosine" if config.steps > 2 * config.warmup_steps + 10 else "constant",
        min_lr_ratio=0.1,
        ema_decay=config.ema_decay,
        ema_warmup_steps=config.ema_warmup_steps,
        log_every=config.log_every,
        checkpoint_every=None,
        keep_last=1,
        output_dir=config.output_dir,
        seed=config.seed,
        progress_bar=False,
        tensorboard=False,
        device="cpu" if config.cpu else "auto",
        max_seconds=config.max_seconds,
    )
    trainer = Trainer(model, objective, loader, train_config, resume_from=config.resume_from)
    summary = trainer.fit()
    if summary.stopped_by_time:
        warnings.warn(
            f"training stopped by max_seconds={config.max_seconds} at step {summary.steps} of {config.steps}",
            stacklevel=2,
        )
    trained = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
    return trained.eval()


# ----------------------------------------------------------------------------------------------------
# Backbones.


def make_process(kind: str, **overrides: Any) -> FrameProcess:
    """``"diffusion"`` (FrameDiff) or ``"flow"`` (FrameFlow), with config overrides."""
    if kind == "diffusion":
        return FrameDiffusion(FrameDiffusionConfig(**overrides))
    if kind == "flow":
        return FrameFlow(FrameFlowConfig(**overrides))
    raise ValueError(f"kind: expected 'diffusion' or 'flow', got {kind!r}")


@dataclass
class BackboneRun:
    """A trained backbone model with its process and the training lengths (to sample lengths from)."""

    model: FrameDenoiser
    process_kind: str
    process_config: dict[str, Any]
    lengths: list[int] = field(default_factory=list)

    @property
    def process(self) -> FrameProcess:
        return make_process(self.process_kind, **self.process_config)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``run.json`` and ``model/`` into ``directory``."""
        out = Path(directory)
        self.model.save_pretrained(out / "model")
        info = {"kind": "backbone", "process": self.process_kind, "process_config": self.process_config}
        info["lengths"] = self.lengths
        (out / RUN_FILE).write_text(json.dumps(info, indent=2))
        return out


def _read_run(directory: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    path = Path(directory) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"directory: {directory} has no {RUN_FILE} (expected a diff-protein run folder)"
        )
    info = json.loads(path.read_text())
    if info.get("kind") != kind:
        raise ValueError(f"directory: {directory} holds a {info.get('kind')!r} run, expected {kind!r}")
    return info


def load_backbone_run(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> BackboneRun:
    """Read a folder written by :meth:`BackboneRun.save`."""
    info = _read_run(directory, "backbone")
    model = FrameDenoiser.from_pretrained(Path(directory) / "model", device=device).eval()
    return BackboneRun(model, info["process"], info["process_config"], info.get("lengths", []))


def train_backbones(
    dataset: Dataset,
    model_config: FrameDenoiserConfig,
    fit_config: FitConfig,
    process_kind: str = "diffusion",
    process_config: dict[str, Any] | None = None,
    objective_config: BackboneObjectiveConfig | None = None,
    init_from: str | os.PathLike[str] | None = None,
) -> BackboneRun:
    """Train a :class:`FrameDenoiser` on a dataset of ``{"rots", "trans"}`` items (e.g.
    :class:`~diff_protein.data.synthetic.SyntheticBackbones`, :class:`~diff_protein.data.structures.StructureDataset`).

    ``init_from``: a run folder (:meth:`BackboneRun.save`) whose weights start the training (fine-tuning, or
    a further schedule after one has ended); its network config must equal ``model_config``.
    """
    process_config = dict(process_config or {})
    process = make_process(process_kind, **process_config)
    torch.manual_seed(fit_config.seed)
    model = FrameDenoiser(model_config)
    if init_from is not None:
        start = load_backbone_run(init_from).model
        if start.config != model_config:
            raise ValueError(
                f"init_from: {init_from} holds a network of config {start.config}, expected {model_config}"
            )
        model.load_state_dict(start.state_dict())
    lengths = [int(dataset[i]["trans"].shape[0]) for i in range(len(dataset))]
    collate: Callable[[list], dict[str, Tensor]] = collate_frames
    if objective_config is not None and objective_config.cuda_graphs:
        # CUDA graphs replay one shape: every batch padded to the longest chain, whole batches only.
        if fit_config.batch_size > len(dataset):
            raise ValueError(
                f"batch_size: {fit_config.batch_size} exceeds the dataset ({len(dataset)} items), which leaves "
                "no whole batch to train on with cuda_graphs"
            )
        collate = functools.partial(collate_frames, pad_to=max(lengths))
        fit_config = dataclasses.replace(fit_config, drop_last=True)
    model = fit(model, BackboneObjective(process, objective_config), dataset, collate, fit_config)
    return BackboneRun(model.cpu(), process_kind, process_config, lengths)


def sample_backbones(
    run: BackboneRun,
    lengths: Sequence[int],
    steps: int = 100,
    motif: Motif | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    clash_guidance: ClashGuidance | None = None,
    batch_size: int = 256,
    max_length_ratio: float | None = None,
) -> list[np.ndarray]:
    """One backbone ``(L, 4, 3)`` (N, CA, C, O; angstrom) per requested length, in the requested order.

    Chains are sampled together in batches padded to their longest chain (``sample_frames(mask=)``): sorted by
    length, at most ``batch_size`` per batch, and a batch's longest chain at most ``max_length_ratio`` times its
    shortest, which bounds the compute spent on padding. ``None``: no bound on CUDA, where kernel launches
    dominate and one large batch is fastest (256 samples of 40-96 residues: 8 s on an H100, against 87 s one
    length at a time), 1.25 elsewhere, where arithmetic dominates. With a ``motif`` every length must be the
    motif's. ``clash_guidance``: steer the samples away from steric clashes (off by default; see :class:`ClashGuidance`)."""
    if max_length_ratio is None:
        max_length_ratio = float("inf") if torch.device(device).type == "cuda" else 1.25
    if batch_size < 1 or max_length_ratio < 1:
        raise ValueError(
            f"batch_size >= 1, max_length_ratio >= 1 expected; got {batch_size}, {max_length_ratio}"
        )
    g = torch.Generator(device=device).manual_seed(seed)
    model = run.model.to(device)
    out: list[np.ndarray | None] = [None] * len(lengths)
    for chunk in _length_batches(lengths, batch_size, max_length_ratio):
        sizes = torch.tensor([lengths[i] for i in chunk], device=device)
        longest = int(sizes.max())
        mask = torch.arange(longest, device=device)[None] < sizes[:, None]
        frames = sample_frames(
            model, run.process, len(chunk), longest, steps, motif=motif, generator=g, device=device,
            clash_guidance=clash_guidance, mask=mask,
        )  # fmt: skip
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


# ----------------------------------------------------------------------------------------------------
# Sequences.


@dataclass
class SequenceRun:
    """A trained sequence denoiser, its label vocabulary, sequence length and (optionally) the
    independent taxonomy classifier used for evaluation."""

    model: SequenceDenoiser
    vocabulary: LabelVocabulary
    length: int
    classifier: TaxonomyClassifier | None = None

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``run.json``, ``model/`` and ``classifier/`` into ``directory``."""
        out = Path(directory)
        self.model.save_pretrained(out / "model")
        if self.classifier is not None:
            self.classifier.save_pretrained(out / "classifier")
        info = {"kind": "sequence", "labels": self.vocabulary.labels, "length": self.length}
        (out / RUN_FILE).write_text(json.dumps(info, indent=2))
        return out


def load_sequence_run(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> SequenceRun:
    """Read a folder written by :meth:`SequenceRun.save`."""
    info = _read_run(directory, "sequence")
    folder = Path(directory)
    model = SequenceDenoiser.from_pretrained(folder / "model", device=device).eval()
    classifier = None
    if (folder / "classifier").is_dir():
        classifier = TaxonomyClassifier.from_pretrained(folder / "classifier", device=device).eval()
    return SequenceRun(model, LabelVocabulary(info["labels"][1:]), int(info["length"]), classifier)


def train_sequences(
    dataset: SequenceDataset,
    model_config: SequenceDenoiserConfig,
    fit_config: FitConfig,
    p_uncond: float = 0.1,
) -> SequenceRun:
    """Train a taxonomy-conditioned :class:`SequenceDenoiser` (``num_classes`` is set from the vocabulary)."""
    config = dataclasses.replace(model_config, num_classes=len(dataset.vocabulary))
    torch.manual_seed(fit_config.seed)
    model = fit(
        SequenceDenoiser(config), SequenceObjective(p_uncond=p_uncond), dataset, collate_sequences, fit_config
    )
    length = max(len(t) for t in dataset.tokens)
    return SequenceRun(model.cpu(), dataset.vocabulary, length)


def _classifier_objective(
    model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None = None
) -> tuple[Tensor, dict[str, float]]:
    logits = model(batch["tokens"], batch["mask"])
    loss = nn.functional.cross_entropy(logits, batch["label"])
    return loss, {"accuracy": float((logits.argmax(-1) == batch["label"]).float().mean())}


def train_taxonomy_classifier(
    dataset: SequenceDataset, fit_config: FitConfig, hidden_size: int = 64, depth: int = 2
) -> TaxonomyClassifier:
    """Train the independent :class:`TaxonomyClassifier` on clean labelled sequences.

    Its training run is written to ``<fit_config.output_dir>/classifier`` (so it never collides with
    the generator's run folder).
    """
    fit_config = dataclasses.replace(fit_config, output_dir=str(Path(fit_config.output_dir) / "classifier"))
    config = TaxonomyClassifierConfig(
        num_classes=len(dataset.vocabulary), hidden_size=hidden_size, depth=depth
    )
    torch.manual_seed(fit_config.seed)
    return fit(
        TaxonomyClassifier(config), _classifier_objective, dataset, collate_sequences, fit_config
    ).cpu()


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
        pred = classifier(tokens).argmax(-1)
        result["adherence_classifier"] = float((pred == labels).float().mean())
        result["met_adherence"] = float(
            result["adherence_classifier"] >= SEQUENCE_TARGETS["adherence_classifier"]
        )
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


def generate_sequences(
    run: SequenceRun, labels: Tensor, guidance_scale: float = 2.0, steps: int = 64, seed: int = 0
) -> Tensor:
    """Tokens ``(B, run.length)`` for label ids ``labels: (B,)`` with classifier-free guidance."""
    g = torch.Generator().manual_seed(seed)
    return sample_sequences(
        run.model, labels, run.length, steps=steps, guidance_scale=guidance_scale, generator=g
    )
