"""Editing effects: inpainting keeps the known region exactly and changes the rest; colorization keeps the
channel mean; SDEdit interpolates between keeping and ignoring the input; DDIM inversion round-trips."""

import pytest
import torch
from diff_image import editing
from diff_image.config import ImageModelConfig
from diff_image.models import build_backbone
from diff_image.pipeline import ImagePipeline


def rgb_pipe(num_classes: int = 0) -> ImagePipeline:
    torch.manual_seed(0)
    cond = "class" if num_classes else "none"
    net = build_backbone(
        ImageModelConfig(conditioning=cond, width=32, depth=1, heads=2), (3, 8, 8), num_classes
    )
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return ImagePipeline(net, "vp-cosine", "eps", num_classes=num_classes)


def images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 1.6 - 0.8


def test_inpaint_changes_only_the_hole():
    pipe, x = rgb_pipe(), images()
    mask = 1 - editing.box_mask((8, 8), (2, 2, 6, 6))
    out = editing.inpaint(pipe, x, mask, steps=5, generator=torch.Generator().manual_seed(0))
    keep = mask.bool().expand_as(x)
    assert torch.equal(out[keep], x[keep])
    assert (out[~keep] - x[~keep]).abs().mean() > 0.05


def test_outpaint_keeps_the_box_and_repaint_runs():
    pipe, x = rgb_pipe(num_classes=4), images()
    out = editing.outpaint(pipe, x, (3, 3, 5, 5), steps=4, guidance=2.0, y=[1, 2], resample=2,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(out[..., 3:5, 3:5], x[..., 3:5, 3:5])
    assert (out[..., :3, :] - x[..., :3, :]).abs().mean() > 0.05


def test_colorize_keeps_the_grey_level():
    pipe, x = rgb_pipe(), images()
    gray = x.mean(1, keepdim=True)
    out = editing.colorize(pipe, gray, steps=5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.mean(1, keepdim=True), gray, atol=1e-5, rtol=0)
    assert out.std(1).mean() > 0.01  # chroma was generated


def test_sdedit_strength_controls_the_distance_to_the_input():
    pipe, x = rgb_pipe(), images(4)
    same = editing.sdedit(pipe, x, 0.0)
    assert torch.equal(same, x)
    dist = []
    for s in (0.05, 0.95):
        out = editing.sdedit(pipe, x, s, steps=5, generator=torch.Generator().manual_seed(0))
        dist.append(float((out - x).abs().mean()))
    assert dist[0] < 0.1 < dist[1]


def test_inversion_round_trip_and_interpolation_endpoints():
    pipe, x = rgb_pipe(), images()
    z = editing.invert(pipe, x, steps=20, fixed_point_iters=3)
    assert z.shape == x.shape
    frames = editing.interpolate(pipe, x[0], x[1], num=4, steps=20, fixed_point_iters=3)
    assert frames.shape == (4, 3, 8, 8)
    torch.testing.assert_close(frames[0], x[0], atol=2e-2, rtol=0)
    torch.testing.assert_close(frames[-1], x[1], atol=2e-2, rtol=0)
    assert (frames[1] - x[0]).abs().mean() > 0.02 and (frames[1] - x[1]).abs().mean() > 0.02


def test_errors_name_the_parameter():
    pipe = rgb_pipe()
    with pytest.raises(ValueError, match="images"):
        editing.sdedit(pipe, torch.zeros(1, 1, 8, 8), 0.5)
    with pytest.raises(ValueError, match="mask"):
        editing.inpaint(pipe, images(), torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="box"):
        editing.box_mask((8, 8), (5, 5, 2, 2))
