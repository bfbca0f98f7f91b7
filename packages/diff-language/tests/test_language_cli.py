"""``diffuse language train | sample | evaluate`` end to end on a tiny model, and one-line errors."""

import json

import pytest
from diff_language.cli import app
from diff_language.config import LanguageSampleConfig, LanguageTrainConfig
from diffcore.cli.options import option_help
from typer.testing import CliRunner

SIZE = ["--seq-len", "16", "--block-size", "4", "--dim", "16", "--layers", "1", "--heads", "2"]


def test_train_sample_evaluate(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 200)
    run = tmp_path / "run"
    runner = CliRunner()
    data = ["--corpus", "files", "--path", str(corpus), "--tokenizer", "bytes"]
    short = ["--steps", "3", "--warmup-steps", "1", "--batch-size", "4", "--set", "eval_windows=4",
             "--set", "eval_repeats=2", "--device", "cpu"]  # fmt: skip
    res = runner.invoke(app, ["train", "--out", str(run), *data, *SIZE, *short])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tokens"] == 4 * 16
    for name in ("pipeline/pipeline.json", "pipeline/model/model.safetensors",
                 "pipeline/tokenizer/byte_tokenizer.json", "metrics.json", "log.jsonl"):  # fmt: skip
        assert (run / name).is_file(), name
    pipe = ["--pipeline", str(run / "pipeline"), "--device", "cpu"]
    samples = tmp_path / "samples"
    res = runner.invoke(
        app,
        [
            "sample",
            *pipe,
            "--num-tokens",
            "8",
            "--num-samples",
            "2",
            "--prompt",
            "the",
            "--out",
            str(samples),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (samples / "samples.txt").read_text().startswith("the")
    lines = (samples / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["prompt"] == "the"
    res = runner.invoke(
        app, ["evaluate", *pipe, "--windows", "4", "--repeats", "2", "--out", str(tmp_path / "ev")]
    )
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["nelbo"] > 0 and result["tokens"] == 4 * 16
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text()) == result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "--steps", "-2"], "error: steps: expected an integer >= 1, got -2"),
        (["sample", "--sampler", "foo"], "error: sampling.sampler: expected one of ('ancestral', 'first-hitting'), got 'foo'"),
        (["sample", "--top-p", "1.5"], "error: top_p: expected a number in (0, 1], got 1.5"),
        (["evaluate", "--repeats", "3"], "error: repeats: expected an even integer >= 2, got 3"),
        (["train", "--corpus", "wiki"], "error: corpus.kind: expected one of ('synthetic', 'pydoc', 'files', 'python'), got 'wiki'"),
        (["train", "--path", "a.txt"], "error: paths: only read for kind='files' or 'python' (got kind='synthetic'); add --corpus files"),
        (["train", "--block-size", "5"], "error: block_size: expected a divisor of seq_len=64, got 5"),
        (["train", "--steps", "40"], "error: warmup_steps: must be < steps (40) for the cosine schedule, got 50"),
    ],
)  # fmt: skip
def test_user_mistakes_are_one_line_errors_with_exit_status_2(tmp_path, args, message):
    extra = ["--pipeline", str(tmp_path)] if args[0] != "train" else []
    res = CliRunner().invoke(app, [*args, *extra, "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == message


def test_a_missing_pipeline_folder_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(app, ["sample", "--pipeline", str(tmp_path / "nope"), "--device", "cpu"])
    assert res.exit_code == 2 and res.output.strip().startswith("error: --pipeline:")
    assert len(res.output.strip().splitlines()) == 1


def test_help_of_an_option_is_its_settings_line_and_default():
    assert option_help(LanguageTrainConfig, "model.block_size") == (
        "L', a divisor of seq_len; 1 is an autoregressive model, seq_len is MDLM; default: 4."
    )
    assert option_help(LanguageTrainConfig, "train.warmup_steps").endswith("default: 50.")
    assert option_help(LanguageSampleConfig, "sampling.sampler").endswith(
        "one of ancestral | first-hitting; default: ancestral."
    )
    res = CliRunner().invoke(app, ["train", "--help"])
    assert res.exit_code == 0
    for option in (
        "--corpus",
        "--block-size",
        "--layers",
        "--steps",
        "--warmup-steps",
        "--ema-decay",
        "--set",
    ):
        assert option in res.output


def test_corpus_builds_a_folder_that_train_reads_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "corpus"
    runner = CliRunner()
    build = ["corpus", "--out", str(out), "--sources", "docs", "--bpe-vocab", "300", "--val-fraction", "0.2"]
    res = runner.invoke(app, build)
    assert res.exit_code == 0, res.output
    counts = json.loads(res.stdout)
    assert counts["documents"]["train"] > counts["documents"]["validation"] > 0
    assert (out / "manifest.jsonl").is_file() and (out / "LICENCES.md").is_file()
    run = tmp_path / "run"
    short = ["--steps", "2", "--warmup-steps", "1", "--batch-size", "2", "--set", "eval_windows=2",
             "--set", "eval_repeats=2", "--device", "cpu"]  # fmt: skip
    res = runner.invoke(
        app, ["train", "--out", str(run), "--corpus", "python", "--path", str(out), *SIZE, *short]
    )
    assert res.exit_code == 0, res.output
    assert json.loads((run / "pipeline" / "pipeline.json").read_text())  # saved with its corpus settings
    res = runner.invoke(app, build)  # the folder exists now: refused, one line, status 2
    assert res.exit_code == 2 and res.output.strip().startswith("error: out:") and "exists" in res.output
    res = runner.invoke(app, ["corpus", "--out", str(tmp_path / "x"), "--sources", "github"])
    assert res.exit_code == 2 and "error: sources" in res.output
