"""``diffuse language train | sample | evaluate`` end to end on a tiny model."""

import json

from diff_language.cli import app
from typer.testing import CliRunner


def test_train_sample_evaluate(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 200)
    run = tmp_path / "run"
    runner = CliRunner()
    common = ["--corpus", "files", "--path", str(corpus), "--tokenizer", "bytes"]
    size = ["--seq-len", "16", "--block-size", "4", "--dim", "16", "--layers", "1", "--heads", "2"]
    res = runner.invoke(
        app, ["train", "--out", str(run), *common, *size, "--steps", "3", "--batch-size", "4"]
    )
    assert res.exit_code == 0, res.output
    for name in ("config.json", "model.safetensors", "byte_tokenizer.json", "corpus.json", "metrics.json"):
        assert (run / name).is_file()
    out = tmp_path / "samples.txt"
    res = runner.invoke(
        app,
        ["sample", str(run), "--num-tokens", "8", "--num-samples", "2", "--prompt", "the", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("the")
    res = runner.invoke(app, ["evaluate", str(run), "--windows", "4", "--repeats", "2"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["nelbo"] > 0 and result["tokens"] == 4 * 16


def test_bad_corpus_is_named(tmp_path):
    res = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "r"), "--corpus", "wiki"])
    assert res.exit_code != 0 and "kind" in res.output
