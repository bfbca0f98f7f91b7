"""ControlNet for the text-to-image MMDiT and the class-conditional DiT, the control metric (foreground IoU),
control-map pictures and the with/without-control evaluation."""

import copy

import pytest
import torch
from diff_image.config import ImageModelConfig
from diff_image.data import SHAPES
from diff_image.metrics.control import foreground_iou, foreground_mask
from diff_image.models import TextEncoder, build_backbone
from diff_image.pipeline import ImagePipeline
from diff_image.pipeline.control import (
    CONTROL_CHANNELS,
    control_examples,
    evaluate_control,
    render_control,
    train_controlnets,
)
from diffcore.nn import MMDiTControlNet


def randomize(net: torch.nn.Module, std: float = 0.05) -> None:
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=std)


def text_pipeline() -> ImagePipeline:
    words = sorted(
        {w for cap in control_examples(["edges"], 8, 16).captions for w in cap.split()} | set(SHAPES)
    )
    encoder = TextEncoder.from_scratch(words, width=16, layers=1, heads=2, max_length=24)
    cfg = ImageModelConfig(backbone="mmdit", conditioning="text", width=16, depth=2, heads=2, patch_size=4)
    net = build_backbone(cfg, (3, 16, 16), context_dim=16, pooled_dim=16)
    randomize(net)
    return ImagePipeline(net, "rectified-flow", "velocity", text_encoder=encoder, train_text_encoder=False)


def test_foreground_iou_matches_hand_count():
    images = -torch.ones(2, 3, 8, 8)  # black background
    images[0, 0, 0:4, 0:4] = 1.0  # red 4x4 square
    images[1, :, 2:3, 2:3] = 0.1  # grey pixel, RGB distance ~ 243 from black: foreground
    target = torch.zeros(2, 8, 8, dtype=torch.bool)
    target[0, 0:4, 2:6] = True  # overlap 4x2 = 8, union 16 + 16 - 8 = 24
    assert foreground_mask(images).sum().item() == 16 + 1
    iou = foreground_iou(images, target)
    torch.testing.assert_close(iou, torch.tensor([8 / 24, 0.0], dtype=torch.float64))
    assert foreground_iou(-torch.ones(1, 3, 4, 4), torch.zeros(1, 4, 4)).item() == 1.0  # both empty
    with pytest.raises(ValueError, match="target"):
        foreground_iou(images, target[:, :4])


def test_render_control_colours_the_maps():
    ex = control_examples(["edges", "segmentation", "boxes"], 3, 16, seed=3)
    assert ex.maps.shape == (3, sum(CONTROL_CHANNELS.values()), 16, 16)
    assert torch.equal(ex.objects, ex.maps[:, 1 + 0] == 0)  # object pixels = not segmentation background
    pic = render_control(ex.maps, ex.kinds)
    assert pic.shape == (3, 3, 16, 16) and pic.min() >= -1 and pic.max() <= 1
    edges = ex.maps[:, 0].bool()
    assert torch.all(pic.permute(0, 2, 3, 1)[edges] == 1.0)  # outlines are white
    assert torch.all(pic.permute(0, 2, 3, 1)[~ex.objects & (ex.maps[:, 6:].sum(1) == 0)] == -1.0)


def test_mmdit_text_pipeline_trains_controlnets_and_round_trips(tmp_path):
    pipe = text_pipeline()
    base = copy.deepcopy(pipe.model.state_dict())
    text = copy.deepcopy(pipe.text_encoder.state_dict())
    ex = control_examples(["segmentation"], 2, 16)
    ids = pipe.text_encoder.tokenize(ex.captions)
    x, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    plain = pipe.network(x, t, input_ids=ids)
    train_controlnets(pipe, ["segmentation"], steps=2, output_dir=tmp_path / "run", batch_size=4, lr=1e-2,
                      shapes_length=8, num_blocks=1, cond_dropout=0.5)  # fmt: skip
    assert isinstance(pipe.controlnets["segmentation"], MMDiTControlNet)
    assert len(pipe.controlnets["segmentation"].blocks) == 1
    for k, v in pipe.model.state_dict().items():
        assert torch.equal(v, base[k]), k  # frozen base
    for k, v in pipe.text_encoder.state_dict().items():
        assert torch.equal(v, text[k]), k  # frozen text encoder
    net = pipe.network
    steered = net(x, t, input_ids=ids, control_maps=ex.maps)
    assert not torch.allclose(steered, plain)
    torch.testing.assert_close(net(x, t, input_ids=ids), plain)
    pipe.save_pretrained(tmp_path / "p")
    back = ImagePipeline.from_pretrained(tmp_path / "p")
    torch.testing.assert_close(back.network(x, t, input_ids=ids, control_maps=ex.maps), steered)


def test_evaluate_control_zero_scale_equals_no_control(tmp_path):
    pipe = text_pipeline()
    train_controlnets(pipe, ["edges", "boxes"], steps=1, output_dir=tmp_path / "run", batch_size=4, lr=1e-2,
                      shapes_length=4, num_blocks=1)  # fmt: skip
    metrics, ex, controlled, plain = evaluate_control(pipe, 3, steps=2, scales=[0.0, 0.0])
    assert controlled.shape == plain.shape == (3, 3, 16, 16)
    assert torch.equal(controlled, plain)  # same noise, same captions, residuals scaled to zero
    assert metrics["iou_gain"] == 0.0 and 0.0 <= metrics["iou_control"] <= 1.0
    metrics, _, controlled, _ = evaluate_control(pipe, 3, steps=2, guidance=2.0, examples=ex)
    assert not torch.equal(controlled, plain)
    assert metrics["scales"] == [1.0, 1.0] and metrics["kinds"] == ["edges", "boxes"]
    with pytest.raises(ValueError, match="scales"):
        evaluate_control(pipe, 3, steps=2, scales=[1.0])


def test_class_conditional_dit_controlnet_sees_the_null_class(tmp_path):
    cfg = ImageModelConfig(backbone="dit", conditioning="class", width=16, depth=2, heads=2, patch_size=4)
    net = build_backbone(cfg, (3, 16, 16), num_classes=3)
    randomize(net)
    pipe = ImagePipeline(net, "vp-cosine", "eps", num_classes=3)
    base = copy.deepcopy(net.state_dict())
    seen = []
    net.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs.get("y")), with_kwargs=True)
    train_controlnets(pipe, ["boxes"], steps=1, output_dir=tmp_path / "run", batch_size=2, shapes_length=2)
    assert all(torch.equal(y, torch.full((2,), 3)) for y in seen if y is not None) and seen
    assert all(torch.equal(v, base[k]) for k, v in net.state_dict().items())
    metrics, *_ = evaluate_control(pipe, 2, steps=2)
    assert set(metrics) >= {"iou_control", "iou_no_control", "iou_gain"}
