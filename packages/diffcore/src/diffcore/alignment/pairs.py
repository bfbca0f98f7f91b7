"""Preference pairs: the data format every alignment objective reads.

A pair is two samples of one condition, the preferred one (``winner``, ``x^w``) and the other (``loser``,
``x^l``), as in Pick-a-Pic and Diffusion-DPO (Wallace et al. 2023, Sec. 4). :class:`PreferencePairs` holds
``N`` of them as tensors, the condition of each as network keyword arguments (``cond``, batch-first tensors)
and, optionally, its prompt text (``prompts``) for modalities that tokenise at batch time.

On disk a set is one folder: ``pairs.safetensors`` (``winner``, ``loser`` and ``cond.<key>`` tensors) and
``pairs.json`` (the format, the count, the condition keys, the prompts and free-form ``metadata``), both written
atomically; no pickles.

Batches (:meth:`PreferencePairs.loader`) are dicts ``{"winner": (B, ...), "loser": (B, ...), **cond}`` plus
``"prompt": list[str]`` when the set has prompts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from diffcore.io import atomic_path, read_json, write_json

__all__ = ["PAIRS_FORMAT", "PreferencePairs", "collate_pairs"]

PAIRS_FORMAT = "diffcore.preference_pairs/1"
WEIGHTS_FILE = "pairs.safetensors"
META_FILE = "pairs.json"
_RESERVED = ("winner", "loser", "prompt")


@dataclass
class PreferencePairs(Dataset):
    """``N`` preference pairs.

    Attributes:
        winner: the preferred samples ``(N, ...)``.
        loser: the other samples, shaped like ``winner``.
        cond: the condition of each pair as network keyword arguments, tensors ``(N, ...)`` (may be empty).
        prompts: the prompt text of each pair (``N`` strings), or empty.
        metadata: JSON-able facts about how the pairs were made (labeller, seeds), kept on disk.
    """

    winner: Tensor
    loser: Tensor
    cond: dict[str, Tensor] = field(default_factory=dict)
    prompts: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.winner, Tensor) or self.winner.ndim < 1 or len(self.winner) < 1:
            raise ValueError("winner: expected a tensor (N, ...) with N >= 1")
        if not isinstance(self.loser, Tensor) or self.loser.shape != self.winner.shape:
            shape = tuple(self.loser.shape) if isinstance(self.loser, Tensor) else type(self.loser).__name__
            raise ValueError(
                f"loser: expected shape {tuple(self.winner.shape)} (that of winner), got {shape}"
            )
        n = len(self.winner)
        self.cond = dict(self.cond)
        for key, value in self.cond.items():
            if key in _RESERVED:
                raise ValueError(f"cond: key {key!r} is reserved (winner, loser, prompt)")
            if not isinstance(value, Tensor) or value.ndim < 1 or len(value) != n:
                raise ValueError(f"cond[{key!r}]: expected a tensor with {n} rows (one per pair)")
        self.prompts = tuple(self.prompts)
        if self.prompts and len(self.prompts) != n:
            raise ValueError(f"prompts: expected {n} strings (one per pair) or none, got {len(self.prompts)}")

    def __len__(self) -> int:
        return len(self.winner)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"winner": self.winner[i], "loser": self.loser[i]}
        item.update({k: v[i] for k, v in self.cond.items()})
        if self.prompts:
            item["prompt"] = self.prompts[i]
        return item

    @classmethod
    def from_scores(
        cls,
        a: Tensor,
        b: Tensor,
        score_a: Tensor,
        score_b: Tensor,
        cond: Mapping[str, Tensor] | None = None,
        prompts: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> PreferencePairs:
        """Pairs from two candidates per condition and their scores (``(N,)``, higher is better; an oracle's
        pass / fail as 0 / 1, or a reward): the higher-scored candidate wins; ties are dropped."""
        if score_a.shape != (len(a),) or score_b.shape != (len(b),) or a.shape != b.shape:
            raise ValueError(
                f"a, b, score_a, score_b: expected (N, ...), (N, ...), (N,), (N,), got {tuple(a.shape)}, "
                f"{tuple(b.shape)}, {tuple(score_a.shape)}, {tuple(score_b.shape)}"
            )
        keep = (score_a != score_b).nonzero().reshape(-1)
        if len(keep) == 0:
            raise ValueError("score_a, score_b: every pair is a tie, so no preference can be read")
        a_wins = (score_a > score_b)[keep].reshape((-1,) + (1,) * (a.ndim - 1))
        winner = torch.where(a_wins, a[keep], b[keep])
        loser = torch.where(a_wins, b[keep], a[keep])
        idx = keep.tolist()
        return cls(
            winner,
            loser,
            {k: v[keep.to(v.device)] for k, v in (cond or {}).items()},
            tuple(prompts[i] for i in idx) if prompts else (),
            dict(metadata or {}),
        )

    def subset(self, indices: Sequence[int] | Tensor) -> PreferencePairs:
        """The pairs at ``indices``, in that order."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        return PreferencePairs(
            self.winner[idx.to(self.winner.device)],
            self.loser[idx.to(self.loser.device)],
            {k: v[idx.to(v.device)] for k, v in self.cond.items()},
            tuple(self.prompts[i] for i in idx.tolist()) if self.prompts else (),
            dict(self.metadata),
        )

    def split(
        self, held_out: float, generator: torch.Generator | None = None
    ) -> tuple[PreferencePairs, PreferencePairs]:
        """``(train, held_out)``: a random ``held_out`` fraction of the pairs (at least one) kept apart."""
        if not 0.0 < held_out < 1.0 or len(self) < 2:
            raise ValueError(
                f"held_out: expected a fraction in (0, 1) of at least 2 pairs, got {held_out} of {len(self)}"
            )
        order = torch.randperm(len(self), generator=generator)
        k = max(1, min(len(self) - 1, round(held_out * len(self))))
        return self.subset(order[k:]), self.subset(order[:k])

    def to(self, device: str | torch.device) -> PreferencePairs:
        """The same pairs with every tensor on ``device``."""
        return PreferencePairs(
            self.winner.to(device),
            self.loser.to(device),
            {k: v.to(device) for k, v in self.cond.items()},
            self.prompts,
            dict(self.metadata),
        )

    def loader(
        self,
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> DataLoader:
        """A ``DataLoader`` of pair batches (see the module docstring)."""
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        return DataLoader(
            self,
            batch_size=min(batch_size, len(self)),
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
            collate_fn=collate_pairs,
        )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``pairs.safetensors`` and ``pairs.json`` into ``directory`` (created if needed)."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"winner": self.winner, "loser": self.loser}
        tensors.update({f"cond.{k}": v for k, v in self.cond.items()})
        with atomic_path(out / WEIGHTS_FILE) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
        meta = {
            "format": PAIRS_FORMAT,
            "num_pairs": len(self),
            "cond_keys": sorted(self.cond),
            "prompts": list(self.prompts),
            "metadata": self.metadata,
        }
        write_json(meta, out / META_FILE)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> PreferencePairs:
        """Read a folder written by :meth:`save` onto ``device``."""
        from safetensors.torch import load_file

        folder = Path(directory)
        meta = read_json(folder / META_FILE, "preference pairs written by PreferencePairs.save")
        if meta.get("format") != PAIRS_FORMAT:
            raise ValueError(
                f"{folder / META_FILE}: format {meta.get('format')!r}, expected {PAIRS_FORMAT!r}"
            )
        if not (folder / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{folder / WEIGHTS_FILE}: no such file (expected the pairs' tensors)")
        tensors = load_file(str(folder / WEIGHTS_FILE), device=str(device))
        cond = {k: tensors[f"cond.{k}"] for k in meta["cond_keys"]}
        pairs = cls(tensors["winner"], tensors["loser"], cond, tuple(meta["prompts"]), meta["metadata"])
        if len(pairs) != meta["num_pairs"]:
            raise ValueError(f"{folder}: holds {len(pairs)} pairs, pairs.json says {meta['num_pairs']}")
        return pairs


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack pair items into a batch; ``prompt`` strings become a list."""
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        batch[key] = values if key == "prompt" else torch.stack(values)
    return batch
