"""What the prior reads from the observed part: period detection, the seasonal naive continuation with drift,
the residual scale and the conditioning channels, against exact answers; the structural training series."""

import numpy as np
import pytest
import torch
from diff_timeseries.config import FEATURES, ObservedConditioning
from diff_timeseries.data.structural import structural_set
from diff_timeseries.observed import (
    HOLT_ALPHAS,
    HOLT_BETAS,
    HOLT_MIN_SCALE,
    HOLT_PHIS,
    MIN_SCALE,
    VALIDATION_MIN_SCALE,
    _local_linear,
    detect_period,
    holt_continuation,
    interpolate_observed,
    observed_inputs,
    observed_line,
    residual_scale,
    seasonal_continuation,
    seasonal_profile,
    validated_continuation,
    validated_fill,
)


def _seasonal(
    period: int, length: int, slope: float = 0.0, noise: float = 0.0, seed: int = 0
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64)
    pattern = torch.randn(period, generator=g, dtype=torch.float64)
    x = pattern[t.long() % period] + slope * t + noise * torch.randn(length, generator=g, dtype=torch.float64)
    return x[None, None]


@pytest.mark.parametrize("period", [4, 7, 12, 17])
def test_the_detected_period_is_the_true_one_with_trend_noise_and_gaps(period):
    x = _seasonal(period, 96, slope=0.05, noise=0.1, seed=period)
    mask = (torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) > 0.2).double()
    mask[..., 80:] = 0  # a forecast window: the end hidden
    assert int(detect_period(x * mask, mask, 24)) == period


def test_series_without_a_season_get_period_one():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(8, 1, 96, generator=g, dtype=torch.float64)
    line = torch.arange(96, dtype=torch.float64).expand(1, 1, 96)
    for x in (noise, line):
        assert (detect_period(x, torch.ones_like(x), 24) == 1).all()
    # a detrended random walk wanders slowly, and now and then that reads as a cycle
    walk = torch.randn(64, 1, 96, generator=g, dtype=torch.float64).cumsum(-1)
    assert (detect_period(walk, torch.ones_like(walk), 24) == 1).double().mean() >= 0.75


def test_the_continuation_of_a_season_with_a_linear_trend_is_exact_both_ways():
    x = _seasonal(7, 60, slope=0.3)
    mask = torch.zeros_like(x)
    mask[..., 10:45] = 1
    filled = interpolate_observed(x * mask, mask)
    out = seasonal_continuation(filled, mask, torch.tensor([[[7]]]), torch.tensor([[[0.3]]], dtype=x.dtype))
    assert torch.allclose(out, x, atol=1e-12)


def test_the_drift_is_the_least_squares_slope_of_the_observed_points():
    t = torch.arange(30, dtype=torch.float64)
    x = (2.0 - 0.25 * t + torch.where(t % 2 == 0, 0.1, -0.1))[None, None]
    mask = torch.ones_like(x)
    mask[..., 5:9] = 0
    a, b = observed_line(x * mask, mask)
    ts, ys = t[mask[0, 0] > 0].numpy(), x[0, 0][mask[0, 0] > 0].numpy()
    slope, intercept = np.polyfit(ts, ys, 1)
    assert float(b) == pytest.approx(slope, abs=1e-10) and float(a) == pytest.approx(intercept, abs=1e-10)


def test_the_damped_continuation_adds_the_geometric_sum_of_the_drift():
    x = torch.zeros(1, 1, 12, dtype=torch.float64)
    mask = torch.zeros_like(x)
    mask[..., :6] = 1
    x[..., :6] = 2.0
    phi = 0.8
    out = seasonal_continuation(x, mask, torch.tensor([[[1]]]), torch.tensor([[[1.0]]], dtype=x.dtype), phi)
    h = np.arange(1, 7)
    expected = 2.0 + phi * (1 - phi**h) / (1 - phi)  # phi + ... + phi^h
    assert np.allclose(out[0, 0, 6:].numpy(), expected)
    assert torch.equal(out[..., :6], x[..., :6])


def test_the_residual_scale_is_the_seasonal_naive_error_beyond_the_span_and_one_inside():
    x = _seasonal(4, 40, slope=0.5)
    x[..., 20] += 3.0  # one disturbance: seasonal differences at t = 20 and t = 24 are off by -+3
    mask = torch.ones_like(x)
    mask[..., 32:] = 0
    period, slope = torch.tensor([[[4]]]), torch.tensor([[[0.5]]], dtype=x.dtype)
    scale = residual_scale(x * mask, mask, period, slope)
    pairs = 32 - 4
    assert torch.allclose(scale[..., 32:], torch.tensor((18.0 / pairs) ** 0.5, dtype=x.dtype))
    assert torch.equal(scale[..., :32], torch.ones(1, 1, 32, dtype=x.dtype))
    exact = _seasonal(4, 40, slope=0.5)
    assert float(residual_scale(exact * mask, mask, period, slope)[..., -1]) == MIN_SCALE


