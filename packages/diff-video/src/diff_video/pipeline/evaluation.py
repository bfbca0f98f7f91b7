"""The ``evaluate`` verb: a pipeline trained on the moving-shapes set, scored on held-out captions and clips.

Metrics (all offline; :mod:`diff_video.metrics`):

- motion adherence of generated clips to their captions (direction, speed, colour, shape, object persistence),
  beside the same measures on real held-out clips (``real_*``: the ceiling of the tracker itself);
- ``frame_fd`` and ``fvd_local``: per-frame and spatiotemporal Frechet distances on the FVD-local feature network
  (trained here on the data; **not comparable with published FVD**), with their floors ``*_floor`` (two real sets
  of the same size) and the ratios ``*_ratio``;
- ``temporal_consistency`` of generated vs real clips (frame-feature cosine similarity);
- ``validation_loss``: Open-Sora's rectified-flow loss at 10 fixed times ``t = 0.05, 0.15, ..., 0.95`` on held-out
  clips with fixed noise;
- image-to-video: the first frame of held-out clips given, ``i2v_first_frame_psnr`` (dB, after decoding) and the
  motion adherence of the continuation (``i2v_direction_adherence``);
- ``fvd_i3d`` when ``config.i3d`` names a local TorchScript I3D.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from diffcore.io import write_json
from diffcore.rng import make_generator
from diffcore.training.time_sampling import Constant

from diff_video.config import VideoEvaluateConfig
from diff_video.data.shapes import MovingShapes, ShapesConfig
from diff_video.metrics.frechet import features_frechet, i3d_fvd, train_feature_net
from diff_video.metrics.motion import motion_adherence
from diff_video.metrics.quality import psnr, temporal_consistency
from diff_video.models import TextConditioned
from diff_video.pipeline.core import VideoPipeline
from diff_video.pipeline.training import VideoFlowObjective

__all__ = ["evaluate", "heldout_shapes", "validation_loss"]

VALIDATION_TIMES = tuple((i + 0.5) / 10 for i in range(10))


def heldout_shapes(pipeline: VideoPipeline, seed: int) -> ShapesConfig:
    """The moving-shapes set the pipeline was trained on, drawn with another ``seed``."""
    if pipeline.shapes is None:
        raise ValueError(
            "pipeline: evaluate scores pipelines trained on the moving-shapes set (data.path empty); this one was "
            "trained on a folder"
        )
    return dataclasses.replace(ShapesConfig(**pipeline.shapes), seed=seed)


@torch.no_grad()
def validation_loss(
    pipeline: VideoPipeline, clips: torch.Tensor, captions: list[str], seed: int = 0, batch_size: int = 32
) -> float:
    """Open-Sora's validation loss: the rectified-flow loss averaged over 10 fixed times and the clips
    ``(B, C, T, H, W)`` in [-1, 1], with noise drawn from ``seed`` (the same numbers for every pipeline)."""
    net = (
        pipeline.model
        if pipeline.text_encoder is None
        else TextConditioned(pipeline.model, pipeline.text_encoder)
    )
    tokenize = pipeline.text_encoder.tokenize if pipeline.text_encoder is not None else None
    total, count = 0.0, 0
    for t in VALIDATION_TIMES:
        objective = VideoFlowObjective(pipeline.schedule, Constant(t), tokenize=tokenize)
        gen = make_generator(seed, pipeline.device)
        for start in range(0, len(clips), batch_size):
            batch: dict[str, Any] = {"x": pipeline.encode(clips[start : start + batch_size])}
            if tokenize is not None:
                batch["caption"] = captions[start : start + batch_size]
            loss, _ = objective(net.eval(), batch, generator=gen)
            total += float(loss) * batch["x"].shape[0]
            count += batch["x"].shape[0]
    return total / count


def evaluate(
    pipeline: VideoPipeline, config: VideoEvaluateConfig, *, out: str | Path | None = None
) -> dict[str, float]:
    """Score ``pipeline`` (see the module docstring); with ``out``, write ``metrics.json`` and sample grids there."""
    shapes = heldout_shapes(pipeline, config.heldout_seed)
    n, m = config.num_samples, config.num_reference
    if n < 2 or m < 2:
        raise ValueError(f"num_samples, num_reference: expected >= 2 each, got {n}, {m}")
    heldout = MovingShapes(dataclasses.replace(shapes, length=n + 2 * m))
    real_n, captions = heldout.render(n)
    reference, _ = heldout.render(m, start=n)
    floor_set, _ = heldout.render(m, start=n + m)
    gen = make_generator(config.seed, pipeline.device)
    options = {
        "guidance": config.guidance,
        "sampler": config.sampler,
        "steps": config.steps,
        "generator": gen,
    }
    prompts = captions if pipeline.text_encoder is not None else None
    fake = pipeline.generate(n, prompts=prompts, progress=True, **options).cpu()
    metrics: dict[str, float] = {"num_samples": float(n), "num_reference": float(m)}
    metrics.update(motion_adherence(fake, captions, shapes.directions))
    real = motion_adherence(real_n, captions, shapes.directions)
    metrics.update({f"real_{k}": v for k, v in real.items() if k != "num_objects"})
    if config.feature_steps > 0:
        metrics.update(_frechet(fake, reference, floor_set, shapes, config, pipeline.device))
    metrics["validation_loss"] = validation_loss(pipeline, real_n, captions, config.seed)
    i2v = pipeline.image_to_video(real_n[:, :, :1], prompts, **options).cpu()
    metrics["i2v_first_frame_psnr"] = float(psnr(i2v[:, :, 0], real_n[:, :, 0]).clamp_max(100).mean())
    i2v_motion = motion_adherence(i2v, captions, shapes.directions)
    metrics["i2v_direction_adherence"] = i2v_motion["direction_adherence"]
    if config.extend_factor > 1:
        metrics.update(_extension(pipeline, real_n, captions, shapes, config, options))
    if config.i3d:
        metrics["fvd_i3d"] = i3d_fvd(reference, fake, config.i3d, str(pipeline.device))
    if out is not None:
        from diff_video.io import save_clips

        save_clips(fake[:16], Path(out) / "samples", ("mp4", "gif", "png"), captions=captions[:16])
        save_clips(i2v[:8], Path(out) / "i2v", ("gif",), captions=captions[:8], prefix="i2v")
        write_json(metrics, Path(out) / "metrics.json")
    return metrics


def _extension(
    pipeline: VideoPipeline,
    real: torch.Tensor,
    captions: list[str],
    shapes: ShapesConfig,
    config: VideoEvaluateConfig,
    options: dict[str, Any],
) -> dict[str, float]:
    """Clips ``extend_factor`` times the training length by sliding-window extension from the held-out first frames;
    object persistence and colour adherence over the whole length (direction is not scored: the object reaches a
    wall long before the end, which the captions do not describe)."""
    length = config.extend_factor * pipeline.clip_shape[1]
    overlap = max(1, pipeline.model_shape(pipeline.clip_shape[1])[1] // 4)
    prompts = captions if pipeline.text_encoder is not None else None
    long = pipeline.extend(real.shape[0], length, overlap, prompts, first=real[:, :, :1], **options).cpu()
    motion = motion_adherence(long, captions, shapes.directions)
    return {
        "extended_frames": float(long.shape[2]),
        "extended_object_persistence": motion["object_persistence"],
        "extended_colour_adherence": motion["colour_adherence"],
    }


def _frechet(
    fake: torch.Tensor,
    reference: torch.Tensor,
    floor_set: torch.Tensor,
    shapes: ShapesConfig,
    config: VideoEvaluateConfig,
    device: torch.device,
) -> dict[str, float]:
    net, accuracy = train_feature_net(shapes, steps=config.feature_steps, seed=config.seed, device=device)
    n = fake.shape[0]
    same_size = floor_set[:n]
    out = {f"feature_net_{k}_accuracy": v for k, v in accuracy.items()}
    ref_clip, ref_frame = net.clip_features(reference), net.frame_features(reference)
    out["fvd_local"] = features_frechet(net.clip_features(fake), ref_clip)
    out["fvd_local_floor"] = features_frechet(net.clip_features(same_size), ref_clip)
    out["frame_fd"] = features_frechet(net.frame_features(fake), ref_frame)
    out["frame_fd_floor"] = features_frechet(net.frame_features(same_size), ref_frame)
    out["fvd_local_ratio"] = out["fvd_local"] / max(out["fvd_local_floor"], 1e-12)
    out["frame_fd_ratio"] = out["frame_fd"] / max(out["frame_fd_floor"], 1e-12)

    def frame_feats(frames: torch.Tensor) -> torch.Tensor:
        return net.clip_features(frames[:, :, None])

    out["temporal_consistency"] = float(temporal_consistency(fake, frame_feats).mean())
    out["real_temporal_consistency"] = float(temporal_consistency(reference[:n], frame_feats).mean())
    return out
