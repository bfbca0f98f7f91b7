"""Caption adherence read from pixels: ground truth passes, corrupted scenes fail for the right reason."""

import numpy as np
import pytest
import torch
from diff_image.data.shapes import PALETTE, ShapesConfig, ShapesDataset, shape_mask
from diff_image.metrics.adherence import (
    AdherenceConfig,
    caption_adherence,
    check_image,
    classify_shape,
    parse_caption,
)


@pytest.mark.parametrize("size", [32, 48])
def test_ground_truth_renders_pass(size):
    ds = ShapesDataset(300, seed=11, config=ShapesConfig(image_size=size))
    samples = [ds.sample(i) for i in range(300)]
    report = caption_adherence(np.stack([s.image for s in samples]), [s.caption for s in samples])
    assert report.overall >= 0.99
    assert report.one_object >= 0.99 and report.multi_object >= 0.99
    assert report.num_one_object + report.num_multi_object == 300
    assert report.num_one_object > 0 and report.num_multi_object > 0


def test_tensor_input_and_mild_noise_pass():
    ds = ShapesDataset(60, seed=5)
    images = np.stack([ds.sample(i).image for i in range(60)]).astype(np.float64)
    noisy = images + np.random.default_rng(0).normal(0, 10, images.shape)
    tensor = torch.from_numpy(noisy.clip(0, 255)).permute(0, 3, 1, 2).float() / 127.5 - 1
    report = caption_adherence(tensor, [ds.sample(i).caption for i in range(60)])
    assert report.overall >= 0.95


@pytest.mark.parametrize("size", range(6, 25))
@pytest.mark.parametrize("shape", ["circle", "square", "triangle", "diamond"])
def test_classify_shape_on_renders(shape, size):
    assert classify_shape(shape_mask(shape, size))[0] == shape
    if shape == "triangle":  # any orientation is a triangle
        assert classify_shape(shape_mask(shape, size)[::-1].T)[0] == "triangle"


def _multi(ds, n, want=None):
    for i in range(len(ds)):
        s = ds.sample(i)
        if len(s.objects) == n and (want is None or want(s)):
            return s
    raise AssertionError("no such sample")


def test_swapped_colour_fails():
    s = _multi(ShapesDataset(200, seed=2), 2)
    image = s.image.copy()
    unused = next(c for c in PALETTE if c not in {o.colour for o in s.objects})
    image[s.object_ids == 1] = PALETTE[unused]
    r = check_image(image, s.caption)
    assert not r.passed and any(f"found 0 {s.objects[0].colour}" in x for x in r.reasons)
    assert check_image(s.image, s.caption).passed


def test_wrong_relation_fails():
    ds = ShapesDataset(200, seed=3)
    horizontal = _multi(ds, 2, lambda s: "left" in s.caption or "right" in s.caption)
    vertical = _multi(ds, 2, lambda s: "above" in s.caption or "below" in s.caption)
    for s, flipped in [(horizontal, horizontal.image[:, ::-1]), (vertical, vertical.image[::-1])]:
        r = check_image(np.ascontiguousarray(flipped), s.caption)
        assert not r.passed and any(" is not " in x for x in r.reasons), r.reasons


def test_missing_and_extra_objects_fail():
    s = _multi(ShapesDataset(200, seed=4), 3)
    image = s.image.copy()
    image[s.object_ids == 3] = 0
    r = check_image(image, s.caption)
    assert not r.passed and any("found 0" in x for x in r.reasons)
    one = parse_caption(s.caption).objects[0]
    solo = f"a {one[0]} {one[1]}"
    r = check_image(s.image, solo)
    assert not r.passed and any("extra" in x for x in r.reasons)
    assert check_image(s.image, solo, AdherenceConfig(allow_extra=True)).passed


def test_wrong_shape_fails():
    s = _multi(ShapesDataset(200, seed=6), 1, lambda s: s.objects[0].shape != "square")
    x0, y0, x1, y1 = s.objects[0].bbox
    image = s.image.copy()
    image[y0:y1, x0:x1] = PALETTE[s.objects[0].colour]  # fill the bbox: a square now
    r = check_image(image, s.caption)
    assert not r.passed and any("looks like a square" in x for x in r.reasons)


def test_parse_caption_grammar_and_errors():
    spec = parse_caption(
        "a red circle above a blue square, and an orange diamond to the right of the blue square"
    )
    assert spec.objects == (("red", "circle"), ("blue", "square"), ("orange", "diamond"))
    assert [(r.subject, r.relation, r.object) for r in spec.relations] == [
        (0, "above", 1),
        (2, "to the right of", 1),
    ]
    with pytest.raises(ValueError, match="caption"):
        parse_caption("a purple cat on a mat")
    with pytest.raises(ValueError, match="captions"):
        caption_adherence(np.zeros((2, 32, 32, 3), np.uint8), ["a red circle"])


def test_plain_background_and_subset_palette():
    cfg = ShapesConfig(colours=("red", "blue", "white"), background=(90, 90, 90))
    ds = ShapesDataset(100, seed=9, config=cfg)
    samples = [ds.sample(i) for i in range(100)]
    images = np.stack([s.image for s in samples])
    captions = [s.caption for s in samples]
    assert caption_adherence(images, captions, AdherenceConfig.from_shapes(cfg)).overall >= 0.99
    # Default settings (black background) also pass: the grey is farther than the tolerance from
    # every palette colour, so its pixels are read as unknown and ignored.
    assert caption_adherence(images, captions).overall >= 0.99
    with pytest.raises(ValueError, match="RGB"):
        caption_adherence(torch.zeros(1, 1, 8, 8), ["a red circle"])


def test_executor_gives_the_same_report():
    """Checking chunks on an executor changes nothing in the report (order, rates, counts)."""
    from concurrent.futures import ThreadPoolExecutor

    ds = ShapesDataset(50, seed=5)
    images = np.stack([ds.sample(i).image for i in range(50)])
    # Right captions for even images, another scene's for odd ones: a mix of verdicts.
    captions = [ds.sample(i if i % 2 == 0 else (i + 1) % 50).caption for i in range(50)]
    serial = caption_adherence(images, captions)
    with ThreadPoolExecutor(3) as pool:
        parallel = caption_adherence(images, captions, executor=pool, chunk_size=7)
    assert 0 < serial.overall < 1
    assert [r.passed for r in parallel.results] == [r.passed for r in serial.results]
    assert parallel.to_dict() == serial.to_dict()
    with pytest.raises(ValueError, match="chunk_size"):
        caption_adherence(images, captions, chunk_size=0)
