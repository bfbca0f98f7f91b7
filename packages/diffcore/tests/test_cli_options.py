"""diffcore.cli.options.config_command: shared options, precedence, help from the dataclass, one-line errors."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import typer
from diffcore.cli.options import config_command, option_help
from diffcore.device import Device
from diffcore.training import TrainConfig
from typer.testing import CliRunner


@dataclass
class DataCfg:
    """Data.

    Attributes:
        path: folder of the data. Empty uses the generated set.
        size, channels: the shape.
    """

    path: str = ""
    size: int = 8
    channels: int = 3


@dataclass
class RunCfg:
    """A run.

    Attributes:
        data: the data.
        kind: which kind.
        tags: labels to attach.
        train: the optimisation.
    """

    data: DataCfg = field(default_factory=DataCfg)
    kind: Literal["a", "b"] = "a"
    tags: tuple[str, ...] = ()
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=10, lr=1e-3, output_dir="runs/t"))


@dataclass
class SampleCfg:
    """Sampling.

    Attributes:
        n: how many.
        seed: seeds the noise.
        device: where to run.
    """

    n: int = 4
    seed: int = 0
    device: Device = "auto"


seen: dict = {}
app = typer.Typer()


@config_command(app, "train", RunCfg, options=["train.steps", "data.path", "kind", "tags", "train.compile"])
def train_cmd(config: RunCfg, out: Path, verbose: bool = typer.Option(False, help="Talk.")) -> None:
    """Train it."""
    seen.update(config=config, out=out, verbose=verbose)
    if config.data.path == "missing":
        raise FileNotFoundError("data.path: missing is not a folder")
    if config.data.path == "bug":
        raise RuntimeError("a bug")


class FakePipeline:
    @classmethod
    def from_pretrained(cls, folder, device):
        return ("loaded", Path(folder).name, str(device))


@config_command(
    app, "sample", SampleCfg, pipeline=FakePipeline, default_out="runs/s", options={"n": ("--n", "-k")}
)
def sample_cmd(config: SampleCfg, out: Path, pipeline) -> None:
    seen.update(config=config, out=out, pipeline=pipeline)


runner = CliRunner()


def test_precedence_defaults_file_set_named(tmp_path):
    cfg = tmp_path / "c.yaml"  # the command's settings at the top level: [train] is the nested TrainConfig
    cfg.write_text("train: {steps: 20, lr: 0.1}\nkind: b\n")
    res = runner.invoke(app, ["train", "--config", str(cfg), "--set", "train.steps=30", "--steps", "40",
                              "--seed", "3", "--out", str(tmp_path / "o"), "--tags", "x", "--tags", "y"])  # fmt: skip
    assert res.exit_code == 0, res.output
    c = seen["config"]
    assert (c.train.steps, c.train.lr, c.kind, c.train.seed, c.tags) == (40, 0.1, "b", 3, ("x", "y"))
    assert c.train.output_dir == str(tmp_path / "o") and seen["out"] == tmp_path / "o"
    assert c.data.size == 8  # untouched default


def test_defaults_come_from_the_dataclass():
    res = runner.invoke(app, ["train"])
    assert res.exit_code == 0
    assert seen["config"] == RunCfg() and seen["out"] == Path("runs/t") and seen["verbose"] is False


def test_help_is_the_docstring_line_with_the_dataclass_default():
    assert option_help(RunCfg, "data.path") == "folder of the data; default: empty."
    assert option_help(RunCfg, "data.channels") == "the shape; default: 3."
    assert option_help(RunCfg, "kind") == "which kind; one of a | b; default: a."
    assert "default: 10" in option_help(RunCfg, "train.steps")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "c"], "error: kind: expected one of ('a', 'b'), got 'c'"),
        (["--set", "train.nope=1"], "error: train: unknown keys ['nope']"),
        (["--path", "missing"], "error: data.path: missing is not a folder"),
        (["--device", "tpu"], "error: train.device: expected one of"),
        (["--config", "nowhere.yaml"], "error: config: nowhere.yaml is not a file"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(args, message):
    res = runner.invoke(app, ["train", *args])
    assert res.exit_code == 2
    assert res.output.startswith(message) and res.output.count("\n") == 1


def test_debug_shows_the_traceback_and_bugs_are_not_hidden():
    res = runner.invoke(app, ["train", "--path", "missing", "--debug"])
    assert isinstance(res.exception, FileNotFoundError)
    res = runner.invoke(app, ["train", "--path", "bug"])
    assert isinstance(res.exception, RuntimeError)  # not turned into a one-line "user error"


def test_pipeline_commands_load_the_pipeline_on_the_configured_device(tmp_path):
    (tmp_path / "pipe").mkdir()
    res = runner.invoke(app, ["sample", "--pipeline", str(tmp_path / "pipe"), "--device", "cpu", "-k", "2"])
    assert res.exit_code == 0, res.output
    assert (
        seen["pipeline"] == ("loaded", "pipe", "cpu")
        and seen["config"].n == 2
        and seen["out"] == Path("runs/s")
    )
    res = runner.invoke(app, ["sample", "--pipeline", str(tmp_path / "none")])
    assert res.exit_code == 2 and "is not a folder" in res.output


def test_a_config_without_device_and_seed_is_refused_when_the_command_is_built():
    @dataclass
    class Bare:
        n: int = 1

    with pytest.raises(TypeError, match="needs 'device' and 'seed'"):
        config_command(typer.Typer(), "x", Bare, default_out="o")


def test_commands_turn_sampling_progress_on_and_quiet_off_while_they_run(monkeypatch):
    from diffcore import progress

    monkeypatch.setenv(progress.QUIET_ENV, "")
    monkeypatch.setenv(progress.PROGRESS_ENV, "")
    seen_switches = []

    @config_command(app, "probe", RunCfg)
    def probe(config: RunCfg, out: Path) -> None:
        seen_switches.append((progress.enabled(), progress.quiet()))

    assert runner.invoke(app, ["probe"]).exit_code == 0
    assert runner.invoke(app, ["probe", "--quiet"]).exit_code == 0
    # a command shows progress of every sampling loop; --quiet silences it; afterwards both are as before
    assert seen_switches == [(True, False), (False, True)]
    assert not progress.enabled() and not progress.quiet()


def test_training_commands_offer_resume_and_ema_decay():
    res = runner.invoke(app, ["train", "--resume", "latest", "--ema-decay", "0.99"])
    assert res.exit_code == 0, res.output
    assert seen["config"].train.resume == "latest" and seen["config"].train.ema_decay == 0.99
