"""Data of diff-video: the generated moving-shapes set (offline, deterministic by seed; the default) and a
loader for local video folders (captions in ``metadata.jsonl`` or class sub-folders)."""

from diff_video.data.shapes import (
    COLOURS,
    DIRECTIONS,
    EVENTS,
    SHAPES,
    SPEEDS,
    CaptionObject,
    ClipSpec,
    MovingShapes,
    ObjectSpec,
    ShapesConfig,
    clip_spec,
    parse_caption,
    render_clip,
    shapes_vocabulary,
)

__all__ = [
    "COLOURS",
    "DIRECTIONS",
    "EVENTS",
    "SHAPES",
    "SPEEDS",
    "CaptionObject",
    "ClipSpec",
    "MovingShapes",
    "ObjectSpec",
    "ShapesConfig",
    "clip_spec",
    "parse_caption",
    "render_clip",
    "shapes_vocabulary",
]

from diff_video.data.decode import VideoInfo, available_decoders, probe, read_frames, read_video
from diff_video.data.folder import VIDEO_EXTENSIONS, BucketBatchSampler, VideoFolder

__all__ += [
    "VIDEO_EXTENSIONS",
    "BucketBatchSampler",
    "VideoFolder",
    "VideoInfo",
    "available_decoders",
    "probe",
    "read_frames",
    "read_video",
]
