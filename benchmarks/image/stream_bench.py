"""Real-time streaming generation (issue #31): StreamDiffusion's measurement on ``diffcore.streaming``.

Method of Kodaira et al. 2023 (StreamDiffusion, Sec. 4): 10 warm-up calls, then 100 timed calls of the whole
per-frame call (input frame in, finished output frame out), timed with CUDA events on a GPU (``perf_counter`` on
the CPU); reported: frames per second (100 calls over their wall time), mean / p50 / p95 latency per call, the
share of each part (network, decoder, encoder; host = the rest of a call) and the fraction of frames the
similarity filter skipped. Each part's share is its time replayed alone (the same CUDA-graph / compile
settings) over the whole call's.

(a) diff-image's own few-step students on shapes: the text-to-image shapes teacher (an MMDiT with its CLIP text
    encoder, rectified flow; ``benchmarks/few_step/few_step_shapes.py`` trains it within a time budget) and a
    consistency-distilled student of the guided teacher, streamed text-to-image at 1, 2 and 4 steps with one
    caption per frame; quality of the streamed frames (Frechet distance in the shapes classifier's features and
    one- / two-object caption adherence, diff-image's metrics) at each step count.
(b) an SD-Turbo-sized stream: diffcore's U-Net in the Stable Diffusion 2.1 shape (``sd2_unet_config``, ~865 M
    parameters, random weights: speed does not depend on them) on 4 x 64 x 64 latents (512 x 512 px), one step,
    batch 1, bf16, with a TAESD-sized conv decoder (and encoder for image-to-image), random weights:
    text-to-image, image-to-image, image-to-image on a static input with the similarity filter (GPU work saved,
    PSNR against the unfiltered stream), and ControlNet and LoRA (unmerged) streams against the plain one.
    With ``--quantize MODE[,MODE...]`` (``diffcore.streaming.QUANTIZATIONS``: int8-weight, int8, fp8-weight, fp8)
    part (b) times the plain text-to-image and image-to-image streams, then the same streams on a copy of the
    U-Net with torchao-quantised linear weights (``quantize_weights``, before ``torch.compile``), each with its
    fps relative to the plain stream and the PSNR of its image-to-image frames against the plain stream's
    (same inputs, same noise); the filter, ControlNet and LoRA cases are left out.

    uv run python benchmarks/image/stream_bench.py --quick            # CPU, tiny sizes, ~2 minutes
    python benchmarks/image/stream_bench.py                           # one H100: (a) and (b), compile + graphs
    python benchmarks/image/stream_bench.py --parts b --quantize int8-weight,int8,fp8-weight,fp8   # one H100

Writes ``benchmarks/results/stream_bench-<device>.json`` (``--quick``: ``stream_bench-quick-cpu.json``;
``--quantize``: the variant ``quant``, e.g. ``stream_bench-quant-h100.json``; ``--parts a`` alone: the variant
``shapes``, e.g. ``stream_bench-shapes-h100.json``), after each part (a run cut short keeps what it measured).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from diffcore.kernels.cuda_graphs import GraphedInference
from diffcore.paths.denoiser import Denoiser
from diffcore.streaming import QUANTIZATIONS, FrameStream, StreamConfig, quantize_weights
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import device_tag, write_result

WARMUP, TIMED = 10, 100  # StreamDiffusion's protocol


@dataclass
class Settings:
    """Sizes of one run. ``quick``: CPU, tiny; the default: one H100.

    ``unet``: ``sd2`` (the SD 2.1 shape) or ``tiny``; ``latent``: latent side (64 = 512 px with the 8x decoder);
    ``decoder_width``: TAESD's 64; ``img2img_index``: the image-to-image step (index of ``num_steps = 50``:
    25 = strength 0.5); ``static_noise``: the per-pixel camera noise of the static input (std, images in [-1, 1]);
    ``shapes_*``: part (a) sizes (teacher and student training budgets in seconds, evaluation captions per kind).
    """

    device: str = "cuda"
    dtype: str = "bf16"
    compile: bool = True
    cuda_graphs: bool = True
    unet: str = "sd2"
    latent: int = 64
    decoder_width: int = 64
    context_len: int = 77
    img2img_index: int = 25
    lora_rank: int = 16
    filter_threshold: float = 0.98
    filter_max_skip: int = 10
    static_noise: float = 0.01
    warmup: int = WARMUP
    timed: int = TIMED
    shapes: bool = True
    shapes_teacher_seconds: float = 60.0
    shapes_student_seconds: float = 30.0
    shapes_num_per_kind: int = 100
    shapes_steps: tuple[int, ...] = (1, 2, 4)
    quantize: tuple[str, ...] = ()

    @classmethod
    def quick(cls) -> Settings:
        return cls(device="cpu", dtype="fp32", compile=False, cuda_graphs=False, unet="tiny", latent=8,
                   decoder_width=8, context_len=8, lora_rank=4, warmup=2, timed=10, shapes_teacher_seconds=0.0,
                   shapes_student_seconds=0.0, shapes_num_per_kind=6)  # fmt: skip


# ---------------------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(call: Callable[[int], Any], device: torch.device, warmup: int, timed: int) -> dict[str, float]:
    """Warm up, then time ``timed`` calls ``call(i)``: per-call latency (CUDA events / perf_counter, ms) and
    the fps of the whole run (calls over wall time, synchronised at the ends)."""
    for i in range(warmup):
        call(i)
    sync(device)
    cuda = device.type == "cuda"
    lat: list[float] = []
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(timed)
    ]
    wall0 = time.perf_counter()
    for i in range(timed):
        if cuda:
            events[i][0].record()
            call(warmup + i)
            events[i][1].record()
        else:
            t0 = time.perf_counter()
            call(warmup + i)
            lat.append((time.perf_counter() - t0) * 1e3)
    sync(device)
    wall = time.perf_counter() - wall0
    if cuda:
        lat = [a.elapsed_time(b) for a, b in events]
    lat.sort()
    return {
        "fps": timed / wall,
        "latency_mean_ms": statistics.fmean(lat),
        "latency_p50_ms": lat[len(lat) // 2],
        "latency_p95_ms": lat[min(len(lat) - 1, math.ceil(0.95 * len(lat)) - 1)],
        "wall_s": wall,
    }


def part_ms(fn: Callable[[], Any], device: torch.device, graphs: bool, warmup: int, timed: int) -> float:
    """Mean ms of ``fn()`` alone, replayed as a CUDA graph when ``graphs`` (as in the stream)."""
    run = fn
    if graphs and device.type == "cuda":
        g = GraphedInference(lambda _x: fn())
        dummy = torch.zeros(1, device=device)
        run = lambda: g(dummy)  # noqa: E731
    return time_calls(lambda i: run(), device, warmup, timed)["latency_mean_ms"]


def psnr(a: Tensor, b: Tensor, peak_to_peak: float = 2.0) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2); inf when equal."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak_to_peak**2 / mse)


# ---------------------------------------------------------------------------------------------- (b) networks


class TinyDecoder(nn.Module):
    """A TAESD-sized conv decoder (Bohan 2023; ~1.2 M parameters at width 64): latent ``(B, 4, h, w)`` -> image
    ``(B, 3, 8h, 8w)`` in [-1, 1]; three x2 nearest upsamplings, each after a few 3x3 conv blocks."""

    def __init__(self, latent_channels: int = 4, width: int = 64, blocks: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, width, 3, padding=1), nn.ReLU()]
        for _stage in range(3):
            for _ in range(blocks):
                layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(width, width, 3, padding=1, bias=False)]
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.net(z))


class TinyEncoder(nn.Module):
    """TAESD-sized conv encoder: image ``(B, 3, H, W)`` -> latent ``(B, 4, H/8, W/8)``."""

    def __init__(self, latent_channels: int = 4, width: int = 64, blocks: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False)]
            for _ in range(blocks):
                layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(width, latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def unet_config(settings: Settings):
    from diffcore.nn.unet import UNetConfig, sd2_unet_config

    if settings.unet == "sd2":
        return sd2_unet_config()
    return UNetConfig(in_channels=4, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                      attention_levels=(0, 1), head_dim=16, context_dim=32, use_scale_shift_norm=False,
                      num_groups=8)  # fmt: skip


def randomise(module: nn.Module, generator: torch.Generator, std: float = 0.02) -> None:
    """Random weights in the zero-initialised layers (a U-Net's output conv, a ControlNet's zero convs), so every
    part does real work; the other layers keep PyTorch's default initialisation."""
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=generator).to(p.dtype) * std)


