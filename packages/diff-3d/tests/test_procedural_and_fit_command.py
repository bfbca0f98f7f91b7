"""The procedural set (seeded, cached by its settings), multi-view folders, and ``diffuse 3d fit``."""

import json

import pytest
import torch
from diff_3d.cameras import orbit_cameras, write_transforms
from diff_3d.cli import app
from diff_3d.config import FitSettings, ProceduralSettings
from diff_3d.data.primitives import KINDS, Primitive
from diff_3d.data.procedural import procedural_set, procedural_shapes
from diff_3d.data.real import load_transforms_sets, read_view_sets
from diff_3d.render.sdf_trace import render_sdf_views
from typer.testing import CliRunner

TINY = ProceduralSettings(
    num_gaussians=64, views=4, resolution=16, fit=FitSettings(steps=3, views_per_step=1)
)


def test_shapes_are_seeded_and_cycle_through_the_kinds():
    a, b = procedural_shapes(8, seed=3), procedural_shapes(8, seed=3)
    assert a == b and [s.kind for s in a] == [KINDS[i % 6] for i in range(8)]
    assert procedural_shapes(8, seed=4) != a
    mixed = procedural_shapes(30, seed=0, compositions=0.5)
    assert 5 < sum(s.label >= 6 for s in mixed) < 25


def test_procedural_set_is_cached_by_its_settings(tmp_path):
    first = procedural_set(2, seed=0, settings=TINY, cache_dir=tmp_path, progress=False)
    assert len(first) == 2 and first[0].gaussians.num == 64 and first[0].caption == first[0].shape.caption
    (entry,) = tmp_path.iterdir()
    again = procedural_set(2, seed=0, settings=TINY, cache_dir=tmp_path, progress=False)
    assert torch.equal(again[1].gaussians.to_vector(), first[1].gaussians.to_vector())
    assert again[1].shape == first[1].shape and again[1].psnr == pytest.approx(first[1].psnr)
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["objects"][0]["caption"] == first[0].caption
    other = ProceduralSettings(num_gaussians=32, views=4, resolution=16, fit=TINY.fit)
    procedural_set(2, seed=0, settings=other, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.iterdir())) == 2


def test_a_folder_of_multiview_sets_is_read_and_fitted_and_a_bad_set_is_reported(tmp_path):
    cams = orbit_cameras(3, width=16, height=16)
    images, _ = render_sdf_views(Primitive("cube", "blue"), cams)
    write_transforms(tmp_path / "cube", images, cams)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "transforms.json").write_text("{not json")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable multi-view set\(s\): broken"):
        sets, skipped = read_view_sets(tmp_path)
    assert [p.name for p, _ in skipped] == ["broken"]
    assert [s.name for s in sets] == ["cube"] and sets[0].images.shape == (3, 16, 16, 3)
    with pytest.warns(UserWarning):
        fitted, _ = load_transforms_sets(
            tmp_path, num_gaussians=50, settings=FitSettings(steps=2), resolution=16, progress=False
        )
    assert fitted[0].gaussians.num == 50 and fitted[0].psnr > 0


def test_fit_command_writes_ply_renders_and_metrics(tmp_path):
    out = tmp_path / "fit"
    args = ["fit", "--out", str(out), "--device", "cpu", "--num-objects", "2", "--steps", "3",
            "--set", "procedural.num_gaussians=64", "--set", "procedural.views=4",
            "--set", "procedural.resolution=16"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_objects"] == 2 and len(metrics["psnr"]) == 2
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".ply", ".ply", ".png"]


def test_fit_command_on_a_missing_folder_fails_with_one_line(tmp_path):
    result = CliRunner().invoke(
        app, ["fit", "--out", str(tmp_path / "o"), "--device", "cpu", "--data", str(tmp_path / "nope")]
    )
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: data_path:") and "\n" not in result.output.strip()
