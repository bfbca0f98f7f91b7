"""Cameras: OpenCV projection, the Blender / NeRF-synthetic convention both ways, transforms.json round trip."""

import math

import pytest
import torch
from diff_3d.cameras import Camera, look_at, orbit_cameras, random_cameras, read_transforms, write_transforms


def test_look_at_puts_the_target_at_the_principal_point_and_world_up_above_it():
    cam = Camera(look_at((1.0, 2.0, 3.0)), 50.0, 50.0, 32.0, 24.0, 64, 48)
    torch.testing.assert_close(cam.project(torch.zeros(3)), torch.tensor([32.0, 24.0]))
    assert cam.world_to_camera(torch.zeros(3))[2].item() == pytest.approx(math.sqrt(14), rel=1e-6)
    above = cam.project(torch.tensor([0.0, 0.1, 0.0]))
    assert above[1] < 24.0  # y up in the world is towards row 0 in the image
    torch.testing.assert_close(cam.position, torch.tensor([1.0, 2.0, 3.0]))


def test_a_blender_camera_on_the_z_axis_sees_the_origin_in_front():
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[2, 3] = 4.0  # OpenGL camera at (0, 0, 4) looking down -z, y up
    cam = Camera.from_c2w_opengl(c2w, camera_angle_x=0.5, width=40, height=30)
    torch.testing.assert_close(cam.world_to_camera(torch.zeros(3)), torch.tensor([0.0, 0.0, 4.0]))
    # world +y is image up (smaller row), world +x is image right
    p = cam.project(torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0]]))
    assert p[0, 0] > 20 and p[1, 1] < 15
    assert cam.fx == pytest.approx(20 / math.tan(0.25))
    assert cam.fov_x == pytest.approx(0.5)


def test_opengl_and_opencv_conversions_are_inverse():
    for cam in random_cameras(5, generator=torch.Generator().manual_seed(0)):
        back = Camera.from_c2w_opengl(cam.c2w_opengl(), cam.fov_x, cam.width, cam.height)
        torch.testing.assert_close(back.viewmat, cam.viewmat, atol=1e-6, rtol=0)
        assert back.fx == pytest.approx(cam.fx)


def test_rays_pass_through_pixel_centres():
    cam = orbit_cameras(1, width=20, height=10)[0]
    origins, dirs = cam.rays()
    pix = cam.project(origins + 2.0 * dirs)
    j, i = torch.meshgrid(torch.arange(20.0) + 0.5, torch.arange(10.0) + 0.5, indexing="xy")
    torch.testing.assert_close(pix, torch.stack([j, i], -1), atol=1e-4, rtol=0)


def test_orbit_and_random_cameras_sit_where_asked():
    cams = orbit_cameras(8, radius=2.5, elevation=30.0)
    pos = torch.stack([c.position for c in cams])
    torch.testing.assert_close(pos.norm(dim=1), torch.full((8,), 2.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        pos[:, 1], torch.full((8,), 2.5 * math.sin(math.radians(30))), atol=1e-5, rtol=0
    )
    rnd = random_cameras(200, 3.0, torch.Generator().manual_seed(1), min_elevation=0.0, max_elevation=60.0)
    el = torch.stack([torch.asin(c.position[1] / 3.0) for c in rnd]).rad2deg()
    assert el.min() >= -1e-3 and el.max() <= 60.001
    with pytest.raises(ValueError, match="elevation: expected degrees in"):
        orbit_cameras(2, elevation=95.0)


def test_camera_refuses_bad_arguments_naming_them():
    with pytest.raises(ValueError, match=r"viewmat: expected a \(4, 4\)"):
        Camera(torch.eye(3), 1.0, 1.0, 0.0, 0.0, 4, 4)
    with pytest.raises(ValueError, match="width: expected a positive integer"):
        Camera(torch.eye(4), 1.0, 1.0, 0.0, 0.0, 0, 4)


def test_transforms_round_trip(tmp_path):
    cams = orbit_cameras(3, width=12, height=8)
    images = torch.rand(3, 8, 12, 3, generator=torch.Generator().manual_seed(0))
    write_transforms(tmp_path, images, cams)
    back, alphas, back_cams = read_transforms(tmp_path)
    torch.testing.assert_close(back, (images * 255).round() / 255, atol=1e-6, rtol=0)
    assert alphas.eq(1).all()
    for a, b in zip(cams, back_cams):
        torch.testing.assert_close(b.viewmat, a.viewmat, atol=1e-5, rtol=0)
        assert (b.fx, b.fy, b.cx, b.cy, b.width, b.height) == pytest.approx((a.fx, a.fy, a.cx, a.cy, 12, 8))


def test_rgba_is_composited_over_the_background_and_resized_with_scaled_intrinsics(tmp_path):
    import json

    from PIL import Image

    (tmp_path / "train").mkdir()
    rgba = torch.zeros(8, 8, 4, dtype=torch.uint8)
    rgba[..., 0] = 255
    rgba[:, :4, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba.numpy()).save(tmp_path / "train" / "r_0.png")
    c2w = torch.eye(4)
    c2w[2, 3] = 3.0
    meta = {"camera_angle_x": 0.7, "frames": [{"file_path": "./train/r_0", "transform_matrix": c2w.tolist()}]}
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    images, alphas, cams = read_transforms(tmp_path, split="train", background=(0.0, 0.0, 1.0), size=(4, 4))
    assert images.shape == (1, 4, 4, 3)
    torch.testing.assert_close(images[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(images[0, 0, 3], torch.tensor([0.0, 0.0, 1.0]))
    assert alphas[0, :, :2].eq(1).all() and alphas[0, :, 2:].eq(0).all()
    assert cams[0].fx == pytest.approx(0.5 * 4 / math.tan(0.35))
    with pytest.raises(FileNotFoundError, match=r"folder: no transforms\.json"):
        read_transforms(tmp_path / "train")