class Part:
    """The SD-Turbo-sized parts on ``device`` in ``dtype``: U-Net, decoder, encoder, text context."""

    def __init__(self, settings: Settings, device: torch.device, dtype: torch.dtype) -> None:
        from diffcore.nn.unet import UNet

        g = torch.Generator().manual_seed(0)
        self.settings, self.device, self.dtype = settings, device, dtype
        self.unet = UNet(unet_config(settings))
        randomise(self.unet, g)
        self.unet_params = sum(p.numel() for p in self.unet.parameters())
        self.unet = self.unet.to(device, dtype).eval().requires_grad_(False)
        self.decoder = (
            TinyDecoder(width=settings.decoder_width).to(device, dtype).eval().requires_grad_(False)
        )
        self.encoder = (
            TinyEncoder(width=settings.decoder_width).to(device, dtype).eval().requires_grad_(False)
        )
        self.decoder_params = sum(p.numel() for p in self.decoder.parameters())
        self.encoder_params = sum(p.numel() for p in self.encoder.parameters())
        ctx_dim = self.unet.config.context_dim
        self.context = torch.randn((1, settings.context_len, ctx_dim), generator=g).to(device, dtype)
        self.shape = (4, settings.latent, settings.latent)
        self.image = (3, 8 * settings.latent, 8 * settings.latent)
        self._compiled: dict[int, Callable] = {}

    def maybe_compiled(self, module: nn.Module) -> Callable:
        """``module`` compiled once (when the settings say so), the same compiled callable for every stream."""
        if not self.settings.compile:
            return module
        key = id(module)
        if key not in self._compiled:
            self._compiled[key] = torch.compile(module)
        return self._compiled[key]

    def stream(self, mode: str, network: nn.Module | None = None, **overrides: Any) -> FrameStream:
        """A one-step stream of ``network`` (default: the U-Net) in ``mode``."""
        s = self.settings
        steps = {"t_index_list": (0,), "num_steps": 1} if mode == "txt2img" else {
            "t_index_list": (s.img2img_index,), "num_steps": 50}  # fmt: skip
        config = StreamConfig(mode=mode, cuda_graphs=s.cuda_graphs, **steps, **overrides)
        den = Denoiser(self.maybe_compiled(network or self.unet), "ddpm-scaled-linear", "eps")
        return FrameStream(
            den, config, self.shape, encode=self.maybe_compiled(self.encoder) if mode == "img2img" else None,
            decode=self.maybe_compiled(self.decoder), cond={"context": self.context},
            generator=torch.Generator(self.device).manual_seed(1), filter_generator=torch.Generator().manual_seed(2),
            device=self.device, dtype=self.dtype,
        )  # fmt: skip

    def moving_frames(self, n: int) -> Tensor:
        """``n`` frames ``(n, 1, 3, H, W)`` of a moving synthetic scene (so the filter never skips)."""
        _, h, w = self.image
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        frames = [
            torch.stack([torch.sin(3 * xx + 0.3 * i), torch.cos(3 * yy - 0.2 * i), xx * yy]) for i in range(n)
        ]
        return torch.stack(frames)[:, None].to(self.device, self.dtype)


