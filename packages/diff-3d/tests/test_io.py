"""PLY files in the layout of the original 3DGS code, folders with bad files, images, GIF and MP4."""

import warnings

import pytest
import torch
from diff_3d.gaussians import Gaussians, sh_num_coeffs
from diff_3d.io import (
    read_ply,
    read_ply_folder,
    write_gif,
    write_grid,
    write_mp4,
    write_ply,
    write_png,
    write_turntable,
)
from PIL import Image

THREE_DGS_ORDER = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"],
    ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"],
)


def gaussians(n: int = 10, degree: int = 0, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians(
        torch.randn(n, 3, generator=g),
        torch.randn(n, 4, generator=g),
        torch.randn(n, 3, generator=g),
        torch.randn(n, generator=g),
        torch.randn(n, sh_num_coeffs(degree), 3, generator=g),
    )


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ply_round_trip_is_exact_in_float32(tmp_path, degree):
    gs = gaussians(10, degree)
    write_ply(gs, tmp_path / "a.ply")
    back = read_ply(tmp_path / "a.ply")
    assert back.sh_degree == degree
    for name, t in gs.parameters().items():
        assert torch.equal(getattr(back, name), t), name


def test_ply_properties_follow_the_3dgs_order_with_channel_major_rest(tmp_path):
    from plyfile import PlyData

    gs = gaussians(4, degree=2)
    write_ply(gs, tmp_path / "a.ply")
    v = PlyData.read(str(tmp_path / "a.ply"))["vertex"]
    names = [p.name for p in v.properties]
    k = 9
    assert names == THREE_DGS_ORDER[0] + [f"f_rest_{i}" for i in range(3 * (k - 1))] + THREE_DGS_ORDER[1]
    for c in range(3):
        for j in range(1, k):
            assert torch.equal(torch.as_tensor(v[f"f_rest_{c * (k - 1) + j - 1}"]), gs.sh[:, j, c])
    assert torch.equal(torch.as_tensor(v["rot_0"]), gs.quats[:, 0])  # w first
    assert torch.equal(torch.as_tensor(v["f_dc_1"]), gs.sh[:, 0, 1])


def test_reading_a_non_3dgs_ply_names_the_file(tmp_path):
    (tmp_path / "bad.ply").write_bytes(b"not a ply at all")
    with pytest.raises(ValueError, match=r"bad\.ply: not a readable PLY"):
        read_ply(tmp_path / "bad.ply")


def test_folder_reads_good_files_and_reports_the_bad_ones(tmp_path):
    write_ply(gaussians(3, seed=1), tmp_path / "b.ply")
    write_ply(gaussians(5, seed=2), tmp_path / "a.ply")
    (tmp_path / "c.ply").write_bytes(b"ply\nformat ascii 1.0\nelement face 0\nend_header\n")
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable \.ply file\(s\): c\.ply"):
        found = read_ply_folder(tmp_path)
    assert [p.name for p in found.paths] == ["a.ply", "b.ply"]
    assert [g.num for g in found.gaussians] == [5, 3]
    assert [p.name for p, _ in found.skipped] == ["c.ply"] and "no 'vertex' element" in found.skipped[0][1]


def test_a_clean_folder_gives_no_warning(tmp_path):
    write_ply(gaussians(3), tmp_path / "a.ply")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_ply_folder(tmp_path).gaussians) == 1


def test_png_grid_and_gif_have_the_expected_sizes_and_leave_no_temporary_files(tmp_path):
    img = torch.rand(6, 5, 3)
    write_png(tmp_path / "one.png", img, scale=2)
    assert Image.open(tmp_path / "one.png").size == (10, 12)
    write_grid(tmp_path / "grid.png", [[img, img, img], [img]], pad=1)
    assert Image.open(tmp_path / "grid.png").size == (1 + 3 * 6, 1 + 2 * 7)
    write_gif(tmp_path / "t.gif", torch.rand(4, 6, 5, 3), fps=10)
    with Image.open(tmp_path / "t.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (5, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "one.png", "t.gif"]
    with pytest.raises(ValueError, match=r"image: expected an \(H, W, 3\)"):
        write_png(tmp_path / "x.png", torch.rand(3, 6, 5))


def test_turntable_writes_gif_and_mp4_when_pyav_is_there(tmp_path):
    av = pytest.importorskip("av")
    frames = torch.rand(3, 7, 9, 3)
    written = write_turntable(tmp_path / "spin", frames)
    assert [p.name for p in written] == ["spin.gif", "spin.mp4"]
    with av.open(str(tmp_path / "spin.mp4")) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 3 and (decoded[0].width, decoded[0].height) == (10, 8)
    write_mp4(tmp_path / "odd.mp4", frames)
