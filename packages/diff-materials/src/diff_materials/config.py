"""Configurations of diff-materials: dataclasses, read from YAML / TOML files and ``--set key=value`` overrides
through :mod:`diffcore.config`. Training settings are the core's :class:`~diffcore.training.TrainConfig`,
nested as ``train`` (``--set train.lr=1e-4``), never restated here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from diffcore.device import Device
from diffcore.training import TrainConfig


def _as_list(value: object) -> list[str]:
    """A list setting given on the command line as one string (``"SrTiO3,BaTiO3"`` -> ``["SrTiO3", "BaTiO3"]``)
    or as repeated options (``--property a=1 --property b=2``, each item split the same way)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [v for item in value for v in _as_list(item)]  # type: ignore[union-attr]


__all__ = [
    "CrystalCSPConfig",
    "CrystalEvaluateConfig",
    "CrystalModelConfig",
    "CrystalSampleConfig",
    "CrystalTrainConfig",
]


@dataclass
class CrystalModelConfig:
    """The denoising network (:class:`~diff_materials.models.CrystalDenoiser`).

    Attributes:
        width: hidden size of the message-passing layers.
        depth: number of message-passing layers.
        num_freqs: Fourier frequencies of fractional-coordinate differences.
        wave_order: also the plane waves of the difference up to this order on each axis (0: none; see
            :class:`~diff_materials.models.EncoderConfig`).
        edges: ``fc`` (every pair of atoms of a crystal, DiffCSP) or ``radius`` (pairs within ``cutoff`` over
            periodic images).
        cutoff: radius of the ``radius`` graph in angstrom.
    """

    width: int = 128
    depth: int = 4
    num_freqs: int = 32
    wave_order: int = 3
    edges: Literal["fc", "radius"] = "fc"
    cutoff: float = 7.0


@dataclass
class CrystalTrainConfig:
    """One training run.

    Attributes:
        model: the network.
        task: ``csp`` (crystal structure prediction: composition given) or ``gen`` (ab initio generation,
            which also learns crystal structure prediction on ``csp_fraction`` of its examples).
        data_path: a CDVAE-style CSV, a CIF file or a folder of CIF files; empty uses the generated prototypes.
        generated_kinds: prototypes of the generated set (perovskite, rocksalt, cscl, zincblende, fluorite).
        generated_jitter: Gaussian displacement (angstrom) of the generated atoms; 0 keeps ideal prototypes.
        limit: read at most this many crystals (0: all).
        split: how the held-out part is chosen: ``polymorph`` (all crystals of one formula on one side) or
            ``random``.
        held_out: fraction of the crystals held back for evaluation.
        properties: properties to condition on (classifier-free guidance through adapters): numeric columns
            (``heat_ref``, ``dir_gap``) and the categorical ``chemical_system`` (the set of elements) and
            ``space_group`` (1..230, from the data or pymatgen's SpacegroupAnalyzer), several at once; empty
            trains an unconditional model.
        p_uncond: probability of dropping each property of a crystal during training (CFG), independently.
        predictor_steps: also train a property predictor on noisy crystals for classifier guidance, for this
            many steps (0: none).
        type_process: ``absorbing`` or ``uniform`` discrete diffusion of atom types (``gen``).
        type_schedule, type_power: the atom types' discrete schedule (a :mod:`diffcore.discrete` name) and the
            power of the ``polynomial`` one (see :class:`~diff_materials.diffusion.CrystalDiffusionConfig`).
        csp_fraction: with ``task = gen``, the fraction of training crystals whose atom types stay clean, so that
            the one model also predicts structures of a given composition.
        lattice_schedule: the lattice's Gaussian path (a diffcore schedule name).
        coords: the fractional coordinates' process: ``wrapped_normal`` (DiffCSP's score-based diffusion on the
            torus) or ``flow`` (Riemannian flow matching on the torus to uniform noise).
        frac_target: the wrapped normal's training target: ``orbit`` (the score averaged over the crystal's
            translations and the permutations of its atoms that the network cannot tell apart,
            :mod:`diff_materials.orbit`; the same regression function with less variance) or ``crystal``
            (DiffCSP's score of the one training crystal).
        init_from: a saved pipeline (or run folder) whose network starts the training; with ``properties``
            and ``adapters_only`` this is MatterGen's fine-tuning of a pretrained unconditional model.
        adapters_only: when fine-tuning from ``init_from`` on properties, train only the property embeddings
            and adapters.
        batch_size: crystals per optimizer step (per process).
        train: the optimisation, checkpoints, device and seed (:class:`diffcore.training.TrainConfig`).
    """

    model: CrystalModelConfig = field(default_factory=CrystalModelConfig)
    task: Literal["csp", "gen"] = "csp"
    data_path: str = ""
    generated_kinds: list[str] = field(default_factory=lambda: ["perovskite"])
    generated_jitter: float = 0.0
    limit: int = 0
    split: Literal["polymorph", "random"] = "polymorph"
    held_out: float = 0.1
    properties: tuple[str, ...] = ()
    p_uncond: float = 0.2
    predictor_steps: int = 0
    type_process: Literal["absorbing", "uniform"] = "absorbing"
    type_schedule: str = "log-linear"
    type_power: float = 2.0
    csp_fraction: float = 0.5
    lattice_schedule: str = "vp-cosine"
    coords: Literal["wrapped_normal", "flow"] = "wrapped_normal"
    frac_target: Literal["orbit", "crystal"] = "crystal"
    init_from: str = ""
    adapters_only: bool = True
    batch_size: int = 64
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="runs/materials"))

    def __post_init__(self) -> None:
        self.properties = tuple(_as_list(self.properties))
        self.generated_kinds = _as_list(self.generated_kinds)
        if self.task not in ("csp", "gen"):
            raise ValueError(f"task: expected csp or gen, got {self.task!r}")
        if self.coords not in ("wrapped_normal", "flow"):
            raise ValueError(f"coords: expected wrapped_normal or flow, got {self.coords!r}")
        if self.frac_target not in ("orbit", "crystal"):
            raise ValueError(f"frac_target: expected orbit or crystal, got {self.frac_target!r}")
        if self.split not in ("polymorph", "random"):
            raise ValueError(f"split: expected polymorph or random, got {self.split!r}")
        if not 0 < self.held_out < 1:
            raise ValueError(f"held_out: expected a fraction in (0, 1), got {self.held_out}")
        if not 0 <= self.csp_fraction <= 1:
            raise ValueError(f"csp_fraction: expected a fraction in [0, 1], got {self.csp_fraction}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")
        if self.limit < 0 or self.predictor_steps < 0:
            raise ValueError("limit, predictor_steps: expected >= 0")