def measure_stream(part: Part, stream: FrameStream, frames: Tensor | None, name: str, s: Settings) -> dict:
    """Time ``stream`` over ``frames`` (cycled) and the share of each of its parts."""
    dev = part.device
    n_frames = frames.shape[0] if frames is not None else 0

    def call(i: int):
        return stream(frames[i % n_frames]) if frames is not None else stream()

    row = time_calls(call, dev, s.warmup, s.timed)
    graphs = s.cuda_graphs and dev.type == "cuda"
    latent = torch.randn((1, *part.shape), device=dev, dtype=part.dtype)
    batch = stream.batch
    entry, ref = batch.entry(latent)
    state = {k: v.clone() for k, v in batch.state().items()}
    network_ms = part_ms(lambda: batch.step(entry, ref), dev, graphs, 3, 20)
    for k, v in batch.state().items():
        v.copy_(state[k])
    decoder_ms = part_ms(lambda: stream.decode(latent), dev, graphs, 3, 20)
    encoder_ms = 0.0
    if frames is not None and stream.encode is not None:
        encoder_ms = part_ms(lambda: stream.encode(frames[0]), dev, graphs, 3, 20)
    # shares of a processed call: a filtered stream's mean latency also counts the skipped (near-free) calls
    total = row["latency_mean_ms"] / (1.0 - stream.filter.skip_fraction if stream.filter else 1.0)
    host = max(total - network_ms - decoder_ms - encoder_ms, 0.0)
    row.update(
        name=name,
        network_ms=network_ms, decoder_ms=decoder_ms, encoder_ms=encoder_ms, host_ms=host,
        share_network=network_ms / total, share_decoder=decoder_ms / total, share_encoder=encoder_ms / total,
        share_host=host / total, skipped_fraction=stream.filter.skip_fraction if stream.filter else 0.0,
    )  # fmt: skip
    print(
        f"  {name:28s} {row['fps']:8.1f} fps  mean {row['latency_mean_ms']:7.2f} ms  p50 {row['latency_p50_ms']:7.2f}"
        f"  p95 {row['latency_p95_ms']:7.2f}  network {row['share_network']:.0%} decoder {row['share_decoder']:.0%}"
        f" encoder {row['share_encoder']:.0%} host {row['share_host']:.0%}  skipped {row['skipped_fraction']:.0%}",
        flush=True,
    )
    return row


