"""Configurations of diff-timeseries: dataclasses, read from YAML / TOML files and ``--set key=value`` overrides
through :mod:`diffcore.config`. Training settings are the core's :class:`~diffcore.training.TrainConfig`,
nested as ``train`` (``--set train.lr=1e-4``), never restated here.

Series are ``(B, C, L)``: C channels (value columns), L steps. Time of the generative processes: ``t`` in
[0, 1], 0 = data, 1 = noise; the networks predict the flow-matching velocity ``eps - x0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffcore.device import Device
from diffcore.training import TrainConfig

__all__ = [
    "FEATURES",
    "ObservedConditioning",
    "SeriesDataConfig",
    "SeriesEvaluateConfig",
    "SeriesForecastConfig",
    "SeriesImputeConfig",
    "SeriesModelConfig",
    "SeriesSampleConfig",
    "SeriesTrainConfig",
]


BASES = ("interpolation", "seasonal", "holt", "validated")
"""The bases of :class:`ObservedConditioning`."""


@dataclass
class ObservedConditioning:
    """How the prior reads the observed part of a window.

    Attributes:
        base: what the generated residual is added to: ``"interpolation"`` (linear between observed points, the
            nearest one held beyond: the naive forecast) or ``"seasonal"`` (linear interpolation inside gaps, the
            seasonal naive forecast with drift at the detected period beyond the observed span) or ``"holt"``
            (:func:`~diff_timeseries.observed.holt_continuation`: seasonal + linear interpolation inside gaps, a
            damped Holt forecast of the seasonally adjusted series plus the season beyond) or ``"validated"``
            (:func:`~diff_timeseries.observed.validated_continuation`: ``holt``'s inside gaps; beyond the span,
            per window, the ``holt`` or the ``seasonal`` forecast, whichever forecast the window's own last
            observed steps better when they are held out).
        fill: how the ``holt`` and ``validated`` bases fill gaps inside the observed span: ``"validated"``
            (:func:`~diff_timeseries.observed.validated_fill`: linear interpolation or a local linear kernel
            smoother, of the series or of the series less its seasonal profile, whichever has the smallest
            leave-one-out error on the window's observed points) or ``"seasonal"`` (the seasonal profile plus
            linear interpolation of the seasonally adjusted series).
        features: also give the network the extra channels of :func:`observed_inputs` (the last value held, the
            seasonal naive forecast without drift, the base one period earlier and later, the distance to the
            nearest observed point, the phase in the detected cycle and the period).
        max_period: the longest period :func:`detect_period` looks for (at most half the observed span).
        damping: the drift of the seasonal base is damped by this factor per step after the end (1: linear
            drift; ETS's damped trend, FPP3 Sec. 8.2).
        scaled: beyond the observed span, generate the residual in units of the base's in-sample error (the
            ``holt`` fit's one-step error; the ``validated`` base's error on its held-out steps; the seasonal
            naive forecast's for the other bases,
            :func:`~diff_timeseries.observed.residual_scale`), so smooth and noisy windows ask the network for
            residuals of one size (False: units of the observed part's deviation everywhere).
    """

    base: str = "holt"
    fill: str = "validated"
    features: bool = True
    max_period: int = 24
    damping: float = 1.0
    scaled: bool = False

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"base: expected one of {', '.join(map(repr, BASES))}, got {self.base!r}")
        if self.fill not in ("validated", "seasonal"):
            raise ValueError(f"fill: expected 'validated' or 'seasonal', got {self.fill!r}")
        if self.max_period < 2:
            raise ValueError(f"max_period: expected >= 2, got {self.max_period}")
        if not 0.0 < self.damping <= 1.0:
            raise ValueError(f"damping: expected a factor in (0, 1], got {self.damping}")

    @property
    def inputs(self) -> int:
        """Network input channels per series channel: the noisy residual, the base, the mask and the features."""
        return 3 + (len(FEATURES) if self.features else 0)


FEATURES = (
    "held",
    "seasonal_naive",
    "base_back",
    "base_ahead",
    "distance",
    "phase_sin",
    "phase_cos",
    "period",
    "log_scale",
)
"""The extra channels of :func:`observed_inputs`, in order."""


@dataclass
class SeriesModelConfig:
    """The networks: the length-adaptive VAE, the text-conditioned latent MMDiT and the data-space prior.

    Attributes:
        vae_hidden: convolution width of the VAE.
        latent_channels: channels of the VAE latent.
        latent_length: the fixed latent length every series is interpolated to.
        kl_weight: weight of the VAE's KL term against N(0, I).
        hidden: width of the latent MMDiT.
        depth: its blocks.
        heads: its attention heads.
        text_width: width of the caption encoder (trained from scratch with the generator).
        text_layers: transformer layers of the caption encoder.
        fourier_periods: the VAE also sees and emits carriers ``sin / cos(2 pi t / p)`` for every integer period
            ``p`` up to this (0: none), so cycles shorter than the latent's spacing survive the fixed latent.
        prior_hidden: width of the data-space DiT that forecasts and imputes given the observed part (0: none).
        prior_depth: its blocks.
        prior_patch: its patch length (series lengths given to it must be multiples of it).
        prior_conditioning: what the prior reads from the observed part and refines (its base and channels).
    """

    vae_hidden: int = 64
    latent_channels: int = 4
    latent_length: int = 32
    kl_weight: float = 1e-3
    fourier_periods: int = 0
    hidden: int = 128
    depth: int = 4
    heads: int = 4
    text_width: int = 64
    text_layers: int = 2
    prior_hidden: int = 128
    prior_depth: int = 4
    prior_patch: int = 4
    prior_conditioning: ObservedConditioning = field(default_factory=ObservedConditioning)


@dataclass
class SeriesDataConfig:
    """What to train on.

    Attributes:
        source: ``synthetic`` (generated with known parameters and captions), ``statsmodels`` (windows of the
            real series bundled with statsmodels, captioned by the estimators), ``both``, or ``files``.
        path: a CSV / Parquet file or a folder of them (implies ``files``).
        time_column: the time column of the tables (``auto``: one named time/date/datetime/timestamp/ds).
        value_columns: comma-separated value columns (empty: every other column); each is one channel.
        text_column: a column of captions (empty: captions from the estimators).
        lengths: the training lengths, interleaved batch by batch (comma-separated).
        num_series: synthetic series per length.
        exclude_tail: leave the last this many points of each statsmodels series out (held out for forecasting).
        prior_series: uncaptioned structural series per length (random walks, AR noise, several seasonalities,
            broken trends: :mod:`~diff_timeseries.data.structural`) added to the forecasting / imputation prior's
            training set for the ``synthetic`` and ``both`` sources (the generator never sees them).
    """

    source: str = "synthetic"
    path: str = ""
    time_column: str = "auto"
    value_columns: str = ""
    text_column: str = ""
    lengths: str = "24,48,96"
    num_series: int = 2000
    exclude_tail: int = 0
    prior_series: int = 2000

    def length_list(self) -> list[int]:
        """The training lengths of ``lengths`` as sorted distinct integers; a ``ValueError`` names
        ``data.lengths`` unless each is an integer of at least 16."""
        try:
            out = [int(v) for v in str(self.lengths).split(",") if v.strip()]
        except ValueError:
            raise ValueError(
                f"data.lengths: expected comma-separated integers, got {self.lengths!r}"
            ) from None
        if not out or any(n < 16 for n in out):
            raise ValueError(f"data.lengths: expected lengths of at least 16, got {self.lengths!r}")
        return sorted(set(out))

    def table_options(self) -> dict:
        """The keyword arguments of the table reader: ``time_column``, ``value_columns`` and ``text_column``
        (``None`` for automatic or absent)."""
        cols = [c.strip() for c in self.value_columns.split(",") if c.strip()]
        return {
            "time_column": None if self.time_column in ("", "none") else self.time_column,
            "value_columns": cols or None,
            "text_column": self.text_column or None,
        }


@dataclass
class SeriesTrainConfig:
    """One training run: the VAE, then the text-to-series generator on its latents, then the data-space prior.

    Attributes:
        model: the networks.
        data: the training series.
        batch_size: series per optimizer step (per process).
        vae_steps: optimizer steps of the VAE stage (the rest of its optimisation is ``train``'s).
        prior_steps: optimizer steps of the data-space prior (0: none; forecast / impute then unavailable).
        cond_dropout: probability of dropping the caption while training (for classifier-free guidance).
        train: the generator's optimisation, checkpoints, device and seed (:class:`diffcore.training.TrainConfig`).
    """

    model: SeriesModelConfig = field(default_factory=SeriesModelConfig)
    data: SeriesDataConfig = field(default_factory=SeriesDataConfig)
    batch_size: int = 64
    vae_steps: int = 2000
    prior_steps: int = 2000
    cond_dropout: float = 0.1
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            output_dir="runs/timeseries",
            steps=4000,
            lr=3e-4,
            warmup_steps=100,
            ema_decay=0.999,
            lr_schedule="cosine",
            checkpoint_every=1000,
        )
    )


@dataclass
class SeriesSampleConfig:
    """Drawing series from a saved pipeline.

    Attributes:
        captions: captions to generate from, separated by ``|`` (empty: the 4 most frequent captions of the
            training windows of the trained length nearest ``length``, which the pipeline keeps; the first
            captions of the synthetic set for a pipeline saved without them).
        captions_file: a text file with one caption per line (used instead of ``captions`` when given).
        num_samples: series per caption.
        length: steps of every series (any length; the pipeline's training lengths are the best tested).
        guidance_scale: classifier-free guidance scale (1: the conditional model alone).
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        plot: also write a PNG of the series with their captions.
        seed: seeds the noise.
        device: where to run.
    """

    captions: str = ""
    captions_file: str = ""
    num_samples: int = 4
    length: int = 96
    guidance_scale: float = 2.0
    sampler: str = "euler"
    steps: int = 30
    plot: bool = True
    seed: int = 0
    device: Device = "auto"


@dataclass
class SeriesEvaluateConfig:
    """Scoring a saved pipeline on held-out synthetic series (generation) and on the statsmodels series
    (forecasting, imputation).

    Attributes:
        num_samples: held-out captions (and generated series) per length.
        lengths: lengths to score, comma-separated (empty: the trained lengths and one untrained in between).
        guidance_scale: classifier-free guidance scale.
        steps: sampler steps.
        metric_encoder_steps: training steps of the metrics' own series encoder (C-FID) and text-series
            retrieval model (MRR@10); 0 leaves those metrics out.
        forecast: also score forecasting on the statsmodels series against seasonal naive, ETS and ARIMA.
        impute: also score imputation against linear interpolation.
        horizon: forecast horizon (steps).
        forecast_samples: sample paths per forecast.
        missing: fraction of points hidden for the imputation score.
        impute_samples: sample paths per imputed window (their median is scored; with few, the median's own
            Monte Carlo error, about ``1.25 / sqrt(samples)`` of the predictive spread, adds to the MAE).
        seed: seeds the held-out set and the noise.
        device: where to run.
    """

    num_samples: int = 256
    lengths: str = ""
    guidance_scale: float = 2.0
    steps: int = 30
    metric_encoder_steps: int = 300
    forecast: bool = True
    impute: bool = True
    horizon: int = 12
    forecast_samples: int = 64
    missing: float = 0.3
    impute_samples: int = 64
    seed: int = 1
    device: Device = "auto"


@dataclass
class SeriesForecastConfig:
    """Forecasting the points after the end of a series (any series; the pipeline's observed-part prior
    generates the horizon given the context).

    Attributes:
        input: a CSV / Parquet file with the series.
        column: its value column, or several separated by commas, forecast together (empty: every value
            column).
        time_column: its time column (``auto``: one named time/date/...; ``none``: row order).
        horizon: steps to forecast.
        samples: sample paths.
        context: observed steps the model sees (0: as many as fit the longest trained length).
        steps: sampler steps.
        plot: also write a fan chart PNG.
        seed: seeds the noise.
        device: where to run.
    """

    input: str = ""
    column: str = ""
    time_column: str = "auto"
    horizon: int = 12
    samples: int = 100
    context: int = 0
    steps: int = 50
    plot: bool = True
    seed: int = 0
    device: Device = "auto"


@dataclass
class SeriesImputeConfig:
    """Filling the missing values of a series (empty cells of a CSV / Parquet column).

    Attributes:
        input: a CSV / Parquet file with the series.
        column: its value column, or several separated by commas, filled together (empty: every value column).
        time_column: its time column (``auto``: one named time/date/...; ``none``: row order).
        samples: sample paths (the median is the point imputation).
        steps: sampler steps.
        plot: also write a PNG.
        seed: seeds the noise.
        device: where to run.
    """

    input: str = ""
    column: str = ""
    time_column: str = "auto"
    samples: int = 32
    steps: int = 50
    plot: bool = True
    seed: int = 0
    device: Device = "auto"
