"""``diffuse audio ...``: the commands run end to end on a tiny pipeline, and user mistakes are one line, exit 2."""

import json

import soundfile as sf
import torch
from diff_audio.cli import app
from diff_audio.io import write_audio
from diffcore.modality import discover
from typer.testing import CliRunner

runner = CliRunner()


def test_audio_is_registered_with_diffuse():
    import diff_audio

    installed = discover()
    assert installed["audio"].distribution == "diff-audio"
    assert installed["audio"].version == diff_audio.__version__


def test_help_names_the_commands_and_their_options():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and all(c in result.output for c in ("train", "sample", "evaluate", "a2a"))
    result = runner.invoke(app, ["sample", "--help"])
    assert "--seconds-total" in result.output and "--guidance" in result.output


def test_sample_writes_wav_files_a_spectrogram_and_captions(tiny_run, tmp_path):
    run, _pipe = tiny_run
    out = tmp_path / "s"
    result = runner.invoke(app, ["sample", "--pipeline", str(run / "pipeline"), "--out", str(out), "--device", "cpu",
                                 "-n", "2", "--steps", "2", "--prompt", "an organ plays C4", "--seconds-total", "0.1",
                                 "--trim"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data, rate = sf.read(str(out / "sample_000.wav"))
    assert rate == 8000 and len(data) == 800  # trimmed at seconds_total
    assert (out / "spectrograms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "an organ plays C4" in (out / "captions.txt").read_text()


def test_evaluate_writes_metrics(tiny_run, tmp_path):
    run, _ = tiny_run
    out = tmp_path / "e"
    result = runner.invoke(app, ["evaluate", "--pipeline", str(run / "pipeline"), "--out", str(out), "--device", "cpu",
                                 "-n", "4", "--steps", "2", "--set", "classifier_steps=3", "--set",
                                 "reference_samples=4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["pitch_accuracy"] <= 1 and "fad_local_floor" in metrics


def test_a2a_transforms_a_file_and_refuses_the_wrong_rate(tiny_run, tmp_path):
    run, _ = tiny_run
    src = write_audio(tmp_path / "in.wav", 0.3 * torch.sin(torch.arange(1000) * 0.2)[None], 8000)
    out = tmp_path / "a"
    args = ["a2a", "--pipeline", str(run / "pipeline"), "--out", str(out), "--device", "cpu", "--steps", "2"]
    result = runner.invoke(app, [*args, "--input", str(src), "--prompt", "a plucked string plays C4"])
    assert result.exit_code == 0, result.output
    data, rate = sf.read(str(out / "a2a_000.wav"))
    assert rate == 8000 and len(data) == 1000
    wrong = write_audio(tmp_path / "w.wav", torch.zeros(1, 1600), 16000)
    result = runner.invoke(app, [*args, "--input", str(wrong)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: input:") and "8000 Hz" in result.output


def test_user_mistakes_are_one_line_and_exit_2(tiny_run, tmp_path):
    run, _ = tiny_run
    long = " ".join(["word"] * 40)
    result = runner.invoke(app, ["sample", "--pipeline", str(run / "pipeline"), "--out", str(tmp_path / "x"),
                                 "--device", "cpu", "--prompt", long, "--steps", "2"])  # fmt: skip
    assert result.exit_code == 2 and result.output.startswith("error: caption:")
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "t"), "--device", "cpu", "--data-path",
                                 str(tmp_path / "missing")])  # fmt: skip
    assert result.exit_code == 2 and "data_path" in result.output