def static_filter_case(part: Part, s: Settings) -> dict:
    """A static scene with camera noise: the filtered stream's fps, skipped fraction and GPU time against the
    unfiltered one, and the PSNR of its outputs against the unfiltered outputs of the same inputs."""
    n = s.warmup + s.timed
    g = torch.Generator().manual_seed(3)
    base = part.moving_frames(1)[0]
    noise = torch.randn((n, *base.shape), generator=g).to(part.device, part.dtype) * s.static_noise
    frames = (base[None] + noise).clamp(-1, 1)
    plain = part.stream("img2img")
    filtered = part.stream("img2img", similarity_filter=True, filter_threshold=s.filter_threshold,
                           filter_max_skip=s.filter_max_skip)  # fmt: skip
    row_plain = measure_stream(part, plain, frames, "img2img static (no filter)", s)
    row_filt = measure_stream(part, filtered, frames, "img2img static + filter", s)
    plain_out = part.stream("img2img")
    filt_out = part.stream("img2img", similarity_filter=True, filter_threshold=s.filter_threshold,
                           filter_max_skip=s.filter_max_skip)  # fmt: skip
    worst, total = math.inf, 0.0
    for i in range(n):
        a, b = plain_out(frames[i]), filt_out(frames[i])
        value = psnr(a, b)
        worst = min(worst, value)
        total += min(value, 100.0)
    processed = 1.0 - filt_out.filter.skip_fraction
    print(f"  static input: filter skipped {filt_out.filter.skip_fraction:.0%} of frames (GPU work cut "
          f"{1.0 - processed:.0%}; mean latency x{row_filt['latency_mean_ms'] / row_plain['latency_mean_ms']:.2f}); "
          f"PSNR vs unfiltered: min {worst:.1f} dB, mean {total / n:.1f} dB (capped at 100)", flush=True)  # fmt: skip
    return {
        "plain": row_plain, "filtered": row_filt, "static_noise_std": s.static_noise,
        "skipped_fraction": filt_out.filter.skip_fraction, "gpu_work_fraction": processed,
        "gpu_work_cut": 1.0 - processed, "gpu_time_ratio": row_filt["latency_mean_ms"] / row_plain["latency_mean_ms"],
        "psnr_min_db": worst, "psnr_mean_db_capped100": total / n,
    }  # fmt: skip


