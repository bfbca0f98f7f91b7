"""diff-image's building-block workflow nodes (diff_image.workflow_nodes) and live sampling previews.

A tiny latent, text-conditioned MMDiT pipeline (random weights) with a LoRA adapter and a ControlNet saved
beside it: ``load_lora -> encode_prompt -> sample_latents -> decode`` writes the very PNG bytes ``image.sample``
writes for the same settings and seed (and the adapter changes them), with the text encoder run once in
``encode_prompt``; a ControlNet loaded by its node gives the samples of a pipeline built with it, to 1e-6, at
strength 1 and 0.5 (strength 0: those without control); ill-typed links are refused; and a run's ``preview``
events carry the decoded x0 estimate, the last one equal to the output images.
"""

from __future__ import annotations

import base64
import copy
import io

import numpy as np
import pytest
import torch
from diff_image.autoencoder import AutoencoderKL
from diff_image.config import AutoencoderConfig, ImageModelConfig
from diff_image.io import save_images
from diff_image.lora import save_adapter
from diff_image.models import TextEncoder, build_backbone
from diff_image.pipeline import ImagePipeline
from diff_image.pipeline.control import control_maps_from_images, make_controlnet
from diffcore.nn import add_lora
from diffcore.rng import make_generator
from diffcore.workflows import Executor, GraphError, Workflow, default_registry, validate
from PIL import Image

REGISTRY = default_registry()
WORDS = ["a", "red", "blue", "circle", "square", "triangle", "green"]
PROMPTS = ["a red circle", "a blue square"]


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    torch.manual_seed(0)
    encoder = TextEncoder.from_scratch(WORDS, width=16, layers=1, heads=2, max_length=8)
    cfg = ImageModelConfig(backbone="mmdit", conditioning="text", width=16, depth=2, heads=2, patch_size=2)
    net = build_backbone(cfg, (4, 4, 4), context_dim=16, pooled_dim=16)
    _randomize(net, 1)
    ae = AutoencoderKL(AutoencoderConfig(in_channels=3, latent_channels=4, downsample=4, base_channels=8))
    _randomize(ae, 2, std=0.1)
    pipe = ImagePipeline(net, "rectified-flow", "velocity", autoencoder=ae, text_encoder=encoder,
                         train_text_encoder=False)  # fmt: skip
    pipe.save_pretrained(root / "pipeline")
    tuned = copy.deepcopy(pipe)
    add_lora(tuned.model, rank=2, adapter_name="concept")
    with torch.no_grad():
        for name, p in tuned.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    save_adapter(tuned, root / "adapter")
    control = make_controlnet(pipe.model, "edges", hint_downscale=4, num_blocks=1)
    _randomize(control, 3, std=0.2)
    control.save_pretrained(root / "controlnet_edges")
    picture = torch.full((1, 3, 16, 16), -1.0)
    picture[:, 0, 4:12, 4:12] = 1.0  # a red square on black
    save_images(picture, root / "control")
    return root, pipe, control


def _chain(**extra_nodes) -> list[dict]:
    return [
        {"id": "load", "type": "image.load_pipeline", "params": {"path": "pipeline"}},
        {"id": "text", "type": "image.encode_prompt", "params": {"num_samples": 3, "prompts": PROMPTS},
         "inputs": {"pipeline": ["load", "pipeline"]}},
        {"id": "latents", "type": "image.sample_latents", "params": {"sampler": "euler", "steps": 3,
         "guidance": 2.5, "seed": 7}, "inputs": {"pipeline": ["load", "pipeline"],
                                                 "conditioning": ["text", "conditioning"]}},
        {"id": "decode", "type": "image.decode", "inputs": {"pipeline": ["load", "pipeline"],
                                                           "latents": ["latents", "latents"]}},
    ]  # fmt: skip


