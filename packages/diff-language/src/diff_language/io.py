"""The files of diff-language, every write atomic through :mod:`diffcore.io`: generated text (plain text or
JSON Lines) and the tokeniser file a pipeline keeps beside its model.

Tokeniser files: ``tokenizer.json`` (a ``tokenizers`` model: BPE or word-level, with its ``[EOS]``) or
``byte_tokenizer.json`` (``{"type": "bytes", ...}``: UTF-8 bytes and EOS = 256).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from diffcore.io import write_json, write_text

from diff_language.tokenizer import ByteTokenizer, HFTokenizer, TextTokenizer

__all__ = [
    "SAMPLE_SEPARATOR",
    "load_tokenizer",
    "read_samples_jsonl",
    "save_tokenizer",
    "write_samples_jsonl",
    "write_samples_text",
]

BYTES_FILE = "byte_tokenizer.json"
HF_FILE = "tokenizer.json"
SAMPLE_SEPARATOR = "\n\n=====\n\n"
"""Between two samples in a text file (samples may contain blank lines themselves)."""

PathLike = str | os.PathLike[str]


def save_tokenizer(tokenizer: TextTokenizer, directory: PathLike) -> Path:
    """Write ``tokenizer`` into ``directory`` (created if needed); returns the file written."""
    folder = Path(directory)
    if isinstance(tokenizer, ByteTokenizer):
        return write_json({"type": "bytes", "vocab_size": tokenizer.vocab_size}, folder / BYTES_FILE)
    if isinstance(tokenizer, HFTokenizer):
        return write_text(folder / HF_FILE, tokenizer.tokenizer.to_str())
    raise TypeError(f"tokenizer: expected a ByteTokenizer or an HFTokenizer, got {type(tokenizer).__name__}")


def load_tokenizer(directory: PathLike) -> TextTokenizer:
    """The tokeniser :func:`save_tokenizer` wrote into ``directory``."""
    from tokenizers import Tokenizer

    folder = Path(directory)
    if (folder / BYTES_FILE).is_file():
        return ByteTokenizer()
    if (folder / HF_FILE).is_file():
        try:
            return HFTokenizer(Tokenizer.from_file(str(folder / HF_FILE)))
        except Exception as exc:  # tokenizers raises its own Exception type for a malformed file
            raise ValueError(f"directory: {folder / HF_FILE} is not a readable tokenizer ({exc})") from exc
    raise FileNotFoundError(f"directory: {folder} has neither {HF_FILE} nor {BYTES_FILE}")


def write_samples_text(texts: Sequence[str], path: PathLike) -> Path:
    """Write ``texts`` into one text file, separated by :data:`SAMPLE_SEPARATOR`; returns the path."""
    return write_text(path, SAMPLE_SEPARATOR.join(texts) + "\n")


def write_samples_jsonl(texts: Sequence[str], path: PathLike, *, prompt: str = "") -> Path:
    """Write one JSON object per sample, ``{"index": i, "prompt": prompt, "text": text}``; returns the path."""
    lines = [
        json.dumps({"index": i, "prompt": prompt, "text": text}, ensure_ascii=False)
        for i, text in enumerate(texts)
    ]
    return write_text(path, "".join(line + "\n" for line in lines))


def read_samples_jsonl(path: PathLike) -> list[str]:
    """The ``text`` of every line of a file :func:`write_samples_jsonl` wrote."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: {p} is not a file")
    texts = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            texts.append(str(json.loads(line)["text"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"path: {p}:{n} is not a JSON object with a 'text' field") from exc
    return texts