def quantized_case(part: Part, s: Settings, mode: str, frames: Tensor, plain: dict) -> dict:
    """The text-to-image and image-to-image streams on a copy of the U-Net whose linear weights torchao quantised
    (``mode``): fps relative to the plain streams (``plain``), and the PSNR of the quantised image-to-image
    frames against the plain stream's for the same inputs and noise."""
    net = quantize_weights(copy.deepcopy(part.unet), mode)  # type: ignore[arg-type]
    row: dict[str, Any] = {"mode": mode}
    for m in ("txt2img", "img2img"):
        r = measure_stream(
            part, part.stream(m, network=net), frames if m == "img2img" else None, f"{m} {mode}", s
        )
        r["relative_fps"] = r["fps"] / plain[m]["fps"]
        row[m] = r
    float_stream, quant_stream = part.stream("img2img"), part.stream("img2img", network=net)
    values = [psnr(float_stream(f).clamp(-1, 1), quant_stream(f).clamp(-1, 1)) for f in frames[:8]]
    row["psnr_vs_plain_min_db"], row["psnr_vs_plain_mean_db"] = min(values), statistics.fmean(values)
    print(f"  {mode}: txt2img {row['txt2img']['relative_fps']:.2f}x, img2img {row['img2img']['relative_fps']:.2f}x "
          f"of plain; img2img PSNR vs plain min {row['psnr_vs_plain_min_db']:.1f} dB, mean "
          f"{row['psnr_vs_plain_mean_db']:.1f} dB", flush=True)  # fmt: skip
    part._compiled.pop(id(net), None)
    return row


