"""The forecasting / imputation prior's base alone (no network): how good is what the prior refines?

For every base of ``ObservedConditioning.base`` (``seasonal``: seasonal naive with drift, ``holt``: damped Holt
on the seasonally adjusted series plus the seasonal profile), on the statsmodels series: MAE of the base on the
last 12 points, computed from the 84 before them in the units of their own mean and deviation as the prior sees
them (the 96-step window of ``forecast_array``); and imputation MAE at 30% missing against linear
interpolation on held-out synthetic windows and statsmodels windows of 96 steps (the windows of
``diff_timeseries.evaluation.score_imputation``, each with ``MASK_DRAWS`` random masks). CPU, seconds.

    uv run python benchmarks/timeseries/observed_base.py

Prints a table and writes benchmarks/results/observed_base-cpu.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from diff_timeseries import baselines
from diff_timeseries.config import ObservedConditioning
from diff_timeseries.data.real import statsmodels_series, windows
from diff_timeseries.data.synthetic import synthetic_set
from diff_timeseries.evaluation import HELD_OUT_SEED
from diff_timeseries.observed import observed_inputs, observed_statistics

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

HORIZON, WINDOW, MISSING = 12, 96, 0.3
MASK_DRAWS = 4
"""Random masks drawn per imputation window (the statsmodels set is small: 36 windows)."""
BASES = {
    "seasonal": ObservedConditioning(base="seasonal"),
    "holt-seasonal-fill": ObservedConditioning(base="holt", fill="seasonal"),
    "holt": ObservedConditioning(base="holt"),
    "validated": ObservedConditioning(base="validated"),
}
"""The bases scored: ``holt`` and ``validated`` with the default gap fill (``validated_fill``), ``holt`` also
with the seasonal + linear fill it had before."""


def base_of(x: np.ndarray, observed: np.ndarray, base: ObservedConditioning) -> np.ndarray:
    """The base ``(W,)`` of window ``x`` given its ``observed`` points, in the window's units."""
    v = torch.from_numpy(np.where(observed, x, 0.0))[None, None]
    m = torch.from_numpy(observed.astype(np.float64))[None, None]
    mean, std = observed_statistics(v, m)
    read = observed_inputs((v - mean) / std * m, m, base)
    return (read.base * std + mean)[0, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-result", action="store_true", help="Do not write the result file.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    metrics: dict[str, float] = {}
    print(f"{'series':24s} " + " ".join(f"{b:>10s}" for b in BASES))
    for s in statsmodels_series():
        history, target = s.values[:-HORIZON], s.values[-HORIZON:]
        ctx = min(WINDOW - HORIZON, history.size)
        x, observed = np.zeros(WINDOW), np.zeros(WINDOW, bool)
        x[WINDOW - HORIZON - ctx : WINDOW - HORIZON] = history[-ctx:]
        observed[WINDOW - HORIZON - ctx : WINDOW - HORIZON] = True
        key = s.name.replace("/", "_")
        for b in BASES:
            err = np.abs(base_of(x, observed, BASES[b])[-HORIZON:] - target).mean()
            metrics[f"forecast_mae_{b}_{key}"] = float(err)
        print(f"{key:24s} " + " ".join(f"{metrics[f'forecast_mae_{b}_{key}']:10.4g}" for b in BASES))
    rng = np.random.default_rng(0)
    real = np.concatenate(
        [
            windows(s.values, WINDOW, stride=WINDOW)[:4]
            for s in statsmodels_series()
            if s.values.size >= WINDOW
        ]
    )
    synth = synthetic_set(32, WINDOW, HELD_OUT_SEED)[0][:, 0]
    for name, data in (("synthetic", synth), ("statsmodels", real)):
        errs: dict[str, list[np.ndarray]] = {b: [] for b in ("linear", *BASES)}
        for x in [x for _ in range(MASK_DRAWS) for x in data]:
            observed = rng.random(WINDOW) >= MISSING
            observed[[0, -1]] = True
            errs["linear"].append(np.abs(baselines.linear_interpolation(x, observed) - x)[~observed])
            for b in BASES:
                errs[b].append(np.abs(base_of(x, observed, BASES[b]) - x)[~observed])
        linear = float(np.concatenate(errs["linear"]).mean())
        metrics[f"impute_mae_linear_{name}"] = linear
        for b in BASES:
            mae = float(np.concatenate(errs[b]).mean())
            metrics[f"impute_mae_{b}_{name}"] = mae
            metrics[f"impute_mae_reduction_{b}_{name}"] = 1.0 - mae / linear
        print(
            f"impute {name:17s} linear {linear:.4g} "
            + " ".join(f"{b} {metrics[f'impute_mae_{b}_{name}']:.4g}" for b in BASES)
        )
    if args.no_result:
        return
    path = write_result(
        {
            "horizon": HORIZON,
            "window": WINDOW,
            "missing": MISSING,
            "mask_draws": MASK_DRAWS,
            "metrics": metrics,
        },
        script="observed_base",
        device="cpu",
        packages=("diffcore", "diff-timeseries", "statsmodels"),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
