"""``SeriesPipeline`` and the verbs: :func:`train`, :func:`sample`, :func:`evaluate`, :func:`forecast`,
:func:`impute`.

Training runs three stages through :class:`diffcore.training.Trainer`, each in its own folder of the run:

1. ``vae_run/``: the length-adaptive VAE (:class:`~diff_timeseries.models.SeriesVAE`) on interleaved
   lengths, then its latent scale (unit variance of the posterior means);
2. the run folder itself: the text-to-series generator (:class:`~diff_timeseries.models.TextToSeries`) with
   diffcore's flow-matching objective on the VAE latents, captions dropped at ``cond_dropout`` for
   classifier-free guidance;
3. ``prior_run/``: the observed-part prior (:class:`~diff_timeseries.models.ObservedPrior`, diffcore's 1D
   :class:`~diffcore.nn.DiT`): flow matching of the unobserved points of windows given the observed ones
   (forecasting and missing-value masks, the residual to linear interpolation, in the units of the observed
   part). Forecasting and imputation of any series use it without retraining, sampled with diffcore's
   samplers (:func:`diffcore.sampling.sample`).

Generated series are z-scored (unit variance per series and channel). Time: ``t`` in [0, 1], 0 = data.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffcore.device import resolve_device
from diffcore.io import write_json
from diffcore.paths.denoiser import Denoiser
from diffcore.pipeline import Pipeline
from diffcore.rng import make_generator, seeded
from diffcore.sampling import sample as diffcore_sample
from diffcore.training import TrainConfig, Trainer, objectives
from diffcore.training.trainer import RUN_FILES
from torch import Tensor, nn

from diff_timeseries.config import (
    SeriesDataConfig,
    SeriesEvaluateConfig,
    SeriesForecastConfig,
    SeriesImputeConfig,
    SeriesSampleConfig,
    SeriesTrainConfig,
)
from diff_timeseries.data.dataset import (
    LengthBatches,
    SeriesSet,
    build_series_set,
    length_batch_loader,
    trim_padding,
)
from diff_timeseries.data.structural import structural_set
from diff_timeseries.data.synthetic import synthetic_set
from diff_timeseries.io import SeriesSamples
from diff_timeseries.models import (
    CaptionEncoder,
    ObservedObjective,
    ObservedPrior,
    ObservedPriorConfig,
    SeriesVAE,
    SeriesVAEConfig,
    TextToSeries,
    TextToSeriesConfig,
    VAEObjective,
    latent_dit_config,
    prior_config,
)
from diff_timeseries.observed import observed_inputs, observed_statistics

__all__ = ["SeriesPipeline", "evaluate", "forecast", "impute", "sample", "train"]

SCHEDULE = "rectified-flow"
PREDICTION = "velocity"
CONFIG_FILE = "train_config.json"
PIPELINE_DIR = "pipeline"
VAE_RUN, PRIOR_RUN = "vae_run", "prior_run"


class SeriesPipeline(Pipeline):
    """A trained text-to-series model: the VAE, the generator over its latents, and (optionally) the
    data-space prior for forecasting and imputation.

    Args:
        vae: the length-adaptive VAE (with its fitted ``latent_scale``).
        generator: the caption-conditioned flow-matching network over latents.
        prior: the data-space DiT (None: no forecasting / imputation).
        lengths: the lengths it was trained on.
        captions: training length -> the most frequent captions of its training windows, most frequent first
            (what :func:`sample` generates from when given none, from the trained length nearest the one asked
            for; empty for pipelines saved before they were kept).
    """

    def __init__(
        self,
        vae: SeriesVAE,
        generator: TextToSeries,
        prior: ObservedPrior | None,
        lengths: list[int],
        captions: dict[int, list[str]] | None = None,
    ) -> None:
        self.vae, self.generator, self.prior = vae.eval(), generator.eval(), prior.eval() if prior else None
        self.lengths = sorted(int(n) for n in lengths)
        self.captions = {int(n): [str(c) for c in cs] for n, cs in (captions or {}).items()}

    # ------------------------------------------------------------------ the Pipeline contract

    def components(self) -> dict[str, Any]:
        return {"vae": self.vae, "generator": self.generator, "prior": self.prior}

    def pipeline_config(self) -> dict[str, Any]:
        return {
            "lengths": self.lengths,
            "schedule": SCHEDULE,
            "prediction": PREDICTION,
            "captions": {str(n): cs for n, cs in self.captions.items()},
        }

    @classmethod
    def from_parts(cls, config: dict[str, Any], components: dict[str, Any]) -> SeriesPipeline:
        return cls(
            components["vae"],
            components["generator"],
            components.get("prior"),
            config["lengths"],
            config.get("captions", {}),
        )

    # ------------------------------------------------------------------ what it does

    @property
    def channels(self) -> int:
        return self.vae.config.channels

    @property
    def text_encoder(self) -> CaptionEncoder:
        return self.generator.text_encoder

    @torch.no_grad()
    def generate(
        self,
        captions: list[str],
        length: int,
        *,
        guidance_scale: float = 2.0,
        sampler: str = "euler",
        steps: int = 30,
        generator: torch.Generator | None = None,
        batch_size: int = 512,
    ) -> Tensor:
        """One series per caption: ``(len(captions), C, length)`` float32 on the CPU, z-scored units."""
        if length < 8:
            raise ValueError(f"length: expected at least 8 steps, got {length}")
        if not captions:
            raise ValueError("captions: expected at least one caption")
        device = self.device
        den = Denoiser(self.generator, SCHEDULE, PREDICTION)
        cfg = self.generator.config.backbone
        out = []
        for start in range(0, len(captions), batch_size):
            chunk = captions[start : start + batch_size]
            ids = trim_padding(self.text_encoder.tokenize(chunk)).to(device)
            lens = torch.full((len(chunk),), float(length), device=device)
            noise = torch.randn(
                (len(chunk), cfg.in_channels, *cfg.input_size),
                generator=generator,
                device=generator.device if generator is not None else "cpu",
            ).to(device)
            z = diffcore_sample(
                den,
                noise,
                sampler,
                steps,
                cond={"input_ids": ids, "length": lens},
                guidance=guidance_scale,
                uncond={"input_ids": torch.zeros_like(ids[:1])},
                generator=generator,
            )
            out.append(self.vae.from_latent(z, length).float().cpu())
        return torch.cat(out)

    def _prior(self) -> ObservedPrior:
        if self.prior is None:
            raise ValueError("pipeline: this pipeline has no data-space prior (trained with prior_steps = 0)")
        return self.prior

    @property
    def patch(self) -> int:
        return int(self._prior().config.backbone.patch_size[0])

    @torch.no_grad()
    def fill(
        self,
        values: Tensor,
        mask: Tensor,
        *,
        samples: int,
        steps: int = 50,
        sampler: str = "euler",
        generator: torch.Generator | None = None,
        batch_size: int = 1024,
    ) -> Tensor:
        """Sample the unobserved entries of windows given their observed ones, with the observed-part prior.

        Args:
            values: ``(B, C, L)`` in the units of their observed part (:func:`observed_statistics`), ``L`` a
                multiple of the prior's patch; anything where unobserved.
            mask: ``(B, C, L)`` 1 where observed.
            samples: draws per window.

        Returns:
            ``(samples, B, C, L)``; equals ``values`` where ``mask`` is 1.
        """
        prior = self._prior()
        b, c, n = values.shape
        if c != prior.config.channels:
            raise ValueError(f"values: expected {prior.config.channels} channels, got {c}")
        if n % self.patch:
            raise ValueError(f"values: length {n} must be a multiple of the prior's patch {self.patch}")
        device = self.device
        den = Denoiser(prior, SCHEDULE, PREDICTION)
        known = values.to(device).float().repeat(samples, 1, 1)
        m = mask.to(device).float().repeat(samples, 1, 1)
        noise = torch.randn(known.shape, generator=generator, device=generator.device if generator else "cpu")
        noise = noise.to(device)
        out = []
        for s in range(0, known.shape[0], batch_size):
            k, mm = known[s : s + batch_size], m[s : s + batch_size]
            read = observed_inputs(k * mm, mm, prior.config.conditioning)  # once, not at every step
            x = diffcore_sample(
                den,
                noise[s : s + batch_size],
                sampler,
                steps,
                cond={"observed": k * mm, "mask": mm, "channels": read.channels},
                generator=generator,
            )
            out.append(mm * k + (1 - mm) * (read.base + read.scale * x))
        return torch.cat(out).reshape(samples, b, c, n).float().cpu()


# ----------------------------------------------------------------------------------------------- training


@dataclass
class _Encoded:
    """An objective on the batch's ``x``, encoded by ``vae`` first when one is given (no gradient);
    ``keep`` names the conditioning keys passed on to the network."""

    inner: Any
    vae: SeriesVAE | None
    keep: tuple[str, ...]

    def __call__(self, model: nn.Module, batch: dict, generator: torch.Generator | None = None):
        x = batch["x"]
        if self.vae is not None:
            with torch.no_grad():
                x = self.vae.to_latent(x)
        prepared = {"x": x, **{k: batch[k] for k in self.keep}}
        return self.inner(model, prepared, generator=generator)


def _stage(train: TrainConfig, steps: int, folder: Path, share: float) -> TrainConfig:
    """The TrainConfig of one stage: its steps and folder, and ``share`` of ``train.max_seconds``."""
    resume = "auto" if train.resume is not None else None
    return dataclasses.replace(
        train,
        steps=steps,
        warmup_steps=min(train.warmup_steps, max(steps - 1, 0)),
        output_dir=str(folder),
        resume=resume,
        checkpoint_every=train.checkpoint_every,
        max_seconds=None if train.max_seconds is None else train.max_seconds * share,
    )


def _refuse_previous_run(config: SeriesTrainConfig) -> None:
    run = Path(config.train.output_dir)
    found = [name for name in (*RUN_FILES, PIPELINE_DIR, VAE_RUN, PRIOR_RUN) if (run / name).exists()]
    if config.train.resume is None and found:
        raise ValueError(
            f"train.output_dir: {run} already holds a training run ({', '.join(found)}); continue it with "
            "--set train.resume=latest, or choose another --out"
        )


def _fit(model: nn.Module, objective: Any, loader: Any, config: TrainConfig) -> nn.Module:
    trainer = Trainer(model, objective, loader, config)
    trainer.fit()
    trained = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
    return trained.eval()


@torch.no_grad()
def _fit_latent_scale(vae: SeriesVAE, data: SeriesSet, device: torch.device) -> None:
    """Set ``vae.latent_scale`` to ``1 / std`` of the posterior means over (at most 1024 series of) each
    length, so the diffusion model sees unit-variance latents (LDM's scale factor, Rombach et al. 2022)."""
    mus = [vae.encode(torch.from_numpy(data.values[n][:1024]).to(device))[0] for n in data.lengths]
    std = torch.cat([m.reshape(-1) for m in mus]).std()
    vae.latent_scale.fill_(1.0 / float(std.clamp_min(1e-6)))


@torch.no_grad()
def _latent_set(vae: SeriesVAE, data: SeriesSet, device: torch.device, chunk: int = 1024) -> SeriesSet:
    """The training set as diffusion latents (``vae.to_latent``), same rows and captions, keyed by the
    series length."""
    values = {}
    for n in data.lengths:
        x = torch.from_numpy(data.values[n])
        parts = [vae.to_latent(x[i : i + chunk].to(device)).float().cpu() for i in range(0, len(x), chunk)]
        values[n] = torch.cat(parts).numpy()
    return SeriesSet(values, data.captions, data.notes)


def _prior_set(data: SeriesSet, d: SeriesDataConfig, seed: int) -> SeriesSet:
    """The prior's training set: ``data`` plus ``d.prior_series`` structural series per length (built-in sources
    only; a user's own tables are what the user's prior should learn)."""
    if d.prior_series <= 0 or d.source not in ("synthetic", "both") or d.path:
        return data
    values = {n: np.concatenate([v, structural_set(d.prior_series, n, seed)]) for n, v in data.values.items()}
    captions = {n: [*c, *[""] * d.prior_series] for n, c in data.captions.items()}
    return SeriesSet(values, captions, data.notes)


def _note(line: str) -> None:
    print(f"note: {line}", file=sys.stderr, flush=True)


def train(config: SeriesTrainConfig) -> SeriesPipeline:
    """Train a pipeline as ``config`` says; the run goes to ``config.train.output_dir``: ``train_config.json``,
    ``vae_run/``, the generator's logs / checkpoints / models, ``prior_run/`` and the pipeline in ``pipeline/``.
    ``train.max_seconds`` (a wall-time budget) is shared by the three stages in proportion to their steps.
    A folder that already holds a run is refused unless ``train.resume`` continues it (finished stages are then
    loaded, an interrupted one resumes from its last checkpoint). Initialisation is seeded by
    ``config.train.seed``; the caller's global RNG is left as it was."""
    if config.batch_size < 1 or config.vae_steps < 1 or config.train.steps < 1 or config.prior_steps < 0:
        raise ValueError("batch_size, vae_steps and train.steps must be >= 1 and prior_steps >= 0")
    if not 0.0 <= config.cond_dropout < 1.0:
        raise ValueError(f"cond_dropout: expected a probability in [0, 1), got {config.cond_dropout}")
    _refuse_previous_run(config)
    device = resolve_device(config.train.device)
    d, m = config.data, config.model
    lengths = d.length_list()
    data = build_series_set(
        d.source,
        lengths,
        d.num_series,
        config.train.seed,
        path=d.path,
        table_options=d.table_options(),
        exclude_tail=d.exclude_tail,
    )
    for line in data.notes:
        _note(line)
    run = Path(config.train.output_dir)
    write_json(
        {"config": config, "notes": data.notes, "examples": {n: len(v) for n, v in data.values.items()}},
        run / CONFIG_FILE,
    )
    seed, bs = config.train.seed, config.batch_size
    prior_steps = config.prior_steps if m.prior_hidden > 0 else 0
    total = config.vae_steps + config.train.steps + prior_steps  # train.max_seconds is shared in proportion
    batches = max(config.vae_steps, config.train.steps, config.prior_steps) * config.train.grad_accum_steps

    # 1. the VAE
    with seeded(seed):
        vae = SeriesVAE(
            SeriesVAEConfig(
                data.channels,
                m.vae_hidden,
                m.latent_channels,
                m.latent_length,
                fourier_periods=m.fourier_periods,
            )
        )
    loader = length_batch_loader(LengthBatches(data, bs, batches, seed))
    vae = _fit(
        vae,
        VAEObjective(m.kl_weight),
        loader,
        _stage(config.train, config.vae_steps, run / VAE_RUN, config.vae_steps / total),
    )
    vae = vae.to(device)  # type: ignore[assignment]
    _fit_latent_scale(vae, data, device)  # type: ignore[arg-type]

    # 2. the generator on latents
    with seeded(seed + 1):
        text = CaptionEncoder.from_captions(data.all_captions(), width=m.text_width, layers=m.text_layers)
        gen_cfg = TextToSeriesConfig(
            latent_dit_config(m.latent_channels, m.latent_length, m.text_width, m.hidden, m.depth, m.heads),
            text.config,
        )
        generator = TextToSeries(gen_cfg)
        generator.text_encoder.load_state_dict(text.state_dict())
    objective = _Encoded(
        objectives.flow_matching(cond_dropout=config.cond_dropout, null_cond={"input_ids": 0}),
        None,  # the series are encoded once, below: the VAE is frozen from here on
        ("input_ids", "length"),
    )
    latents = _latent_set(vae, data, device)  # type: ignore[arg-type]
    loader = length_batch_loader(LengthBatches(latents, bs, batches, seed + 1, tokenize=text.tokenize))
    gen_train = dataclasses.replace(
        config.train,
        max_seconds=None
        if config.train.max_seconds is None
        else config.train.max_seconds * config.train.steps / total,
    )
    generator = _fit(generator, objective, loader, gen_train)  # type: ignore[assignment]

    # 3. the data-space prior
    prior = None
    if config.prior_steps > 0 and m.prior_hidden > 0:
        bad = [n for n in lengths if n % m.prior_patch]
        if bad:
            raise ValueError(f"data.lengths: {bad} are not multiples of model.prior_patch = {m.prior_patch}")
        with seeded(seed + 2):
            backbone = prior_config(
                data.channels,
                max(lengths),
                m.prior_patch,
                m.prior_hidden,
                m.prior_depth,
                m.heads,
                m.prior_conditioning,
            )
            prior = ObservedPrior(ObservedPriorConfig(data.channels, backbone, m.prior_conditioning))
        objective = ObservedObjective(m.prior_conditioning)
        loader = length_batch_loader(LengthBatches(_prior_set(data, d, seed), bs, batches, seed + 2))
        prior = _fit(
            prior,
            objective,
            loader,
            _stage(config.train, config.prior_steps, run / PRIOR_RUN, prior_steps / total),
        )

    pipe = SeriesPipeline(
        vae,  # type: ignore[arg-type]
        generator.to(device),  # type: ignore[arg-type]
        prior.to(device) if prior else None,
        lengths,
        _example_captions(data),
    )
    pipe.card.record_training(config)
    pipe.save_pretrained(run / PIPELINE_DIR)
    return pipe


# ----------------------------------------------------------------------------------------------- sampling


def _example_captions(data: SeriesSet, k: int = 4) -> dict[int, list[str]]:
    """Length -> up to ``k`` captions of the training windows of that length, the most frequent first (ties in
    the order they come). Per length, because the estimators read a short window differently: a daily cycle
    in hourly data is a cycle of period 24 in a 96-step window but a trend with noise in a 24-step one."""
    return {n: [c for c, _ in Counter(data.captions[n]).most_common(k)] for n in data.lengths}


def _captions(config: SeriesSampleConfig, pipeline: SeriesPipeline) -> list[str]:
    if config.captions_file:
        path = Path(config.captions_file)
        if not path.is_file():
            raise FileNotFoundError(f"captions_file: {path} does not exist")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"captions_file: {path} holds no caption")
        return lines
    if config.captions.strip():
        return [c.strip() for c in config.captions.split("|") if c.strip()]
    if (
        pipeline.captions
    ):  # what it was trained on: a pipeline trained on a user's table knows its own captions
        nearest = min(pipeline.captions, key=lambda n: (abs(n - config.length), n))
        return pipeline.captions[nearest]
    return synthetic_set(4, max(config.length, 16), seed=config.seed)[1]


