"""Real-time image streams through a saved pipeline (``diffuse image stream``), on :mod:`diffcore.streaming`.

Input frames come from a folder of images, a video file (read with diff-video's reader, imported only when a
video is given: diff-image does not depend on diff-video) or a synthetic moving scene; each is resized to the
pipeline's image size. The stream is StreamDiffusion's (Kodaira et al. 2023): the pipeline's network as a
``diffcore`` denoiser, the autoencoder (if any) as the stream's encoder and decoder. A pipeline with ControlNets
streams with them: each input frame's control maps are read from the frame itself
(:func:`~diff_image.pipeline.control.control_maps_from_images`, the maps the ControlNets were trained on) and
travel with the frame through the steps (``FrameStream``'s ``frame_cond``). Images are ``(C, H, W)`` in
``[-1, 1]``; time runs from ``t = 1`` (noise) to ``t = 0`` (data).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from diffcore.streaming import FrameStream, StreamConfig
from torch import Tensor

from diff_image.config import ImageStreamConfig
from diff_image.io import read_png
from diff_image.pipeline.control import control_maps_from_images, set_control_scales
from diff_image.pipeline.core import ImagePipeline

__all__ = ["VIDEO_SUFFIXES", "read_source", "stream_frames", "synthetic_scene"]

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})


def synthetic_scene(num_frames: int, shape: tuple[int, int, int]) -> Tensor:
    """``(T, C, H, W)`` in [-1, 1]: a bright disc circling over a slowly shifting colour gradient."""
    c, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    frames = []
    for i in range(num_frames):
        phase = 2 * math.pi * i / max(num_frames, 1)
        cx, cy = 0.5 * math.cos(phase), 0.5 * math.sin(phase)
        disc = (((xx - cx) ** 2 + (yy - cy) ** 2) < 0.09).float()
        rgb = torch.stack([0.6 * xx + 0.2 * math.sin(phase), 0.6 * yy, -0.4 + 0.0 * xx])
        frames.append((rgb * (1 - disc) + disc * 0.9).clamp(-1, 1))
    out = torch.stack(frames)
    return out.mean(1, keepdim=True) if c == 1 else out


def _resize(frames: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """``(T, C', H', W')`` in [-1, 1] -> ``(T, C, H, W)`` (bilinear, antialiased; grey <-> RGB)."""
    c, h, w = shape
    if frames.shape[1] != c:
        frames = frames.mean(1, keepdim=True) if c == 1 else frames[:, :1].expand(-1, 3, -1, -1)
    if frames.shape[-2:] != (h, w):
        frames = torch.nn.functional.interpolate(frames, size=(h, w), mode="bilinear", antialias=True)
    return frames.clamp(-1, 1)


def _read_video(path: Path) -> Tensor:
    try:
        from diff_video.data.decode import read_video
    except ImportError as exc:
        raise ImportError(
            f"source: reading the video {path} needs diff-video (pip install diff-video), which is not installed; "
            "or pass a folder of frames"
        ) from exc
    return read_video(path).permute(1, 0, 2, 3)  # (3, T, H, W) -> (T, 3, H, W)


def read_source(source: str, num_frames: int, shape: tuple[int, int, int]) -> Tensor:
    """The input frames ``(T, C, H, W)`` of ``source`` (a folder of images, a video file or ``synthetic``),
    resized to ``shape``; at most ``num_frames`` of them (0: all; synthetic: exactly ``num_frames``)."""
    if source == "synthetic":
        return synthetic_scene(num_frames, shape)
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(
                f"source: {path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        files = files[:num_frames] if num_frames else files
        frames = torch.stack([_resize(read_png(f, mode="RGB")[None], shape)[0] for f in files])
        return frames
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        video = _read_video(path)
        return _resize(video[:num_frames] if num_frames else video, shape)
    raise FileNotFoundError(
        f"source: expected a folder of images, a video file ({', '.join(sorted(VIDEO_SUFFIXES))}) or 'synthetic', "
        f"got {source!r}"
    )


def _condition(pipe: ImagePipeline, config: ImageStreamConfig) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    labels = config.labels[:1] or None
    prompt = config.prompts[0] if config.prompts else None
    if config.guidance != "none" and not pipe.conditional:
        raise ValueError(
            f"guidance: {config.guidance!r} needs a conditional pipeline (classes or text); use 'none'"
        )
    return pipe.condition(1, y=labels, prompt=prompt)


@torch.no_grad()
def stream_frames(
    pipe: ImagePipeline, config: ImageStreamConfig
) -> tuple[Tensor, Tensor | None, dict[str, Any]]:
    """Stream ``config.source`` (img2img) or ``config.num_frames`` noise frames (txt2img) through ``pipe``.

    Returns ``(outputs (T, C, H, W), inputs (T, C, H, W) or None, stats)``: output ``k`` is input ``k``
    processed (the pipeline's fill delay is flushed by feeding the last input again); ``stats``: frames,
    wall-clock fps of the stream calls, frames the similarity filter skipped.
    """
    network = pipe.network.eval()
    control = _control(pipe, network, config)
    device = pipe.device
    cond, uncond = _condition(pipe, config)
    stream_config = StreamConfig(
        mode=config.mode, t_index_list=config.t_index_list, num_steps=config.num_steps, grid=config.grid,
        step_rule=config.step_rule, guidance=config.guidance, guidance_scale=config.guidance_scale,
        similarity_filter=config.similarity_filter, filter_threshold=config.filter_threshold,
        cuda_graphs=config.cuda_graphs, compile=config.compile,
    )  # fmt: skip
    stream = FrameStream(
        pipe.denoiser(network), stream_config, pipe.sample_shape,
        encode=pipe.encode if pipe.autoencoder is not None else None, decode=pipe.decode, cond=cond,
        uncond=uncond or None, generator=torch.Generator(device).manual_seed(config.seed),
        filter_generator=torch.Generator().manual_seed(config.seed), device=device,
    )  # fmt: skip
    inputs, maps = None, None
    if config.mode == "img2img" or control:
        inputs = read_source(config.source, config.num_frames, pipe.image_shape).to(device)
    count = len(inputs) if inputs is not None else config.num_frames
    order = [
        min(i, count - 1) for i in range(count + stream.latency)
    ]  # the last frame again flushes the stream
    if control:
        maps = control_maps_from_images(inputs, list(pipe.controlnets))  # type: ignore[arg-type]
    calls = [inputs[i][None] if config.mode == "img2img" else None for i in order]  # type: ignore[index]
    outputs = []
    start = time.perf_counter()
    for i, (k, frame) in enumerate(zip(order, calls)):
        out = stream(frame, frame_cond={"control_maps": maps[k][None]} if maps is not None else None)
        if i >= stream.latency:
            outputs.append(out.clamp(-1, 1).cpu())
    seconds = time.perf_counter() - start
    stats = {"frames": len(outputs), "fps": len(calls) / seconds, "skipped": stream.skipped,
             "steps": len(config.t_index_list), "times": list(stream.times)}  # fmt: skip
    if control:
        stats["control"] = ",".join(f"{k}={v:g}" for k, v in control.items())
    return torch.cat(outputs), inputs.cpu() if inputs is not None else None, stats


def _control(pipe: ImagePipeline, network: torch.nn.Module, config: ImageStreamConfig) -> dict[str, float]:
    """The strength of each of the pipeline's ControlNets in this stream (``config.control`` at
    ``config.control_scale``, the others at 0; no ``control``: all of them at 1), set on ``network``;
    ``{}`` for a pipeline without ControlNets."""
    kinds = list(pipe.controlnets)
    if not kinds:
        if config.control:
            raise ValueError(f"control: the pipeline has no ControlNets, got {list(config.control)}")
        return {}
    used = list(config.control) or kinds
    if any(k not in kinds for k in used):
        raise ValueError(f"control: expected some of the pipeline's ControlNets {kinds}, got {used}")
    scales = list(config.control_scale) or [1.0] * len(used)
    if len(scales) != len(used):
        raise ValueError(
            f"control_scale: expected one value per control {used}, got {len(scales)}: {list(scales)}"
        )
    strength = {k: 0.0 for k in kinds} | dict(zip(used, scales))
    set_control_scales(network, [strength[k] for k in kinds])
    return strength
