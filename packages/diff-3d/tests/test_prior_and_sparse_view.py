"""The 2D priors' data (classes, pairs of views with their cameras, relative poses), their save / load, the
weighted fit, sparse-view cameras, and ``diffuse 3d sds`` end to end on a tiny prior."""

import json
import math

import pytest
import torch
from diff_3d.cameras import orbit_cameras
from diff_3d.cli import app
from diff_3d.config import (
    FitSettings,
    PriorConfig,
    PriorNetwork,
    PriorViews,
    SparseViewSettings,
    ViewPriorConfig,
)
from diff_3d.data.primitives import Primitive, surface_gaussians
from diff_3d.fit import fit_gaussians
from diff_3d.prior import (
    Prior2D,
    ViewPrior,
    camera_angles,
    prior_classes,
    relative_pose,
    render_class_views,
    render_view_pairs,
    train_prior,
    train_view_prior,
)
from diff_3d.render.sdf_trace import render_sdf
from diff_3d.sparse_view import nearest_view, sparse_cameras
from diffcore.training import TrainConfig
from typer.testing import CliRunner


def _train(tmp, steps=3):
    return TrainConfig(steps=steps, lr=1e-3, warmup_steps=1, ema_decay=0.9, checkpoint_every=None, tensorboard=False,
                       output_dir=str(tmp), device="cpu", progress_bar=False)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior")
    cfg = PriorConfig(kinds=("sphere", "cube"), colors=("red", "blue"), views_per_class=2,
                      views=PriorViews(resolution=16), network=PriorNetwork(width=16, heads=2), batch_size=8,
                      train=_train(out))  # fmt: skip
    train_prior(cfg)
    return out / "prior"


def test_classes_are_kind_major_and_prompts_name_them(tiny_prior):
    classes = prior_classes(("sphere", "cube"), ("red", "blue"))
    assert [(c.kind, c.color) for c in classes] == [("sphere", "red"), ("sphere", "blue"), ("cube", "red"),
                                                      ("cube", "blue")]  # fmt: skip
    prior = Prior2D.from_pretrained(tiny_prior)
    assert prior.classes == classes and prior.views.resolution == 16
    assert prior.label("A blue cube, please") == 3
    with pytest.raises(ValueError, match="prompt"):
        prior.label("a green torus")
    with pytest.raises(ValueError, match="kinds"):
        prior_classes(("pyramid",))


def test_class_renders_are_the_true_renders_of_their_class():
    views = PriorViews(resolution=16)
    classes = prior_classes(("cone",), ("green", "purple"))
    images, labels = render_class_views(classes, 3, views, torch.Generator().manual_seed(0))
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    # the mean colour of the foreground follows the class colour: green dominates in class 0, not in class 1
    fg = images.float().mean((2, 3))
    assert bool((fg[:3, 1] > fg[:3, 2]).all()) and bool((fg[3:, 2] > fg[3:, 1]).all())


def test_relative_pose_of_orbit_cameras():
    cams = orbit_cameras(4, elevation=30.0)
    el, az = camera_angles(cams[1])
    assert el == pytest.approx(math.radians(30), abs=1e-5) and az == pytest.approx(math.pi / 2, abs=1e-5)
    pose = relative_pose(cams[0], cams[1])  # 90 degrees further in azimuth, same elevation
    expected = torch.tensor([math.radians(30), 0.0, 1.0, 0.0, 1.0, 0.0])
    torch.testing.assert_close(pose, expected, atol=1e-5, rtol=0)