def _pngs(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def _run(root, nodes, events=None):
    ex = Executor(
        REGISTRY, root / "work", device="cpu", root=root, quiet=True, preview_every=2, use_cache=False
    )
    return ex.run(Workflow.from_dict({"nodes": nodes}), events.append if events is not None else None)


def test_the_chained_blocks_write_the_bytes_image_sample_writes(folders):
    root, _, _ = folders
    sample = [
        {"id": "load", "type": "image.load_pipeline", "params": {"path": "pipeline"}},
        {"id": "draw", "type": "image.sample", "params": {"num_samples": 3, "prompts": PROMPTS, "sampler": "euler",
         "steps": 3, "guidance": 2.5, "seed": 7}, "inputs": {"pipeline": ["load", "pipeline"]}},
    ]  # fmt: skip
    by_sample = _pngs(_run(root, sample).outputs["draw"]["files"])
    assert sorted(by_sample) == ["grid.png", "images/00000.png", "images/00001.png", "images/00002.png"]
    blocks = _run(root, _chain())
    assert _pngs(blocks.outputs["decode"]["files"]) == by_sample
    conditioning = blocks.outputs["text"]["conditioning"]  # the text encoder ran once, in encode_prompt
    assert sorted(conditioning.cond) == ["context", "context_mask", "pooled"]
    pipe = blocks.outputs["load"]["pipeline"]
    ids = pipe.text_encoder.tokenize([*PROMPTS, PROMPTS[0]])  # three samples: the prompts cycle
    torch.testing.assert_close(conditioning.cond["context"], pipe.text_encoder(ids)[0], rtol=0, atol=0)

    # with a LoRA: the lora node into image.sample, and image.load_lora into the chain
    sample.insert(1, {"id": "lora", "type": "lora", "params": {"path": "adapter", "weight": 0.8}})
    sample[2]["inputs"]["lora"] = ["lora", "lora"]
    lora_sample = _pngs(_run(root, sample).outputs["draw"]["files"])
    chain = _chain()
    chain.insert(1, {"id": "lora", "type": "image.load_lora", "params": {"path": "adapter", "weight": 0.8},
                     "inputs": {"pipeline": ["load", "pipeline"]}})  # fmt: skip
    for node in chain[2:]:
        node["inputs"]["pipeline"] = ["lora", "pipeline"]
    result = _run(root, chain)
    assert _pngs(result.outputs["decode"]["files"]) == lora_sample
    assert lora_sample["grid.png"] != by_sample["grid.png"]  # the adapter was applied
    assert not hasattr(result.outputs["load"]["pipeline"].model, "peft_config")  # the loaded one is untouched


def test_a_controlnet_loaded_by_its_node_drives_sampling(folders):
    root, pipe, control = folders
    chain = _chain()
    chain.insert(1, {"id": "cn", "type": "image.load_controlnet", "params": {"path": "controlnet_edges"},
                     "inputs": {"pipeline": ["load", "pipeline"]}})  # fmt: skip
    for node in chain[2:]:
        node["inputs"]["pipeline"] = ["cn", "pipeline"]
    chain[2]["params"]["control_image"] = "control/00000.png"
    latents = _run(root, chain).outputs["latents"]["latents"]

    with_cn = ImagePipeline(pipe.model, pipe.schedule, pipe.prediction, autoencoder=pipe.autoencoder,
                            text_encoder=pipe.text_encoder, controlnets={"edges": control})  # fmt: skip
    picture = torch.from_numpy(np.asarray(Image.open(root / "control" / "00000.png").convert("RGB")))
    maps = control_maps_from_images(picture.permute(2, 0, 1)[None].float() / 127.5 - 1, ["edges"])
    assert maps.sum() > 0  # the square's outline
    cond, uncond = with_cn.condition(3, None, PROMPTS)
    cond["control_maps"] = maps.expand(3, -1, -1, -1)
    expected = with_cn.sample_latents(3, cond, uncond, "euler", 3, 2.5, make_generator(7, "cpu"))
    torch.testing.assert_close(latents.latents, expected, rtol=0, atol=1e-6)
    plain = _run(root, _chain()).outputs["latents"]["latents"]
    assert (latents.latents - plain.latents).abs().max() > 1e-3  # the ControlNet changed the samples

    half, off = [copy.deepcopy(chain) for _ in range(2)]
    half[1]["params"]["strength"], off[1]["params"]["strength"] = 0.5, 0.0
    with_cn.control_scales = {"edges": 0.5}
    expected = with_cn.sample_latents(3, cond, uncond, "euler", 3, 2.5, make_generator(7, "cpu"))
    torch.testing.assert_close(
        _run(root, half).outputs["latents"]["latents"].latents, expected, rtol=0, atol=1e-6
    )
    assert (expected - latents.latents).abs().max() > 1e-4
    torch.testing.assert_close(
        _run(root, off).outputs["latents"]["latents"].latents, plain.latents, rtol=0, atol=1e-6
    )

    chain[2]["params"]["control_image"] = ""
    with pytest.raises(Exception, match="node 'text' 'control_image': the pipeline has ControlNets"):
        _run(root, chain)


def test_block_ports_are_typed():
    wf = Workflow.from_dict({"nodes": [
        {"id": "load", "type": "image.load_pipeline", "params": {"path": "p"}},
        {"id": "text", "type": "image.encode_prompt", "inputs": {"pipeline": ["load", "pipeline"]}},
        {"id": "decode", "type": "image.decode",
         "inputs": {"pipeline": ["load", "pipeline"], "latents": ["text", "conditioning"]}},
    ]})  # fmt: skip
    with pytest.raises(GraphError, match="node 'decode' input 'latents': expects latents:image, got "
                       "conditioning:image from node 'text' output 'conditioning'"):  # fmt: skip
        validate(wf, REGISTRY)
    audio = Workflow.from_dict({"nodes": [
        {"id": "load", "type": "audio.load_pipeline", "params": {"path": "p"}},
        {"id": "lora", "type": "image.load_lora", "params": {"path": "a"}, "inputs": {"pipeline": ["load", "pipeline"]}},
    ]})  # fmt: skip
    with pytest.raises(
        GraphError, match="node 'lora' input 'pipeline': expects pipeline:image, got pipeline:audio"
    ):
        validate(audio, REGISTRY)


def _decode_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_previews_come_every_few_steps_and_the_last_is_the_decoded_result(folders):
    root, _, _ = folders
    chain = _chain()
    chain[2]["params"]["steps"] = 5
    events: list[dict] = []
    result = _run(root, chain, events)
    previews = [e for e in events if e["event"] == "preview"]
    assert [(e["node"], e["n"], e["total"]) for e in previews] == [
        ("latents", 2, 5),
        ("latents", 4, 5),
        ("latents", 5, 5),
    ]
    done = next(i for i, e in enumerate(events) if e["event"] == "node_done" and e["node"] == "latents")
    assert events.index(previews[-1]) < done  # during sampling, not after
    strip = _decode_url(previews[-1]["image"])
    assert strip.shape == (16, 3 * 16, 3)  # three 16 x 16 samples side by side (already <= 64 px)
    files = result.outputs["decode"]["files"] / "images"
    final = np.concatenate(
        [np.asarray(Image.open(files / f"{i:05d}.png").convert("RGB")) for i in range(3)], axis=1
    )
    # at the last step the x0 estimate is the sample, decoded by the same autoencoder: equal up to rounding
    assert np.abs(strip.astype(int) - final.astype(int)).max() <= 1
    assert not np.array_equal(_decode_url(previews[0]["image"]), strip)  # an earlier estimate differs


def test_the_readme_blocks_example_is_a_valid_workflow():
    import json
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```json\n(.*?)```", readme, re.S) if '"name": "blocks"' in b)
    order = validate(Workflow.from_dict(json.loads(block)), REGISTRY)
    assert order == ["load", "lora", "text", "latents", "decode"]


def test_without_preview_every_no_previews_are_made(folders):
    root, _, _ = folders
    events: list[dict] = []
    Executor(REGISTRY, root / "work-plain", device="cpu", root=root, quiet=True).run(
        Workflow.from_dict({"nodes": _chain()}), events.append
    )
    assert [e for e in events if e["event"] == "preview"] == []
    assert any(e["event"] == "progress" and e["node"] == "latents" for e in events)
