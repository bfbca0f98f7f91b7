"""diff-audio is a scaffold: registered, with the contract's shape, and honest that nothing runs yet."""

import diff_audio
import pytest
from diff_audio.cli import app
from diffcore.modality import discover
from typer.testing import CliRunner


def test_diff_audio_registers_with_diffuse():
    installed = discover()
    assert installed["audio"].distribution == "diff-audio"
    assert installed["audio"].version == diff_audio.__version__


def test_the_verbs_say_they_are_not_implemented_yet():
    with pytest.raises(NotImplementedError, match="issue #26"):
        diff_audio.train(diff_audio.AudioTrainConfig())


def test_train_command_fails_with_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: diff-audio: training is not implemented yet (issue #26)"
