"""Models on disk, the Hugging Face way: ``config.json`` + ``model.safetensors``, never pickles.

A model subclasses :class:`PretrainedModel` and takes one dataclass config::

    @dataclass
    class TinyConfig:
        width: int = 64

    class Tiny(PretrainedModel):
        config_class = TinyConfig

        def __init__(self, config: TinyConfig):
            super().__init__(config)
            self.lin = nn.Linear(config.width, config.width)

    folder = Path("runs") / "tiny"
    Tiny(TinyConfig()).save_pretrained(folder)
    model = Tiny.from_pretrained(folder)               # or diffcore.pretrained.load_pretrained(folder)

Writes are atomic (temporary file, then rename), so a failed save never corrupts a checkpoint.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffcore.config import config_from_dict
from diffcore.io import atomic_path, read_json, write_bytes

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

M = TypeVar("M", bound="PretrainedModel")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`diffcore.io.write_bytes`)."""
    write_bytes(path, data)


def atomic_save_safetensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """``safetensors.torch.save_file`` through :func:`diffcore.io.atomic_path`."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)


def _config_to_dict(config: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


class PretrainedModel(nn.Module):
    """An ``nn.Module`` built from one dataclass config, saved as config.json + model.safetensors.

    A config field added after files were saved, with a default that changes the model, goes into the config
    class's ``older_file_defaults: ClassVar[dict[str, Any]]`` with the value those files meant:
    :meth:`from_pretrained` fills it in where a file lacks the key, so older folders load as they were saved
    (a config built in code or read from a user's file still gets the field's own default)."""

    config_class: ClassVar[type]

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"config: expected {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def save_pretrained(
        self, directory: str | os.PathLike[str], state_dict: dict[str, torch.Tensor] | None = None
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed).

        ``state_dict``: the weights to write instead of the module's own (e.g. the gathered full weights
        of a model sharded with FSDP, whose own state dict holds shards)."""
        out = Path(directory)
        cls = _saved_class(type(self))
        config = {
            "model_class": f"{cls.__module__}.{cls.__qualname__}",
            "config": _config_to_dict(self.config),
        }
        own = self.state_dict() if state_dict is None else state_dict
        # Tied or shared parameters are stored once each name; safetensors refuses shared storage.
        state = {k: v.clone() if v.is_contiguous() is False else v for k, v in own.items()}
        seen: dict[int, str] = {}
        for k, v in list(state.items()):
            ptr = v.untyped_storage().data_ptr()
            if ptr in seen and v.numel() > 0:
                state[k] = v.clone()
            seen[ptr] = k
        atomic_save_safetensors(state, out / WEIGHTS_NAME, metadata={"format": "pt"})
        atomic_write_bytes(out / CONFIG_NAME, json.dumps(config, indent=2).encode())
        return out

    @classmethod
    def from_pretrained(
        cls: type[M],
        directory: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> M:
        """Build the model from ``directory/config.json`` and load ``model.safetensors`` strictly."""
        folder = Path(directory)
        config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for p in (config_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(
                    f"directory: {folder} has no {p.name} (expected a save_pretrained folder)"
                )
        try:
            data = read_json(config_path, "a model's class and configuration")
        except ValueError as exc:
            raise ValueError(f"directory: {exc}") from exc
        model_cls: type[M] = cls
        if cls is PretrainedModel:
            try:
                model_cls = _import_class(str(data.get("model_class", "")))
            except (ImportError, AttributeError, TypeError, ValueError) as exc:
                raise ValueError(f"directory: {config_path} names no loadable model class ({exc})") from exc
        saved = dict(data.get("config", {}))
        for key, value in getattr(model_cls.config_class, "older_file_defaults", {}).items():
            saved.setdefault(key, value)  # a field added later: what files written before it meant
        try:
            config = config_from_dict(model_cls.config_class, saved)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"directory: {config_path} does not describe a {model_cls.__name__} ({exc})"
            ) from exc
        model = model_cls(config)
        try:
            state = load_file(str(weights_path), device="cpu")
        except Exception as exc:
            raise ValueError(f"directory: {weights_path} is not a readable safetensors file ({exc})") from exc
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise ValueError(
                f"directory: {weights_path} does not fit the model {config_path} describes "
                f"({first[0] if first else exc}; {' '.join(first[1:3])[:300]})"
            ) from exc
        return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)


def _saved_class(cls: type) -> type:
    """The model's own class: FSDP2's ``fully_shard`` swaps a module's class for a generated subclass
    (``FSDP<Name>``, bases ``(FSDPModule, <Name>)``), which no file should name."""
    from torch.distributed.fsdp import FSDPModule

    if issubclass(cls, FSDPModule):
        return next(c for c in cls.__mro__ if c is not cls and not issubclass(c, FSDPModule))
    return cls


def _import_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"config.json: model_class {path!r} is not an importable 'module.Class' path")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, PretrainedModel)):
        raise TypeError(f"config.json: model_class {path!r} is not a PretrainedModel")
    return obj


def load_pretrained(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> PretrainedModel:
    """Load any :class:`PretrainedModel` saved with ``save_pretrained``, whatever its class."""
    return PretrainedModel.from_pretrained(directory, device=device)
