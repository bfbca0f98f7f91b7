"""The generated shapes data set: determinism, captions vs metadata, hold-out, control maps."""

import numpy as np
import pytest
import torch
from diff_image.data.shapes import (
    PALETTE,
    SHAPES,
    ShapesConfig,
    ShapesDataset,
    generate_sample,
    relation_between,
    shape_mask,
)
from diff_image.metrics.adherence import parse_caption


def test_items_are_pure_functions_of_seed_and_index():
    a = ShapesDataset(100, seed=7)
    b = ShapesDataset(100, seed=7)
    # Reading in a different order gives the same items.
    for i in [5, 99, 0, 42]:
        assert torch.equal(a[i]["image"], b[i]["image"])
        assert a[i]["caption"] == b[i]["caption"]
    other = ShapesDataset(100, seed=8)
    assert sum(a.sample(i).caption != other.sample(i).caption for i in range(20)) >= 10


def test_colours_are_exact_and_objects_do_not_overlap():
    ds = ShapesDataset(200, seed=1)
    allowed = {tuple(c) for c in PALETTE.values()} | {(0, 0, 0)}
    for i in range(200):
        s = ds.sample(i)
        assert {tuple(p) for p in s.image.reshape(-1, 3)} <= allowed  # no anti-aliasing
        assert 1 <= len(s.objects) <= 3
        assert len({o.colour for o in s.objects}) == len(s.objects)
        for k, o in enumerate(s.objects):
            ys, xs = np.nonzero(s.object_ids == k + 1)
            assert (s.image[ys, xs] == PALETTE[o.colour]).all()
            assert o.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert o.centre == pytest.approx((xs.mean() + 0.5, ys.mean() + 0.5))
        boxes = [o.bbox for o in s.objects]
        for p, q in [(p, q) for i, p in enumerate(boxes) for q in boxes[i + 1 :]]:
            assert p[2] <= q[0] or q[2] <= p[0] or p[3] <= q[1] or q[3] <= p[1]


def test_captions_match_metadata():
    ds = ShapesDataset(300, seed=3, config=ShapesConfig(image_size=48))
    counts = set()
    for i in range(300):
        s = ds.sample(i)
        spec = parse_caption(s.caption)
        counts.add(len(s.objects))
        assert spec.objects == tuple((o.colour, o.shape) for o in s.objects)
        assert len(spec.relations) == max(0, len(s.objects) - 1)
        for r in spec.relations:
            subject, obj = s.objects[r.subject], s.objects[r.object]
            assert r.relation == relation_between(subject.centre, obj.centre)
            dx, dy = subject.centre[0] - obj.centre[0], subject.centre[1] - obj.centre[1]
            expected = {"to the left of": dx < 0, "to the right of": dx > 0, "above": dy < 0, "below": dy > 0}
            assert expected[r.relation]
    assert counts == {1, 2, 3}


def test_concept_holdout_splits():
    cfg = ShapesConfig(holdout=("red circle", "cyan"))
    train = ShapesDataset(300, seed=0, split="train", config=cfg)
    held = ShapesDataset(100, seed=0, split="holdout", config=cfg)
    for i in range(300):
        for o in train.sample(i).objects:
            assert o.colour != "cyan" and (o.colour, o.shape) != ("red", "circle")
    for i in range(100):
        first = held.sample(i).objects[0]
        assert first.colour == "cyan" or (first.colour, first.shape) == ("red", "circle")
    with pytest.raises(ValueError, match="holdout"):
        generate_sample(ShapesConfig(), 0, 0, split="holdout")
    with pytest.raises(ValueError, match="concept"):
        ShapesConfig(holdout=("purple blob",))


def test_control_maps_agree_with_the_render():
    ds = ShapesDataset(50, seed=4, controls=("edges", "segmentation", "boxes"))
    for i in range(50):
        item, s = ds[i], ds.sample(i)
        assert item["edges"].shape == (1, 32, 32) and item["boxes"].shape == (len(SHAPES), 32, 32)
        seg = item["segmentation"]
        assert torch.equal(seg > 0, torch.from_numpy(s.object_ids > 0))
        for k, o in enumerate(s.objects):
            assert (seg[torch.from_numpy(s.object_ids == k + 1)] == 1 + SHAPES.index(o.shape)).all()
            x0, y0, x1, y1 = o.bbox
            assert item["boxes"][SHAPES.index(o.shape), y0:y1, x0:x1].all()
        edges = item["edges"][0].bool()
        assert (edges <= (seg > 0)).all() and edges.any()
        # Every edge pixel has a 4-neighbour of another object id; interior pixels do not.
        ids = np.pad(s.object_ids, 1, mode="edge")
        diff = np.zeros_like(s.object_ids, dtype=bool)
        for sl in [
            (slice(0, -2), slice(1, -1)),
            (slice(2, None), slice(1, -1)),
            (slice(1, -1), slice(0, -2)),
        ]:
            diff |= ids[sl] != s.object_ids
        diff |= ids[1:-1, 2:] != s.object_ids
        assert torch.equal(edges, torch.from_numpy(diff & (s.object_ids > 0)))
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 32, 32) and len(batch["caption"]) == 4


@pytest.mark.parametrize("size", [6, 7, 12, 19])
def test_shape_masks(size):
    area = {s: int(shape_mask(s, size).sum()) for s in SHAPES}
    assert area["square"] == size * size
    assert abs(area["circle"] / size**2 - np.pi / 4) < 0.15
    assert abs(area["diamond"] / size**2 - 0.5) < 0.2 and abs(area["triangle"] / size**2 - 0.5) < 0.2
    tri = shape_mask("triangle", size)
    assert tri[-1].all() and tri[0].sum() <= 2  # base at the bottom, apex at the top


def test_other_image_sizes_and_config_errors():
    s = ShapesDataset(5, seed=0, config=ShapesConfig(image_size=64))[3]
    assert s["image"].shape == (3, 64, 64) and s["image"].min() >= -1 and s["image"].max() <= 1
    with pytest.raises(ValueError, match="image_size"):
        ShapesConfig(image_size=8)
    with pytest.raises(ValueError, match="background"):
        ShapesConfig(background=(250, 0, 0))
    with pytest.raises(ValueError, match="controls"):
        ShapesDataset(5, controls=("depth",))
