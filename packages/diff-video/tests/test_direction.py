"""Why samples ignored the caption's direction: the data and the model's representation, checked separately.

The data's per-direction mean clip already moves the direction's way (starts are drawn so the whole path stays in
the frame), and the factorised model mixes every frame into every other. What failed is the conditioning path:
a class label that only enters the adaLN modulation (in front of its SiLU, beside the time embedding) is ignored
even by a model overfitting one clip per direction, which then draws one of the four clips whatever the label.
Adding the label to every patch token (``VideoDiTConfig.cond_tokens``, now the default) makes the same model
draw the label's clip every time. Through captions and the text encoder the same overfit still fails (xfail).
"""

import pytest
import torch
from diff_video.data.shapes import ClipSpec, MovingShapes, ObjectSpec, render_clip
from diff_video.data.shapes_config import DIRECTIONS, ShapesConfig
from diff_video.metrics.motion import motion_adherence
from diff_video.models import TextConditioned, TextEncoder, TextEncoderConfig, VideoDiT, VideoDiTConfig
from diff_video.pipeline.core import VideoPipeline, flow_schedule
from diff_video.pipeline.training import VideoFlowObjective
from diffcore.rng import seeded
from diffcore.training import time_sampling

SHAPES = ShapesConfig(
    frames=8, height=16, width=16, colours=("red",), shapes=("square",), directions=4, speeds=("steadily",),
    events=(), num_objects=(1,),
)  # fmt: skip


def _red_centroid_velocity(clips: torch.Tensor) -> torch.Tensor:
    """``(B, 3, T, H, W)`` -> ``(B, 2)`` least-squares velocity (pixels / frame, ``y`` down) of the red mass."""
    w = ((clips[:, 0] - clips[:, 1:].mean(1)) / 2).clamp(0, 1)  # red over the other channels: (B, T, H, W)
    r = torch.arange(clips.shape[-1], dtype=torch.float32) + 0.5
    mass = w.sum((2, 3)).clamp_min(1e-6)
    cx, cy = (w.sum(2) * r).sum(-1) / mass, (w.sum(3) * r).sum(-1) / mass
    f = torch.arange(clips.shape[2], dtype=torch.float32)
    f = f - f.mean()
    return torch.stack([(cx * f).sum(1), (cy * f).sum(1)], 1) / (f**2).sum()


def test_the_mean_clip_of_each_direction_moves_that_way_at_nearly_full_speed():
    """E[x0 | direction] is not one blur shared by all directions: a random start is drawn so the path stays in
    the frame, so the mean clip of "left" starts right and ends left. What the label has to say is there in the
    first moment, not only in correlations between frames."""
    data = MovingShapes(ShapesConfig(**{**SHAPES.__dict__, "length": 512}))
    clips, captions = data.render(512)
    names = SHAPES.direction_names
    labels = torch.tensor([names.index(c.split()[-1]) for c in captions])
    means = torch.stack([clips[labels == k].mean(0) for k in range(4)])
    speed = 0.4 * 16 / 7  # pixels per frame of "steadily"
    expected = torch.tensor([DIRECTIONS[d] for d in names], dtype=torch.float32) * speed
    torch.testing.assert_close(_red_centroid_velocity(means), expected, atol=0.15 * speed, rtol=0)


def test_every_frame_of_the_input_reaches_every_frame_of_the_factorised_output():
    """Temporal blocks attend along time (not batch or space): with a spatial and a temporal block, a change in
    frame k anywhere reaches every frame j, and never another sample of the batch."""
    with seeded(0):
        m = VideoDiT(VideoDiTConfig(input_size=(4, 8, 8), patch_size=(1, 4, 4), hidden_size=48, depth=2,
                                    num_heads=4, attention="factorised"))  # fmt: skip
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(2, 3, 4, 8, 8), torch.rand(2)
    with torch.no_grad():
        base = m(x, t)
        for k in range(4):
            y = x.clone()
            y[0, :, k, :4, :4] += 1.0  # one patch of frame k of sample 0
            diff = (m(y, t) - base).abs()
            assert (diff[0].amax(dim=(0, 2, 3)) > 1e-4).all()  # every frame j of sample 0
            assert diff[1].max() == 0  # not the other sample


