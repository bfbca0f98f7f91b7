import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from diffcore.pretrained import PretrainedModel, load_pretrained
from torch import nn


@dataclass
class TinyConfig:
    width: int = 4
    sizes: tuple = (1, 2)


class Tiny(PretrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        self.lin = nn.Linear(config.width, config.width)


def test_roundtrip_restores_config_and_weights(tmp_path):
    model = Tiny(TinyConfig(width=3, sizes=(4, 5)))
    model.save_pretrained(tmp_path / "m")
    loaded = load_pretrained(tmp_path / "m")
    assert isinstance(loaded, Tiny)
    assert loaded.config == model.config
    torch.testing.assert_close(loaded.lin.weight, model.lin.weight)
    assert not list(tmp_path.glob("m/*.tmp"))


def test_missing_and_corrupt_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        Tiny.from_pretrained(tmp_path)
    Tiny(TinyConfig()).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="safetensors"):
        Tiny.from_pretrained(tmp_path)


def test_wrong_config_type_is_rejected():
    with pytest.raises(TypeError, match="config"):
        Tiny({"width": 3})


def test_config_json_goes_through_the_one_config_reader(tmp_path):
    """Types are checked and unknown keys refused as for configuration files, naming the file."""
    Tiny(TinyConfig()).save_pretrained(tmp_path)
    config = tmp_path / "config.json"
    saved = json.loads(config.read_text())
    config.write_text(json.dumps({**saved, "config": {"width": 3, "depth": 2}}))
    with pytest.raises(ValueError, match=r"config\.json .*unknown keys \['depth'\]"):
        Tiny.from_pretrained(tmp_path)
    config.write_text(json.dumps({**saved, "config": {"width": "wide"}}))
    with pytest.raises(ValueError, match=r"width: expected int"):
        Tiny.from_pretrained(tmp_path)


def test_every_unreadable_part_of_a_saved_model_is_named(tmp_path):
    Tiny(TinyConfig()).save_pretrained(tmp_path)
    config = tmp_path / "config.json"
    for content, match in (
        (b"\xff\xfe\x00", r"config\.json: not UTF-8"),
        (b'{"model_class": ', r"config\.json: not valid JSON"),
        (b"[1, 2]", r"config\.json: holds a JSON list"),
        (b'{"model_class": "no.such.Module", "config": {}}', r"config\.json names no loadable model class"),
    ):
        config.write_bytes(content)
        with pytest.raises(ValueError, match=match):
            load_pretrained(tmp_path)
    Tiny(TinyConfig(width=5)).save_pretrained(tmp_path / "wide")
    (tmp_path / "wide" / "model.safetensors").replace(tmp_path / "model.safetensors")
    Tiny(TinyConfig(width=4)).save_pretrained(tmp_path / "narrow")
    (tmp_path / "narrow" / "config.json").replace(config)
    with pytest.raises(
        ValueError, match=r"model\.safetensors does not fit the model .*config\.json describes"
    ):
        load_pretrained(tmp_path)


@dataclass
class GrownConfig:
    width: int = 4
    gate: bool = True  # added later; files saved before it had no gate

    older_file_defaults: ClassVar[dict] = {"gate": False}  # ClassVar: not a dataclass field


class Grown(PretrainedModel):
    config_class = GrownConfig

    def __init__(self, config: GrownConfig):
        super().__init__(config)
        self.lin = nn.Linear(config.width, config.width)
        if config.gate:
            self.gate = nn.Linear(config.width, 1)


def test_a_field_added_later_loads_older_files_with_the_value_they_meant(tmp_path):
    old = Grown(GrownConfig(gate=False))
    old.save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    data = json.loads(path.read_text())
    del data["config"]["gate"]  # as written before the field existed
    path.write_text(json.dumps(data))
    loaded = load_pretrained(tmp_path / "old")
    assert loaded.config.gate is False and not hasattr(loaded, "gate")
    torch.testing.assert_close(loaded.lin.weight, old.lin.weight)
    # a new file keeps its own value, and a config built in code still gets the field's default
    Grown(GrownConfig(gate=True)).save_pretrained(tmp_path / "new")
    assert load_pretrained(tmp_path / "new").config.gate is True
    assert GrownConfig().gate is True
