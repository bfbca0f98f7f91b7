"""The stream batch against the non-streamed samplers, RCFG against its formula, and the similarity filter.

After the pipeline fills, frame ``k`` out of a stream must equal ``diffcore.sample`` run on frame ``k`` alone
with the same noise and steps (the stream's re-noising noises are drawn from its generator in the order the
``consistency`` sampler draws them, so one seed gives both the same noises).
"""

from __future__ import annotations

import pytest
import torch
from diffcore.guidance.wrappers import ClassifierFreeGuidance
from diffcore.paths.denoiser import Denoiser
from diffcore.sampling import sample
from diffcore.streaming import (
    FrameStream,
    SimilarityFilter,
    StreamBatch,
    StreamConfig,
    guided,
    quantize_weights,
    skip_probability,
    stream_times,
    virtual_residual,
)
from torch import Tensor, nn

SHAPE = (2, 6, 6)
NULL = 3  # the null label of the toy network


class ToyNet(nn.Module):
    """A small conv net meeting the network contract, with a label input ``y`` (``NULL`` = unconditional)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(2, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 2, 3, padding=1)
        self.label = nn.Embedding(NULL + 1, 8)
        self.time = nn.Linear(1, 8)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.conv1(x) + self.time(t[:, None].float())[:, :, None, None]
        if y is not None:
            h = h + self.label(y)[:, :, None, None]
        return self.conv2(torch.tanh(h))


def _denoiser(schedule: str = "rectified-flow", prediction: str = "velocity") -> Denoiser:
    return Denoiser(ToyNet(), schedule, prediction)


def _frames(n: int, seed: int = 1) -> Tensor:
    return torch.randn((n, 1, *SHAPE), generator=torch.Generator().manual_seed(seed))


def _reference(den, times, noise, seed, sampler="consistency", x_start=None, **kw) -> Tensor:
    """``sample`` on one frame over the stream's grid; its generator is advanced past the entry noise, so its
    re-noising draws are the stream's fixed ones."""
    g = torch.Generator().manual_seed(seed)
    torch.randn((1, *SHAPE), generator=g)  # the stream's entry noise
    grid = torch.tensor([*times, 0.0], dtype=torch.float64)
    return sample(den, noise, sampler, grid=grid, x_start=x_start, generator=g, **kw)


