"""``diffuse video train | sample | i2v | evaluate``: the shared options, files written, one-line errors."""

import diff_video
import pytest
from diff_video.cli import app
from diff_video.io import save_frame_strip
from diffcore.modality import discover
from typer.testing import CliRunner

TINY = ["--set", "data.shapes.frames=4", "--set", "data.shapes.height=8", "--set", "data.shapes.width=8",
        "--set", "model.width=24", "--set", "model.depth=2", "--set", "model.heads=4", "--set", "model.text_width=16",
        "--set", "model.text_layers=1", "--set", "model.text_heads=2", "--set", "train.ema_decay=null",
        "--set", "data.shapes.length=32", "--set", "train.progress_bar=false", "--batch-size", "4"]  # fmt: skip


def test_diff_video_registers_with_diffuse():
    installed = discover()
    assert installed["video"].distribution == "diff-video"
    assert installed["video"].version == diff_video.__version__


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(app, ["train", "--out", str(out), "--device", "cpu", "--steps", "2", *TINY])
    assert result.exit_code == 0, result.output
    return out / "pipeline"


def test_sample_and_i2v_write_files_a_person_can_open(trained, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["sample", "--pipeline", str(trained), "--out", str(tmp_path / "s"), "-n", "2",
                                 "--steps", "2", "--prompt", "a red square moves left", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "s").iterdir()} >= {"sample_000.mp4", "sample_001.gif", "grid.png"}
    import torch

    save_frame_strip(torch.zeros(3, 1, 8, 8), tmp_path / "first.png")
    result = runner.invoke(app, ["i2v", "--pipeline", str(trained), "--image", str(tmp_path / "first.png"),
                                 "--prompt", "a blue circle moves up", "--out", str(tmp_path / "i"), "--steps", "2",
                                 "--length", "6", "--overlap", "2", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "i" / "i2v_000.mp4").is_file()


def test_user_mistakes_print_one_line_and_exit_2(trained, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["sample", "--pipeline", str(trained), "--out", str(tmp_path), "--device", "cpu",
                                 "--prompt", "a purple square moves left"])  # fmt: skip
    assert (
        result.exit_code == 2 and result.output.startswith("error: prompt:") and "'purple'" in result.output
    )
    result = runner.invoke(
        app, ["train", "--out", str(tmp_path / "r"), "--device", "cpu", "--attention", "sideways"]
    )
    assert result.exit_code == 2 and "attention" in result.output
    result = runner.invoke(app, ["i2v", "--pipeline", str(trained), "--image", str(tmp_path / "none.png"),
                                 "--out", str(tmp_path), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 2 and "none.png" in result.output
