"""User mistakes on every modality's command line: one ``error: ...`` line naming what is wrong, exit status 2,
and nothing written. Per modality: a missing path, a corrupt file, a bad number and an unknown name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from diffcore.cli import build_app
from typer.testing import CliRunner

MODALITIES = ["image", "language", "protein"]
DATA_PATH = {  # the option naming the training data on disk, as each modality's train command takes it
    "image": ["--dataset", "folder", "--data-path"],
    "language": ["--corpus", "files", "--path"],
    "protein": ["--data"],
}


def _fails(args: list[str], *needles: str) -> str:
    result = CliRunner().invoke(build_app(), args)
    output = result.output
    assert result.exit_code == 2, output + repr(result.exception)
    assert output.startswith("error: ") and output.count("\n") == 1, output  # one line, no traceback or box
    for needle in needles:
        assert needle in output, (needle, output)
    return output


@pytest.mark.parametrize("modality", MODALITIES)
def test_a_missing_path_is_named(modality, tmp_path):
    missing = tmp_path / "no-such-thing"
    _fails([modality, "sample", "--pipeline", str(missing), "--device", "cpu"], str(missing))
    _fails([modality, "train", "--config", str(missing / "c.toml"), "--out", str(tmp_path / "run")], "c.toml")
    _fails([modality, "train", *DATA_PATH[modality], str(missing), "--out", str(tmp_path / "run"),
            "--device", "cpu"], "no-such-thing")  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("modality", MODALITIES)
def test_a_corrupt_file_is_named(modality, tmp_path):
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "pipeline.json").write_text('{"pipeline_class": "x", "config": {')
    _fails(
        [modality, "sample", "--pipeline", str(folder), "--device", "cpu"], "pipeline.json", "not valid JSON"
    )
    # a valid description whose component's config.json is corrupt
    (folder / "pipeline.json").write_text(json.dumps({"format": 1, "config": {}, "components": ["model"]}))
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_bytes(b"\xff\xfe not json")
    (folder / "model" / "model.safetensors").write_bytes(b"")
    _fails([modality, "sample", "--pipeline", str(folder), "--device", "cpu"], "config.json")
    bad_config = tmp_path / "settings.toml"
    bad_config.write_text("[train\nsteps = 3\n")
    _fails([modality, "train", "--config", str(bad_config), "--out", str(tmp_path / "run")], "settings.toml")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("modality", MODALITIES)
def test_a_bad_number_is_named(modality, tmp_path):
    out = ["--out", str(tmp_path / "run"), "--device", "cpu"]
    _fails([modality, "train", "--steps", "many", *out], "--steps", "integer")
    _fails([modality, "train", "--set", "train.lr=fast", *out], "train.lr")
    _fails([modality, "train", "--set", "train.steps=-3", *out], "steps")
    _fails([modality, "train", "--seed", "1.5", *out], "--seed")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("modality", MODALITIES)
def test_an_unknown_name_is_named(modality, tmp_path):
    out = ["--out", str(tmp_path / "run"), "--device", "cpu"]
    _fails([modality, "train", "--set", "no_such_setting=1", *out], "no_such_setting")
    _fails([modality, "train", "--no-such-option", "1", *out], "--no-such-option")
    _fails([modality, "train", "--device", "tpu", "--out", str(tmp_path / "run")], "tpu")
    _fails([modality, "train", "--set", "train.mixed_precision=fp12", *out], "fp12")
    assert not (tmp_path / "run").exists()


def test_the_debug_flag_still_shows_click_s_own_report(tmp_path):
    result = CliRunner().invoke(build_app(), ["language", "train", "--steps", "many", "--debug"])
    assert result.exit_code == 2 and not result.output.startswith("error: ")


def test_a_corrupt_legacy_protein_run_file_is_named(tmp_path: Path):
    (tmp_path / "run.json").write_text("{'kind': 'backbone'")
    _fails(
        ["protein", "sample", "--pipeline", str(tmp_path), "--device", "cpu"], "run.json", "not valid JSON"
    )
    (tmp_path / "run.json").write_text(json.dumps({"kind": "backbone"}))
    (tmp_path / "model").mkdir()
    _fails(["protein", "sample", "--pipeline", str(tmp_path), "--device", "cpu"], "model")