def part_b(
    s: Settings, device: torch.device, dtype: torch.dtype, doc: dict, save: Callable[[], None]
) -> None:
    from diffcore.nn import ControlledModel, UNetControlNet
    from diffcore.nn.lora import add_lora

    start = time.perf_counter()
    part = Part(s, device, dtype)
    print(f"(b) U-Net {s.unet}: {part.unet_params:,} parameters (SD 2.1: 865,910,724); decoder "
          f"{part.decoder_params:,}, encoder {part.encoder_params:,}; latent {part.shape}, image {part.image}",
          flush=True)  # fmt: skip
    out: dict[str, Any] = {"unet_parameters": part.unet_params, "decoder_parameters": part.decoder_params,
                           "encoder_parameters": part.encoder_params, "latent_shape": list(part.shape),
                           "image_shape": list(part.image), "steps": 1, "batch": 1}  # fmt: skip
    doc["sd_turbo_sized"] = out
    frames = part.moving_frames(16)
    out["txt2img"] = measure_stream(part, part.stream("txt2img"), None, "txt2img", s)
    save()
    out["img2img"] = measure_stream(part, part.stream("img2img"), frames, "img2img", s)
    save()
    if s.quantize:
        out["quantized"] = {}
        for mode in s.quantize:
            try:
                out["quantized"][mode] = quantized_case(part, s, mode, frames, out)
            except ValueError as exc:  # fp8 on a device without float8 matmuls
                print(f"  {mode}: not run: {exc}", flush=True)
                out["quantized"][mode] = {"mode": mode, "not_run": str(exc)}
            save()
        out["seconds"] = time.perf_counter() - start
        return
    out["static_filter"] = static_filter_case(part, s)
    save()
    g = torch.Generator().manual_seed(4)
    cn = UNetControlNet.from_unet(part.unet, conditioning_channels=3, hint_downscale=8).float().cpu()
    randomise(cn, g)
    cn = cn.to(device, dtype).eval().requires_grad_(False)
    controlled = ControlledModel(part.unet, cn).eval()
    out["controlnet_parameters"] = sum(p.numel() for p in cn.parameters())
    cstream = part.stream("img2img", network=controlled)
    maps = part.moving_frames(4)

    def control_call(i: int):
        return cstream(frames[i % 16], frame_cond={"control_cond": maps[i % 4]})

    row = time_calls(control_call, device, s.warmup, s.timed)
    row["name"] = "img2img + ControlNet"
    row["relative_fps"] = row["fps"] / out["img2img"]["fps"]
    out["controlnet"] = row
    print(f"  {'img2img + ControlNet':28s} {row['fps']:8.1f} fps  p95 {row['latency_p95_ms']:7.2f} ms  "
          f"{row['relative_fps']:.0%} of plain", flush=True)  # fmt: skip
    save()
    add_lora(part.unet, rank=s.lora_rank)
    for name, p in part.unet.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0.0, 0.02, generator=torch.Generator(device).manual_seed(5))
    part._compiled.clear()  # the U-Net's forward changed: compile it again
    lrow = measure_stream(part, part.stream("img2img"), frames, "img2img + LoRA (unmerged)", s)
    lrow["relative_fps"] = lrow["fps"] / out["img2img"]["fps"]
    lrow["rank"] = s.lora_rank
    out["lora_unmerged"] = lrow
    out["lora_merged_note"] = (
        "merge_lora folds the adapter into the weights: the merged network is the plain U-Net (same shapes, same "
        "kernels), so its stream runs at the plain img2img fps"
    )
    out["seconds"] = time.perf_counter() - start
    save()


# ---------------------------------------------------------------------------------------------- (a) shapes


def shapes_stream(
    den: Denoiser, config: StreamConfig, shape: tuple, device: torch.device, ids: Tensor
) -> FrameStream:
    """The student's stream; without CUDA graphs (noted) when the text-conditioned network cannot be captured."""

    def make(c):
        return FrameStream(den, c, shape, generator=torch.Generator(device).manual_seed(7), device=device)

    stream = make(config)
    if not config.cuda_graphs or device.type != "cuda":
        return stream
    try:
        stream(frame_cond={"input_ids": ids})
        return make(config)
    except RuntimeError as exc:
        print(
            f"  note: CUDA-graph capture failed ({str(exc).splitlines()[0][:120]}); streaming without graphs"
        )
        torch.cuda.synchronize()
        return make(replace(config, cuda_graphs=False))


def shapes_static_filter(den: Denoiser, ctx: Any, t_max: float, device: torch.device, s: Settings) -> dict:
    """The filter on a trained model: the student's one-step image-to-image stream (from the middle of its
    2-step grid) on a static evaluation scene with camera noise, filtered against unfiltered: skipped fraction
    and PSNR of the filtered outputs against the unfiltered outputs of the same inputs."""
    from few_step_shapes import EVAL_CAPTION_SEED, _scenes

    images, _ = _scenes(1, 1, EVAL_CAPTION_SEED, ctx.settings)
    n = s.warmup + s.timed
    g = torch.Generator().manual_seed(3)
    frames = (images[None] + torch.randn((n, *images.shape), generator=g) * s.static_noise).clamp(-1, 1)
    frames = frames.to(device)
    ids = ctx.task.eval_cond["input_ids"][:1]
    common = dict(mode="img2img", t_index_list=(1,), num_steps=2, grid="uniform", t_start=t_max)
    plain = FrameStream(den, StreamConfig(**common), ctx.task.sample_shape,
                        generator=torch.Generator(device).manual_seed(7), device=device)  # fmt: skip
    filt = FrameStream(den, StreamConfig(**common, similarity_filter=True, filter_threshold=s.filter_threshold,
                                         filter_max_skip=s.filter_max_skip), ctx.task.sample_shape,
                       generator=torch.Generator(device).manual_seed(7), device=device,
                       filter_generator=torch.Generator().manual_seed(2))  # fmt: skip
    values = [psnr(plain(f, frame_cond={"input_ids": ids}).clamp(-1, 1), filt(f, frame_cond={"input_ids": ids}).clamp(-1, 1))
              for f in frames]  # fmt: skip
    finite = [v for v in values if math.isfinite(v)]
    out = {
        "static_noise_std": s.static_noise, "skipped_fraction": filt.filter.skip_fraction,
        "gpu_work_cut": filt.filter.skip_fraction, "psnr_min_db": min(values),
        "psnr_mean_db_of_skipped": statistics.fmean(finite) if finite else math.inf,
    }  # fmt: skip
    print(f"  student img2img static input: filter skipped {out['skipped_fraction']:.0%}; PSNR vs unfiltered "
          f"min {out['psnr_min_db']:.1f} dB, mean over skipped frames {out['psnr_mean_db_of_skipped']:.1f} dB",
          flush=True)  # fmt: skip
    return out