def test_the_inputs_read_only_the_observed_entries_and_interpolate_inside_gaps():
    cfg = ObservedConditioning(base="seasonal")
    x = _seasonal(12, 96, slope=0.02, noise=0.05)
    mask = (torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) > 0.3).double()
    mask[..., 84:] = 0
    read = observed_inputs(x * mask, mask, cfg)
    assert read.channels.shape == (1, cfg.inputs - 1, 96) and cfg.inputs == 3 + len(FEATURES)
    inside = slice(0, int(mask[0, 0].nonzero().max()) + 1)
    assert torch.allclose(read.base[..., inside], interpolate_observed(x * mask, mask)[..., inside])
    assert torch.equal(read.channels[:, 1], mask[:, 0])
    other = observed_inputs(torch.where(mask > 0, x, torch.full_like(x, 1e6)), mask, cfg)
    assert torch.equal(other.channels, read.channels) and torch.equal(other.base, read.base)
    beyond = (
        (read.base - x)[..., 84:].abs().mean()
    )  # the seasonal naive forecast beats holding the last value
    assert beyond < (x[..., 83:84] - x[..., 84:]).abs().mean()


def test_the_interpolation_base_without_features_is_the_first_designs_anchor():
    cfg = ObservedConditioning(base="interpolation", features=False, scaled=False)
    x = torch.randn(2, 3, 24, generator=torch.Generator().manual_seed(0))
    mask = (torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    read = observed_inputs(x * mask, mask, cfg)
    assert torch.equal(read.base, interpolate_observed(x * mask, mask)) and (read.scale == 1).all()
    assert read.channels.shape == (2, 6, 24) and cfg.inputs == 3


def test_a_bad_conditioning_setting_is_refused_by_name():
    with pytest.raises(ValueError, match="base"):
        ObservedConditioning(base="ets")
    with pytest.raises(ValueError, match="damping"):
        ObservedConditioning(damping=1.5)


def test_structural_series_are_deterministic_z_scored_and_varied():
    a, b = structural_set(64, 48, seed=1), structural_set(64, 48, seed=1)
    assert a.shape == (64, 1, 48) and np.array_equal(a, b)
    assert not np.array_equal(a, structural_set(64, 48, seed=2))
    assert np.allclose(a.mean(-1), 0, atol=1e-5) and np.allclose(a.std(-1), 1, atol=1e-4)
    periods = detect_period(torch.from_numpy(a).double(), torch.ones(a.shape, dtype=torch.float64), 24)
    seasonal = (periods > 1).double().mean()
    assert 0.3 < float(seasonal) < 0.9  # some seasonal, some not


def test_the_seasonal_profile_of_a_trend_plus_season_is_the_centred_pattern_despite_gaps():
    x = _seasonal(6, 72, slope=0.2)
    mask = (torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) > 0.3).double()
    mask[..., 60:] = 0
    prof = seasonal_profile(x * mask, mask, torch.tensor([[[6]]]))
    t = torch.arange(72)
    pattern = x[0, 0, :6] - 0.2 * torch.arange(6)
    assert torch.allclose(prof[0, 0], (pattern - pattern.mean())[t % 6], atol=1e-6)
    assert torch.equal(seasonal_profile(x, torch.ones_like(x), torch.tensor([[[1]]])), torch.zeros_like(x))


def test_holt_fills_gaps_and_continues_a_level_plus_season_exactly():
    x = _seasonal(12, 96) + 5.0  # no trend, no noise: the adjusted series is the constant level
    mask = (torch.rand(x.shape, generator=torch.Generator().manual_seed(4)) > 0.3).double()
    mask[..., :3] = 1
    mask[..., 80:] = 0
    mask[..., 79] = 1
    out = holt_continuation(x * mask, mask, torch.tensor([[[12]]]))
    assert torch.allclose(out, x, atol=1e-3)  # the backfitted decomposition is exact to about 1e-4 here


def _numpy_damped_holt(y: np.ndarray, slope: float, horizon: int) -> tuple[float, np.ndarray]:
    """Reference: every grid point's damped Holt recursion (Hyndman & Athanasopoulos, FPP3 Sec. 8.2), the one
    of least in-sample squared one-step error: its sum of squared errors and its ``horizon``-step forecast."""
    best = None
    for a in HOLT_ALPHAS:
        for f in HOLT_BETAS:
            for phi in HOLT_PHIS:
                level, trend, sse = y[0], slope, 0.0
                for v in y[1:]:
                    err = v - (level + phi * trend)
                    sse += err * err
                    level, trend = level + phi * trend + a * err, phi * trend + f * a * err
                if best is None or sse < best[0]:
                    damp = np.cumsum(phi ** np.arange(1, horizon + 1))
                    best = (sse, level + damp * trend)
    return best