@pytest.mark.parametrize("rule", ["consistency", "ddim"])
def test_img2img_stream_frame_k_equals_the_sampler_on_frame_k_alone(rule):
    den, seed = _denoiser(), 7
    times = stream_times(den.schedule, (10, 25, 40), 50)
    stream = StreamBatch(den, times, SHAPE, step_rule=rule, generator=torch.Generator().manual_seed(seed))
    frames, n = _frames(6), len(times)
    outs = [stream(frames[k]) for k in range(len(frames))]
    for k in range(len(frames) - (n - 1)):
        ref = _reference(den, times, stream.entry_noise, seed, rule, x_start=frames[k])
        torch.testing.assert_close(outs[k + n - 1], ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(outs[n - 1], outs[n])  # different frames give different outputs


def test_txt2img_stream_with_per_frame_labels_equals_the_sampler_per_frame():
    den, seed = _denoiser(), 3
    times = stream_times(den.schedule, (0, 1, 2, 3), 4)
    assert times[0] == 1.0
    stream = StreamBatch(den, times, SHAPE, generator=torch.Generator().manual_seed(seed))
    noises, labels = _frames(7, seed=11), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    outs = [stream(None, noise=noises[k], frame_cond={"y": labels[k : k + 1]}) for k in range(7)]
    for k in range(7 - 3):
        ref = _reference(den, times, noises[k], seed, cond={"y": labels[k : k + 1]})
        torch.testing.assert_close(outs[k + 3], ref, atol=1e-5, rtol=1e-5)


def test_full_cfg_stream_equals_the_sampler_with_classifier_free_guidance():
    den, seed, w = _denoiser("vp-cosine", "eps"), 5, 3.0
    times = stream_times(den.schedule, (20, 35), 50)
    null = {"y": torch.tensor([NULL])}
    stream = StreamBatch(den, times, SHAPE, guidance="full", guidance_scale=w, uncond=null,
                         generator=torch.Generator().manual_seed(seed))  # fmt: skip
    frames, labels = _frames(4), torch.tensor([0, 1, 2, 1])
    outs = [stream(frames[k], frame_cond={"y": labels[k : k + 1]}) for k in range(4)]
    for k in range(3):
        ref = _reference(ClassifierFreeGuidance(den, w, null), times, stream.entry_noise, seed,
                         x_start=frames[k], cond={"y": labels[k : k + 1]})  # fmt: skip
        torch.testing.assert_close(outs[k + 1], ref, atol=1e-5, rtol=1e-5)


def test_rcfg_self_negative_equals_its_formula_on_fixed_tensors():
    g = torch.Generator().manual_seed(0)
    x, ref, x0_c, eps_c = (torch.randn(2, 3, generator=g) for _ in range(4))
    alpha, sigma, w = 0.6, 0.8, 2.5
    eps_n = virtual_residual(x, ref, alpha, sigma)
    torch.testing.assert_close(eps_n, (x - 0.6 * ref) / 0.8)  # Kodaira et al. 2023, Eq. 8
    x0, eps = guided(x0_c, eps_c, ref, eps_n, w)
    torch.testing.assert_close(eps, eps_n + w * (eps_c - eps_n))
    torch.testing.assert_close(x0, ref + w * (x0_c - ref))
    # the guided pair is consistent with the state when the conditional pair is
    x0_c2 = (x - sigma * eps_c) / alpha
    x0, eps = guided(x0_c2, eps_c, ref, eps_n, w)
    torch.testing.assert_close(alpha * x0 + sigma * eps, x)


def test_rcfg_self_stream_step_applies_the_virtual_residual_of_the_input():
    den, w = _denoiser("vp-cosine", "eps"), 2.0
    times = stream_times(den.schedule, (30,), 50)
    stream = StreamBatch(den, times, SHAPE, guidance="self", guidance_scale=w,
                         generator=torch.Generator().manual_seed(1))  # fmt: skip
    frame = _frames(1)[0]
    out = stream(frame)
    x = stream.entry(frame)[0]
    x0_c = den.x0(x, times[0])
    # one step to t = 0: the output is x0 = x_ref + w (x0_c - x_ref), x_ref = the input
    torch.testing.assert_close(out, frame + w * (x0_c - frame), atol=1e-5, rtol=1e-5)


def test_rcfg_one_time_negative_with_one_step_is_classifier_free_guidance():
    den, w, null = _denoiser("vp-cosine", "eps"), 2.0, {"y": torch.tensor([NULL])}
    times = stream_times(den.schedule, (30,), 50)
    cond = {"y": torch.tensor([1])}
    s = StreamBatch(den, times, SHAPE, guidance="initialize", guidance_scale=w, cond=cond, uncond=null,
                    generator=torch.Generator().manual_seed(1))  # fmt: skip
    frame = _frames(1)[0]
    x = s.entry(frame)[0]
    expected = ClassifierFreeGuidance(den, w, null).x0(x, times[0], **cond)
    torch.testing.assert_close(s(frame), expected, atol=1e-5, rtol=1e-5)


def test_rcfg_one_time_negative_feeds_later_steps_the_virtual_residual_of_the_first_unconditional_x0():
    den, w, null = _denoiser("vp-cosine", "eps"), 2.0, {"y": torch.tensor([NULL])}
    times = stream_times(den.schedule, (20, 35), 50)
    cond = {"y": torch.tensor([1])}
    s = StreamBatch(den, times, SHAPE, guidance="initialize", guidance_scale=w, cond=cond, uncond=null,
                    generator=torch.Generator().manual_seed(1))  # fmt: skip
    frame = _frames(1)[0]
    out0 = s(frame)
    x1 = s.x[1].clone()
    ref = s.ref[1].clone()
    x_t0 = s.entry(frame)[0]
    torch.testing.assert_close(ref, den.x0(x_t0, times[0], **null), atol=1e-5, rtol=1e-5)
    out = s(frame)
    x0_c = den.x0(x1, times[1], **cond)
    torch.testing.assert_close(out, ref + w * (x0_c - ref), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, out0)


def test_skip_probability_follows_the_papers_formula():
    assert skip_probability(1.0, 0.98) == 1.0
    assert skip_probability(0.99, 0.98) == pytest.approx(0.5)
    assert skip_probability(0.98, 0.98) == 0.0 and skip_probability(0.5, 0.98) == 0.0
    assert skip_probability(1.0, 1.0) == 0.0


def test_filter_skips_identical_inputs_up_to_the_forced_refresh_and_never_very_different_ones():
    f, g = SimilarityFilter(threshold=0.9, max_skip=3), torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 8, 8, generator=g)
    decisions = [f.skip(x, g) for _ in range(12)]
    assert decisions == [False, True, True, True] * 3
    f2 = SimilarityFilter(threshold=0.9, max_skip=3)
    assert not any(f2.skip(torch.randn(1, 3, 8, 8, generator=g), g) for _ in range(50))
    assert f2.skip_fraction == 0.0 and f.skip_fraction == pytest.approx(9 / 12)