def part_a(
    s: Settings, device: torch.device, out_dir: Path, doc: dict, save: Callable[[], None], quick: bool
) -> None:
    """Train (or, at --quick, barely train) the shapes teacher and a consistency-distilled student of the guided
    teacher; stream it text-to-image with one caption per frame at each step count; time and score."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "few_step"))
    from diffcore.distill import ConsistencyCallback, ConsistencyDistillation, ConsistencyParameterization
    from few_step import _fit, fresh_copy, load_model, train_config
    from few_step_shapes import ShapesSettings, shapes_context

    start = time.perf_counter()
    base = ShapesSettings.quick() if quick else ShapesSettings(device=str(device))
    ss = replace(base, num_per_kind=s.shapes_num_per_kind)
    if not quick:
        ss = replace(ss, teacher_seconds=s.shapes_teacher_seconds, student_seconds=s.shapes_student_seconds,
                     classifier_train=1500, classifier_epochs=8, adherence_workers=4)  # fmt: skip
    ctx, info = shapes_context(ss, out_dir, None)
    print(f"(a) shapes teacher ready ({info['seconds']:.0f} s)", flush=True)
    param = ConsistencyParameterization("rectified-flow", "velocity")
    obj = ConsistencyDistillation(param, teacher=ctx.teacher, num_points=18, solver="heun")
    config = train_config(out_dir, "cd", ss.cd_steps, ss)
    train_s = _fit(fresh_copy(ctx.teacher_net), obj, ctx.loader, config, callbacks=[ConsistencyCallback(obj)])
    student = load_model(ctx.teacher_net, Path(config.output_dir) / "model").requires_grad_(False)
    den = param.denoiser(student)
    ids = ctx.task.eval_cond["input_ids"]
    num = ids.shape[0]
    rows: dict[str, Any] = {}
    for k in s.shapes_steps:
        config_k = StreamConfig(mode="txt2img", t_index_list=tuple(range(k)), num_steps=k, grid="uniform",
                                t_start=obj.t_max, cuda_graphs=s.cuda_graphs)  # fmt: skip
        stream = shapes_stream(den, config_k, ctx.task.sample_shape, device, ids[:1])
        outs = []
        t0 = time.perf_counter()
        for i in range(num + stream.latency):
            y = stream(frame_cond={"input_ids": ids[min(i, num - 1) : min(i, num - 1) + 1]})
            if i >= stream.latency:
                outs.append(y.clone())
        sync(device)
        gen_s = time.perf_counter() - t0
        images = torch.cat(outs).clamp(-1, 1)
        scores = ctx.task.scorer(images, ctx.task.eval_cond)
        timing = time_calls(lambda i, st=stream: st(frame_cond={"input_ids": ids[i % num : i % num + 1]}),
                            device, s.warmup, s.timed)  # fmt: skip
        rows[str(k)] = {
            **scores,
            **timing,
            "stream_seconds_for_eval_set": gen_s,
            "frames": num,
            "cuda_graphs": stream._graph is not None,
        }
        print(f"  student {k} step(s): {timing['fps']:8.1f} fps  p95 {timing['latency_p95_ms']:.2f} ms  "
              f"FD {scores['frechet']:.2f}  adherence 1-obj {scores['adherence_one_object']:.2f} "
              f"2-obj {scores['adherence_two_object']:.2f}", flush=True)  # fmt: skip
    filt = shapes_static_filter(den, ctx, obj.t_max, device, s)
    doc["shapes_students"] = {
        "static_filter": filt,
        "student": "consistency distillation of the guided teacher (CFG 6), Heun teacher steps, 18 points",
        "student_train_seconds": train_s, "teacher": info, "frechet_floor": ctx.task.floor,
        "sample_shape": list(ctx.task.sample_shape), "steps": rows, "seconds": time.perf_counter() - start,
        "settings": {k: v for k, v in asdict(ss).items() if not isinstance(v, tuple)},
    }  # fmt: skip
    save()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CPU, tiny sizes (~2 minutes)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the networks (default: on for CUDA)")  # fmt: skip
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                        help="replay each call as one CUDA graph (default: on for CUDA)")  # fmt: skip
    parser.add_argument("--parts", default="a,b", help="which parts to run: a, b or a,b")
    parser.add_argument("--quantize", default="", help=f"part (b) with torchao weights: comma-separated modes of "
                        f"{', '.join(q for q in QUANTIZATIONS if q != 'none')} (writes the 'quant' variant)")  # fmt: skip
    parser.add_argument(
        "--out", default=None, help="result file (default: benchmarks/results/stream_bench-...)"
    )
    args = parser.parse_args()
    s = Settings.quick() if args.quick else Settings()
    quantize = tuple(q.strip() for q in args.quantize.split(",") if q.strip())
    bad = [q for q in quantize if q not in QUANTIZATIONS or q == "none"]
    if bad:
        parser.error(f"--quantize: expected modes of {QUANTIZATIONS[1:]}, got {bad}")
    s = replace(s, quantize=quantize)
    if args.device:
        s = replace(s, device=args.device)
    if s.device == "cuda" and not torch.cuda.is_available():
        s = replace(s, device="cpu")
    cuda = s.device == "cuda"
    s = replace(s, compile=cuda if args.compile is None else args.compile,
                cuda_graphs=cuda if args.cuda_graphs is None else args.cuda_graphs)  # fmt: skip
    if not cuda:
        s = replace(s, dtype="fp32")
    device = torch.device(s.device)
    dtype = torch.bfloat16 if s.dtype == "bf16" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    parts = {p.strip() for p in args.parts.split(",")}
    doc: dict[str, Any] = {"settings": asdict(s), "protocol": f"{s.warmup} warm-up calls, {s.timed} timed calls; "
                           + ("CUDA events" if cuda else "perf_counter")}  # fmt: skip
    only_a = parts == {"a"}  # part (a) alone gets its own file, so it never overwrites a (b) speed result
    flags = (("quick", args.quick), ("quant", bool(quantize)), ("shapes", only_a))
    variant = "-".join(v for v, on in flags if on) or None

    def save() -> None:
        path = write_result(doc, script="stream_bench", variant=variant, device=device, packages=("diffcore", "diff-image"),
                            path=args.out)  # fmt: skip
        print(f"wrote {path}", flush=True)

    print(
        f"stream_bench on {device_tag(device)} ({s.dtype}, compile={s.compile}, cuda_graphs={s.cuda_graphs})"
    )
    t0 = time.perf_counter()
    with torch.no_grad():
        if "b" in parts:
            part_b(s, device, dtype, doc, save)
    if "a" in parts and s.shapes:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            part_a(s, device, Path(tmp), doc, save, args.quick)
    doc["seconds"] = time.perf_counter() - t0
    save()


if __name__ == "__main__":
    main()
