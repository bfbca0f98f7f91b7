"""Spatial control: maps from the shapes data, ControlNets from the base (identity at initialisation), several
controls combined, training only the ControlNets, saving with the pipeline."""

import copy

import pytest
import torch
from diff_image.config import ImageModelConfig
from diff_image.data import ShapesConfig, ShapesDataset
from diff_image.models import build_backbone
from diff_image.pipeline import CONTROL_CHANNELS, ImagePipeline, control_maps, train_controlnets


def test_control_maps_are_binary_with_the_right_channels():
    data = ShapesDataset(3, seed=0, controls=("edges", "segmentation", "boxes"))
    m = control_maps(data[0], ["edges", "segmentation", "boxes"])
    assert m.shape == (sum(CONTROL_CHANNELS.values()), 32, 32)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    seg = m[1:6]
    assert torch.equal(seg.sum(0), torch.ones(32, 32))  # one-hot: exactly one class per pixel
    with pytest.raises(ValueError, match="kinds"):
        control_maps(data[0], ["depth"])


@pytest.mark.parametrize("backbone", ["unet", "dit"])
def test_two_controls_train_and_save(tmp_path, backbone):
    torch.manual_seed(0)
    cfg = ImageModelConfig(backbone=backbone, conditioning="none", width=16, depth=1, heads=2, patch_size=4,
                           channel_mult=(1, 2), attention_levels=())  # fmt: skip
    net = build_backbone(cfg, (3, 16, 16))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    pipe = ImagePipeline(net, "vp-cosine", "eps", sample_shape=(3, 16, 16))
    base = copy.deepcopy(net.state_dict())
    data = ShapesDataset(2, seed=0, config=ShapesConfig(image_size=16), controls=("edges", "boxes"))
    maps = torch.stack([control_maps(data[i], ["edges", "boxes"]) for i in range(2)])
    x, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    plain = net(x, t)
    train_controlnets(
        pipe, ["edges", "boxes"], steps=2, output_dir=tmp_path / "run", batch_size=4, lr=1e-2, shapes_length=8
    )
    for k, v in pipe.model.state_dict().items():
        assert torch.equal(v, base[k]), k  # the base stays frozen
    controlled = pipe.network
    assert not torch.allclose(controlled(x, t, control_maps=maps), plain)  # trained zero-layers now act
    torch.testing.assert_close(controlled(x, t), plain)  # no maps: the base alone
    pipe.save_pretrained(tmp_path / "p")
    back = ImagePipeline.from_pretrained(tmp_path / "p")
    assert list(back.controlnets) == ["edges", "boxes"]
    torch.testing.assert_close(back.network(x, t, control_maps=maps), controlled(x, t, control_maps=maps))
    g = torch.Generator().manual_seed(0)
    out = back.sample(2, steps=2, cond={"control_maps": maps}, generator=g)
    assert out.shape == (2, 3, 16, 16)
