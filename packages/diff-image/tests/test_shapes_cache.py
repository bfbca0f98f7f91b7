"""The pre-rendered shapes set and the device-resident batches that training reads from it."""

from __future__ import annotations

import numpy as np
import torch
from diff_image.data.shapes import ShapesConfig, generate_sample
from diff_image.data.shapes_render import render_shapes
from diff_image.models import TextEncoder, caption_vocabulary
from diff_image.pipeline.datasets import DeviceBatches, device_batch_loader, tokenize_unique


def test_render_matches_item_by_item_generation_in_workers() -> None:
    cfg = ShapesConfig(image_size=16, holdout=("red",))
    rendered = render_shapes(10, seed=3, split="train", config=cfg, workers=2, chunk=3)
    assert rendered.images.shape == (10, 3, 16, 16) and rendered.images.dtype == torch.uint8
    for i in range(10):
        s = generate_sample(cfg, 3, i, "train")
        assert rendered.captions[i] == s.caption
        np.testing.assert_array_equal(rendered.images[i].permute(1, 2, 0).numpy(), s.image)


def test_render_does_not_depend_on_chunking() -> None:
    cfg = ShapesConfig(image_size=16)
    a = render_shapes(7, seed=1, config=cfg, workers=0, chunk=2)
    b = render_shapes(7, seed=1, config=cfg, workers=1, chunk=7)
    assert a.captions == b.captions and torch.equal(a.images, b.images)


def test_tokenize_unique_equals_tokenizing_every_caption() -> None:
    caps = render_shapes(40, seed=0, config=ShapesConfig(image_size=16, max_objects=1), workers=0).captions
    assert len(set(caps)) < len(caps)  # one-object captions repeat: the dedup path is exercised
    enc = TextEncoder.from_scratch(caption_vocabulary(caps), width=16, layers=1, heads=2)
    assert torch.equal(tokenize_unique(caps, enc.tokenize, chunk=5), enc.tokenize(caps))


def test_device_batches_cover_an_epoch_with_matching_rows() -> None:
    n, batch = 24, 8
    images = torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    ids = torch.arange(n).reshape(n, 1).expand(n, 5).contiguous()
    loader = device_batch_loader(DeviceBatches(images, ids, "cpu"), batch)
    seen = []
    for b in loader:
        assert b["x"].shape == (batch, 3, 2, 2) and b["x"].dtype == torch.float32
        row = b["input_ids"][:, 0]
        assert torch.equal(b["input_ids"], row[:, None].expand(-1, 5))
        # pixel value k encodes index k: images and token ids come from the same rows
        torch.testing.assert_close(
            b["x"], (row.float() / 127.5 - 1.0).reshape(-1, 1, 1, 1).expand(-1, 3, 2, 2)
        )
        seen += row.tolist()
    assert sorted(seen) == list(range(n)) and seen != list(range(n))  # a shuffled permutation


def test_device_batches_reject_float_images() -> None:
    try:
        DeviceBatches(torch.zeros(2, 3, 4, 4), None, "cpu")
    except ValueError as err:
        assert "images" in str(err)
    else:
        raise AssertionError("float images were accepted")
