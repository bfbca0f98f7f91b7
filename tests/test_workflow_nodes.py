"""Workflow nodes of the installed modality packages (diffcore.workflows.commands) and ``diffuse run``.

Every modality's ``sample`` is a node reading that modality's pipeline; every ``config_command`` of every package
is a node; a node's parameters carry the configuration's own defaults; its configuration is built in the command
line's order; and a tiny image workflow (train, sample with a named sampler, save) runs through ``diffuse run``,
with the second run taken from the cache and a broken graph refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from diffcore.cli import build_app
from diffcore.config import field_default
from diffcore.modality import discover
from diffcore.workflows import GraphError, NodeCall, Workflow, default_registry, validate
from diffcore.workflows.builtin import GuidanceSetting, PromptSetting, SamplerSetting
from diffcore.workflows.commands import build_config, command_specs
from typer.testing import CliRunner

REGISTRY = default_registry()
INSTALLED = discover()


@pytest.mark.parametrize("modality", sorted(INSTALLED))
def test_every_modality_sample_is_a_node_reading_its_pipeline(modality):
    sample = REGISTRY.get(f"{modality}.sample")
    assert sample.input("pipeline").type == f"pipeline:{modality}"
    assert sample.output("files").type == "files"
    assert REGISTRY.get(f"{modality}.load_pipeline").output("pipeline").type == f"pipeline:{modality}"
    wf = Workflow.from_dict({"nodes": [
        {"id": "load", "type": f"{modality}.load_pipeline", "params": {"path": "some/pipeline"}},
        {"id": "draw", "type": f"{modality}.sample", "inputs": {"pipeline": ["load", "pipeline"]}},
        {"id": "keep", "type": "save.files", "params": {"folder": "out"}, "inputs": {"files": ["draw", "files"]}},
    ]})  # fmt: skip
    assert validate(wf, REGISTRY) == ["load", "draw", "keep"]


@pytest.mark.parametrize("modality", sorted(INSTALLED))
def test_every_command_is_a_node_whose_params_default_to_the_configuration(modality):
    for path, spec in command_specs(INSTALLED[modality].modality.app):
        node = REGISTRY.get(".".join((modality, *path)))
        for p in node.params:
            if p.name in spec.options:
                default = field_default(spec.config_class, p.name)
                expected = [*default] if isinstance(default, tuple) else default
                assert p.default == (str(expected) if isinstance(expected, Path) else expected), (
                    node.name,
                    p.name,
                )
        assert node.params[-1].name == "settings"


def test_a_pipeline_of_one_modality_cannot_feed_another():
    wf = Workflow.from_dict({"nodes": [
        {"id": "load", "type": "audio.load_pipeline", "params": {"path": "p"}},
        {"id": "draw", "type": "image.sample", "inputs": {"pipeline": ["load", "pipeline"]}},
    ]})  # fmt: skip
    with pytest.raises(
        GraphError, match="node 'draw' input 'pipeline': expects pipeline:image, got pipeline:audio"
    ):
        validate(wf, REGISTRY)


def _call(params: dict, inputs: dict | None = None) -> NodeCall:
    node = REGISTRY.get("image.sample")
    return NodeCall("draw", node.resolve_params("draw", params), inputs or {}, None, device="cpu")


def test_configuration_order_settings_then_params_then_connected_nodes(tmp_path):
    spec = dict(command_specs(INSTALLED["image"].modality.app))[("sample",)]
    cfg = build_config(spec, _call({"settings": "steps=7\nnum_samples=3", "sampler": "ddim"}), tmp_path)
    assert (cfg.steps, cfg.num_samples, cfg.sampler, cfg.device) == (7, 3, "ddim", "cpu")
    cfg = build_config(spec, _call({"settings": "steps=7", "steps": 5}), tmp_path)
    assert cfg.steps == 5  # a parameter set away from its default wins over a settings line
    inputs = {
        "sampler": SamplerSetting("euler", 9, None),
        "guidance": GuidanceSetting(3.5),
        "prompt": PromptSetting(("a red square", "a blue circle")),
    }
    cfg = build_config(spec, _call({"steps": 5}, inputs), tmp_path)
    assert (cfg.sampler, cfg.steps, cfg.guidance) == ("euler", 9, 3.5)
    assert cfg.prompts == ("a red square", "a blue circle")


def test_a_grid_for_a_command_without_one_and_a_bad_setting_name_the_node(tmp_path):
    spec = dict(command_specs(INSTALLED["image"].modality.app))[("sample",)]
    with pytest.raises(GraphError, match="node 'draw' input 'sampler': this command has no 'grid' setting"):
        build_config(spec, _call({}, {"sampler": SamplerSetting(None, None, "karras")}), tmp_path)
    with pytest.raises(GraphError, match=r"node 'draw'.*stepz") as info:
        build_config(spec, _call({"settings": "stepz=3"}), tmp_path)
    assert info.value.node == "draw"


TINY = {
    "format": "diffcore-workflow",
    "version": 1,
    "name": "tiny",
    "nodes": [
        {"id": "train", "type": "image.train", "params": {"train.steps": 2, "settings":
            "batch_size=16\nmodel.width=32\nmodel.depth=1\nmodel.heads=2\ntrain.warmup_steps=1"}},
        {"id": "sampler", "type": "sampler", "params": {"sampler": "ddim", "steps": 3}},
        {"id": "draw", "type": "image.sample", "params": {"num_samples": 4, "labels": [3]},
         "inputs": {"pipeline": ["train", "pipeline"], "sampler": ["sampler", "sampler"]}},
        {"id": "save", "type": "save.image", "params": {"folder": "out"}, "inputs": {"files": ["draw", "files"]}},
    ],
}  # fmt: skip


@pytest.mark.slow
def test_diffuse_run_trains_samples_saves_and_then_reuses_the_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wf.json").write_text(json.dumps(TINY))
    runner = CliRunner()
    args = ["run", "wf.json", "--device", "cpu", "--work-dir", "work", "--quiet"]
    first = runner.invoke(build_app(), args)
    assert first.exit_code == 0, first.output
    saved = sorted((tmp_path / "out").rglob("*.png"))
    names = sorted(p.name for p in saved)
    assert names == ["00000.png", "00001.png", "00002.png", "00003.png", "grid.png"]
    assert "4 nodes ran, 0 cached" in first.output
    before = {p: p.read_bytes() for p in saved}
    pipeline = next((tmp_path / "work" / "cache").glob("*/pipeline"))  # the train node's folder
    cli = runner.invoke(build_app(), ["image", "sample", "--pipeline", str(pipeline), "--num-samples", "4",
                                      "--label", "3", "--sampler", "ddim", "--steps", "3", "--device", "cpu",
                                      "--out", "by-cli", "--quiet"])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    by_cli = {
        p.relative_to(tmp_path / "by-cli"): p.read_bytes() for p in (tmp_path / "by-cli").rglob("*.png")
    }
    assert by_cli == {
        p.relative_to(tmp_path / "out"): b for p, b in before.items()
    }  # the command's own output
    for p in saved:
        p.unlink()
    second = runner.invoke(build_app(), args)
    assert second.exit_code == 0, second.output
    assert "1 nodes ran, 3 cached" in second.output  # only the save node (it always copies)
    assert {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*.png"))} == before


def test_diffuse_run_refuses_a_broken_graph_in_one_line(tmp_path):
    broken = json.loads(json.dumps(TINY))
    del broken["nodes"][2]["inputs"]["pipeline"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    result = CliRunner().invoke(
        build_app(), ["run", str(tmp_path / "broken.json"), "--work-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: node 'draw' (image.sample) input 'pipeline': missing; connect an output of type pipeline:image"
    )
    assert not (tmp_path / "cache").exists()


def test_the_readme_workflow_example_is_a_valid_workflow():
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```json\n(.*?)```", readme, re.S) if "diffcore-workflow" in b)
    assert validate(Workflow.from_dict(json.loads(block)), REGISTRY) == ["load", "sampler", "draw", "save"]


def test_list_nodes_shows_every_installed_type():
    result = CliRunner().invoke(build_app(), ["run", "--list-nodes"])
    assert result.exit_code == 0, result.output
    for name in ("image.sample", "audio.sample", "protein.sample", "sampler", "save.structure"):
        assert name in result.output


AUDIO_SETTINGS = """data.length=8
data.sample_rate=8000
data.clip_seconds=0.128
data.min_seconds=0.06
vae.channels=4
vae.channel_mults=[1, 2]
vae.strides=[2, 4]
vae.latent_dim=4
vae.fft_sizes=[128, 64]
model.width=32
model.depth=1
model.heads=2
model.patch_size=2
model.text_width=16
model.text_layers=1
model.text_heads=2
vae_steps=2
batch_size=4
train.ema_decay=null
train.checkpoint_every=null
train.tensorboard=false"""


@pytest.mark.slow
def test_an_audio_workflow_is_the_same_kind_of_file(tmp_path):
    """Train a tiny audio model, sample it with a prompt node and a guidance node, save the WAVs."""
    import soundfile as sf
    from diffcore.workflows import Executor

    wf = Workflow.from_dict({"nodes": [
        {"id": "train", "type": "audio.train", "params": {"train.steps": 2, "settings": AUDIO_SETTINGS}},
        {"id": "prompt", "type": "prompt", "params": {"text": "an organ plays C4\na plucked string plays E4"}},
        {"id": "cfg", "type": "guidance", "params": {"scale": 1.5}},
        {"id": "draw", "type": "audio.sample", "params": {"num_samples": 2, "steps": 2, "seconds_total": 0.1, "trim": True},
         "inputs": {"pipeline": ["train", "pipeline"], "prompt": ["prompt", "prompt"], "guidance": ["cfg", "guidance"]}},
        {"id": "save", "type": "save.audio", "params": {"folder": "wav"}, "inputs": {"files": ["draw", "files"]}},
    ]})  # fmt: skip
    result = Executor(default_registry(), tmp_path / "work", device="cpu", root=tmp_path, quiet=True).run(wf)
    saved = sorted(p.name for p in result.files)
    assert saved == ["sample_000.wav", "sample_001.wav"]
    data, rate = sf.read(str(tmp_path / "wav" / "sample_000.wav"))
    assert rate == 8000 and len(data) == 800
    captions = (result.outputs["draw"]["files"] / "captions.txt").read_text()
    assert "an organ plays C4" in captions and "a plucked string plays E4" in captions


def test_diffuse_run_refuses_an_unknown_device():
    result = CliRunner().invoke(build_app(), ["run", "wf.json", "--device", "tpu"])
    assert result.exit_code == 2 and "--device: expected auto, cpu or cuda, got 'tpu'" in result.output


def test_list_params_know_their_item_type_and_refuse_others():
    node = REGISTRY.get("image.sample")
    kinds = {p.name: (p.kind, p.item) for p in node.params}
    assert kinds["labels"] == ("list", "int") and kinds["prompts"] == ("list", "str")
    with pytest.raises(
        GraphError, match=r"node 'draw' param 'labels': expected a list of int, got \['three'\]"
    ):
        node.resolve_params("draw", {"labels": ["three"]})
