"""``CrystalPipeline`` and the verbs: :func:`train`, :func:`sample`, :func:`evaluate`, and :func:`predict_files`
(crystal structure prediction for every entry of a file, the ``csp`` command).

::

    pipe = train(CrystalTrainConfig(task="gen"))                 # runs/materials/pipeline
    crystals = sample(pipe, CrystalSampleConfig(num_samples=8))  # list[Crystal]; .to_structure() for pymatgen
    metrics = evaluate(pipe, CrystalEvaluateConfig())            # validity, match rate, COV, ...

The building blocks below the verbs take crystals (:func:`load_data`, :func:`train_denoiser`,
:func:`train_predictor`, :func:`predict_structures`, :func:`generate`); the benchmarks use them directly.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffcore.device import resolve_device
from diffcore.io import write_json, write_text
from diffcore.pipeline import PIPELINE_FILE, Pipeline
from diffcore.rng import make_generator, seeded
from diffcore.training import TrainConfig, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader

from diff_materials import io
from diff_materials import metrics as M
from diff_materials.config import (
    CrystalCSPConfig,
    CrystalEvaluateConfig,
    CrystalSampleConfig,
    CrystalTrainConfig,
)
from diff_materials.data import (
    Crystal,
    CrystalDataset,
    GeneratedConfig,
    collate_crystals,
    generate_crystals,
    polymorph_grouped_split,
    random_split,
    read_crystals,
)
from diff_materials.diffusion import (
    CrystalDiffusion,
    CrystalDiffusionConfig,
    CrystalObjective,
    Guidance,
    sample_crystals,
)
from diff_materials.lattice import normalise_lattice
from diff_materials.models import (
    CrystalDenoiser,
    CrystalDenoiserConfig,
    PropertyPredictor,
    PropertyPredictorConfig,
)
from diff_materials.properties import parse_property_value, property_kind, property_width

__all__ = [
    "CrystalPipeline",
    "evaluate",
    "generate",
    "load_data",
    "parse_formula",
    "predict_files",
    "predict_structures",
    "sample",
    "train",
    "train_denoiser",
    "train_predictor",
]

MAX_STORED_COMPOSITIONS = 4000


class CrystalPipeline(Pipeline):
    """A trained crystal model with what it needs to sample and be judged.

    Components: ``denoiser`` (:class:`~diff_materials.models.CrystalDenoiser`) and, when trained, ``predictor``
    (a noisy-crystal :class:`~diff_materials.models.PropertyPredictor` for classifier guidance). Settings: the
    ``diffusion`` (:class:`~diff_materials.diffusion.CrystalDiffusionConfig` as a dict), the conditioning
    ``properties``, ``num_atoms`` (the training set's atom counts, drawn from for ab initio generation),
    ``compositions`` (training compositions as atomic-number lists, for sampling a ``csp`` pipeline without
    formulas) and ``data`` (how to rebuild its training data and held-out split: :func:`load_data`).
    """

    def __init__(
        self,
        denoiser: CrystalDenoiser,
        diffusion: dict[str, Any] | None = None,
        *,
        properties: Sequence[str] = (),
        num_atoms: Sequence[int] = (),
        compositions: Sequence[Sequence[int]] = (),
        data: dict[str, Any] | None = None,
        predictor: PropertyPredictor | None = None,
    ) -> None:
        if not isinstance(denoiser, CrystalDenoiser):
            raise ValueError(f"denoiser: expected a CrystalDenoiser, got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.diffusion_config = CrystalDiffusionConfig(**(diffusion or {}))
        self.properties = list(properties)
        self.num_atoms = [int(n) for n in num_atoms]
        self.compositions = [[int(z) for z in c] for c in compositions]
        self.data = dict(data or {})
        self.predictor = predictor

    @property
    def diffusion(self) -> CrystalDiffusion:
        return CrystalDiffusion(self.diffusion_config)

    def components(self) -> dict[str, Any]:
        return {"denoiser": self.denoiser, "predictor": self.predictor}

    def pipeline_config(self) -> dict[str, Any]:
        return {
            "diffusion": dataclasses.asdict(self.diffusion_config),
            "properties": self.properties,
            "num_atoms": self.num_atoms,
            "compositions": self.compositions,
            "data": self.data,
        }

    @classmethod
    def from_parts(cls, config: dict[str, Any], components: dict[str, Any]) -> CrystalPipeline:
        parts = {name: c.eval() for name, c in components.items()}
        return cls(
            parts["denoiser"],
            config.get("diffusion"),
            properties=config.get("properties", ()),
            num_atoms=config.get("num_atoms", ()),
            compositions=config.get("compositions", ()),
            data=config.get("data"),
            predictor=parts.get("predictor"),
        )

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> CrystalPipeline:
        """Load a saved pipeline folder, or a training run folder holding one in ``pipeline/``."""
        folder = Path(directory)
        if not (folder / PIPELINE_FILE).is_file() and (folder / "pipeline" / PIPELINE_FILE).is_file():
            folder = folder / "pipeline"
        return super().from_pretrained(folder, device)


# ----------------------------------------------------------------------------------------------------
# Data.


def load_data(info: dict[str, Any]) -> tuple[list[Crystal], list[Crystal]]:
    """``(train, held)`` crystals as ``info`` describes them (what :func:`data_info` writes):
    ``{"path", "limit", "generated_kinds", "generated_jitter", "split", "held_out", "seed"}``."""
    if info.get("path"):
        result = read_crystals(info["path"], info.get("limit") or None)
        if result.skipped:
            result.report()
        crystals = result.crystals
        if not crystals:
            raise ValueError(f"data_path: {info['path']} holds no readable crystals")
    else:
        crystals = generate_crystals(
            GeneratedConfig(
                kinds=tuple(info.get("generated_kinds", ("perovskite",))),
                num_crystals=int(info.get("limit") or 0),
                jitter=float(info.get("generated_jitter", 0.0)),
                seed=int(info.get("seed", 0)),
            )
        )
    split = polymorph_grouped_split if info.get("split", "polymorph") == "polymorph" else random_split
    return split(crystals, float(info.get("held_out", 0.1)), int(info.get("seed", 0)))


def data_info(config: CrystalTrainConfig) -> dict[str, Any]:
    """What :func:`load_data` needs to rebuild the data and split of a training configuration."""
    return {
        "path": str(Path(config.data_path).resolve()) if config.data_path else "",
        "limit": config.limit,
        "generated_kinds": list(config.generated_kinds),
        "generated_jitter": config.generated_jitter,
        "split": config.split,
        "held_out": config.held_out,
        "seed": config.train.seed,
    }


# ----------------------------------------------------------------------------------------------------
# Training.


def _statistics(crystals: Sequence[Crystal], properties: Sequence[str]) -> dict[str, list[float]]:
    lattice = torch.tensor(np.stack([c.lattice for c in crystals]), dtype=torch.float64)
    n = torch.tensor([c.num_atoms for c in crystals])
    x = normalise_lattice(lattice, n, torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64))
    std = x.std(0) if len(crystals) > 1 else torch.ones(6, dtype=torch.float64)
    std = std.clamp_min(0.05)
    bound = float(((x - x.mean(0)) / std).abs().max()) + 1.0
    stats = {"lattice_mean": x.mean(0).tolist(), "lattice_std": std.tolist(), "lattice_bound": bound}
    means, stds = [], []
    for p in properties:
        if property_kind(p) != "scalar":  # categorical: not standardised
            means.append(0.0)
            stds.append(1.0)
            continue
        values = np.array([c.properties.get(p, math.nan) for c in crystals], dtype=np.float64)
        values = values[~np.isnan(values)]
        if len(values) == 0:
            raise ValueError(f"properties: no training crystal has the property {p!r}")
        means.append(float(values.mean()))
        stds.append(float(max(values.std(), 1e-6)))
    return stats | {"property_mean": means, "property_std": stds}


def _fit(
    model: nn.Module, objective, dataset: CrystalDataset, train: TrainConfig, batch_size: int
) -> nn.Module:
    loader = DataLoader(
        dataset, batch_size=min(batch_size, len(dataset)), shuffle=True, collate_fn=collate_crystals
    )
    trainer = Trainer(model, objective, loader, train)
    summary = trainer.fit()
    if summary.stopped_by_time:
        warnings.warn(
            f"training stopped by max_seconds={train.max_seconds} at step {summary.steps} of {train.steps}",
            stacklevel=2,
        )
    trained = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
    return trained.eval()


def train_denoiser(config: CrystalTrainConfig, crystals: Sequence[Crystal]) -> CrystalDenoiser:
    """Train a :class:`CrystalDenoiser` on ``crystals`` as ``config`` says (statistics from the crystals; or the
    network of ``config.init_from``, fine-tuning only its adapters when ``adapters_only``)."""
    if not crystals:
        raise ValueError("crystals: no training crystals")
    stats = _statistics(crystals, config.properties)
    m = config.model
    net = CrystalDenoiserConfig(hidden=m.width, layers=m.depth, num_freqs=m.num_freqs, wave_order=m.wave_order, edges=m.edges,
                                cutoff=m.cutoff, num_properties=len(config.properties),
                                property_kinds=[property_kind(p) for p in config.properties], **stats)  # fmt: skip
    with seeded(config.train.seed):
        model = CrystalDenoiser(net)
    if config.init_from:
        start = CrystalPipeline.from_pretrained(config.init_from).denoiser
        unconditional = {"num_properties": 0, "property_kinds": [], "property_mean": [], "property_std": []}
        base = dataclasses.replace(start.config, **unconditional)
        mine = dataclasses.replace(net, **unconditional)
        neutral = {"lattice_mean": [0.0] * 6, "lattice_std": [1.0] * 6, "lattice_bound": 0.0}
        if dataclasses.replace(base, **neutral) != dataclasses.replace(mine, **neutral):
            raise ValueError(f"init_from: {config.init_from} holds a network of other sizes ({start.config})")
        net = dataclasses.replace(
            net,
            lattice_mean=start.config.lattice_mean,
            lattice_std=start.config.lattice_std,
            lattice_bound=start.config.lattice_bound,
        )
        with seeded(config.train.seed):
            model = CrystalDenoiser(net)
        base_state = {
            k: v
            for k, v in start.state_dict().items()
            if not k.startswith(("encoder.property", "encoder.adapters"))
        }
        missing, unexpected = model.load_state_dict(base_state, strict=False)
        if unexpected or any(not k.startswith(("encoder.property", "encoder.adapters")) for k in missing):
            raise ValueError(
                f"init_from: weights do not fit ({unexpected[:3]} unexpected, {missing[:3]} missing)"
            )
        if config.adapters_only and config.properties:
            trainable = {id(p) for p in model.encoder.adapter_parameters()}
            for p in model.parameters():
                p.requires_grad_(id(p) in trainable)
    diffusion = CrystalDiffusion(_diffusion_config(config))
    objective = CrystalObjective(
        diffusion, config.p_uncond, config.csp_fraction if config.task == "gen" else 0.0
    )
    dataset = CrystalDataset(crystals, config.properties)
    model = _fit(model, objective, dataset, config.train, config.batch_size)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.cpu()


def _diffusion_config(config: CrystalTrainConfig) -> CrystalDiffusionConfig:
    return CrystalDiffusionConfig(task=config.task, type_process=config.type_process,
                                  type_schedule=config.type_schedule, type_power=config.type_power,
                                  lattice_schedule=config.lattice_schedule, coords=config.coords,
                                  frac_target=config.frac_target)  # fmt: skip


class PredictorObjective:
    """MSE of a :class:`PropertyPredictor` on standardised properties of crystals noised to a random ``t`` (all
    three processes, as the denoiser sees them), or clean crystals with ``noisy=False``."""

    def __init__(self, diffusion: CrystalDiffusion, noisy: bool = True) -> None:
        self.diffusion, self.noisy = diffusion, noisy

    def __call__(self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None = None):
        from diffcore.paths.transitions import marginal_sample

        enc = getattr(model, "module", model).encoder
        n = batch["num_atoms"]
        b, dev = len(n), n.device
        atom_batch = torch.repeat_interleave(torch.arange(b, device=dev), n)
        x0 = normalise_lattice(batch["lattice"], n, enc.lattice_mean, enc.lattice_std)
        if self.noisy:
            t = torch.rand(b, generator=generator, device=dev)
            x = marginal_sample(
                self.diffusion.lattice_schedule, x0, t, torch.randn(x0.shape, generator=generator, device=dev)
            )
            frac, _ = self.diffusion.noisy_frac(batch["frac"], t[atom_batch, None], generator)
        else:
            t, x, frac = torch.zeros(b, device=dev), x0, batch["frac"]
        pred = model(frac, x, batch["types"], t, n)
        cfg = getattr(model, "module", model).config
        mean = torch.tensor(cfg.property_mean, device=dev)
        std = torch.tensor(cfg.property_std, device=dev)
        target = (batch["properties"] - mean) / std
        mask = batch["property_mask"].float()
        loss = (((pred - target) ** 2) * mask).sum() / mask.sum().clamp_min(1)
        return loss, {"mse": loss.detach()}


def train_predictor(
    crystals: Sequence[Crystal],
    properties: Sequence[str],
    train: TrainConfig,
    *,
    noisy: bool = True,
    model: CrystalDenoiserConfig | None = None,
    batch_size: int = 64,
    diffusion: CrystalDiffusionConfig | None = None,
) -> PropertyPredictor:
    """Train a :class:`PropertyPredictor` of ``properties`` on ``crystals``: on noisy crystals (classifier
    guidance) or, with ``noisy=False``, on clean ones (the independent judge of guided samples)."""
    if not properties:
        raise ValueError("properties: expected at least one property to predict")
    stats = _statistics(crystals, properties)
    sizes = (
        {}
        if model is None
        else {
            "hidden": model.hidden,
            "layers": model.layers,
            "num_freqs": model.num_freqs,
            "wave_order": model.wave_order,
        }
    )
    cfg = PropertyPredictorConfig(outputs=len(properties), **sizes, **stats)
    with seeded(train.seed):
        predictor = PropertyPredictor(cfg)
    objective = PredictorObjective(CrystalDiffusion(diffusion), noisy)
    return _fit(predictor, objective, CrystalDataset(crystals, properties), train, batch_size).cpu()


def train(config: CrystalTrainConfig) -> CrystalPipeline:
    """Train as ``config`` says on ``config.data_path`` (or the generated prototypes), holding back
    ``config.held_out`` of the crystals; writes the run under ``config.train.output_dir`` and the pipeline in
    its ``pipeline/`` folder."""
    info = data_info(config)
    train_set, _held = load_data(info)
    out = Path(config.train.output_dir)
    denoiser = train_denoiser(config, train_set)
    predictor = None
    scalars = scalar_properties(config.properties)
    if config.predictor_steps and scalars:
        pt = dataclasses.replace(
            config.train, steps=config.predictor_steps, output_dir=str(out / "predictor")
        )
        predictor = train_predictor(train_set, scalars, pt, model=denoiser.config, batch_size=config.batch_size,
                                    diffusion=_diffusion_config(config))  # fmt: skip
    pipe = CrystalPipeline(
        denoiser,
        dataclasses.asdict(_diffusion_config(config)),
        properties=config.properties,
        num_atoms=[c.num_atoms for c in train_set],
        compositions=[c.numbers.tolist() for c in train_set[:MAX_STORED_COMPOSITIONS]],
        data=info,
        predictor=predictor,
    )
    pipe.card.record_training(config)
    pipe.save_pretrained(out / "pipeline")
    return pipe


# ----------------------------------------------------------------------------------------------------
# Sampling.


def parse_formula(formula: str) -> list[int]:
    """``"SrTiO3"`` -> atomic numbers ``[38, 22, 8, 8, 8]`` (the atoms as written, no reduction)."""
    from pymatgen.core import Composition

    try:
        comp = Composition(formula)
    except Exception as exc:
        raise ValueError(f"formulas: cannot read {formula!r} as a chemical formula ({exc})") from None
    numbers = []
    for el, amount in comp.items():
        if abs(amount - round(amount)) > 1e-6 or amount < 1:
            raise ValueError(f"formulas: {formula!r} has a non-integer amount of {el}")
        numbers += [el.Z] * round(amount)
    return numbers


def predict_structures(
    pipeline: CrystalPipeline,
    compositions: Sequence[Sequence[int]],
    candidates: int = 1,
    *,
    steps: int = 200,
    step_lr: float = 1e-5,
    batch: int = 256,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> list[list[Crystal]]:
    """Crystal structure prediction: ``candidates`` structures for each composition (atomic numbers), from the
    composition alone. Returns one list of ``candidates`` crystals per composition."""
    if pipeline.diffusion_config.task != "csp" and not pipeline.num_atoms:
        raise ValueError("pipeline: holds no structure-prediction model")
    diffusion = CrystalDiffusion(dataclasses.replace(pipeline.diffusion_config, task="csp"))
    jobs = [list(c) for c in compositions for _ in range(candidates)]
    out: list[Crystal] = []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        types = torch.tensor([z - 1 for c in chunk for z in c], dtype=torch.long)
        out += sample_crystals(pipeline.denoiser, diffusion, [len(c) for c in chunk], types=types, steps=steps,
                               step_lr=step_lr, generator=generator, progress=progress)  # fmt: skip
    return [out[i * candidates : (i + 1) * candidates] for i in range(len(compositions))]


def generate(
    pipeline: CrystalPipeline,
    num_samples: int,
    *,
    steps: int = 200,
    step_lr: float = 1e-5,
    guidance: Guidance | None = None,
    batch: int = 256,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> list[Crystal]:
    """Ab initio generation: atom counts drawn from the training set's, then lattice, coordinates and types."""
    if pipeline.diffusion_config.task != "gen":
        raise ValueError("pipeline: a csp pipeline predicts structures of given compositions; pass formulas")
    counts = torch.tensor(pipeline.num_atoms, dtype=torch.float64)
    idx = torch.multinomial(torch.ones(len(counts), dtype=torch.float64), num_samples, replacement=True,
                            generator=_cpu(generator))  # fmt: skip
    n = counts[idx].long()
    out: list[Crystal] = []
    for start in range(0, num_samples, batch):
        g = guidance
        if guidance is not None and guidance.properties is not None:
            g = dataclasses.replace(guidance, properties=guidance.properties[start : start + batch])
        out += sample_crystals(pipeline.denoiser, pipeline.diffusion, n[start : start + batch], steps=steps,
                               step_lr=step_lr, guidance=g, generator=generator, progress=progress)  # fmt: skip
    return out


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None or generator.device.type == "cpu":
        return generator
    return torch.Generator().manual_seed(
        int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    )


def scalar_properties(names: Sequence[str]) -> list[str]:
    """The scalar ones of ``names`` (what a property predictor regresses)."""
    return [p for p in names if property_kind(p) == "scalar"]


def _named_values(items: Sequence[str], names: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{what}: expected name=value, got {item!r}")
        if name not in names:
            raise ValueError(
                f"{what}: the pipeline was not trained on {name!r} (its properties: {list(names)})"
            )
        out[name] = value
    return out


def property_row(names: Sequence[str], items: Sequence[str]) -> list[float]:
    """``name=value`` settings (``heat_ref=-1.0``, ``chemical_system=Ba-Ti-O``, ``space_group=221``) -> the
    packed row over a pipeline's property ``names`` (NaN where a property is free)."""
    values = _named_values(items, names, "properties")
    row: list[float] = []
    for p in names:
        if p in values:
            row += parse_property_value(p, values[p])
        else:
            row += [math.nan] * property_width(property_kind(p))
    return row


def guidance_from(pipeline: CrystalPipeline, config: CrystalSampleConfig, num: int) -> Guidance | None:
    """The :class:`Guidance` of a sample configuration's ``properties`` / ``target`` settings (or None)."""
    if not config.properties and not config.target:
        return None
    names = pipeline.properties
    guidance = Guidance(scale=config.guidance_scale, predictor_scale=config.predictor_scale)
    if config.properties:
        row = property_row(names, config.properties)
        guidance.properties = torch.tensor([row] * num, dtype=torch.float32)
    if config.target:
        if pipeline.predictor is None:
            raise ValueError(
                "target: the pipeline has no property predictor (train with predictor_steps > 0)"
            )
        names = scalar_properties(names)  # the predictor's outputs
        ranges = _named_values(config.target, names, "target")
        low, high = [], []
        for p in names:
            lo, _, hi = ranges.get(p, ":").partition(":")
            low.append(float(lo) if lo else math.nan)
            high.append(float(hi) if hi else math.nan)
        guidance.predictor = pipeline.predictor
        guidance.target_low, guidance.target_high = torch.tensor(low), torch.tensor(high)
    return guidance


def sample(
    pipeline: CrystalPipeline, config: CrystalSampleConfig, *, generator: torch.Generator | None = None
) -> list[Crystal]:
    """Draw ``config.num_samples`` crystals (:class:`~diff_materials.data.crystals.Crystal`; ``.to_structure()``
    gives pymatgen): of ``config.formulas`` (crystal structure prediction), or ab initio for a ``gen``
    pipeline. ``generator`` (on the configuration's device) overrides ``config.seed``."""
    if config.num_samples < 1:
        raise ValueError(f"num_samples: expected >= 1, got {config.num_samples}")
    device = resolve_device(config.device)
    pipeline.to(device)
    gen = make_generator(config.seed if generator is None else generator, device)
    if config.formulas or pipeline.diffusion_config.task == "csp":
        if config.formulas:
            comps = [parse_formula(f) for f in config.formulas]
        else:
            pick = torch.randint(0, len(pipeline.compositions), (config.num_samples,), generator=_cpu(gen))
            comps = [pipeline.compositions[i] for i in pick.tolist()]
        comps = [comps[i % len(comps)] for i in range(config.num_samples)]
        result = [c[0] for c in predict_structures(pipeline, comps, 1, steps=config.steps, step_lr=config.step_lr,
                                                   generator=gen)]  # fmt: skip
    else:
        guidance = guidance_from(pipeline, config, config.num_samples)
        result = generate(pipeline, config.num_samples, steps=config.steps, step_lr=config.step_lr,
                          guidance=guidance, generator=gen)  # fmt: skip
    for i, c in enumerate(result):
        c.material_id = f"sample_{i:03d}"
    return result


def save_samples(folder: str | os.PathLike[str], crystals: Sequence[Crystal]) -> list[Path]:
    """``sample_000.cif, ...`` and ``samples.png`` (a grid of the first 16) in ``folder``."""
    out = Path(folder)
    files = io.write_cifs(out, crystals, [c.material_id or f"sample_{i:03d}" for i, c in enumerate(crystals)])
    files.append(io.structure_grid(out / "samples.png", crystals))
    return files


# ----------------------------------------------------------------------------------------------------
# Evaluation.


def evaluate(pipeline: CrystalPipeline, config: CrystalEvaluateConfig) -> dict[str, float]:
    """Score the pipeline against held-out crystals (``config.data_path`` or the pipeline's own held-out split):
    crystal structure prediction (match rate / RMSE, best of 1 and of ``candidates``) for every pipeline, and
    the generation metrics (validity, COV, Wasserstein, uniqueness, novelty) for a ``gen`` pipeline."""
    if config.cov_dataset not in M.COV_CUTOFFS:
        raise ValueError(f"cov_dataset: expected one of {sorted(M.COV_CUTOFFS)}, got {config.cov_dataset!r}")
    if config.candidates < 1 or config.num_samples < 0:
        raise ValueError("candidates, num_samples: expected candidates >= 1 and num_samples >= 0")
    device = resolve_device(config.device)
    pipeline.to(device)
    gen = make_generator(config.seed, device)
    if config.data_path:
        result = read_crystals(config.data_path)
        if result.skipped:
            result.report()
        training, held = [], result.crystals
    else:
        if not pipeline.data:
            raise ValueError(
                "data_path: the pipeline does not say what it was trained on; give reference crystals"
            )
        training, held = load_data(pipeline.data)
    if not held:
        raise ValueError("data_path: no reference crystals")
    n = config.num_samples or len(held)
    refs = held[:n]
    preds = predict_structures(pipeline, [c.numbers.tolist() for c in refs], config.candidates, steps=config.steps,
                               step_lr=config.step_lr, generator=gen)  # fmt: skip
    metrics = {f"csp_{k}": v for k, v in M.csp_metrics(preds, refs).items()}
    metrics["csp_structure_validity"] = float(np.mean([M.structure_valid(p[0]) for p in preds]))
    if pipeline.diffusion_config.task == "gen":
        samples = generate(pipeline, n, steps=config.steps, step_lr=config.step_lr, generator=gen)
        metrics |= M.generation_metrics(samples, held, training, M.COV_CUTOFFS[config.cov_dataset],
                                        fingerprints=config.fingerprints)  # fmt: skip
    return metrics


# ----------------------------------------------------------------------------------------------------
# Crystal structure prediction for every entry of a file.


def predict_files(config: CrystalCSPConfig, out: str | os.PathLike[str]) -> list[Path]:
    """For every crystal of ``config.input`` (CDVAE CSV or CIF folder), ``config.samples`` predicted structures
    from its composition only, written as ``out/<material_id>_<k>.cif``; also ``out/skipped.txt`` when input
    entries could not be read. Returns the CIF paths."""
    if not config.run:
        raise ValueError("run: expected a training run folder or a saved pipeline folder")
    if not config.input:
        raise ValueError("input: expected a CDVAE-style CSV or a folder of CIF files")
    if config.samples < 1:
        raise ValueError(f"samples: expected >= 1, got {config.samples}")
    device = resolve_device(config.device)
    pipeline = CrystalPipeline.from_pretrained(config.run, device)
    result = read_crystals(config.input)
    if result.skipped:
        result.report()
    if not result.crystals:
        raise ValueError(f"input: {config.input} holds no readable crystals")
    gen = make_generator(config.seed, device)
    # Only the composition reaches the model: atomic numbers, sorted (never coordinates or lattice).
    comps = [sorted(c.numbers.tolist()) for c in result.crystals]
    preds = predict_structures(pipeline, comps, config.samples, steps=config.steps, step_lr=config.step_lr,
                               batch=config.batch, generator=gen)  # fmt: skip
    folder = Path(out)
    files = []
    names = Counter()
    for crystal, candidates in zip(result.crystals, preds):
        name = _safe_name(crystal.material_id)
        names[name] += 1
        if names[name] > 1:
            name = f"{name}-{names[name]}"
        for k, p in enumerate(candidates):
            p.material_id = f"{name}_{k}"
            files.append(io.write_cif(folder / f"{name}_{k}.cif", p))
    if result.skipped:
        write_text(folder / "skipped.txt", "\n".join(result.skipped) + "\n")
    write_json({"input": str(config.input), "run": str(config.run), "samples": config.samples,
                "predicted": len(result.crystals), "skipped": len(result.skipped)}, folder / "csp.json")  # fmt: skip
    return files


def _safe_name(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return keep or "crystal"