def test_view_pairs_are_two_views_of_one_object_with_their_cameras_and_pose():
    cfg = ViewPriorConfig(kinds=("torus", "capsule"), objects=3, views_per_object=4, pairs=20,
                          views=PriorViews(resolution=16))  # fmt: skip
    pairs = render_view_pairs(cfg, torch.Generator().manual_seed(0))
    assert pairs.images.shape == (12, 3, 16, 16) and len(pairs.cameras) == 12
    ref, tgt = pairs.reference, pairs.target
    assert bool((ref // 4 == tgt // 4).all()) and bool((ref != tgt).all())
    for k in range(20):
        a, b = int(ref[k]), int(tgt[k])
        torch.testing.assert_close(pairs.pose[k], relative_pose(pairs.cameras[a], pairs.cameras[b]))
        obj = pairs.objects[b // 4]
        again = (render_sdf(obj, pairs.cameras[b]).rgb.permute(2, 0, 1) * 255).round().to(torch.uint8)
        assert torch.equal(pairs.images[b], again)
    with pytest.raises(ValueError, match="views_per_object"):
        ViewPriorConfig(views_per_object=1)


def test_view_prior_trains_saves_loads_and_generates_views(tmp_path):
    cfg = ViewPriorConfig(kinds=("sphere",), objects=2, views_per_object=3, pairs=8, views=PriorViews(resolution=16),
                          network=PriorNetwork(width=16, heads=2), batch_size=4, train=_train(tmp_path))  # fmt: skip
    train_view_prior(cfg)
    prior = ViewPrior.from_pretrained(tmp_path / "view_prior")
    cams = orbit_cameras(3, width=16, height=16)
    views = prior.generate(
        torch.rand(16, 16, 3), cams[0], cams[1:], steps=2, generator=torch.Generator().manual_seed(0)
    )
    assert views.shape == (2, 16, 16, 3) and float(views.min()) >= 0 and float(views.max()) <= 1
    with pytest.raises(ValueError, match="reference"):
        prior.generate(torch.rand(8, 8, 3), cams[0], cams[1:])


def test_fit_with_zero_weight_on_a_view_ignores_it():
    # two copies of the same camera with different images: weight 0 on the second leaves the first one's fit
    sphere = Primitive("sphere", "red")
    cam = orbit_cameras(1, width=16, height=16)[0]
    good = render_sdf(sphere, cam).rgb
    images = torch.stack([good, torch.zeros_like(good)])
    init = surface_gaussians(sphere, 64, torch.Generator().manual_seed(0))
    settings = FitSettings(steps=5, views_per_step=2)
    weighted = fit_gaussians(
        images, [cam, cam], init, settings, progress=False, view_weights=torch.tensor([1.0, 0.0])
    )
    alone = fit_gaussians(images[:1], [cam], init, settings, progress=False)
    torch.testing.assert_close(weighted.gaussians.means, alone.gaussians.means)
    with pytest.raises(ValueError, match="view_weights"):
        fit_gaussians(images, [cam, cam], init, settings, progress=False, view_weights=torch.tensor([1.0]))


def test_sparse_view_cameras_are_disjoint_and_nearest_inputs_are_by_azimuth():
    s = SparseViewSettings(input_views=3, pseudo_views=6, held_out_views=6)
    inputs, pseudo, held = sparse_cameras(s, 2.6, 16)
    az = lambda cams: [round(math.degrees(camera_angles(c)[1]) % 360, 3) for c in cams]  # noqa: E731
    assert az(inputs) == [0.0, 120.0, 240.0]
    assert az(pseudo) == [30.0, 90.0, 150.0, 210.0, 270.0, 330.0]
    assert not set(az(held)) & (set(az(inputs)) | set(az(pseudo)))
    assert [nearest_view(c, inputs) for c in pseudo] == [0, 1, 1, 2, 2, 0]


def test_sds_command_writes_the_object_its_renders_and_scores(tiny_prior, tmp_path):
    out = tmp_path / "sds"
    result = CliRunner().invoke(app, ["sds", "--prompt", "a red sphere", "--prior", str(tiny_prior), "--steps",
                                      "3", "--out", str(out), "--device", "cpu", "--quiet",
                                      "--set", "sds.num_gaussians=64", "--set", "turntable_frames=4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("object.ply", "turntable.gif", "views.png", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["iou"] <= 1 and metrics["label"] == 0
    bad = CliRunner().invoke(app, ["sds", "--prompt", "a green torus", "--prior", str(tiny_prior), "--out",
                                   str(tmp_path / "bad"), "--device", "cpu"])  # fmt: skip
    assert bad.exit_code != 0 and "prompt" in bad.output
