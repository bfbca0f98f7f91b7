"""Data of diff-video: the generated moving-shapes set (offline, deterministic by seed; the default) and a
loader for local video folders (captions in ``metadata.jsonl`` or class sub-folders).

Names load on first use (PEP 562), so ``diff_video.data.shapes_config`` (what the configurations need) imports
without numpy, torch or a video decoder."""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    "diff_video.data.shapes_config": ["COLOURS", "DIRECTIONS", "EVENTS", "SHAPES", "SPEEDS", "ShapesConfig"],
    "diff_video.data.shapes": [
        "CaptionObject",
        "ClipSpec",
        "MovingShapes",
        "ObjectSpec",
        "clip_spec",
        "parse_caption",
        "render_clip",
        "shapes_vocabulary",
    ],
    "diff_video.data.decode": ["VideoInfo", "available_decoders", "probe", "read_frames", "read_video"],
    "diff_video.data.folder": ["VIDEO_EXTENSIONS", "BucketBatchSampler", "VideoFolder"],
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'diff_video.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
