"""diffcore.previews: when sampling hands out previews (only inside ``previewing``, every N steps and at the last),
through the named decoder, shrunk by area means, and written as a PNG that an independent reader (PIL) reads back."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from diffcore import previews, sample
from diffcore.paths import Denoiser

PICTURE = torch.linspace(-1, 1, 3 * 8 * 8).reshape(1, 3, 8, 8)


def _x0_net(x, t, **cond):  # an x0-predicting network whose estimate is always PICTURE
    return PICTURE.expand(x.shape[0], -1, -1, -1)


def _draw(steps: int, n: int = 2) -> None:
    sample(Denoiser(_x0_net, "rectified-flow", "x0"), torch.randn(n, 3, 8, 8), "euler", steps)


def test_no_listener_no_hook_and_the_cadence_every_n_and_last():
    assert previews.hook("sample euler", 7) is None
    seen = []
    with previews.previewing(lambda desc, n, total, images: seen.append((desc, n, total, images)), every=3):
        _draw(7)
    assert [(d, n, t) for d, n, t, _ in seen] == [
        ("sample euler", 3, 7),
        ("sample euler", 6, 7),
        ("sample euler", 7, 7),
    ]
    assert previews.hook("sample euler", 7) is None  # closed again


def test_the_decoder_and_the_size_apply_and_only_the_first_images_are_shown():
    seen = []
    with (
        previews.previewing(lambda *a: seen.append(a[3]), every=100, size=4, max_images=3),
        previews.preview_decoder(lambda x: -x),
    ):
        _draw(2, n=5)
    (images,) = seen  # the last step only
    expected = (-PICTURE).reshape(1, 3, 4, 2, 4, 2).mean(dim=(3, 5))  # 2 x 2 area means
    assert images.shape == (3, 3, 4, 4)
    torch.testing.assert_close(images, expected.expand(3, -1, -1, -1))


def test_an_x0_that_is_not_a_picture_gives_no_preview():
    seen = []
    net = lambda x, t, **c: torch.zeros_like(x)  # noqa: E731
    with previews.previewing(lambda *a: seen.append(a), every=1):
        sample(Denoiser(net, "rectified-flow", "x0"), torch.randn(4, 2), "euler", 3)
    assert seen == []


def test_the_png_reads_back_with_pil():
    Image = pytest.importorskip("PIL.Image")
    images = torch.stack([PICTURE[0], -PICTURE[0]])
    url = previews.png_data_url(images)
    pixels = np.array(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    want = ((images + 1) * 127.5).round().to(torch.uint8)
    assert pixels.shape == (8, 16, 3)
    assert np.array_equal(pixels, torch.cat(list(want), dim=2).permute(1, 2, 0).numpy())
    grey = previews.png_data_url(torch.zeros(1, 1, 2, 2))
    assert (
        np.array(Image.open(io.BytesIO(base64.b64decode(grey.split(",", 1)[1])))).tolist()
        == [[[128] * 3] * 2] * 2
    )


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="every, size, max_images: expected >= 1, got 0, 64, 4"):  # noqa: SIM117
        with previews.previewing(lambda *a: None, every=0):
            pass
    with pytest.raises(ValueError, match=r"images: expected \(k, 1 or 3, h, w\), got \(2, 2, 4, 4\)"):
        previews.png_data_url(torch.zeros(2, 2, 4, 4))
