"""Writing files so that a failed or interrupted run never leaves a half-written one: the one way every
package writes its outputs (weights, configs, metrics, pictures, audio, structures, logs' snapshots).

Each writer goes through a temporary file in the destination's folder and an atomic ``os.replace``; the
finished file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the umask), not
the ``0o600`` of a temporary file::

    from diffcore.io import atomic_path, write_json

    write_json({"fid": 3.2}, out / "metrics.json")
    with atomic_path(out / "grid.png") as tmp:       # for libraries that write to a path themselves
        image.save(tmp, format="PNG")
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open",
    "atomic_path",
    "default_file_mode",
    "read_json",
    "write_bytes",
    "write_json",
    "write_text",
]

PathLike = str | os.PathLike[str]


def default_file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open(path, "w")`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    For libraries that write to a file name themselves (``safetensors.save_file``, ``PIL.Image.save``,
    ``soundfile.write``). ``suffix`` defaults to ``path``'s own, so libraries that pick the format from the
    extension still do. On an exception the temporary file is removed and ``path`` is left as it was.
    The parent folder is created if needed.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # hidden, beside the target, ending like it: libraries that choose the format by extension still can
    fd, tmp_name = tempfile.mkstemp(
        dir=final.parent, prefix=f".{final.name}.", suffix=final.suffix if suffix is None else suffix
    )
    os.close(fd)
    target = Path(tmp_name)
    try:
        yield target
        os.chmod(target, default_file_mode())
        os.replace(target, final)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """``open`` for writing (``"w"`` or ``"wb"``) whose result appears at ``path`` only if the block succeeds.

    The data is flushed and fsync'ed before the rename, so a crash right after leaves either the old file or
    the complete new one.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def _jsonable(value: Any) -> Any:
    """Tuples, paths, numpy and torch scalars, dataclasses: what configs and metrics hold."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()  # numpy / torch scalars
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    return value


def write_json(obj: Any, path: PathLike, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; dataclasses, tuples, paths and numpy / torch scalars
    and arrays are converted. Non-finite floats are written as ``NaN`` / ``Infinity`` (Python's JSON)."""
    return write_text(path, json.dumps(_jsonable(obj), indent=indent) + "\n")


def read_json(path: PathLike, what: str = "a JSON object") -> dict[str, Any]:
    """The JSON object in ``path``; a missing file is a FileNotFoundError and anything else unreadable (not
    UTF-8, not JSON, not an object) a ValueError, each naming the file and what it should hold (``what``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file (expected {what})")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not UTF-8 text (byte {exc.start}: {exc.reason}); expected {what}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc}); expected {what}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{p}: holds a JSON {type(data).__name__}, expected {what}")
    return data
