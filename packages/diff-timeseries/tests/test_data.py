"""The default synthetic set, the estimators that caption it, the statsmodels windows and the file loader."""

import numpy as np
import pytest
from diff_timeseries.data.dataset import LengthBatches, build_series_set
from diff_timeseries.data.files import load_folder, load_table
from diff_timeseries.data.real import captioned_windows, statsmodels_series, windows
from diff_timeseries.data.synthetic import caption_of, synthetic_set
from diff_timeseries.features import describe


def test_the_synthetic_set_is_deterministic_in_its_seed_and_z_scored_at_any_length():
    a, caps_a, _ = synthetic_set(8, 72, seed=3)
    b, caps_b, _ = synthetic_set(8, 72, seed=3)
    c, _, _ = synthetic_set(8, 72, seed=4)
    assert a.shape == (8, 1, 72) and np.array_equal(a, b) and caps_a == caps_b
    assert not np.array_equal(a, c)
    np.testing.assert_allclose(a.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(-1), 1, atol=1e-4)


def test_captions_say_the_generating_parameters():
    _, captions, specs = synthetic_set(50, 96, seed=0)
    for caption, spec in zip(captions, specs):
        assert caption.startswith(f"a {spec.trend} series")
        assert (f"period {spec.period}" in caption) == bool(spec.period)
        assert f"{spec.noise} noise" in caption
        if spec.event != "none":
            assert f"near the {spec.event_position}" in caption


@pytest.mark.parametrize("length", [48, 96])
def test_the_estimators_recover_the_generators_attributes(length):
    values, _, specs = synthetic_set(120, length, seed=11)
    got = [describe(x[0]) for x in values]
    for attribute in ("trend", "period", "noise", "event"):
        accuracy = np.mean([getattr(g, attribute) == getattr(s, attribute) for g, s in zip(got, specs)])
        assert accuracy >= 0.93, (attribute, accuracy)


def test_the_estimators_read_a_hand_made_series():
    t = np.arange(96)
    x = 0.05 * t + np.sin(2 * np.pi * t / 12) + 0.02 * np.random.default_rng(0).standard_normal(96)
    x[80:] -= 3.0
    a = describe(x)
    assert (a.trend, a.period, a.noise, a.event, a.event_position) == (
        "rising",
        12,
        "low",
        "shift down",
        "end",
    )
    assert (
        caption_of(a) == "a rising series with a cycle of period 12, low noise and a sudden drop near the end"
    )


def test_statsmodels_series_are_read_offline_and_windowed_with_captions():
    series = statsmodels_series(["co2", "nile"])
    assert [s.name for s in series] == ["co2", "nile"] and series[0].period == 12
    assert np.isfinite(series[0].values).all() and series[0].values.size > 500
    values, captions, sources = captioned_windows(series, 48)
    assert values.shape[1:] == (1, 48) and len(captions) == len(values) == len(sources)
    # co2 rises over every 4-year window: the estimators must say so
    co2 = [c for c, s in zip(captions, sources) if s == "co2"]
    assert np.mean([c.startswith("a rising") for c in co2]) > 0.9
    assert np.mean(["period 12" in c for c in co2]) > 0.8
    with pytest.raises(ValueError, match="names: unknown series"):
        statsmodels_series(["nope"])
    with pytest.raises(ValueError, match="T >= 200"):
        windows(np.arange(10.0), 200)


def test_interleaved_batches_cycle_through_the_lengths_deterministically():
    data = build_series_set("synthetic", [24, 48], 40, seed=0)
    batches = LengthBatches(data, 8, 6, seed=1)
    lengths = [batches[i]["x"].shape[-1] for i in range(4)]
    assert lengths == [24, 48, 24, 48]
    assert batches[2]["caption"] == LengthBatches(data, 8, 6, seed=1)[2]["caption"]
    assert (batches[1]["length"] == 48).all()


CSV = "time,a,b,text\n2020-01-01,1.0,2,x\n2020-01-02,,3,\n2020-01-03,2.5,NA,y\n"


def test_a_table_keeps_missing_values_as_a_mask(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(CSV)
    table = load_table(path, text_column="text")
    assert table.columns == ["a", "b"]
    assert table.mask.tolist() == [[True, True], [False, True], [True, False]]
    assert np.isnan(table.values[1, 0]) and table.values[2, 0] == 2.5
    assert table.texts == ["x", "", "y"] and table.times.dtype.kind == "M"


def test_a_bad_value_names_the_file_the_column_and_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time,a\n1,1.0\n2,oops\n")
    with pytest.raises(ValueError, match=r"bad.csv: line 3, column 'a': expected a number.*'oops'"):
        load_table(path)
    with pytest.raises(
        ValueError, match=r"value_columns: .* has no column 'z'; its columns are \['time', 'a'\]"
    ):
        load_table(path, value_columns=["z"])
    path.write_text("time,a\n2,1\n1,2\n")
    with pytest.raises(ValueError, match="line 3, time column 'time': times must increase"):
        load_table(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_table(tmp_path / "none.csv")


def test_a_folder_skips_and_reports_unreadable_tables(tmp_path):
    (tmp_path / "good.csv").write_text("a\n1\n2\n")
    (tmp_path / "bad.csv").write_text("a\n1\nx\n")
    tables, skipped = load_folder(tmp_path, time_column=None)
    assert [t.path.name for t in tables] == ["good.csv"]
    assert len(skipped) == 1 and "bad.csv: line 3" in skipped[0]


def test_parquet_tables_read_like_csv(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"ds": pd.date_range("2020-01-01", periods=4, freq="D"), "v": [1.0, None, 3.0, 4.0]})
    frame.to_parquet(tmp_path / "s.parquet")
    table = load_table(tmp_path / "s.parquet")
    assert table.columns == ["v"] and table.mask[:, 0].tolist() == [True, False, True, True]


def test_tables_train_with_their_windows_and_report_what_was_left_out(tmp_path):
    t = np.arange(200)
    v = np.sin(t / 5.0) + 0.01 * t
    lines = ["step,value"] + [f"{i},{'' if i == 50 else round(x, 5)}" for i, x in zip(t, v)]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    data = build_series_set(
        "files", [24], 0, 0, path=str(tmp_path / "s.csv"), table_options={"time_column": "step"}
    )
    assert data.values[24].shape[1:] == (1, 24)
    assert any("missing values" in n for n in data.notes)


def test_batches_carry_caption_tokens_cut_to_their_longest_caption():
    import torch
    from diff_timeseries.data.dataset import trim_padding

    ids = torch.tensor([[3, 4, 0, 0, 0], [5, 0, 0, 0, 0]])
    assert trim_padding(ids).tolist() == [[3, 4], [5, 0]]
    assert trim_padding(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 1)  # null captions keep one column
    data = build_series_set("synthetic", [24], 16, 0)
    batch = LengthBatches(
        data, 4, 1, tokenize=lambda c: torch.nn.functional.pad(torch.ones(len(c), 3), (0, 29)).long()
    )[0]
    assert batch["input_ids"].shape == (4, 3)