def sample(
    pipeline: SeriesPipeline, config: SeriesSampleConfig, *, generator: torch.Generator | None = None
) -> SeriesSamples:
    """Generate ``config.num_samples`` series ``(C, config.length)`` per caption (z-scored units); returns
    :class:`~diff_timeseries.io.SeriesSamples` (``.values`` ``(N, C, L)``, ``.captions``; ``.save(folder)``
    writes CSV and PNG)."""
    if config.num_samples < 1 or config.steps < 1:
        raise ValueError(f"num_samples and steps: expected >= 1, got {config.num_samples}, {config.steps}")
    device = resolve_device(config.device)
    pipeline.to(device)
    captions = [c for c in _captions(config, pipeline) for _ in range(config.num_samples)]
    generator = generator if generator is not None else make_generator(config.seed, device)
    values = pipeline.generate(
        captions,
        config.length,
        guidance_scale=config.guidance_scale,
        sampler=config.sampler,
        steps=config.steps,
        generator=generator,
    )
    return SeriesSamples(values.numpy(), captions, plot=config.plot)


# ----------------------------------------------------------------------------------------------- forecast / impute


def _as_columns(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise ValueError(f"{name}: expected a (T,) or (T, C) series, got shape {x.shape}")
    return x.reshape(x.shape[0], -1)


def _fill_window(
    pipeline: SeriesPipeline,
    x: np.ndarray,
    observed: np.ndarray,
    samples: int,
    steps: int,
    generator: torch.Generator | None,
) -> np.ndarray:
    """Sample paths ``(samples, W, C)`` of one window ``x`` ``(W, C)`` (observed where ``observed``), in its
    units: put in the units of its observed part per channel, filled by the prior, mapped back. A prior of
    ``C`` channels fills the channels jointly; a univariate prior fills each channel on its own."""
    w, c = x.shape
    values = torch.from_numpy(np.where(observed, x, 0.0).T.copy()).float()[None]  # (1, C, W)
    mask = torch.from_numpy(observed.T.copy()).float()[None]
    if pipeline.channels == 1 and c > 1:
        values, mask = values.transpose(0, 1), mask.transpose(0, 1)  # (C, 1, W): channels as a batch
    elif pipeline.channels != c:
        raise ValueError(
            f"column: the pipeline models {pipeline.channels} value columns together; the series has {c} "
            "(choose them with --column, or use a univariate pipeline, which fills each column on its own)"
        )
    if bool((mask.sum(-1) < 2).any()):
        raise ValueError("values: every channel needs at least two observed points in each window")
    mean, std = observed_statistics(values.double(), mask.double())
    filled = pipeline.fill(
        ((values - mean) / std).float() * mask, mask, samples=samples, steps=steps, generator=generator
    )
    out = filled.double() * std + mean  # (S, B, C', W)
    return out.reshape(samples, c, w).transpose(1, 2).numpy()


def forecast_array(
    pipeline: SeriesPipeline,
    history: np.ndarray,
    horizon: int,
    *,
    samples: int = 100,
    context: int = 0,
    steps: int = 50,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Sample paths ``(samples, horizon)`` continuing ``history`` ``(T,)`` (``(samples, horizon, C)`` for a
    ``(T, C)`` history of several columns), in its units, without missing values. The model sees the last
    ``context`` points (0: as many as fit its longest trained length with the horizon), in the units of their
    own mean and deviation per column."""
    history = _as_columns(np.asarray(history, dtype=np.float64), "history")
    if not np.isfinite(history).all():
        raise ValueError("history: expected a series without missing values")
    if horizon < 1:
        raise ValueError(f"horizon: expected >= 1, got {horizon}")
    if context < 0:
        raise ValueError(f"context: expected >= 0, got {context}")
    patch, longest = pipeline.patch, max(pipeline.lengths)
    window = (context + horizon) if context else max(longest, horizon + 2 * patch)
    window = max(patch, (window // patch) * patch)
    ctx = min(window - horizon, history.shape[0])
    if ctx < 2:
        raise ValueError(f"horizon: {horizon} leaves no context in a window of {window} steps")
    window = ((ctx + horizon + patch - 1) // patch) * patch  # the oldest end is left unobserved if short
    c = history.shape[1]
    x = np.zeros((window, c))
    observed = np.zeros((window, c), dtype=bool)
    x[window - horizon - ctx : window - horizon] = history[-ctx:]
    observed[window - horizon - ctx : window - horizon] = True
    paths = _fill_window(pipeline, x, observed, samples, steps, generator)[:, -horizon:]
    return paths[..., 0] if c == 1 else paths


def impute_array(
    pipeline: SeriesPipeline,
    values: np.ndarray,
    observed: np.ndarray,
    *,
    samples: int = 32,
    steps: int = 50,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Sample paths ``(samples, T)`` of a series ``(T,)`` (``(samples, T, C)`` for ``(T, C)``) with its missing
    points (``observed`` False or a non-finite value) generated and its observed points held, in its units.
    Long series are filled in consecutive windows of the longest trained length."""
    flat = np.asarray(values).ndim == 1
    values = _as_columns(np.asarray(values, dtype=np.float64), "values")
    observed = _as_columns(np.asarray(observed, dtype=bool), "observed")
    if observed.shape != values.shape:
        raise ValueError(f"values, observed: expected the same shape, got {values.shape}, {observed.shape}")
    observed = observed & np.isfinite(values)
    if (observed.sum(0) < 2).any():
        raise ValueError("values: at least two observed points per column are needed")
    patch, longest = pipeline.patch, max(pipeline.lengths)
    n, c = values.shape
    padded = ((n + patch - 1) // patch) * patch
    window = min(longest, padded)
    x = np.zeros((padded, c))
    obs = np.zeros((padded, c), dtype=bool)
    x[:n], obs[:n] = np.where(observed, values, 0.0), observed
    out = np.zeros((samples, padded, c))
    starts = list(range(0, padded - window + 1, window))
    if starts[-1] + window < padded:
        starts.append(padded - window)
    for s in starts:
        seg, seg_obs = x[s : s + window], obs[s : s + window]
        if (seg_obs.sum(0) < 2).any():
            raise ValueError(f"values: the window at step {s} has fewer than two observed points")
        out[:, s : s + window] = _fill_window(pipeline, seg, seg_obs, samples, steps, generator)
    out = out[:, :n]
    out = np.where(observed[None], values[None], out)
    return out[..., 0] if flat else out


def _read_columns(config: SeriesForecastConfig | SeriesImputeConfig):
    from diff_timeseries.data.files import load_table

    if not config.input:
        raise ValueError("input: give the CSV / Parquet file of the series (--input)")
    time_column = None if config.time_column in ("", "none") else config.time_column
    columns = [c.strip() for c in config.column.split(",") if c.strip()]
    table = load_table(config.input, time_column=time_column, value_columns=columns or None)
    return table


def forecast(
    pipeline: SeriesPipeline, config: SeriesForecastConfig, *, generator: torch.Generator | None = None
):
    """Forecast ``config.horizon`` steps after the end of the series in ``config.input``; returns a
    :class:`~diff_timeseries.io.Forecast` (sample paths, 0.1 / 0.5 / 0.9 quantiles; ``.save(folder)``), or
    a :class:`~diff_timeseries.io.PerColumn` of them for several columns (forecast together)."""
    from diff_timeseries.io import Forecast, PerColumn, future_times

    if config.samples < 1 or config.steps < 1:
        raise ValueError(f"samples and steps: expected >= 1, got {config.samples}, {config.steps}")
    table = _read_columns(config)
    values, mask = table.values, table.mask
    if not mask.all():
        last_gap = int(np.flatnonzero(~mask.all(1))[-1])
        values, mask = values[last_gap + 1 :], mask[last_gap + 1 :]
        _note(f"{config.input}: missing values; forecasting from the {len(values)} rows after the last gap")
    if len(values) < 2:
        raise ValueError(f"input: {config.input} has fewer than two complete rows after its last gap")
    device = resolve_device(config.device)
    pipeline.to(device)
    generator = generator if generator is not None else make_generator(config.seed, device)
    paths = forecast_array(
        pipeline,
        values,
        config.horizon,
        samples=config.samples,
        context=config.context,
        steps=config.steps,
        generator=generator,
    )
    paths = paths.reshape(config.samples, config.horizon, -1)
    times, future = table.times[-len(values) :], future_times(table.times, config.horizon)
    parts = [
        Forecast(name, times, values[:, i], future, paths[..., i], plot=config.plot)
        for i, name in enumerate(table.columns)
    ]
    return parts[0] if len(parts) == 1 else PerColumn(parts)


def impute(pipeline: SeriesPipeline, config: SeriesImputeConfig, *, generator: torch.Generator | None = None):
    """Fill the missing values of the series in ``config.input``; returns an
    :class:`~diff_timeseries.io.Imputation` (sample paths and their median; ``.save(folder)``), or a
    :class:`~diff_timeseries.io.PerColumn` of them for several columns (filled together)."""
    from diff_timeseries.io import Imputation, PerColumn

    if config.samples < 1 or config.steps < 1:
        raise ValueError(f"samples and steps: expected >= 1, got {config.samples}, {config.steps}")
    table = _read_columns(config)
    if table.mask.all():
        raise ValueError(f"input: {config.input} columns {table.columns} have no missing value to fill")
    device = resolve_device(config.device)
    pipeline.to(device)
    generator = generator if generator is not None else make_generator(config.seed, device)
    paths = impute_array(
        pipeline, table.values, table.mask, samples=config.samples, steps=config.steps, generator=generator
    )
    paths = paths.reshape(config.samples, len(table.times), -1)
    parts = [
        Imputation(name, table.times, table.values[:, i], table.mask[:, i], paths[..., i], plot=config.plot)
        for i, name in enumerate(table.columns)
    ]
    return parts[0] if len(parts) == 1 else PerColumn(parts)


# ----------------------------------------------------------------------------------------------- evaluation


def evaluate(pipeline: SeriesPipeline, config: SeriesEvaluateConfig) -> dict[str, float]:
    """Score the pipeline (see :func:`diff_timeseries.evaluation.evaluate_pipeline`): caption adherence per
    attribute and length, ACF / spectral distances, C-FID and MRR@10 with their train-vs-test floors,
    forecasting CRPS / MASE against seasonal naive, ETS and ARIMA, imputation MAE against linear
    interpolation."""
    from diff_timeseries.evaluation import evaluate_pipeline

    return evaluate_pipeline(pipeline, config)
