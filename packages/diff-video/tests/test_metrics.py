"""Metrics against known answers: real clips follow their captions, reversed and frozen ones do not; Frechet
distance of Gaussians in closed form; PSNR / SSIM / temporal consistency at their analytic values."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from diff_video.data.shapes import COLOURS, MovingShapes, ShapesConfig
from diff_video.metrics import frechet_distance, motion_adherence, psnr, ssim, temporal_consistency
from diff_video.metrics.frechet import FeatureNetConfig, VideoFeatureNet, features_frechet

SIMPLE = ShapesConfig(frames=8, height=16, width=16, num_objects=(1,), directions=4, shapes=("square", "circle"),
                      events=(), speeds=("steadily",), size=0.3, length=64)  # fmt: skip


@pytest.fixture(scope="module")
def real():
    return MovingShapes(SIMPLE).render(64)


def test_real_clips_follow_their_captions(real):
    clips, captions = real
    m = motion_adherence(clips, captions, directions=4)
    assert m["direction_adherence"] == 1.0 and m["colour_adherence"] == 1.0
    assert m["object_persistence"] == 1.0 and m["num_objects"] == 64
    assert m["shape_adherence"] >= 0.8  # 5-pixel circles are nearly squares; at 32 pixels see below


def test_reversed_frozen_and_recoloured_clips_fail_what_they_break(real):
    clips, captions = real
    assert motion_adherence(clips.flip(2), captions, directions=4)["direction_adherence"] == 0.0
    noise = torch.rand_like(clips) * 2 - 1
    assert motion_adherence(noise, captions, directions=4)["colour_adherence"] == 0.0
    frozen = clips[:, :, :1].expand_as(clips)
    assert motion_adherence(frozen, captions, directions=4)["direction_adherence"] == 0.0
    names = list(COLOURS)
    recoloured = []
    for caption in captions:  # "a <colour> ...": the next colour of the palette, absent from the clip
        words = caption.split()
        words[1] = names[(names.index(words[1]) + 1) % len(names)]
        recoloured.append(" ".join(words))
    wrong = motion_adherence(clips, recoloured, directions=4)
    assert wrong["colour_adherence"] == 0.0 and wrong["object_persistence"] == 0.0


def test_eight_directions_and_three_shape_kinds_are_told_apart_at_32_pixels():
    cfg = ShapesConfig(frames=8, height=32, width=32, num_objects=(1,), directions=8,
                       shapes=("square", "circle", "triangle"), events=(), speeds=("steadily",), size=0.3,
                       length=48)  # fmt: skip
    clips, captions = MovingShapes(cfg).render(48)
    m = motion_adherence(clips, captions, directions=8)
    assert m["direction_adherence"] == 1.0 and m["shape_adherence"] >= 0.95


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = np.diag(rng.uniform(0.5, 2, 4)), np.diag(rng.uniform(0.5, 2, 4))
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(np.diag(s1)) - np.sqrt(np.diag(s2))) ** 2).sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))  # a rotation of both leaves the distance unchanged
    assert frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T) == pytest.approx(expected, rel=1e-6)


def test_frechet_of_samples_approaches_the_distance_of_their_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g)
    b = torch.randn(20000, 3, generator=g) * 2 + torch.tensor([1.0, 0.0, 0.0])
    assert features_frechet(a, b) == pytest.approx(1.0 + 3 * (2 - 1) ** 2, rel=0.05)


def test_feature_net_gives_pooled_clip_and_frame_features(real):
    net = VideoFeatureNet(FeatureNetConfig()).eval()
    clips = real[0][:4]
    assert net.clip_features(clips).shape == (4, 64)
    assert net.frame_features(clips).shape == (4 * 8, 64)


def test_psnr_ssim_and_temporal_consistency_at_known_values():
    x = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    # an error of 0.2 in [-1, 1] is 0.1 in [0, 1]: MSE 0.01 -> 20 dB
    torch.testing.assert_close(psnr(x, x + 0.2), torch.full((2,), 20.0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    assert (ssim(x, torch.rand_like(x) * 2 - 1) < 0.2).all()
    still = x[:, :, :1].expand_as(x)
    torch.testing.assert_close(temporal_consistency(still), torch.ones(2))
    noise = torch.randn(2, 3, 16, 16, 16)
    assert temporal_consistency(noise).abs().max() < 0.1


def test_feature_net_labels_are_those_of_the_clips_it_renders():
    """train_feature_net renders ``data.render(batch, start)`` and labels ``_labels(data, range(start, ...))``: the
    labels must describe those very clips (the tracker reads the direction from the pixels)."""
    from diff_video.data.shapes import DIRECTIONS, SHAPES
    from diff_video.metrics.frechet import feature_net_data, feature_net_labels
    from diff_video.metrics.motion import _velocity, nearest_direction, track_objects

    for directions in (4, 8):
        data = feature_net_data(replace(SIMPLE, directions=directions), 400)
        start = 300  # a training batch, past the 256 held-out clips
        clips, captions = data.render(32, start)
        labels = feature_net_labels(data, range(start, start + 32))
        names = data.config.direction_names
        for clip, caption, d, c, s in zip(
            clips, captions, labels["direction"], labels["colour"], labels["shape"]
        ):
            track = track_objects(clip, caption)[0]
            vx, vy, _ = _velocity(track)
            assert nearest_direction(vx, vy, names) == list(DIRECTIONS)[int(d)]
            assert caption.split()[1] == list(COLOURS)[int(c)]
            assert caption.split()[2] == list(SHAPES)[int(s)]
