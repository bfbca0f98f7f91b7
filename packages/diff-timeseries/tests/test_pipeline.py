"""The pipeline end to end on a tiny run: train, save / load, sample, forecast, impute, evaluate, the CLI."""

import numpy as np
import pytest
import torch
from diff_timeseries import (
    SeriesDataConfig,
    SeriesEvaluateConfig,
    SeriesForecastConfig,
    SeriesImputeConfig,
    SeriesModelConfig,
    SeriesPipeline,
    SeriesSampleConfig,
    SeriesTrainConfig,
    evaluate,
    forecast,
    impute,
    sample,
    train,
)
from diff_timeseries.cli import app
from diff_timeseries.models import (
    CaptionEncoder,
    ObservedObjective,
    SeriesVAE,
    SeriesVAEConfig,
    draw_masks,
    vae_loss,
)
from diff_timeseries.observed import interpolate_observed, observed_inputs, observed_statistics
from diff_timeseries.pipeline import forecast_array, impute_array
from diffcore.model_card import hub_folder_problems
from diffcore.training import TrainConfig
from typer.testing import CliRunner


def _config(out, **kw) -> SeriesTrainConfig:
    return SeriesTrainConfig(
        model=SeriesModelConfig(
            vae_hidden=16,
            hidden=32,
            depth=1,
            heads=2,
            text_width=16,
            text_layers=1,
            prior_hidden=32,
            prior_depth=1,
        ),
        data=SeriesDataConfig(num_series=32, lengths="24,48", prior_series=16),
        batch_size=8,
        vae_steps=3,
        prior_steps=3,
        train=TrainConfig(
            output_dir=str(out),
            steps=3,
            device="cpu",
            progress_bar=False,
            ema_decay=None,
            tensorboard=False,
            warmup_steps=1,
        ),
        **kw,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ts") / "run"
    pipe = train(_config(out))
    return out, pipe


def test_the_vae_maps_any_length_to_one_latent_shape_and_back():
    vae = SeriesVAE(SeriesVAEConfig(channels=2, hidden=16, latent_channels=3, latent_length=8))
    for length in (17, 24, 100):
        mu, logvar = vae.encode(torch.randn(2, 2, length))
        assert mu.shape == logvar.shape == (2, 3, 8)
        assert vae.decode(mu, length).shape == (2, 2, length)
    with pytest.raises(ValueError, match=r"x: expected \(B, 2, L\)"):
        vae.encode(torch.randn(2, 1, 24))


def test_fourier_carriers_let_the_vae_decode_a_cycle_its_short_latent_cannot_hold():
    vae = SeriesVAE(SeriesVAEConfig(hidden=16, latent_channels=2, latent_length=4, fourier_periods=8))
    assert vae.encode(torch.randn(3, 1, 40))[0].shape == (3, 2, 4)
    # decoder coefficients start at zero; set the period-5 sine's coefficient to 1: the output gains an exact
    # period-5 sinusoid at any length, which 4 interpolated latent positions could not draw
    z = torch.zeros(1, 2, 4)
    base = vae.decode(z, 40)
    with torch.no_grad():
        vae.dec_fourier.bias[5 - 2] = 1.0  # carrier order: sin p=2..8, then cos p=2..8
    diff = (vae.decode(z, 40) - base)[0, 0].detach().numpy()
    assert np.allclose(diff, np.sin(2 * np.pi * np.arange(40) / 5), atol=1e-5)
    with pytest.raises(ValueError, match="fourier_periods"):
        SeriesVAE(SeriesVAEConfig(fourier_periods=1))


def test_training_masks_cover_forecasting_and_missing_values():
    g = torch.Generator().manual_seed(0)
    m = draw_masks((4000, 1, 48), g)
    assert set(m.unique().tolist()) <= {0.0, 1.0} and (m.sum(-1) >= 2).all()
    observed_tail = m[:, 0, -1] == 1
    forecast_like = (~observed_tail) & (m[:, 0, :24] == 1).all(1)
    assert 0.3 < forecast_like.float().mean() < 0.6  # about half the rows hide a tail
    rate = 1 - m.mean()
    assert 0.15 < rate < 0.5


def test_observed_statistics_ignore_the_hidden_entries():
    x = torch.tensor([[[1.0, 3.0, 100.0, -50.0]]])
    mask = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    mean, std = observed_statistics(x, mask)
    assert float(mean) == pytest.approx(2.0) and float(std) == pytest.approx(1.0)
    _, std = observed_statistics(torch.ones(1, 1, 4), torch.ones(1, 1, 4))
    assert float(std) == 1.0  # a constant observed part keeps its units


def test_the_anchor_interpolates_inside_gaps_and_holds_the_ends():
    values = torch.tensor([[[0.0, 9.0, 9.0, 3.0, 9.0, 5.0, 9.0]]])
    mask = torch.tensor([[[0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]]])
    values[..., :2] = torch.tensor([7.0, 8.0])  # hidden entries are ignored whatever they hold
    out = interpolate_observed(values * mask, mask)[0, 0].tolist()
    assert out == pytest.approx([9.0, 9.0, 9.0, 3.0, 4.0, 5.0, 5.0])
    assert interpolate_observed(torch.ones(1, 1, 3), torch.zeros(1, 1, 3)).abs().sum() == 0


def test_the_objective_scores_only_the_hidden_entries():
    class Oracle(torch.nn.Module):  # the exact velocity where hidden, garbage where observed
        def forward(self, x, t, observed, mask, channels=None):
            return torch.where(mask == 1, torch.full_like(x, 1e3), self.v)

    x = torch.randn(8, 1, 24)
    oracle = Oracle()
    # replay the objective's draws to know its velocity target
    g = torch.Generator().manual_seed(3)
    mask = draw_masks((8, 1, 24), g)
    mean, std = observed_statistics(x, mask)
    x0 = (x - mean) / std
    read = observed_inputs(x0 * mask, mask, SeriesModelConfig().prior_conditioning)
    r0 = (x0 - read.base) / read.scale * (1 - mask)
    noise = torch.randn(x.shape, generator=g)
    oracle.v = noise - r0
    loss, _ = ObservedObjective()(oracle, {"x": x}, torch.Generator().manual_seed(3))
    assert float(loss) == pytest.approx(0.0, abs=1e-8)


def test_the_base_is_read_from_the_observed_part_once_per_training_step_and_per_fill(run, monkeypatch):
    import diff_timeseries.observed as observed

    calls = []
    real = observed.holt_continuation

    def counted(*args, **kw):
        calls.append(args[0].shape)
        return real(*args, **kw)

    monkeypatch.setattr(observed, "holt_continuation", counted)
    _, pipe = run
    prior = pipe.prior
    assert prior.config.conditioning.base == "holt"
    x = torch.randn(8, 1, 24)
    loss, _ = ObservedObjective(prior.config.conditioning)(prior, {"x": x}, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and len(calls) == 1
    calls.clear()
    mask = torch.ones(2, 1, 24)
    mask[..., -6:] = 0
    out = pipe.fill(x[:2] * mask, mask, samples=3, steps=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 2, 1, 24) and len(calls) == 1  # not once per sampler step


def test_the_prior_given_its_channels_equals_the_prior_reading_them_itself(run):
    _, pipe = run
    prior = pipe.prior
    g = torch.Generator().manual_seed(1)
    x, r = torch.randn(4, 1, 24, generator=g), torch.randn(4, 1, 24, generator=g)
    mask = draw_masks((4, 1, 24), g)
    t = torch.rand(4, generator=g)
    read = observed_inputs(x * mask, mask, prior.config.conditioning)
    with torch.no_grad():
        given = prior(r, t, observed=x * mask, mask=mask, channels=read.channels)
        itself = prior(r, t, observed=x * mask, mask=mask)
    assert torch.allclose(given, itself, atol=1e-6)


def _linear_oracle(pipe):
    """Make the pipeline's prior the exact flow to the least-squares line through the observed points (a
    delta target: velocity ``(x_t - f) / t``, ``f`` the residual of the line from the prior's anchor), so
    forecasts and imputations must be that line."""
    anchor = pipe.prior.anchor

    def forward(x, t, observed, mask, channels=None):
        n = x.shape[-1]
        s = torch.arange(n, dtype=x.dtype)
        w = mask
        sw, st, sy = w.sum(-1, True), (w * s).sum(-1, True), (w * observed).sum(-1, True)
        stt, sty = (w * s * s).sum(-1, True), (w * s * observed).sum(-1, True)
        slope = (sw * sty - st * sy) / (sw * stt - st * st)
        f = (sy - slope * st) / sw + slope * s
        base, scale = anchor(observed, mask)
        residual = (f - base) / scale  # the model generates the residual to this
        return (x - residual) / t.clamp_min(1e-6)[:, None, None]

    pipe.prior.forward = forward
    return pipe


def test_forecast_and_impute_put_the_model_in_the_units_of_the_observed_part(run):
    _, trained = run
    pipe = _linear_oracle(
        SeriesPipeline(trained.vae, trained.generator, _copy(trained.prior), trained.lengths)
    )
    g = torch.Generator().manual_seed(0)
    t = np.arange(70.0)
    paths = forecast_array(pipe, 1000.0 + 5.0 * t, 6, samples=2, steps=8, generator=g)
    assert np.allclose(paths, 1000.0 + 5.0 * np.arange(70, 76), atol=1e-3)
    two = np.stack([3.0 - 0.5 * t, 40.0 + 2.0 * t], 1)
    paths = forecast_array(pipe, two, 4, samples=2, steps=8, generator=g)
    assert paths.shape == (2, 4, 2)
    future = np.arange(70, 74.0)
    assert np.allclose(paths[..., 0], 3.0 - 0.5 * future, atol=1e-3)
    assert np.allclose(paths[..., 1], 40.0 + 2.0 * future, atol=1e-3)
    observed = np.random.default_rng(0).random((60, 2)) > 0.3
    filled = impute_array(pipe, two[:60], observed, samples=2, steps=8, generator=g)
    assert filled.shape == (2, 60, 2) and np.allclose(filled, two[:60], atol=1e-3)


def _copy(module):
    import copy

    return copy.deepcopy(module)


def test_the_vae_kl_term_is_the_closed_form():
    vae = SeriesVAE(SeriesVAEConfig(hidden=16, latent_channels=2, latent_length=4))
    mu, logvar = torch.full((1, 2, 4), 0.5), torch.full((1, 2, 4), np.log(2.0))
    vae.encode = lambda x: (mu, logvar)  # a fixed posterior N(0.5, 2)
    _, logs = vae_loss(vae, {"x": torch.zeros(1, 1, 16)}, kl_weight=1.0)
    expected = 0.5 * (0.25 + 2.0 - 1.0 - np.log(2.0))  # KL(N(0.5, 2) || N(0, 1)) per element
    assert float(logs["kl"]) == pytest.approx(expected, rel=1e-5)


def test_an_empty_caption_is_the_null_condition():
    enc = CaptionEncoder.from_captions(["a rising series"], width=16, layers=1, heads=2)
    ids = enc.tokenize(["a rising series", "", "an unseen word"])
    assert ids[1].eq(0).all() and ids[2, 0] == 1  # unknown words map to <unk>
    tokens, mask, pooled = enc(ids)
    assert not mask[1].any() and torch.equal(pooled[1], torch.zeros(16)) and torch.isfinite(tokens).all()


def test_train_writes_a_run_that_loads_and_samples_the_same(run):
    out, pipe = run
    assert (out / "pipeline" / "pipeline.json").is_file() and (out / "vae_run").is_dir()
    assert pipe.lengths == [24, 48] and pipe.prior is not None
    loaded = SeriesPipeline.from_pretrained(out / "pipeline")
    cfg = SeriesSampleConfig(
        captions="a rising series with no cycle, low noise and no sudden events",
        num_samples=2,
        length=36,
        steps=3,
        device="cpu",
        seed=5,
    )
    a, b = sample(pipe, cfg), sample(loaded, cfg)
    assert a.values.shape == (2, 1, 36) and np.allclose(a.values, b.values, atol=1e-5)
    assert not np.allclose(a.values, sample(pipe, SeriesSampleConfig(**{**vars(cfg), "seed": 6})).values)


def test_without_captions_sampling_uses_the_training_windows_captions_of_the_nearest_length(run):
    """A pipeline keeps the most frequent captions of its training windows per length (saved with it); sampled
    without captions it generates from those of the trained length nearest the one asked for, not from the
    synthetic set's (which describe series a pipeline trained on a user's table never saw)."""
    out, pipe = run
    loaded = SeriesPipeline.from_pretrained(out / "pipeline")
    assert set(pipe.captions) == {24, 48} and loaded.captions == pipe.captions
    for caps in pipe.captions.values():
        assert 1 <= len(caps) <= 4 and len(set(caps)) == len(caps)
    cfg = SeriesSampleConfig(num_samples=1, length=44, steps=1, device="cpu", plot=False)
    assert sample(loaded, cfg).captions == pipe.captions[48]
    cfg = SeriesSampleConfig(num_samples=1, length=30, steps=1, device="cpu", plot=False)
    assert sample(loaded, cfg).captions == pipe.captions[24]
    loaded.captions = {}  # a pipeline saved before it kept them: the synthetic set's first captions
    assert len(sample(loaded, cfg).captions) == 4


def test_a_second_run_in_the_same_folder_is_refused(run):
    out, _ = run
    with pytest.raises(ValueError, match="already holds a training run"):
        train(_config(out))


def test_samples_are_written_as_csv_captions_and_png(run, tmp_path):
    _, pipe = run
    s = sample(pipe, SeriesSampleConfig(captions="a|b", num_samples=1, length=24, steps=2, device="cpu"))
    files = {p.name for p in s.save(tmp_path)}
    assert files == {"samples.csv", "captions.txt", "samples.png"}
    import pandas as pd

    frame = pd.read_csv(tmp_path / "samples.csv")
    assert len(frame) == 2 * 24 and set(frame["caption"]) == {"a", "b"}
    assert (tmp_path / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_forecast_and_impute_hold_the_observed_points(run):
    _, pipe = run
    g = torch.Generator().manual_seed(0)
    history = 10 + np.sin(np.arange(70) / 3.0)
    paths = forecast_array(pipe, history, 8, samples=3, steps=3, generator=g)
    assert paths.shape == (3, 8) and np.isfinite(paths).all()
    z = torch.randn(1, 1, 48)
    mask = (torch.rand(1, 1, 48, generator=g) > 0.3).float()
    filled = pipe.fill(z, mask, samples=2, steps=3, generator=g)
    assert torch.allclose(
        filled[:, 0][mask.expand(2, 1, 48) == 1], z.expand(2, 1, 48)[mask.expand(2, 1, 48) == 1]
    )
    values = np.arange(60.0)
    observed = np.random.default_rng(0).random(60) > 0.3
    out = impute_array(pipe, values, observed, samples=2, steps=3, generator=g)
    assert out.shape == (2, 60) and np.array_equal(out[:, observed], np.tile(values[observed], (2, 1)))


def test_forecast_and_impute_read_a_csv_and_write_quantiles(run, tmp_path):
    _, pipe = run
    rows = ["step,sales"] + [f"{i},{'' if i in (10, 11) else f'{5 + np.sin(i / 4):.4f}'}" for i in range(80)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    fc = forecast(
        pipe,
        SeriesForecastConfig(
            input=str(tmp_path / "s.csv"), horizon=6, samples=5, steps=3, device="cpu", time_column="step"
        ),
    )
    names = {p.name for p in fc.save(tmp_path / "fc")}
    assert names == {"forecast_paths.csv", "forecast_quantiles.csv", "forecast.png"}
    import pandas as pd

    q = pd.read_csv(tmp_path / "fc" / "forecast_quantiles.csv")
    assert list(q.columns) == ["time", "q0.1", "q0.5", "q0.9"] and len(q) == 6
    assert (q["q0.1"] <= q["q0.5"]).all() and (q["q0.5"] <= q["q0.9"]).all()
    assert q["time"].tolist() == list(range(80, 86))
    imp = impute(
        pipe,
        SeriesImputeConfig(
            input=str(tmp_path / "s.csv"), samples=3, steps=3, device="cpu", time_column="step"
        ),
    )
    imp.save(tmp_path / "imp")
    frame = pd.read_csv(tmp_path / "imp" / "imputed.csv")
    assert frame["was_missing"].sum() == 2 and frame["imputed"].notna().all()


def test_several_columns_are_forecast_and_imputed_together(run, tmp_path):
    _, pipe = run
    rows = ["time,a,b"] + [f"{i},{np.sin(i / 3):.4f},{'' if i == 7 else f'{i * 0.1:.4f}'}" for i in range(50)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    fc = forecast(
        pipe, SeriesForecastConfig(input=str(tmp_path / "m.csv"), horizon=4, samples=3, steps=2, device="cpu")
    )
    assert fc.paths.shape == (3, 4, 2)
    names = {str(p.relative_to(tmp_path / "fc")) for p in fc.save(tmp_path / "fc")}
    assert {"a/forecast_quantiles.csv", "b/forecast_quantiles.csv"} <= names
    imp = impute(pipe, SeriesImputeConfig(input=str(tmp_path / "m.csv"), samples=2, steps=2, device="cpu"))
    assert imp.paths.shape == (2, 50, 2) and int((~imp.observed).sum()) == 1
    with pytest.raises(ValueError, match="column"):
        forecast(pipe, SeriesForecastConfig(input=str(tmp_path / "m.csv"), column="c", device="cpu"))


def test_evaluate_reports_every_metric_family(run):
    _, pipe = run
    m = evaluate(
        pipe,
        SeriesEvaluateConfig(
            num_samples=8, steps=2, metric_encoder_steps=2, forecast=False, impute=False, device="cpu"
        ),
    )
    for key in (
        "adherence_trend_L24",
        "adherence_trend_L36",
        "cfid_L48",
        "cfid_L48_floor",
        "mrr10_L24",
        "mse_L24",
        "wape_L24",
        "dtw_L24",
        "acf_distance_L48",
        "spectral_distance_L36",
    ):
        assert key in m and np.isfinite(m[key]), key
    assert 0 <= m["mrr10_L24"] <= 1 and m["adherence_trend_L48_floor"] >= 0.9


def test_the_cli_trains_samples_and_fails_with_one_line(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = [
        "train",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--steps",
        "2",
        "--vae-steps",
        "2",
        "--prior-steps",
        "2",
        "--lengths",
        "24",
        "--set",
        "data.num_series=16",
        "--set",
        "data.prior_series=8",
        "--set",
        "batch_size=4",
        "--set",
        "model.hidden=32",
        "--set",
        "model.depth=1",
        "--set",
        "model.prior_depth=1",
        "--set",
        "model.prior_hidden=32",
        "--set",
        "train.progress_bar=false",
        "--set",
        "train.warmup_steps=1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "sample",
            "--pipeline",
            str(out / "pipeline"),
            "--out",
            str(tmp_path / "s"),
            "--device",
            "cpu",
            "--captions",
            "a flat series|a rising series",
            "-n",
            "1",
            "--length",
            "30",
            "--steps",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "samples.csv").is_file() and (tmp_path / "s" / "samples.png").is_file()
    result = runner.invoke(
        app,
        [
            "forecast",
            "--pipeline",
            str(out / "pipeline"),
            "--out",
            str(tmp_path / "f"),
            "--device",
            "cpu",
            "--input",
            str(tmp_path / "missing.csv"),
        ],
    )
    assert result.exit_code == 2 and result.output.strip().startswith("error: ")
    assert "missing.csv" in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "r2"), "--device", "cpu", "--lengths", "8"])
    assert result.exit_code == 2 and "data.lengths" in result.output


def test_a_pipeline_trained_on_two_columns_forecasts_them_jointly(tmp_path):
    t = np.arange(400)
    rows = ["time,a,b"] + [f"{i},{np.sin(i / 5):.4f},{np.cos(i / 5) + 0.01 * i:.4f}" for i in t]
    (tmp_path / "two.csv").write_text("\n".join(rows) + "\n")
    cfg = _config(tmp_path / "run")
    cfg.data = SeriesDataConfig(path=str(tmp_path / "two.csv"), lengths="24,48")
    pipe = train(cfg)
    assert pipe.channels == 2 and pipe.prior.config.channels == 2
    fc = forecast(
        pipe,
        SeriesForecastConfig(input=str(tmp_path / "two.csv"), horizon=5, samples=3, steps=2, device="cpu"),
    )
    assert fc.paths.shape == (3, 5, 2) and np.isfinite(fc.paths).all()
    with pytest.raises(ValueError, match="column: the pipeline models 2 value columns"):
        forecast_array(pipe, np.zeros(30), 4, samples=1, steps=1)


def test_the_saved_pipeline_has_a_model_card_for_the_hub(run):
    out, _ = run
    assert hub_folder_problems(out / "pipeline", modality="timeseries", trained=True) == []
