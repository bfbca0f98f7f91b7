"""Scoring a :class:`~diff_timeseries.pipeline.SeriesPipeline` (what :func:`diff_timeseries.evaluate` runs).

Generation, per length (the trained lengths and one untrained length between two of them): captions of a
held-out synthetic set (seed ``10_000 + config.seed``, never a training seed of the default set) are
generated and scored by caption adherence (the estimators recover each attribute), the T2S set against the
paired held-out series (MSE, WAPE, DTW), ACF and spectral distances, C-FID with a TS2Vec-style encoder and
MRR@10 with a contrastive caption / series model, both trained here on a second independent synthetic draw;
``*_floor`` is the same metric with held-out real series in place of the generated ones (train vs test).

Forecasting, on the statsmodels series: the last ``horizon`` points of each are forecast from the points
before (CRPS and MASE of the median), beside seasonal naive, ETS and ARIMA fitted by statsmodels on the same
history. Imputation: ``missing`` of the points of held-out windows hidden, MAE of the median of the samples
against linear interpolation on the hidden points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from diffcore.device import resolve_device
from diffcore.rng import make_generator
from tqdm.auto import tqdm

from diff_timeseries import baselines, metrics
from diff_timeseries.config import SeriesEvaluateConfig
from diff_timeseries.data.real import statsmodels_series, windows
from diff_timeseries.data.synthetic import synthetic_set
from diff_timeseries.encoders import train_retrieval, train_ts2vec

__all__ = ["between_length", "evaluate_pipeline", "score_forecasts", "score_imputation"]

HELD_OUT_SEED = 10_000
METRIC_TRAIN_SEED = 20_000


def between_length(lengths: list[int]) -> int | None:
    """An untrained length between the two longest trained ones (``None`` with one length)."""
    if len(lengths) < 2:
        return None
    a, b = sorted(lengths)[-2:]
    mid = (a + b) // 2
    return mid if mid not in lengths else None


def _lengths(pipe, config: SeriesEvaluateConfig) -> list[int]:
    if config.lengths:
        return [int(v) for v in config.lengths.split(",") if v.strip()]
    extra = between_length(pipe.lengths)
    return sorted({*pipe.lengths, *([extra] if extra else [])})


def score_generation(pipe, config: SeriesEvaluateConfig, progress: bool = True) -> dict[str, float]:
    """Caption adherence, T2S metrics and distances at every length (see the module doc)."""
    device = pipe.device
    generator = make_generator(config.seed, device)
    out: dict[str, float] = {}
    lengths = _lengths(pipe, config)
    tests, trains = {}, {}
    for n in lengths:
        tests[n] = synthetic_set(config.num_samples, n, HELD_OUT_SEED + config.seed)
        trains[n] = synthetic_set(config.num_samples, n, METRIC_TRAIN_SEED + config.seed)
    encoder = retrieval = None
    if config.metric_encoder_steps > 0:
        encoder = train_ts2vec(
            [trains[n][0] for n in lengths], config.metric_encoder_steps, seed=config.seed, device=device
        )
        retrieval = train_retrieval(
            [trains[n][0] for n in lengths],
            [trains[n][1] for n in lengths],
            config.metric_encoder_steps,
            seed=config.seed,
            device=device,
        )
    for n in tqdm(lengths, desc="evaluate lengths", disable=not progress):
        real, captions, specs = tests[n]
        gen = pipe.generate(
            captions, n, guidance_scale=config.guidance_scale, steps=config.steps, generator=generator
        ).numpy()
        adherence = metrics.caption_adherence(gen[:, 0], [s.attributes() for s in specs])
        floor = metrics.caption_adherence(real[:, 0], [s.attributes() for s in specs])
        for k, v in adherence.items():
            out[f"adherence_{k}_L{n}"] = v
            out[f"adherence_{k}_L{n}_floor"] = floor[k]
        out[f"mse_L{n}"] = metrics.mse(gen, real)
        out[f"wape_L{n}"] = metrics.wape(gen, real)
        out[f"dtw_L{n}"] = float(np.mean(metrics.dtw(gen[:64, 0], real[:64, 0])))
        out[f"acf_distance_L{n}"] = metrics.acf_distance(gen[:, 0], real[:, 0])
        out[f"acf_distance_L{n}_floor"] = metrics.acf_distance(trains[n][0][:, 0], real[:, 0])
        out[f"spectral_distance_L{n}"] = metrics.spectral_distance(gen[:, 0], real[:, 0])
        out[f"spectral_distance_L{n}_floor"] = metrics.spectral_distance(trains[n][0][:, 0], real[:, 0])
        if encoder is not None and retrieval is not None:
            with torch.no_grad():
                feats = {
                    k: encoder.embed(torch.from_numpy(v).float().to(device)).cpu().numpy()
                    for k, v in (("gen", gen), ("real", real), ("train", trains[n][0]))
                }
            out[f"cfid_L{n}"] = metrics.frechet_distance(feats["gen"], feats["real"])
            out[f"cfid_L{n}_floor"] = metrics.frechet_distance(feats["train"], feats["real"])
            k = min(100, len(captions))  # retrieval among 100 candidates, as in T2S
            out[f"mrr10_L{n}"] = metrics.mrr_at_k(
                retrieval.similarity(captions[:k], torch.from_numpy(gen[:k]))
            )
            out[f"mrr10_L{n}_floor"] = metrics.mrr_at_k(
                retrieval.similarity(captions[:k], torch.from_numpy(real[:k]))
            )
    return out


def score_forecasts(
    forecaster: Callable[[np.ndarray, int], np.ndarray],
    horizon: int,
    samples: int,
    names: list[str] | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """CRPS and MASE of ``forecaster(history, horizon) -> (S, horizon)`` paths on the last ``horizon`` points of
    each statsmodels series, beside seasonal naive, ETS and ARIMA on the same history; plus the fraction of
    series where the model beats seasonal naive and where it is at least as good as ETS (CRPS)."""
    series = statsmodels_series(names) if names else statsmodels_series()
    out: dict[str, float] = {}
    beats_naive, ties_ets = [], []
    for s in tqdm(series, desc="forecast series", disable=not progress):
        history, target = s.values[:-horizon], s.values[-horizon:]
        paths = {
            "model": forecaster(history, horizon),
            "snaive": baselines.seasonal_naive_paths(history, horizon, s.period, samples),
            "ets": baselines.ets_paths(history, horizon, s.period, samples),
            "arima": baselines.arima_paths(history, horizon, s.period, samples),
        }
        key = s.name.replace("/", "_")
        for name, p in paths.items():
            out[f"forecast_crps_{name}_{key}"] = metrics.crps(p, target)
            out[f"forecast_mase_{name}_{key}"] = metrics.mase(np.median(p, 0), target, history, s.period)
        beats_naive.append(out[f"forecast_crps_model_{key}"] < out[f"forecast_crps_snaive_{key}"])
        ties_ets.append(out[f"forecast_crps_model_{key}"] <= out[f"forecast_crps_ets_{key}"])
    out["forecast_beats_snaive_fraction"] = float(np.mean(beats_naive))
    out["forecast_at_least_ets_fraction"] = float(np.mean(ties_ets))
    return out


def score_imputation(
    imputer: Callable[[np.ndarray, np.ndarray], np.ndarray],
    missing: float,
    seed: int,
    num: int = 32,
    length: int = 96,
) -> dict[str, float]:
    """MAE on hidden points of the median of ``imputer(values, observed) -> (S, L)`` against linear
    interpolation, on ``num`` held-out synthetic windows and on windows of the statsmodels series."""
    rng = np.random.default_rng(seed)
    synth = synthetic_set(num, length, HELD_OUT_SEED + seed)[0][:, 0]
    real = np.concatenate(
        [
            windows(s.values, length, stride=length)[:4]
            for s in statsmodels_series()
            if s.values.size >= length
        ]
    )
    out: dict[str, float] = {}
    for name, data in (("synthetic", synth), ("statsmodels", real)):
        model_err, linear_err = [], []
        for x in data:
            observed = rng.random(length) >= missing
            observed[[0, -1]] = True  # interpolation needs both ends; extrapolation is not imputation
            med = np.median(imputer(x, observed), 0)
            lin = baselines.linear_interpolation(x, observed)
            model_err.append(np.abs(med - x)[~observed])
            linear_err.append(np.abs(lin - x)[~observed])
        m, lnr = float(np.concatenate(model_err).mean()), float(np.concatenate(linear_err).mean())
        out[f"impute_mae_model_{name}"] = m
        out[f"impute_mae_linear_{name}"] = lnr
        out[f"impute_mae_reduction_{name}"] = 1.0 - m / lnr
    return out


def evaluate_pipeline(pipe, config: SeriesEvaluateConfig, progress: bool = True) -> dict[str, float]:
    """Every score of the module doc in one dictionary (metric name -> value)."""
    from diff_timeseries.pipeline import forecast_array, impute_array

    if config.num_samples < 2:
        raise ValueError(f"num_samples: expected >= 2, got {config.num_samples}")
    if config.impute_samples < 1:
        raise ValueError(f"impute_samples: expected >= 1, got {config.impute_samples}")
    if not 0.0 < config.missing < 1.0:
        raise ValueError(f"missing: expected a fraction in (0, 1), got {config.missing}")
    device = resolve_device(config.device)
    pipe.to(device)
    out = score_generation(pipe, config, progress)
    if pipe.prior is not None:
        generator = make_generator(config.seed, device)
        if config.forecast:
            out.update(
                score_forecasts(
                    lambda h, n: forecast_array(
                        pipe, h, n, samples=config.forecast_samples, steps=config.steps, generator=generator
                    ),
                    config.horizon,
                    config.forecast_samples,
                    progress=progress,
                )
            )
        if config.impute:
            out.update(
                score_imputation(
                    lambda v, o: impute_array(
                        pipe, v, o, samples=config.impute_samples, steps=config.steps, generator=generator
                    ),
                    config.missing,
                    config.seed,
                    length=max(pipe.lengths) // pipe.patch * pipe.patch,
                )
            )
    return out