@dataclass
class CrystalSampleConfig:
    """Drawing crystals from a saved pipeline (written to ``--out`` as CIF files and a picture).

    Attributes:
        num_samples: how many crystals to draw.
        formulas: crystal structure prediction: the compositions to predict, comma-separated on the command
            line (``SrTiO3,C8``; each formula's
            atoms as written, ``Sr2Ti2O6`` for two formula units); cycled to ``num_samples``. Empty: a ``gen``
            pipeline generates compositions too; a ``csp`` pipeline takes compositions of its training data.
        steps: sampler steps from t = 1 to t = 0.
        step_lr: step of DiffCSP's Langevin corrector (0: predictor only, half the network calls).
        properties: conditioning values ``name=value`` (classifier-free guidance; the pipeline must have been
            trained on those properties): ``heat_ref=-1.0``, ``chemical_system=Ba-Ti-O``, ``space_group=221``.
        guidance_scale: CFG weight (1: conditional model; larger: stronger).
        target: classifier guidance ranges ``name=low:high`` (either end may be empty), with the pipeline's
            property predictor.
        predictor_scale: classifier-guidance strength.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 16
    formulas: list[str] = field(default_factory=list)
    steps: int = 200
    step_lr: float = 1e-5
    properties: tuple[str, ...] = ()
    guidance_scale: float = 1.0
    target: tuple[str, ...] = ()
    predictor_scale: float = 0.0
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        self.formulas = _as_list(self.formulas)
        self.properties = tuple(_as_list(self.properties))
        self.target = tuple(_as_list(self.target))


@dataclass
class CrystalEvaluateConfig:
    """Scoring a saved pipeline against held-out crystals (written to ``--out/metrics.json``).

    Attributes:
        num_samples: held-out crystals to predict (``csp``) and crystals to generate (``gen``); 0: all held out.
        candidates: predictions per held-out crystal for the best-of-k match rate.
        data_path: reference crystals (CSV / CIF folder); empty: the held-out part of the pipeline's own data.
        cov_dataset: which CDVAE coverage cutoffs to use (perov_5, carbon_24, mp_20).
        fingerprints: compute COV (CrystalNN fingerprints are the slowest metric).
        steps: sampler steps.
        step_lr: Langevin corrector step.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 64
    candidates: int = 1
    data_path: str = ""
    cov_dataset: str = "perov_5"
    fingerprints: bool = True
    steps: int = 200
    step_lr: float = 1e-5
    seed: int = 0
    device: Device = "auto"


@dataclass
class CrystalCSPConfig:
    """Crystal structure prediction for every crystal of an input file, from its composition only.

    Attributes:
        run: a training run folder (its ``pipeline/``) or a saved pipeline folder.
        input: a CDVAE-style CSV or a folder of CIF files; only each entry's composition is read.
        samples: predictions per input (``<material_id>_<k>.cif``, k = 0..samples-1).
        batch: crystals sampled together.
        steps: sampler steps.
        step_lr: Langevin corrector step.
        seed: seeds the noise.
        device: where to run.
    """

    run: str = ""
    input: str = ""
    samples: int = 1
    batch: int = 256
    steps: int = 200
    step_lr: float = 1e-5
    seed: int = 0
    device: Device = "auto"
