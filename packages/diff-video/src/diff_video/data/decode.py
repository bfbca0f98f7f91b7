"""One interface to decode videos: PyAV (always installed) or decord (the ``decord`` extra, ``decord2`` on Linux).

``probe(path, decoder)`` -> :class:`VideoInfo`; ``read_frames(path, indices, decoder)`` -> ``(T, H, W, 3)`` uint8.
``decoder`` is ``"pyav"``, ``"decord"`` or ``"auto"`` (decord when it imports, else PyAV; PyAV also for a file decord
cannot decode: decord2 3.4 fails on frames narrower than 64 pixels). Both give the same frames for the same indices
(tested where decord is installed). Errors name the file.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DECODERS",
    "VideoInfo",
    "available_decoders",
    "probe",
    "read_frames",
    "read_video",
    "resolve_decoder",
]

DECODERS = ("auto", "pyav", "decord")
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class VideoInfo:
    """A video's frame count, frame rate (frames per second), height and width."""

    frames: int
    fps: float
    height: int
    width: int


def available_decoders() -> list[str]:
    """The decoders that can run here: ``pyav`` and, when installed, ``decord``."""
    found = ["pyav"]
    if importlib.util.find_spec("decord") is not None:
        found.append("decord")
    return found


def resolve_decoder(decoder: str) -> str:
    """``decoder`` checked; ``auto`` becomes decord when installed, else PyAV."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder: expected one of {DECODERS}, got {decoder!r}")
    if decoder == "auto":
        return "decord" if "decord" in available_decoders() else "pyav"
    if decoder == "decord" and "decord" not in available_decoders():
        raise ValueError("decoder: decord is not installed (pip install 'diff-video[decord]', Linux only)")
    return decoder


def probe(path: PathLike, decoder: str = "auto") -> VideoInfo:
    """Frame count, fps and size of the video at ``path``; ``ValueError`` naming the file when it cannot be read."""
    if decoder == "auto" and resolve_decoder(decoder) == "decord":
        try:
            info = probe(path, "decord")
            read_frames_with(path, [0], "decord")  # decord opens files it then fails to decode
            return info
        except ValueError:
            decoder = "pyav"
    p = Path(path)
    try:
        if resolve_decoder(decoder) == "decord":
            import decord

            vr = decord.VideoReader(str(p))
            h, w = vr[0].shape[:2]
            return VideoInfo(len(vr), float(vr.get_avg_fps()), int(h), int(w))
        return _probe_pyav(p)
    except ValueError as exc:
        if str(exc).startswith(("decoder:", f"video: {p}")):
            raise
        raise ValueError(f"video: {p} cannot be decoded ({exc})") from exc
    except Exception as exc:  # decoders raise their own error types (av.error.*, decord.DECORDError)
        raise ValueError(f"video: {p} cannot be decoded ({type(exc).__name__}: {exc})") from exc


def _probe_pyav(path: Path) -> VideoInfo:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"video: {path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        count = stream.frames
        h = w = 0
        if count <= 0:  # some containers (webm, mkv) do not store the count: decode to count
            count = 0
            for frame in container.decode(stream):
                count += 1
                h, w = frame.height, frame.width
        else:
            h, w = stream.codec_context.height, stream.codec_context.width
    if count == 0:
        raise ValueError(f"video: {path} has no frames")
    return VideoInfo(int(count), float(rate), int(h), int(w))


def read_frames(path: PathLike, indices: Sequence[int], decoder: str = "auto") -> np.ndarray:
    """Frames ``indices`` of the video at ``path`` (see :func:`read_frames_with`); ``auto`` falls back to PyAV when
    decord cannot decode the file."""
    chosen = resolve_decoder(decoder)
    try:
        return read_frames_with(path, indices, chosen)
    except ValueError:
        if decoder != "auto" or chosen == "pyav":
            raise
        return read_frames_with(path, indices, "pyav")


def read_frames_with(path: PathLike, indices: Sequence[int], decoder: str) -> np.ndarray:
    """Frames ``indices`` (0-based, any order, repeats allowed) of the video at ``path`` as ``(T, H, W, 3)`` uint8
    RGB. An index past the last frame is an error naming the file and its frame count."""
    p = Path(path)
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError("indices: expected at least one frame index")
    try:
        if resolve_decoder(decoder) == "decord":
            import decord

            vr = decord.VideoReader(str(p))
            if max(idx) >= len(vr) or min(idx) < 0:
                raise ValueError(f"video: {p} has {len(vr)} frames; asked for frame {max(idx)}")
            return vr.get_batch(idx).asnumpy()
        return _read_pyav(p, idx)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"video: {p} cannot be decoded ({type(exc).__name__}: {exc})") from exc


def _read_pyav(path: Path, idx: list[int]) -> np.ndarray:
    import av

    wanted = set(idx)
    last = max(idx)
    got: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                got[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                break
    if min(idx) < 0 or last not in got:
        raise ValueError(
            f"video: {path} has {len(got) and max(got) + 1} decodable frames; asked for frame {last}"
        )
    return np.stack([got[i] for i in idx])


def read_video(path: PathLike, decoder: str = "auto") -> Tensor:
    """All frames of a video as ``(3, T, H, W)`` float32 in [-1, 1]."""
    info = probe(path, decoder)
    frames = read_frames(path, range(info.frames), decoder)
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1