def _one_clip_per_direction() -> tuple[torch.Tensor, list[str]]:
    """Four clips ``(4, 3, 8, 16, 16)``: a red square starting at the same place, one per direction."""
    clips, names = [], SHAPES.direction_names
    step = 0.4 * 16 / 7
    for d in names:
        dx, dy = DIRECTIONS[d]
        obj = ObjectSpec(
            "red", "square", d, "steadily", None, (8 - 3.2 * dx, 8 - 3.2 * dy), (dx * step, dy * step), 4.8
        )
        clips.append(render_clip(ClipSpec([obj], f"a red square moves {d}", SHAPES))[0])
    return torch.stack(clips), [f"a red square moves {d}" for d in names]


def _overfit_direction_adherence(cond_tokens: bool, text: bool = False) -> float:
    """Train a small VideoDiT (width 64, depth 2) for 800 steps on :func:`_one_clip_per_direction`, conditioned
    on the direction as a class label or (``text``) on the captions through a text encoder trained with it; the
    direction adherence of 16 samples from noise (12 Euler steps, guidance 3)."""
    clips, captions = _one_clip_per_direction()
    labels = torch.arange(4)
    with seeded(0):
        encoder = TextEncoder(
            TextEncoderConfig(sorted({w for c in captions for w in c.split()}), 64, 2, 4, 32)
        )
        dit = VideoDiT(VideoDiTConfig(input_size=(8, 16, 16), patch_size=(1, 4, 4), hidden_size=64, depth=2,
                                      num_heads=4, num_classes=0 if text else 4, context_dim=64 if text else 0,
                                      cond_tokens=cond_tokens))  # fmt: skip
    if text:
        net: torch.nn.Module = TextConditioned(dit, encoder)
        null, tokenize = {"input_ids": encoder.tokenize([""])[0]}, encoder.tokenize
    else:
        net, null, tokenize = dit, {"y": 4}, None
    objective = VideoFlowObjective(
        flow_schedule(1.0),
        time_sampling.get("logit-normal"),
        cond_dropout=0.1,
        null_cond=null,
        tokenize=tokenize,
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(800):
        idx = torch.randint(0, 4, (16,), generator=gen)
        batch = (
            {"x": clips[idx], "caption": [captions[i] for i in idx]}
            if text
            else {"x": clips[idx], "y": labels[idx]}
        )
        loss, _ = objective(net, batch, gen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    wanted = [i % 4 for i in range(16)]
    prompts = [captions[k] for k in wanted]
    if text:
        pipe = VideoPipeline(
            dit.eval(), text_encoder=encoder.eval(), clip_shape=(3, 8, 16, 16), time_shift=1.0
        )
        options = {"prompts": prompts}
    else:
        pipe = VideoPipeline(dit.eval(), num_classes=4, clip_shape=(3, 8, 16, 16), time_shift=1.0)
        options = {"labels": wanted}
    out = pipe.generate(16, guidance=3.0, steps=12, generator=torch.Generator().manual_seed(1), **options)
    return motion_adherence(out, prompts, directions=4)["direction_adherence"]


@pytest.mark.slow
def test_a_model_overfitting_one_clip_per_direction_draws_the_labels_direction_only_with_label_tokens():
    """The label decides which of four clips (same start, four directions) to draw only where ``x_t`` cannot
    tell them apart, near ``t = 1``. There the adaLN-only layout ignores it (samples pick a direction at about
    chance: 6 or 7 of 16 right in the runs that found it); with the label added to every token the same model
    and budget follow it in every sample."""
    assert _overfit_direction_adherence(cond_tokens=True) >= 0.9
    assert _overfit_direction_adherence(cond_tokens=False) <= 0.6


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True, reason="open: the text path ignores the direction word (package README, Measured)"
)
def test_a_text_conditioned_model_overfitting_one_clip_per_direction_draws_the_captions_direction():
    """The same overfit through captions ("a red square moves left") and a text encoder trained with the model
    (cross-attention to the words in every block, the pooled caption in the modulation and, with
    ``cond_tokens``, on every token): samples still pick a direction at about chance (4 or 5 of 16 measured).
    The benchmarks are text-to-video, so this, not the class path, is what holds their direction adherence down."""
    assert _overfit_direction_adherence(cond_tokens=True, text=True) >= 0.9