def test_frame_stream_returns_the_previous_output_when_the_filter_skips():
    den = _denoiser()
    config = StreamConfig(t_index_list=(25,), num_steps=50, similarity_filter=True, filter_max_skip=2)
    stream = FrameStream(den, config, SHAPE, generator=torch.Generator().manual_seed(4),
                         filter_generator=torch.Generator().manual_seed(0))  # fmt: skip
    plain = FrameStream(den, StreamConfig(t_index_list=(25,), num_steps=50), SHAPE,
                        generator=torch.Generator().manual_seed(4))  # fmt: skip
    frame = _frames(1)[0]
    outs = [stream(frame) for _ in range(4)]
    assert outs[1] is outs[0] and outs[2] is outs[0] and stream.skipped == 2
    torch.testing.assert_close(outs[0], plain(frame))
    torch.testing.assert_close(outs[3], outs[0])  # the forced refresh recomputes the same frame


def _tiny_unet(seed: int):
    from diffcore.nn import UNet, UNetConfig

    torch.manual_seed(seed)  # test-local: module initialisation
    net = UNet(UNetConfig(in_channels=2, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                          attention_levels=(1,), num_heads=2, num_groups=4))  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.2
    return net


def test_controlnet_and_lora_streams_equal_the_sampler_with_them():
    pytest.importorskip("peft")
    from diffcore.nn import ControlledModel, UNetControlNet
    from diffcore.nn.lora import add_lora, merge_lora

    base = _tiny_unet(0)
    cn = UNetControlNet.from_unet(base, conditioning_channels=1, hint_channels=(4,))
    g = torch.Generator().manual_seed(5)
    for p in cn.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.2
    add_lora(base, rank=2)
    for name, p in base.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=g) * 0.2
    net = ControlledModel(base, cn).eval()
    den, seed = Denoiser(net, "rectified-flow", "velocity"), 2
    times = stream_times(den.schedule, (10, 30), 50)
    stream = StreamBatch(den, times, (2, 8, 8), generator=torch.Generator().manual_seed(seed))
    frames = torch.randn((4, 1, 2, 8, 8), generator=g)
    maps = torch.randn((4, 1, 1, 8, 8), generator=g)
    with torch.no_grad():
        outs = [stream(frames[k], frame_cond={"control_cond": maps[k]}) for k in range(4)]
        for k in range(3):
            ref = sample(den, stream.entry_noise, "consistency", grid=torch.tensor([*times, 0.0]),
                         x_start=frames[k], cond={"control_cond": maps[k]},
                         generator=_after_entry(seed, (1, 2, 8, 8)))  # fmt: skip
            torch.testing.assert_close(outs[k + 1], ref, atol=1e-5, rtol=1e-5)
        plain = ControlledModel(_tiny_unet(0), cn).eval()
        assert not torch.allclose(net(frames[0], torch.full((1,), 0.5), control_cond=maps[0]),
                                  plain(frames[0], torch.full((1,), 0.5), control_cond=maps[0]))  # fmt: skip
        before = stream(frames[3], frame_cond={"control_cond": maps[3]})
        merge_lora(base)
        merged = StreamBatch(den, times, (2, 8, 8), generator=torch.Generator().manual_seed(seed))
        for k in [0, 1, 2, 3, 3]:  # the calls the first stream saw
            after = merged(frames[k], frame_cond={"control_cond": maps[k]})
        torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def _after_entry(seed: int, shape: tuple[int, ...]) -> torch.Generator:
    g = torch.Generator().manual_seed(seed)
    torch.randn(shape, generator=g)
    return g


