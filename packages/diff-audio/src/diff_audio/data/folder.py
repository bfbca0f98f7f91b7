"""Real audio from a local folder: wav / flac / ogg (and mp3 where the installed libsndfile decodes it) through
soundfile, resampled and channel-matched with torchaudio, cropped at random the way Stable Audio does.

Captions come from ``metadata.jsonl`` in the folder (one JSON object a line: ``{"file": "a/b.wav", "caption":
"..."}``; ``path`` is accepted for ``file``, ``text`` for ``caption``) or, without one, from class sub-folders
(``<root>/<class>/*.wav`` -> caption ``"<class>"``, class index by sorted name); files directly under a root
without metadata get an empty caption.

Each item is a crop of ``clip_seconds``: at a random offset when the file is longer (``seconds_start`` records
it), zero-padded at the end when shorter; ``seconds_total`` is the file's whole duration (Stable Audio's timing
conditioning). Files soundfile cannot open are skipped when the folder is indexed and listed in
:attr:`AudioFolder.skipped` as ``(path, reason)``; a bad line of ``metadata.jsonl`` is an error naming the
file and line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

__all__ = ["AUDIO_SUFFIXES", "AudioFolder", "FolderEntry", "match_channels", "read_metadata"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")


@dataclass
class FolderEntry:
    """One readable file: its path, caption, class index (-1 without classes), frames and rate on disk."""

    path: Path
    caption: str
    label: int
    frames: int
    sample_rate: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def read_metadata(path: Path) -> dict[str, str]:
    """``metadata.jsonl`` -> ``{relative file: caption}``; a bad line raises ``ValueError`` naming file and line."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        file = record.get("file", record.get("path")) if isinstance(record, dict) else None
        caption = record.get("caption", record.get("text", "")) if isinstance(record, dict) else None
        if not isinstance(file, str) or not isinstance(caption, str):
            raise ValueError(
                f'{path}:{number}: expected {{"file": "<relative path>", "caption": "<text>"}}, got {line.strip()[:80]}'
            )
        out[os.path.normpath(file)] = caption
    return out


def match_channels(audio: torch.Tensor, channels: int) -> torch.Tensor:
    """``(c, n)`` -> ``(channels, n)``: mono is duplicated to stereo, several channels are averaged to mono;
    any other mismatch is an error (nothing is dropped silently)."""
    c = audio.shape[0]
    if c == channels:
        return audio
    if c == 1:
        return audio.expand(channels, -1).clone()
    if channels == 1:
        return audio.mean(0, keepdim=True)
    raise ValueError(
        f"channels: cannot turn {c}-channel audio into {channels} channels (expected mono or stereo)"
    )


class AudioFolder(torch.utils.data.Dataset):
    """Audio files under ``root`` as crops of ``clip_seconds`` at ``sample_rate`` with ``channels``.

    Item: ``{"audio": (channels, clip_samples) float32, "caption": str, "label": int, "seconds_start": float,
    "seconds_total": float, "path": str}``. ``seed`` and the index fix each item's crop (reproducible).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        sample_rate: int = 16000,
        channels: int = 1,
        clip_seconds: float = 1.0,
        seed: int = 0,
        random_crop: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data_path: {self.root} is not a folder")
        if channels not in (1, 2):
            raise ValueError(f"channels: expected 1 or 2, got {channels}")
        if clip_seconds <= 0:
            raise ValueError(f"clip_seconds: expected > 0, got {clip_seconds}")
        self.sample_rate, self.channels, self.clip_seconds = sample_rate, channels, clip_seconds
        self.seed, self.random_crop = seed, random_crop
        self.skipped: list[tuple[Path, str]] = []
        self.classes: list[str] = []
        self.entries = self._index()
        if not self.entries:
            raise ValueError(
                f"data_path: {self.root} holds no readable audio ({', '.join(AUDIO_SUFFIXES)}); "
                f"skipped {len(self.skipped)} file(s)"
            )

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sample_rate)

    def _index(self) -> list[FolderEntry]:
        meta_file = self.root / "metadata.jsonl"
        captions = read_metadata(meta_file) if meta_file.is_file() else None
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if captions is None:
            self.classes = sorted({p.relative_to(self.root).parts[0] for p in files if p.parent != self.root})
        entries = []
        for path in files:
            rel = os.path.normpath(path.relative_to(self.root))
            if captions is not None and rel not in captions:
                self.skipped.append((path, "not listed in metadata.jsonl"))
                continue
            try:
                info = sf.info(str(path))
            except (RuntimeError, sf.LibsndfileError) as exc:
                self.skipped.append((path, f"unreadable: {exc}"))
                continue
            if info.frames <= 0:
                self.skipped.append((path, "no audio frames"))
                continue
            if captions is not None:
                caption, label = captions[rel], -1
            elif path.parent != self.root:
                name = path.relative_to(self.root).parts[0]
                caption, label = name.replace("_", " "), self.classes.index(name)
            else:
                caption, label = "", -1
            entries.append(FolderEntry(path, caption, label, info.frames, info.samplerate, info.channels))
        return entries

    def report(self) -> str:
        """One line per skipped file (``path: reason``), or an empty string."""
        return "\n".join(f"{p}: {why}" for p, why in self.skipped)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        rng = np.random.default_rng([self.seed, index])
        src_clip = round(self.clip_seconds * entry.sample_rate)
        start = (
            int(rng.integers(0, entry.frames - src_clip + 1))
            if self.random_crop and entry.frames > src_clip
            else 0
        )
        try:
            data, rate = sf.read(
                str(entry.path), start=start, frames=src_clip, dtype="float32", always_2d=True
            )
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise ValueError(f"data_path: cannot read {entry.path} ({exc})") from exc
        audio = match_channels(torch.from_numpy(data.T.copy()), self.channels)
        if rate != self.sample_rate:
            audio = AF.resample(audio, rate, self.sample_rate)
        n = self.clip_samples
        audio = torch.nn.functional.pad(audio[:, :n], (0, max(0, n - audio.shape[1])))
        return {
            "audio": audio,
            "caption": entry.caption,
            "label": entry.label,
            "seconds_start": start / entry.sample_rate,
            "seconds_total": entry.seconds,
            "path": str(entry.path),
        }
