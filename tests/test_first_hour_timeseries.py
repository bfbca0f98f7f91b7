"""A new user's first hour with diff-timeseries (issue #23): their own CSV table (a time column and a value
column, as a spreadsheet exports it), trained and sampled from the command line on the defaults (only the
networks and the numbers of steps made tiny, no forecasting prior), at tiny size on the CPU.

The table is 40 days of hourly temperatures with a daily cycle (period 24) and noise. Every window the package
trains on is z-scored, so the mean and deviation of the samples say nothing; their autocorrelation does: a
sampled series must swing with the data's cycle (autocorrelation about +0.7 at lag 3, 0 at lag 6, -1 at lag 12)
where white noise (what an untrained generator gives) has none at any lag, and where a smooth series without
the cycle (what the generator gives before it has learned it) stays positive or near 0 at lag 12.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from diffcore.cli import build_app
from typer.testing import CliRunner

pytest.importorskip("diff_timeseries")
pd = pytest.importorskip("pandas")

runner = CliRunner()
SEED = os.environ.get("FIRST_HOUR_SEED", "0")  # to check the margins over seeds by hand
PERIOD = 24
LAGS = (3, 6, 12)
TINY = ["--set", "model.vae_hidden=32", "--set", "model.hidden=64", "--set", "model.depth=1",
        "--set", "model.heads=2", "--set", "model.text_width=16", "--set", "model.text_layers=1"]  # fmt: skip


def _acf(x: np.ndarray) -> np.ndarray:
    """Mean autocorrelation at ``LAGS`` of the rows of ``x`` ``(N, L)``, each row standardised."""
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    return np.array([np.mean(x[:, lag:] * x[:, :-lag]) for lag in LAGS])


def _series(hours: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(hours) + rng.integers(PERIOD)
    return 12.0 + 6.0 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0.0, 0.8, hours)


DATA_ACF = _acf(np.stack([_series(96, np.random.default_rng(i)) for i in range(64)]))
NOISE_ACF = _acf(np.random.default_rng(0).normal(size=(64, 96)))


def _assert_like(samples: np.ndarray) -> None:
    """The samples' autocorrelation at ``LAGS`` is much closer to the data's than to white noise's."""
    got = _acf(samples)
    to_data, to_noise = np.abs(got - DATA_ACF).max(), np.abs(got - NOISE_ACF).max()
    print(f"acf at lags {LAGS}: samples {got.round(3)}, data {DATA_ACF.round(3)}, noise {NOISE_ACF.round(3)}")
    assert to_data < 0.3 * to_noise, (got, DATA_ACF, NOISE_ACF)


def test_the_autocorrelation_tells_the_cycle_from_noise():
    """The check itself: series like the data pass; white noise and smooth series without the cycle fail."""
    _assert_like(np.stack([_series(96, np.random.default_rng(100 + i)) for i in range(16)]))
    rng = np.random.default_rng(1)
    with pytest.raises(AssertionError):
        _assert_like(rng.normal(size=(16, 96)))
    smooth = np.cumsum(rng.normal(size=(16, 96)), axis=1)  # random walks: smooth, no cycle
    with pytest.raises(AssertionError):
        _assert_like(smooth)


@pytest.mark.slow
def test_a_csv_of_my_own_series_trains_and_samples_carry_its_cycle(tmp_path):
    hours = 40 * PERIOD
    table = pd.DataFrame(
        {"time": pd.date_range("2024-03-01", periods=hours, freq="h").strftime("%Y-%m-%d %H:%M"),
         "temperature": np.round(_series(hours, np.random.default_rng(0)), 1)}
    )  # fmt: skip
    table.to_csv(tmp_path / "temperature.csv", index=False)

    run = tmp_path / "run"
    result = runner.invoke(
        build_app(),
        ["timeseries", "train", "--data", str(tmp_path / "temperature.csv"), "--out", str(run),
         "--vae-steps", "200", "--steps", "500", "--prior-steps", "0", "--device", "cpu", "--seed", SEED, *TINY],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (run / "pipeline").is_dir()

    out = tmp_path / "samples"
    result = runner.invoke(
        build_app(),
        ["timeseries", "sample", "--pipeline", str(run / "pipeline"), "--out", str(out), "-n", "8",
         "--device", "cpu", "--seed", SEED],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "samples.csv")
    samples = np.stack([g["value"].to_numpy() for _, g in frame.groupby("series")])
    assert samples.shape[1] == 96 and np.isfinite(samples).all()

    assert "period 24" in (out / "captions.txt").read_text()  # the data's own captions, when none is given
    _assert_like(samples)
