"""The moving-shapes set: deterministic by seed, captions that say what the clip shows, metadata that matches it."""

import numpy as np
import pytest
import torch
from diff_video.data.shapes import (
    DIRECTIONS,
    MovingShapes,
    ShapesConfig,
    clip_spec,
    parse_caption,
    render_clip,
    shapes_vocabulary,
)
from diff_video.models.text import split_words

ONE_SQUARE = dict(num_objects=(1,), shapes=("square",), events=(), speeds=("steadily",))


def test_same_seed_and_index_give_the_same_clip_in_any_order():
    a = MovingShapes(ShapesConfig(length=10, seed=3))
    b = MovingShapes(ShapesConfig(length=10, seed=3))
    assert torch.equal(a[7]["x"], b[7]["x"]) and a[7]["caption"] == b[7]["caption"]
    c = MovingShapes(ShapesConfig(length=10, seed=4))
    assert not all(torch.equal(a[i]["x"], c[i]["x"]) for i in range(5))


def test_clips_have_the_requested_size_and_range():
    clip = MovingShapes(ShapesConfig(frames=5, height=24, width=40, length=3))[0]["x"]
    assert clip.shape == (3, 5, 24, 40) and clip.dtype == torch.float32
    assert clip.min() == -1.0 and clip.max() == 1.0


def test_the_caption_names_the_objects_the_metadata_describes():
    cfg = ShapesConfig(length=50)
    for i in range(50):
        spec = clip_spec(cfg, i)
        parsed = parse_caption(spec.caption)
        assert [(p.colour, p.direction, p.speed) for p in parsed] == [
            (o.colour, o.direction, o.speed) for o in spec.objects
        ]
        assert set(split_words(spec.caption)) <= set(shapes_vocabulary(cfg))


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_a_square_moves_the_way_its_caption_says_and_the_metadata_centroid_is_the_pixel_centroid(direction):
    cfg = ShapesConfig(frames=6, height=32, width=32, directions=8, length=400, **ONE_SQUARE)
    index = next(i for i in range(400) if clip_spec(cfg, i).objects[0].direction == direction)
    clip, meta = render_clip(clip_spec(cfg, index))
    ys, xs = np.mgrid[0:32, 0:32] + 0.5
    for f in (0, 5):
        mask = (clip[:, f] > 0).any(0).numpy()
        pixel = np.array([xs[mask].mean(), ys[mask].mean()])
        np.testing.assert_allclose(pixel, meta["centroids"][f, 0], atol=0.51)
    move = meta["centroids"][-1, 0] - meta["centroids"][0, 0]
    unit = np.array(DIRECTIONS[direction])
    assert move @ unit > 0.9 * np.linalg.norm(move) and np.linalg.norm(move) > 5  # 0.4 * 32 pixels along it


def test_a_bouncing_object_stays_inside_and_an_appearing_one_is_hidden_for_the_first_third():
    cfg = ShapesConfig(frames=18, length=300, num_objects=(1,), events=("bounce", "appear"), event_prob=1.0)
    for i in range(40):
        spec = clip_spec(cfg, i)
        clip, meta = render_clip(spec)
        obj = spec.objects[0]
        if obj.event == "bounce":
            c = meta["centroids"][:, 0]
            assert (c >= obj.size / 2 - 1e-4).all() and (c <= 32 - obj.size / 2 + 1e-4).all()
            assert "bounces" in spec.caption
        else:
            assert (meta["visible"][:6, 0] == 0).all() and (meta["visible"][6:, 0] > 0.9).all()
            assert (clip[:, :6] == -1).all()


def test_parse_caption_names_a_caption_it_cannot_read():
    with pytest.raises(ValueError, match="'a purple square moves left'"):
        parse_caption("a purple square moves left")


@pytest.mark.parametrize(
    "field, value, message",
    [("directions", 6, "directions"), ("shapes", ("hexagon",), "shapes"), ("num_objects", (3,), "num_objects"),
     ("size", 0.9, "size"), ("frames", 0, "frames")],
)  # fmt: skip
def test_a_bad_setting_is_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        ShapesConfig(**{field: value})