def test_bad_settings_fail_with_one_line_naming_the_parameter():
    den = _denoiser()
    with pytest.raises(ValueError, match="t_index_list: expected strictly increasing"):
        stream_times(den.schedule, (3, 3), 10)
    with pytest.raises(ValueError, match=r"t_index_list: expected indices in \[0, 9\]"):
        stream_times(den.schedule, (0, 10), 10)
    with pytest.raises(ValueError, match="uncond: guidance 'full' needs"):
        StreamBatch(den, (0.5,), SHAPE, guidance="full", guidance_scale=2.0)
    with pytest.raises(ValueError, match="similarity_filter: compares input frames"):
        StreamConfig(mode="txt2img", similarity_filter=True)
    with pytest.raises(ValueError, match="frame: a txt2img stream"):
        FrameStream(den, StreamConfig(mode="txt2img"), SHAPE)(_frames(1)[0])
    with pytest.raises(ValueError, match="quantize: expected one of"):
        quantize_weights(nn.Linear(2, 2), "int4")


def test_a_guidance_wrapper_as_the_denoiser_streams_like_the_streams_own_cfg():
    den, w, null = _denoiser("vp-cosine", "eps"), 2.5, {"y": torch.tensor([NULL])}
    times = stream_times(den.schedule, (20, 35), 50)
    cond = {"y": torch.tensor([2])}
    own = StreamBatch(den, times, SHAPE, guidance="full", guidance_scale=w, cond=cond, uncond=null,
                      generator=torch.Generator().manual_seed(9))  # fmt: skip
    wrapped = StreamBatch(ClassifierFreeGuidance(den, w, null), times, SHAPE, cond=cond,
                          generator=torch.Generator().manual_seed(9))  # fmt: skip
    for frame in _frames(3):
        torch.testing.assert_close(own(frame), wrapped(frame), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["img2img", "txt2img"])
def test_a_stream_replayed_as_one_cuda_graph_equals_the_eager_stream(mode):
    den = Denoiser(ToyNet().cuda(), "vp-scaled-linear", "eps")
    first = 10 if mode == "img2img" else 0
    config = {
        "mode": mode,
        "t_index_list": (first, 30),
        "num_steps": 50,
        "guidance": "self",
        "guidance_scale": 1.5,
    }

    def make(graphs: bool) -> FrameStream:
        return FrameStream(den, StreamConfig(cuda_graphs=graphs, **config), SHAPE,
                           generator=torch.Generator("cuda").manual_seed(0), device="cuda")  # fmt: skip

    streams = [make(False), make(True)]
    frames = _frames(6).cuda()
    for k in range(6):
        a, b = (s(frames[k] if mode == "img2img" else None) for s in streams)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert streams[1]._graph is not None and streams[1]._graph.captured
