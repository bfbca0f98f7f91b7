"""Configurations of diff-protein: dataclasses, read from YAML / TOML files and ``--set key=value`` overrides
through :mod:`diffcore.config`. Training settings are the core's :class:`~diffcore.training.TrainConfig`,
nested as ``train`` (``--set train.lr=3e-4``), never restated here; the networks' sizes are the models' own
configurations (:mod:`diff_protein.models.configs`), nested as ``backbone``, ``sequence`` and ``classifier``.

This module imports no network code, so the command line can build its options without loading the models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from diffcore.device import DEVICES, Device
from diffcore.training import TrainConfig

from diff_protein.models.configs import (
    FrameDenoiserConfig,
    SequenceDenoiserConfig,
    TaxonomyClassifierConfig,
)

__all__ = [
    "PROCESSES",
    "WHATS",
    "Process",
    "ProteinEvaluateConfig",
    "ProteinSampleConfig",
    "ProteinTrainConfig",
    "What",
    "default_train_config",
]

What = Literal["backbone", "sequence"]
Process = Literal["flow", "diffusion"]
RotationSchedule = Literal["linear", "exp"]
WHATS: tuple[str, ...] = ("backbone", "sequence")
PROCESSES: tuple[str, ...] = ("flow", "diffusion")


def default_train_config(**overrides: Any) -> TrainConfig:
    """diffcore's :class:`~diffcore.training.TrainConfig` with diff-protein's defaults, then ``overrides``.

    Cosine learning-rate decay to a tenth of the peak; no EMA (``ema_decay=None``: an EMA showed no gain on
    the short CPU runs, docs/diff-protein.md; the GPU benchmark sets 0.999); one checkpoint, at the end (a
    run stopped by ``max_seconds`` writes one too, so ``train.resume="latest"`` continues it); progress on
    standard error and ``log.jsonl``, no TensorBoard; runs under ``runs/protein``.
    """
    base: dict[str, Any] = {
        "output_dir": "runs/protein",
        "lr_schedule": "cosine",
        "min_lr_ratio": 0.1,
        "ema_decay": None,
        "checkpoint_every": None,
        "keep_last": 1,
        "tensorboard": False,
    }
    return TrainConfig(**(base | overrides))


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {' | '.join(choices)}, got {value!r}")


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")


def _check_unit(name: str, value: float, *, open_low: bool = False) -> None:
    ok = math.isfinite(value) and (0 < value <= 1 if open_low else 0 <= value <= 1)
    if not ok:
        raise ValueError(f"{name}: expected a number in {'(0, 1]' if open_low else '[0, 1]'}, got {value!r}")


@dataclass
class ProteinTrainConfig:
    """One training run: a backbone model (FrameFlow or FrameDiff on residue frames, IPA network) or a
    taxonomy-conditioned sequence model (TaxDiff) with an independent taxonomy classifier that judges it.

    The run goes to ``train.output_dir``: the Trainer's checkpoints and ``log.jsonl``, ``classifier/`` (the
    classifier's training run), ``cache/`` (preprocessed structure files) and ``pipeline/`` (the trained
    :class:`~diff_protein.pipeline.ProteinPipeline`).

    Attributes:
        what: what to train: backbone (residue frames, written as PDB) or sequence (amino-acid sequences
            conditioned on a taxonomy label).
        process: backbone: flow (FrameFlow, Yim et al. 2023b) or diffusion (FrameDiff, Yim et al. 2023).
        data_path: local training data, a folder of PDB / mmCIF / BinaryCIF files (backbone) or a FASTA / A3M
            file labelled by UniRef ``Tax=`` (sequence); empty: the generated default set (synthetic
            backbones, or profile families), drawn from ``train.seed``.
        num_examples: generated set: backbones, or sequences per family.
        min_length: backbone: shortest chain of the generated set (capped at ``max_length``; at least 24), or
            shortest window cut from the chains of ``data_path`` (:class:`~diff_protein.data.windows.ChainWindows`).
        max_length: backbone: longest generated chain, or longest window.
        length: sequence: profile length of the generated families, or the crop of sequences read from a file.
        num_families: sequence, generated set: taxa (profile families).
        batch_size: examples per optimizer step (per process).
        backbone: sizes of the IPA frame denoiser.
        motif_prob: backbone: fraction of examples trained as motif scaffolding.
        aux_t_max: backbone: the auxiliary backbone-atom and local-distance losses apply below this time;
            none: the paper's window (0.75 for FrameFlow, 0.25 for FrameDiff).
        aux_clash: backbone: weight of the steric-violation loss (0: off).
        rotation_schedule: backbone, FrameFlow: how sampling moves rotations, linear (times
            ``rotation_rate``) or exp (FrameFlow's exponential schedule); kept with the model.
        rotation_rate: backbone, FrameFlow: speed-up of the rotation schedule at sampling (1: the plain
            geodesic ODE).
        rotation_rate_t_max: backbone, FrameFlow: the sped-up rotations only below this time, the plain
            geodesic ODE above it (0.9 keeps the data's topology balance; 1: everywhere).
        cuda_graphs: backbone: on a GPU, replay the network's training forward and backward from CUDA graphs
            (batches padded to the longest chain; about 1.6x faster steps for small networks).
        init_from: backbone: a saved pipeline whose backbone weights start the training (fine-tuning, or a
            further schedule after one has ended); its network sizes must equal ``backbone``.
        sequence: sizes of the sequence denoiser (``num_classes`` is set from the data's labels).
        p_uncond: sequence: probability of dropping the label in training (classifier-free guidance).
        classifier: sizes of the independent taxonomy classifier (``num_classes`` set from the data).
        classifier_steps: sequence: training steps of the classifier; none: ``train.steps``; 0: no classifier.
        train: the optimisation, checkpoints, device and seed (diffcore.training.TrainConfig).
    """

    what: What = "backbone"
    process: Process = "flow"
    data_path: str = ""
    num_examples: int = 256
    min_length: int = 40
    max_length: int = 128
    length: int = 64
    num_families: int = 4
    batch_size: int = 16
    backbone: FrameDenoiserConfig = field(default_factory=FrameDenoiserConfig)
    motif_prob: float = 0.2
    aux_t_max: float | None = None
    aux_clash: float = 0.0
    rotation_schedule: RotationSchedule = "linear"
    rotation_rate: float = 20.0
    rotation_rate_t_max: float = 0.9
    cuda_graphs: bool = False
    init_from: str | None = None
    sequence: SequenceDenoiserConfig = field(default_factory=SequenceDenoiserConfig)
    p_uncond: float = 0.1
    classifier: TaxonomyClassifierConfig = field(default_factory=TaxonomyClassifierConfig)
    classifier_steps: int | None = None
    train: TrainConfig = field(default_factory=default_train_config)

    def __post_init__(self) -> None:
        _check_choice("what", self.what, WHATS)
        _check_choice("process", self.process, PROCESSES)
        _check_choice("rotation_schedule", self.rotation_schedule, ("linear", "exp"))
        for name, low in (
            ("num_examples", 1),
            ("max_length", 24),
            ("length", 1),
            ("num_families", 1),
            ("batch_size", 1),
        ):
            _check_int(name, getattr(self, name), low)
        _check_int("min_length", self.min_length, 24)
        if self.classifier_steps is not None:
            _check_int("classifier_steps", self.classifier_steps, 0)
        _check_unit("motif_prob", self.motif_prob)
        _check_unit("p_uncond", self.p_uncond)
        if self.aux_t_max is not None:
            _check_unit("aux_t_max", self.aux_t_max)
        if not (math.isfinite(self.aux_clash) and self.aux_clash >= 0):
            raise ValueError(f"aux_clash: expected a number >= 0, got {self.aux_clash!r}")
        if not (math.isfinite(self.rotation_rate) and self.rotation_rate > 0):
            raise ValueError(f"rotation_rate: expected a number > 0, got {self.rotation_rate!r}")
        _check_unit("rotation_rate_t_max", self.rotation_rate_t_max, open_low=True)

    @property
    def synthetic_min_length(self) -> int:
        """The generated set's shortest chain: ``min_length``, capped at ``max_length``."""
        return min(self.min_length, self.max_length)

    def with_train(self, **changes: Any) -> ProteinTrainConfig:
        """A copy with ``train`` fields changed (``cfg.with_train(steps=10)``)."""
        return replace(self, train=replace(self.train, **changes))


@dataclass
class ProteinSampleConfig:
    """Drawing samples from a saved pipeline: backbones (PDB) or sequences (FASTA), whichever it holds.

    Attributes:
        num_samples: samples to draw (per label for sequences).
        steps: sampler steps (Euler steps of the frame process, or unmasking steps of the sequence sampler).
        length: backbone: residues per chain (a motif file sets it instead).
        motif_path: backbone: a PDB / mmCIF / BinaryCIF file whose ``fixed`` residues are kept while the rest
            is generated (motif scaffolding); the chains get the file's length.
        fixed: backbone: the motif file's fixed residues, 0-based inclusive ranges (e.g. ``5-14,30-35``).
        clash_radius: backbone: steer sampling away from steric clashes, pushing predicted CAs at least 3
            residues apart to at least this many angstrom while t >= 0.1 (0: off; 5.0 is the measured
            setting).
        rotation_rate_t_max: backbone, FrameFlow: sample rotations with the sped-up schedule only below this
            time and the plain geodesic ODE above it; none: the pipeline's setting.
        batch_size: backbone: most chains sampled together (batches padded to their longest chain).
        labels: sequence: taxonomy labels to generate for; empty: every label the pipeline knows.
        guidance_scale: sequence: classifier-free guidance scale (1: none).
        seed: seeds the sampling noise.
        device: where to sample: auto, cpu or cuda.
    """

    num_samples: int = 8
    steps: int = 100
    length: int = 64
    motif_path: str = ""
    fixed: str = ""
    clash_radius: float = 0.0
    rotation_rate_t_max: float | None = None
    batch_size: int = 256
    labels: tuple[str, ...] = ()
    guidance_scale: float = 2.0
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        for name in ("num_samples", "steps", "length", "batch_size"):
            _check_int(name, getattr(self, name), 1)
        _check_int("seed", self.seed, 0)
        _check_choice("device", self.device, DEVICES)
        if not (math.isfinite(self.clash_radius) and self.clash_radius >= 0):
            raise ValueError(f"clash_radius: expected a number >= 0 (0: off), got {self.clash_radius!r}")
        if self.rotation_rate_t_max is not None:
            _check_unit("rotation_rate_t_max", self.rotation_rate_t_max, open_low=True)
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0):
            raise ValueError(f"guidance_scale: expected a number >= 0, got {self.guidance_scale!r}")
        if self.fixed and not self.motif_path:
            raise ValueError("fixed: residue ranges need a motif_path (the file they are taken from)")


@dataclass
class ProteinEvaluateConfig:
    """Scoring a saved pipeline: draw samples (or read ``samples_path``) and measure them.

    Backbones: the issue's geometry targets against the training data at the samples' lengths
    (``ca_ca_valid``, ``clash_free``, ``sse_max_abs_diff``, ``rg_vs_ref``, ``met_*``). Sequences: label
    adherence by the pipeline's independent classifier, and by the exact Bayes classifier when the pipeline
    was trained on the generated profile families.

    Attributes:
        samples_path: score these samples instead of drawing new ones: a folder of structure files
            (backbone) or a FASTA file with ``Tax=`` labels in its headers (sequence).
        num_samples: samples to draw: backbones (at lengths drawn from the training lengths), or sequences
            per label.
        steps: sampler steps.
        guidance_scale: sequence: classifier-free guidance scale of the drawn samples.
        reference_path: backbone: a folder of reference structures; empty: the first ``num_reference``
            chains of the pipeline's training data.
        num_reference: backbone: reference chains taken from the training data.
        seed: seeds the sampling noise and the drawn lengths.
        device: where to sample: auto, cpu or cuda.
    """

    samples_path: str = ""
    num_samples: int = 16
    steps: int = 100
    guidance_scale: float = 2.0
    reference_path: str = ""
    num_reference: int = 64
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        for name in ("num_samples", "steps", "num_reference"):
            _check_int(name, getattr(self, name), 1)
        _check_int("seed", self.seed, 0)
        _check_choice("device", self.device, DEVICES)
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0):
            raise ValueError(f"guidance_scale: expected a number >= 0, got {self.guidance_scale!r}")
