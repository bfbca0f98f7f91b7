"""The ``sample`` and ``image_to_video`` verbs: clips from a saved pipeline, written as MP4 / GIF / PNG."""

from __future__ import annotations

from pathlib import Path

import torch
from diffcore.rng import make_generator
from torch import Tensor

from diff_video.config import VideoI2VConfig, VideoSampleConfig
from diff_video.io import read_image, save_clips
from diff_video.pipeline.core import VideoPipeline

__all__ = ["image_to_video", "sample"]


def sample(
    pipeline: VideoPipeline,
    config: VideoSampleConfig,
    *,
    generator: torch.Generator | None = None,
    out: str | Path | None = None,
) -> Tensor:
    """Draw ``config.num_samples`` clips ``(N, C, T, H, W)`` in [-1, 1] (``generator`` default: seeded by
    ``config.seed``); with ``out``, write them there (``config.formats``, ``grid.png``, ``captions.json``)."""
    gen = generator if generator is not None else make_generator(config.seed, pipeline.device)
    n = config.num_samples
    clips = pipeline.generate(
        n, prompts=list(config.prompts) or None, labels=list(config.labels) or None, frames=config.frames,
        guidance=config.guidance, sampler=config.sampler, steps=config.steps, generator=gen,
        batch_size=config.batch_size, progress=True,
    )  # fmt: skip
    if out is not None:
        save_clips(clips, out, config.formats, config.fps, captions=_captions(pipeline, n, config))
    return clips


def _captions(pipeline: VideoPipeline, n: int, config: VideoSampleConfig) -> list[str]:
    if pipeline.text_encoder is not None:
        prompts = list(config.prompts) or pipeline.prompts or [""]
        return [prompts[i % len(prompts)] for i in range(n)]
    if pipeline.num_classes:
        labels = list(config.labels) or list(range(pipeline.num_classes))
        names = pipeline.class_names or [str(i) for i in range(pipeline.num_classes)]
        return [names[labels[i % len(labels)]] for i in range(n)]
    return [""] * n


def _given_frames(pipeline: VideoPipeline, config: VideoI2VConfig) -> Tensor:
    """``(1, C, K, H, W)``: the image, or the last ``context_frames`` frames of a video."""
    c, _, h, w = pipeline.clip_shape
    path = Path(config.image)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        image = read_image(path, (h, w))
        return (image if c == 3 else image.mean(0, keepdim=True))[None, :, None]
    from diff_video.data.decode import read_video

    video = read_video(path)
    if video.shape[-2:] != (h, w) or video.shape[0] != c:
        raise ValueError(
            f"image: {path} has frames {tuple(video.shape)}; the pipeline makes {c}x{h}x{w} frames"
        )
    if config.context_frames < 1 or config.context_frames > video.shape[1]:
        raise ValueError(
            f"context_frames: expected 1..{video.shape[1]} frames of {path}, got {config.context_frames}"
        )
    return video[None, :, -config.context_frames :]


def image_to_video(
    pipeline: VideoPipeline, config: VideoI2VConfig, *, out: str | Path | None = None
) -> Tensor:
    """A clip ``(1, C, T, H, W)`` that starts with ``config.image`` (or continues a video's last frames) and moves
    as ``config.prompt`` / ``config.label`` says; ``config.length`` beyond one window extends it window by window.
    With ``out``, writes ``i2v_000.mp4`` / ``.gif`` / ``.png`` there."""
    if not config.image:
        raise ValueError("image: expected a PNG/JPEG first frame or a video to continue (--image)")
    given = _given_frames(pipeline, config)
    gen = make_generator(config.seed, pipeline.device)
    prompts = [config.prompt] if config.prompt else None
    labels = [config.label] if config.label >= 0 else None
    options = {
        "guidance": config.guidance,
        "sampler": config.sampler,
        "steps": config.steps,
        "generator": gen,
    }
    window = pipeline.clip_shape[1]
    if config.length > window:
        clip = pipeline.extend(1, config.length, config.overlap, prompts, labels, first=given, **options)
    else:
        clip = pipeline.image_to_video(given, prompts, labels, config.length or window, **options)
    if out is not None:
        save_clips(clip, out, ("mp4", "gif", "png"), config.fps, captions=[config.prompt], prefix="i2v")
    return clip
