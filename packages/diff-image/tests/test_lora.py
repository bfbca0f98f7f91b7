"""The LoRA path on a tiny model: only the adapter trains, the adapter file is small, adapters load with
weights, and the concept metric reads the concept from the pixels."""

import copy

import pytest
import torch
from diff_image.config import ImageLoraConfig, ImageModelConfig
from diff_image.data import ShapesConfig, ShapesDataset
from diff_image.lora import (
    adapter_parameter_count,
    concept_images,
    concept_rate,
    finetune_lora,
    load_adapters,
)
from diff_image.models import build_backbone
from diff_image.pipeline import ImagePipeline
from diffcore.nn import add_lora


def tiny_pipe() -> ImagePipeline:
    torch.manual_seed(0)
    net = build_backbone(ImageModelConfig(width=32, depth=2, heads=2), (3, 16, 16), num_classes=4)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return ImagePipeline(net, "vp-cosine", "v", num_classes=4)


def test_finetune_changes_only_the_adapter_and_saves_it_small(tmp_path):
    pipe = tiny_pipe()
    base = copy.deepcopy(pipe)
    images, _ = concept_images("red", 4, image_size=16)
    cfg = ImageLoraConfig(
        concept="red", label=2, rank=2, alpha=2, steps=3, batch_size=4, lr=1e-2, device="cpu"
    )
    finetune_lora(pipe, images, cfg, tmp_path)
    base_state = base.model.state_dict()
    for name, value in pipe.model.state_dict().items():
        if "lora_" not in name:
            key = name.replace(".base_layer", "")
            assert torch.equal(value, base_state[key]), name
    lora_b = [v for k, v in pipe.model.state_dict().items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at 0; training moved it
    adapter = tmp_path / "adapter" / "adapter_model.safetensors"
    model_bytes = sum(v.numel() * v.element_size() for v in base_state.values())
    assert adapter.stat().st_size < 0.2 * model_bytes
    assert 0 < adapter_parameter_count(pipe) < 0.2 * sum(v.numel() for v in base_state.values())

    # load into a fresh copy of the base: weight 1 reproduces the fine-tuned model, weight 0 the base
    x, t, y = torch.randn(2, 3, 16, 16), torch.rand(2), torch.tensor([2, 2])
    tuned = pipe.model(x, t, y=y)
    fresh = copy.deepcopy(base)
    load_adapters(fresh, [tmp_path / "adapter"], weights=[1.0])
    torch.testing.assert_close(fresh.model(x, t, y=y), tuned)
    fresh0 = copy.deepcopy(base)
    load_adapters(fresh0, [tmp_path / "adapter", tmp_path / "adapter"], weights=[0.0, 0.0])
    torch.testing.assert_close(fresh0.model(x, t, y=y), base.model(x, t, y=y))


def test_concept_rate_reads_the_concept():
    red, _ = concept_images("red", 6, image_size=32)
    assert concept_rate(red, "red") == 1.0
    no_red = ShapesDataset(6, seed=1, split="train", config=ShapesConfig(holdout=("red",)))
    others = torch.stack([no_red[i]["image"] for i in range(6)])
    assert concept_rate(others, "red") == 0.0
    circles, _ = concept_images("circle", 6, image_size=32)
    assert concept_rate(circles, "circle") >= 5 / 6  # the shape is read from geometry


def test_a_pipeline_with_adapters_refuses_a_whole_save(tmp_path):
    pipe = tiny_pipe()
    add_lora(pipe.model, rank=2)
    with pytest.raises(ValueError, match="save_adapter"):
        pipe.save_pretrained(tmp_path / "p")