def test_holt_without_a_season_matches_a_reference_damped_holt_fit():
    g = torch.Generator().manual_seed(5)
    x = (0.1 * torch.arange(48, dtype=torch.float64) + torch.randn(48, generator=g, dtype=torch.float64))[
        None, None
    ]
    x = x.cumsum(-1) * 0.1 + x  # a trending, wandering series
    mask = torch.ones_like(x)
    mask[..., 40:] = 0
    out, rms = holt_continuation(x * mask, mask, torch.tensor([[[1]]]), with_error=True)
    _, slope = observed_line(x * mask, mask)
    sse, ref = _numpy_damped_holt(x[0, 0, :40].numpy(), float(slope), 8)
    assert np.allclose(out[0, 0, 40:].numpy(), ref, atol=1e-9)
    assert torch.equal(out[..., :40], x[..., :40])
    assert np.isclose(float(rms), np.sqrt(sse / 39))  # 39 one-step errors after the first point
    # the scaled holt inputs: that error is the residual's unit beyond the span, the deviation's inside
    read = observed_inputs(x * mask, mask, ObservedConditioning(base="holt", scaled=True))
    _, rms = holt_continuation(x * mask, mask, detect_period(x * mask, mask, 24), with_error=True)
    assert torch.allclose(read.scale[..., 40:], rms.clamp_min(HOLT_MIN_SCALE).expand(1, 1, 8))
    assert (read.scale[..., :40] == 1).all()


def test_the_holt_base_forecasts_a_wandering_season_better_than_seasonal_naive():
    errs = {"holt": [], "seasonal": []}
    for seed in range(16):
        g = torch.Generator().manual_seed(100 + seed)
        level = (0.15 * torch.randn(96, generator=g, dtype=torch.float64)).cumsum(0)
        x = _seasonal(12, 96, noise=0.3, seed=seed) + level  # a local level (ETS's setting) under the season
        mask = torch.ones_like(x)
        mask[..., 84:] = 0
        for base in errs:
            read = observed_inputs(x * mask, mask, ObservedConditioning(base=base))
            errs[base].append(float((read.base - x)[..., 84:].abs().mean()))
    assert np.mean(errs["holt"]) < 0.85 * np.mean(errs["seasonal"])


