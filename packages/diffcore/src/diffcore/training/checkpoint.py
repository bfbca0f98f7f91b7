"""Resumable training checkpoints, written atomically.

A checkpoint is a folder ``<root>/checkpoint-<step:08d>/`` holding::

    model.safetensors      the trained model's weights (safetensors.torch.save_model)
    ema.safetensors        the EMA model's weights and update count (when EMA is on)
    optimizer.pt           optimizer.state_dict(), read back with torch.load(weights_only=True)
    rng-<rank>.safetensors each process's torch/CUDA RNG states; python and numpy states in its metadata
    sharded/               instead of the three files above under FSDP (``TrainConfig.sharding``): model,
                           optimizer and EMA state as ``torch.distributed.checkpoint`` shards
    trainer_state.json     step, data position, LR scheduler, loss scaler, the config that wrote it
    manifest.json          size and SHA-256 of every file above, written last

Everything is first written into ``<root>/.staging-checkpoint-<step>/`` (each file through
:mod:`diffcore.io`, then fsynced), then the folder is renamed into place (an atomic rename on a POSIX
file system) and the parent folder fsynced. A process killed or an exception raised mid-write leaves
only a staging folder, which is never read back; a checkpoint folder exists complete or not at all, and
the previous checkpoints are untouched. On reading, the manifest is checked first, so a truncated or
altered file is reported instead of half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model
from torch import nn

from diffcore.io import atomic_path, write_json

MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
SHARDED_DIR = "sharded"
SHARDED_METADATA = f"{SHARDED_DIR}/.metadata"
FORMAT_VERSION = 1

_NAME = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint folder is incomplete, corrupt or does not fit the model being trained."""


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint written after optimizer step ``step``."""
    return f"checkpoint-{step:08d}"


def rng_file(rank: int) -> str:
    """The RNG-state file of process ``rank``."""
    return f"rng-{rank}.safetensors"


def list_checkpoints(root: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` (those with a manifest), as ``(step, path)`` sorted by step."""
    folder = Path(root)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _NAME.match(child.name)
        if match and (child / MANIFEST_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint with the highest step under ``root``, or ``None`` when there is none."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


# ----------------------------------------------------------------------------- RNG states


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """This process's RNG states: torch (CPU, every initialised CUDA device) as tensors, python and numpy as JSON."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    name, keys, pos, has_gauss, cached = np.random.get_state()
    metadata = {
        "python": json.dumps(random.getstate()),
        "numpy": json.dumps([name, keys.tolist(), int(pos), int(has_gauss), float(cached)]),
    }
    return tensors, metadata


def restore_rng_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(tensors["torch"])
    cuda = [
        tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))
    ]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = json.loads(metadata["python"])
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = json.loads(metadata["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ----------------------------------------------------------------------------- writing


def staging_dir(root: Path, step: int) -> Path:
    """The temporary folder a checkpoint of ``step`` is assembled in (the same name on every process)."""
    return root / f".staging-{checkpoint_name(step)}"


def write_rng_state(folder: Path, rank: int) -> None:
    """Write this process's RNG states into ``folder`` (every process calls this)."""
    tensors, metadata = capture_rng_state()
    with atomic_path(folder / rng_file(rank)) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def write_main_state(
    folder: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None,
    trainer_state: dict[str, Any],
) -> None:
    """Write the model, EMA, optimizer and trainer state into ``folder`` (main process only)."""
    with atomic_path(folder / MODEL_FILE) as tmp:
        save_model(model, str(tmp), metadata={"format": "pt"})
    if ema is not None:
        with atomic_path(folder / EMA_FILE) as tmp:
            save_model(ema, str(tmp), metadata={"format": "pt"})
    with atomic_path(folder / OPTIMIZER_FILE) as tmp:
        torch.save(optimizer.state_dict(), tmp)
    write_trainer_state(folder, trainer_state)


def write_trainer_state(folder: Path, trainer_state: dict[str, Any]) -> None:
    """Write ``trainer_state.json`` (step, data position, schedules, config) into ``folder``."""
    write_json({"format_version": FORMAT_VERSION, **trainer_state}, folder / STATE_FILE)


def publish(staging: Path, final: Path, keep_last: int) -> Path:
    """Seal ``staging`` with a manifest, fsync it, rename it to ``final`` and keep the last ``keep_last``.

    An existing ``final`` (a step re-trained after resuming from an earlier checkpoint) is moved
    aside before the rename and deleted after it.
    """
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    manifest = {
        "format_version": FORMAT_VERSION,
        "files": {p.relative_to(staging).as_posix(): _describe(p) for p in files},
    }
    write_json(manifest, staging / MANIFEST_FILE)
    for path in [*files, staging / MANIFEST_FILE]:
        _fsync_path(path)
    for folder in sorted({p.parent for p in files}, reverse=True):
        _fsync_path(folder)
    trash = None
    if final.exists():
        trash = final.with_name(f".trash-{final.name}")
        remove_tree(trash)
        os.replace(final, trash)
    os.replace(staging, final)
    _fsync_path(final.parent)
    if trash is not None:
        remove_tree(trash)
    prune(final.parent, keep_last)
    return final


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the ``keep_last`` most recent complete checkpoints under ``root``."""
    for _, path in list_checkpoints(root)[:-keep_last]:
        # Rename first so a half-deleted folder never looks like a checkpoint.
        trash = path.with_name(f".trash-{path.name}")
        os.replace(path, trash)
        remove_tree(trash)


def remove_leftovers(root: Path) -> None:
    """Delete staging and trash folders that a killed run left under ``root``.

    A checkpoint that :func:`publish` moved aside and whose replacement never arrived (a kill between
    the two renames) is moved back instead, if it is still complete.
    """
    if root.is_dir():
        for child in root.iterdir():
            if not (child.is_dir() and child.name.startswith((".staging-", ".trash-"))):
                continue
            original = root / child.name.removeprefix(".trash-")
            if child.name.startswith(".trash-") and not original.exists() and _is_complete(child):
                os.replace(child, original)
            else:
                remove_tree(child)


def _is_complete(folder: Path) -> bool:
    try:
        verify(folder)
    except (CheckpointError, OSError, ValueError):
        return False
    return True


# ----------------------------------------------------------------------------- reading


def verify(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Check ``folder`` against its manifest and return its ``trainer_state.json``.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        CheckpointError: no manifest (an incomplete write), a missing, truncated or altered file,
            or an unreadable trainer state.
    """
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint: {path} does not exist (expected a checkpoint-<step> folder)")
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(
            f"checkpoint: {path} has no {MANIFEST_FILE}; it is incomplete or not a checkpoint"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint: {manifest_path} is unreadable ({exc})") from exc
    required = (
        (SHARDED_METADATA, STATE_FILE) if is_sharded(path) else (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE)
    )
    for name in required:
        if name not in expected:
            raise CheckpointError(f"checkpoint: {path} lists no {name} in its manifest")
    for name, want in expected.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint: {file} is missing")
        have = _describe(file)
        if have != want:
            raise CheckpointError(
                f"checkpoint: {file} is corrupt (size {have['bytes']} bytes, sha256 {have['sha256'][:12]}..., "
                f"expected {want['bytes']} bytes, sha256 {str(want['sha256'])[:12]}...)"
            )
    state = json.loads((path / STATE_FILE).read_text())
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint: {path} has format_version {state.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    return state


def is_sharded(folder: str | os.PathLike[str]) -> bool:
    """Whether checkpoint ``folder`` holds sharded (``torch.distributed.checkpoint``) state."""
    return (Path(folder) / SHARDED_DIR).is_dir()


def load_weights(module: nn.Module, file: Path) -> None:
    """Load a safetensors file written by :func:`write_main_state` into ``module`` (strict)."""
    try:
        load_model(module, str(file), strict=True)
    except Exception as exc:  # shape or key mismatch: the checkpoint belongs to another model
        raise CheckpointError(f"checkpoint: {file} does not fit {type(module).__name__} ({exc})") from exc


def load_optimizer(optimizer: torch.optim.Optimizer, file: Path) -> None:
    """Load ``optimizer.pt`` (tensors and numbers only: ``weights_only=True``) into ``optimizer``."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state)
    except Exception as exc:
        raise CheckpointError(f"checkpoint: {file} does not fit the optimizer ({exc})") from exc


def load_rng_state(folder: Path, rank: int) -> bool:
    """Restore process ``rank``'s RNG states from ``folder``; ``False`` when the file is absent."""
    file = folder / rng_file(rank)
    if not file.is_file():
        return False
    with safe_open(str(file), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        metadata = f.metadata()
    restore_rng_state(tensors, metadata)
    return True


# ----------------------------------------------------------------------------- helpers


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Delete the folder ``path`` if it exists."""
    if path.exists():
        shutil.rmtree(path)


def hash_tree(folder: str | os.PathLike[str], names: Iterable[str] | None = None) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (or of ``names`` only), keyed by relative path."""
    root = Path(folder)
    files = (
        [root / n for n in names] if names is not None else sorted(p for p in root.rglob("*") if p.is_file())
    )
    return {str(p.relative_to(root)): _describe(p)["sha256"] for p in files}
