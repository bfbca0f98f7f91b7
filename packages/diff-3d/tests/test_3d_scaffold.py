"""diff-3d is a scaffold: registered, with the contract's shape, and honest that nothing runs yet."""

import diff_3d
import pytest
from diff_3d.cli import app
from diffcore.modality import discover
from typer.testing import CliRunner


def test_diff_3d_registers_with_diffuse():
    installed = discover()
    assert installed["3d"].distribution == "diff-3d"
    assert installed["3d"].version == diff_3d.__version__


def test_the_verbs_say_they_are_not_implemented_yet():
    with pytest.raises(NotImplementedError, match="issue #27"):
        diff_3d.train(diff_3d.SplatTrainConfig())


def test_train_command_fails_with_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: diff-3d: training is not implemented yet (issue #27)"