def test_the_validated_base_forecasts_with_the_candidate_that_predicted_the_held_out_steps_better():
    t = torch.arange(96, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    # a cycle whose amplitude grows: the last cycle (seasonal naive) is right, a fixed profile is not
    growing = (1 + t / 12) * torch.sin(2 * torch.pi * t / 12)
    # a noisy line with spikes at the last step of each fit: the naive forecast with drift copies the
    # spike, Holt smooths it away
    line = 0.05 * t + 0.3 * torch.randn(96, generator=g, dtype=torch.float64)
    line[[59, 71, 83]] += 4.0
    x = torch.stack([growing, line])[:, None]  # (2, 1, 96)
    mask = torch.ones_like(x)
    mask[..., 84:] = 0
    period = torch.tensor([12, 1])[:, None, None]
    base, error, holt_chosen = validated_continuation(x * mask, mask, period)
    assert holt_chosen.flatten().tolist() == [False, True]
    _, slope = observed_line(x * mask, mask)
    seasonal = seasonal_continuation(interpolate_observed(x * mask, mask), mask, period, slope)
    holt = holt_continuation(x * mask, mask, period)
    assert torch.allclose(base[0, :, 84:], seasonal[0, :, 84:]) and torch.allclose(base[1], holt[1])
    assert torch.allclose(base[..., :84], holt[..., :84])  # inside the span: holt's fill, either way
    # the error: the chosen candidate's RMS over both origins (fitted up to 60 and 72, scored on the next 12)
    expected = []
    for row, pick in ((0, 1), (1, 0)):  # growing: seasonal; line: holt
        sq = []
        for end in (60, 72):
            fit = mask[row : row + 1].clone()
            fit[..., end:] = 0
            cands = _candidates(x[row : row + 1], fit, period[row : row + 1])
            sq.append((cands[pick][0, 0, end : end + 12] - x[row, 0, end : end + 12]).square())
        expected.append(torch.cat(sq).mean().sqrt())
    assert torch.allclose(error.flatten(), torch.stack(expected))
    # scaled: that error is the residual's unit beyond the span, the deviation's inside
    read = observed_inputs(x[:1] * mask[:1], mask[:1], ObservedConditioning(base="validated", scaled=True))
    scale = error[:1].clamp_min(VALIDATION_MIN_SCALE).expand(1, 1, 12)
    assert torch.allclose(read.scale[..., 84:], scale) and (read.scale[..., :84] == 1).all()
    assert torch.allclose(read.base, base[:1])  # its detected period is 12


def _candidates(x, fit, period):
    _, slope = observed_line(x * fit, fit)
    seasonal = seasonal_continuation(interpolate_observed(x * fit, fit), fit, period, slope)
    return holt_continuation(x * fit, fit, period), seasonal


def test_the_validated_base_holds_out_at_most_half_of_the_observed_points():
    x = torch.sin(torch.arange(24, dtype=torch.float64))[None, None]
    mask = torch.zeros_like(x)
    mask[..., :8] = 1  # 8 observed, 16 to forecast: 2 held out at each of 2 origins, not 16
    one = torch.ones(1, 1, 1, dtype=torch.long)
    base, error, _ = validated_continuation(x * mask, mask, one)
    sq = [[], []]
    for end in (4, 6):
        fit = mask.clone()
        fit[..., end:] = 0
        for i, c in enumerate(_candidates(x, fit, one)):
            sq[i].append((c[..., end : end + 2] - x[..., end : end + 2]).square())
    rms = min(float(torch.cat(e, -1).mean().sqrt()) for e in sq)
    assert float(error) == pytest.approx(rms)
    few = torch.zeros_like(x)
    few[..., :3] = 1  # too few points to hold any out: holt, error 1
    base, error, holt_chosen = validated_continuation(x * few, few, torch.ones(1, 1, 1, dtype=torch.long))
    assert bool(holt_chosen) and float(error) == 1.0
    assert torch.allclose(base, holt_continuation(x * few, few, torch.ones(1, 1, 1, dtype=torch.long)))


def test_the_leave_one_out_smoother_at_a_step_is_the_smoother_without_that_step():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, 40, generator=g, dtype=torch.float64).cumsum(-1)
    mask = (torch.rand(1, 1, 40, generator=g) > 0.3).to(torch.float64)
    for h in (0.5, 3.0):
        loo = _local_linear(x * mask, mask, h, leave_out=True)
        for i in (5, 17, 30):
            without = mask.clone()
            without[..., i] = 0
            full = _local_linear(x * without, without, h, leave_out=False)
            assert torch.allclose(loo[..., i], full[..., i])


def test_the_leave_one_out_season_of_a_strictly_periodic_series_is_its_season():
    x = _seasonal(6, 60) + 0.3 * torch.arange(60, dtype=torch.float64)
    mask = torch.ones_like(x)
    mask[..., [3, 10, 11, 40]] = 0
    period = torch.tensor([[[6]]])
    full = seasonal_profile(x * mask, mask, period)
    loo = seasonal_profile(x * mask, mask, period, leave_out=True)
    assert torch.allclose(loo[mask > 0], full[mask > 0], atol=1e-9)
    noisy = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loo = seasonal_profile(noisy * mask, mask, period, leave_out=True)
    assert not torch.allclose(loo[mask > 0], seasonal_profile(noisy * mask, mask, period)[mask > 0])


def test_the_validated_fill_is_exact_on_a_line_and_a_season_and_smooths_noise():
    t = torch.arange(72, dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    mask = (torch.rand(1, 1, 72, generator=g) > 0.3).to(torch.float64)
    mask[..., [0, -1]] = 1
    one = torch.ones(1, 1, 1, dtype=torch.long)
    line = (2.0 - 0.1 * t)[None, None]
    assert torch.allclose(validated_fill(line * mask, mask, one), line)
    season = _seasonal(12, 72) + 0.05 * t  # linear interpolation alone misses the cycle between neighbours
    fill = validated_fill(season * mask, mask, torch.tensor([[[12]]]))
    assert torch.allclose(fill, season, atol=1e-3)  # to the backfitted profile's few sweeps
    assert (interpolate_observed(season * mask, mask) - season).abs().max() > 0.5
    errs = {"fill": [], "linear": []}
    for seed in range(8):  # white noise around a level: averaging more neighbours beats copying two
        noise = torch.randn(1, 1, 72, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        hidden = mask == 0
        errs["fill"].append(float((validated_fill(noise * mask, mask, one) - noise)[hidden].abs().mean()))
        errs["linear"].append(float((interpolate_observed(noise * mask, mask) - noise)[hidden].abs().mean()))
    assert np.mean(errs["fill"]) < 0.9 * np.mean(errs["linear"])
