"""Real videos from a local folder, the Hugging Face ``VideoFolder`` way.

Layout: video files (``.mp4 .avi .webm .mkv .mov``) anywhere under ``root``, with either

- ``metadata.jsonl`` at ``root``: one JSON object per line, ``{"file_name": "<path relative to root>", "text": "..."}``
  (``caption`` is accepted for ``text``): a text-to-video set; a bad line is an error naming the file and line; or
- class sub-folders ``root/<class>/<video>``: a class-conditional set (classes in sorted order).

Clips: ``frames`` frames, every ``stride``-th decoded frame (or resampled to ``fps`` frames per second), starting
at a random frame (``torch``'s RNG, seeded per DataLoader worker). Size: ``resize="none"`` keeps each video's
size (videos of different sizes fall in different buckets, :class:`BucketBatchSampler`; a set ``height x width``
that a video does not have is an error naming it), ``"resize"`` scales to ``height x width`` (aspect not kept),
``"center-crop"`` scales the short side and crops the centre. Nothing is resized unless asked.

A file that cannot be decoded, or is too short for one clip, is skipped and reported (:attr:`VideoFolder.skipped`,
and one line in :attr:`VideoFolder.notes`).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from diff_video.data.decode import VideoInfo, probe, read_frames, resolve_decoder

__all__ = ["VIDEO_EXTENSIONS", "BucketBatchSampler", "VideoFolder"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")
RESIZES = ("none", "resize", "center-crop")


class VideoFolder(Dataset):
    """Clips of the videos under ``root``: item ``i`` is ``{"x": (3, frames, H, W) in [-1, 1], "caption": str}``
    (text sets) or ``{"x": ..., "y": class index}`` (class sub-folders). See the module docstring."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        frames: int = 16,
        stride: int = 1,
        fps: float = 0.0,
        height: int = 0,
        width: int = 0,
        resize: str = "none",
        decoder: str = "auto",
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.path: {self.root} is not a folder")
        if frames < 1 or stride < 1 or fps < 0:
            raise ValueError(f"frames, stride, fps: expected >= 1, >= 1, >= 0, got {frames}, {stride}, {fps}")
        if resize not in RESIZES:
            raise ValueError(f"resize: expected one of {RESIZES}, got {resize!r}")
        if resize != "none" and (height < 1 or width < 1):
            raise ValueError(f"height, width: resize={resize!r} needs a target size, got {height}x{width}")
        self.frames, self.stride, self.fps = frames, stride, fps
        self.height, self.width, self.resize = height, width, resize
        self.decoder = resolve_decoder(decoder)
        entries, self.class_names = self._entries()
        self.files: list[Path] = []
        self.captions: list[str] = []
        self.labels: list[int] = []
        self.infos: list[VideoInfo] = []
        self.skipped: list[tuple[Path, str]] = []
        for path, caption, label in entries:
            reason = self._admit(path)
            if isinstance(reason, str):
                self.skipped.append((path, reason))
                continue
            self.files.append(path)
            self.captions.append(caption)
            self.labels.append(label)
            self.infos.append(reason)
        if not self.files:
            detail = f"; skipped: {self.skipped[0][0]} ({self.skipped[0][1]})" if self.skipped else ""
            raise ValueError(
                f"data.path: {self.root} has no usable video ({', '.join(VIDEO_EXTENSIONS)}){detail}"
            )
        self.notes = [f"skipped {p}: {why}" for p, why in self.skipped]
        self.buckets = [self.clip_size(info) for info in self.infos]

    # ------------------------------------------------------------------ what the folder holds

    def _entries(self) -> tuple[list[tuple[Path, str, int]], list[str]]:
        meta = self.root / "metadata.jsonl"
        if meta.is_file():
            return self._from_metadata(meta), []
        videos = sorted(
            p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
        )
        classes = sorted(
            {p.relative_to(self.root).parts[0] for p in videos if len(p.relative_to(self.root).parts) > 1}
        )
        if classes and all(len(p.relative_to(self.root).parts) > 1 for p in videos):
            return [(p, "", classes.index(p.relative_to(self.root).parts[0])) for p in videos], classes
        return [(p, "", -1) for p in videos], []

    def _from_metadata(self, meta: Path) -> list[tuple[Path, str, int]]:
        out = []
        for n, line in enumerate(meta.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"data.path: {meta}, line {n}: not JSON ({exc.msg})") from exc
            text = row.get("text", row.get("caption")) if isinstance(row, dict) else None
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("file_name"), str)
                or not isinstance(text, str)
            ):
                raise ValueError(
                    f'data.path: {meta}, line {n}: expected {{"file_name": "...", "text": "..."}}'
                )
            path = self.root / row["file_name"]
            if not path.is_file():
                raise FileNotFoundError(
                    f"data.path: {meta}, line {n}: {row['file_name']} does not exist under {self.root}"
                )
            out.append((path, text, -1))
        return out

    def _step(self, info: VideoInfo) -> float:
        """Decoded frames between two clip frames: ``stride``, or ``source fps / fps`` when resampling."""
        if self.fps > 0:
            if info.fps <= 0:
                raise ValueError("has no frame rate to resample from")
            return info.fps / self.fps
        return float(self.stride)

    def _admit(self, path: Path) -> VideoInfo | str:
        """The video's info, or why it is skipped."""
        try:
            info = probe(path, self.decoder)
            span = math.floor((self.frames - 1) * self._step(info)) + 1
        except ValueError as exc:
            return str(exc).replace(f"video: {path} ", "")
        if info.frames < span:
            return f"has {info.frames} frames; a clip needs {span}"
        if self.resize == "none" and self.height and (info.height, info.width) != (self.height, self.width):
            raise ValueError(
                f"data.path: {path} is {info.height}x{info.width}, expected {self.height}x{self.width}; "
                "set resize=resize or resize=center-crop to change its size"
            )
        return info

    def clip_size(self, info: VideoInfo) -> tuple[int, int, int]:
        """``(frames, H, W)`` of a clip of a video with ``info`` (its bucket)."""
        if self.resize == "none":
            return (self.frames, info.height, info.width)
        return (self.frames, self.height, self.width)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """``(3, frames, H, W)`` of the most common bucket."""
        return (3, *Counter(self.buckets).most_common(1)[0][0])

    def __len__(self) -> int:
        return len(self.files)

    # ------------------------------------------------------------------ one clip

    def frame_indices(self, index: int, start: int | None = None) -> list[int]:
        """The decoded-frame indices of a clip of video ``index`` from ``start`` (default: random)."""
        info = self.infos[index]
        step = self._step(info)
        span = math.floor((self.frames - 1) * step) + 1
        if start is None:
            start = int(torch.randint(0, info.frames - span + 1, ()).item())
        return [start + math.floor(k * step) for k in range(self.frames)]

    def _shape(self, clip: Tensor) -> Tensor:
        """``(3, T, H, W)`` -> the target size as :attr:`resize` says."""
        if self.resize == "none":
            return clip
        h, w = clip.shape[-2:]
        if self.resize == "resize":
            return F.interpolate(
                clip.transpose(0, 1),
                (self.height, self.width),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            ).transpose(0, 1)
        scale = max(self.height / h, self.width / w)
        sh, sw = max(self.height, round(h * scale)), max(self.width, round(w * scale))
        clip = F.interpolate(
            clip.transpose(0, 1), (sh, sw), mode="bilinear", antialias=True, align_corners=False
        ).transpose(0, 1)
        top, left = (sh - self.height) // 2, (sw - self.width) // 2
        return clip[..., top : top + self.height, left : left + self.width]

    def clip(self, index: int, start: int | None = None) -> Tensor:
        """Clip of video ``index`` ``(3, frames, H, W)`` in [-1, 1]."""
        frames = read_frames(self.files[index], self.frame_indices(index, start), self.decoder)
        clip = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1
        return self._shape(clip).clamp(-1, 1)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"x": self.clip(index)}
        if self.class_names:
            item["y"] = self.labels[index]
        else:
            item["caption"] = self.captions[index]
        return item


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices from one bucket each (clips of one ``(frames, H, W)``), shuffled by ``seed + epoch``:
    variable-size training without padding or resizing (Sora / Open-Sora's buckets). Partial batches are kept."""

    def __init__(self, buckets: list[tuple[int, int, int]], batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.buckets, self.batch_size, self.seed, self.epoch = buckets, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; the shuffle of the next iteration is seeded by ``seed + epoch``."""
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i, key in enumerate(self.buckets):
            groups.setdefault(key, []).append(i)
        batches = []
        for key in sorted(groups):
            idx = groups[key]
            order = [idx[int(j)] for j in torch.randperm(len(idx), generator=gen)]
            batches += [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        return [batches[int(j)] for j in torch.randperm(len(batches), generator=gen)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
