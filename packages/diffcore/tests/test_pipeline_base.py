"""diffcore.pipeline.Pipeline: one folder per pipeline, swap-in saves, clear errors on bad folders."""

import dataclasses
import json
from dataclasses import dataclass

import pytest
import torch
from diffcore.pipeline import PIPELINE_FILE, Pipeline
from diffcore.pretrained import PretrainedModel
from torch import nn


@dataclass
class TinyConfig:
    width: int = 3


class Tiny(PretrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.lin = nn.Linear(config.width, config.width)


class TinyPipeline(Pipeline):
    def __init__(self, model: Tiny, scale: float) -> None:
        self.model, self.scale = model, scale

    def components(self):
        return {"model": self.model}

    def pipeline_config(self):
        return {"scale": self.scale}

    @classmethod
    def from_parts(cls, config, components):
        return cls(components["model"], config["scale"])


class Other(TinyPipeline):
    pass


def test_save_and_load_round_trip(tmp_path):
    pipe = TinyPipeline(Tiny(TinyConfig(4)), scale=2.5)
    pipe.save_pretrained(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / PIPELINE_FILE).read_text())
    assert meta["pipeline_class"].endswith(":TinyPipeline") and meta["components"] == ["model"]
    back = TinyPipeline.from_pretrained(tmp_path / "p")
    assert back.scale == 2.5 and back.model.config.width == 4
    for a, b in zip(pipe.model.parameters(), back.model.parameters()):
        assert torch.equal(a, b)
    assert back.device == torch.device("cpu")


def test_a_failed_save_keeps_the_previous_pipeline(tmp_path):
    good = TinyPipeline(Tiny(TinyConfig(2)), scale=1.0)
    good.save_pretrained(tmp_path / "p")

    class Broken(TinyPipeline):
        def pipeline_config(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        Broken(Tiny(TinyConfig(2)), scale=9.0).save_pretrained(tmp_path / "p")
    assert TinyPipeline.from_pretrained(tmp_path / "p").scale == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no staging folder left behind


def test_saving_over_a_pipeline_replaces_it_but_not_a_foreign_folder(tmp_path):
    TinyPipeline(Tiny(TinyConfig(2)), scale=1.0).save_pretrained(tmp_path / "p")
    TinyPipeline(Tiny(TinyConfig(2)), scale=3.0).save_pretrained(tmp_path / "p")
    assert TinyPipeline.from_pretrained(tmp_path / "p").scale == 3.0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="no saved pipeline"):
        TinyPipeline(Tiny(TinyConfig(2)), scale=1.0).save_pretrained(tmp_path / "mine")


def test_loading_names_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no pipeline\.json"):
        TinyPipeline.from_pretrained(tmp_path)
    (tmp_path / PIPELINE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"pipeline\.json: not valid JSON"):
        TinyPipeline.from_pretrained(tmp_path)
    (tmp_path / PIPELINE_FILE).write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match=r"pipeline\.json: not UTF-8"):
        TinyPipeline.from_pretrained(tmp_path)
    (tmp_path / PIPELINE_FILE).write_text('{"config": {}, "components": "model"}')
    with pytest.raises(ValueError, match="'components' must be a list"):
        TinyPipeline.from_pretrained(tmp_path)
    TinyPipeline(Tiny(TinyConfig(2)), scale=1.0).save_pretrained(tmp_path / "p")
    with pytest.raises(ValueError, match=r"holds a .*TinyPipeline"):
        Other.from_pretrained(tmp_path / "p")


def test_save_writes_a_model_card_the_hub_reads_and_keeps_its_training_and_metrics(tmp_path):
    from diffcore.model_card import hub_folder_problems
    from diffcore.training import TrainConfig
    from huggingface_hub import ModelCard

    @dataclass
    class RunConfig:
        data_dir: str = "data/points"
        train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(steps=321))

    pipe = TinyPipeline(Tiny(TinyConfig(4)), scale=2.5)
    pipe.card.record_training(RunConfig())
    pipe.card.record_metrics({"fid": 12.5})
    pipe.card.license = "apache-2.0"
    pipe.save_pretrained(tmp_path / "p")
    card = ModelCard.load(tmp_path / "p" / "README.md")
    assert card.data.library_name == "diffcore" and card.data.license == "apache-2.0"
    assert "TinyPipeline" in card.data.tags and "diffcore" in card.data.tags
    assert "- steps: 321" in card.text and '"data_dir": "data/points"' in card.text
    assert "| fid | 12.5 |" in card.text and "| `model/` | `" in card.text
    assert hub_folder_problems(tmp_path / "p") == []
    back = TinyPipeline.from_pretrained(tmp_path / "p")
    assert back.card.metrics == {"fid": 12.5} and back.card.training["steps"] == 321
    (tmp_path / "p" / "model" / "extra.bin").write_bytes(b"x")
    assert hub_folder_problems(tmp_path / "p") == ["model/extra.bin is a pickle; save it as safetensors"]
    (tmp_path / "p" / "model" / "extra.bin").unlink()
    assert hub_folder_problems(tmp_path / "p", trained=False) == ["README.md gives training steps"]
    assert hub_folder_problems(tmp_path / "p", modality="audio") == [
        "README.md has no 'audio' tag or no 'diffuse audio sample' command"
    ]
    text = (tmp_path / "p" / "README.md").read_text()
    (tmp_path / "p" / "README.md").write_text(text.replace("library_name: diffcore", "library_name: other"))
    assert hub_folder_problems(tmp_path / "p") == [
        "README.md has no Hub front matter with library_name: diffcore"
    ]
