"""Dataclass configurations from YAML / TOML files and ``key=value`` overrides, with names and types checked.

    cfg = load_config(TrainConfig, "train.yaml", overrides=["steps=2000", "model.depth=6"])
    cfg = apply_overrides(cfg, ["lr=1e-4"])           # values are parsed as YAML

Nested dataclass fields become tables (dotted keys in overrides), tuples accept YAML lists, ``Literal``
fields are checked, unknown keys are refused with the list of known ones. Used by the modality packages'
CLIs (diff-image) and by benchmark scripts (``--set FIELD=VALUE``).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import tomllib
import yaml

__all__ = [
    "apply_overrides",
    "config_from_dict",
    "field_default",
    "field_docs",
    "field_type",
    "has_field",
    "load_config",
    "parse_overrides",
    "read_config_file",
]

C = TypeVar("C")


def _resolve_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a YAML/TOML value into the field's type (nested dataclasses, tuples, Literal checks)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"{where}: expected a table of {annotation.__name__} fields, got {value!r}")
        return config_from_dict(annotation, value, prefix=f"{where}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where) if len(inner) == 1 else value
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}: expected one of {args}, got {value!r}")
        return value
    if annotation is tuple and isinstance(value, (list, tuple)):  # a bare ``tuple`` field: JSON/YAML lists
        return tuple(value)
    if origin is tuple:
        items = [value] if isinstance(value, (str, int, float)) else list(value)
        if args and args[-1] is not Ellipsis:  # fixed length, e.g. tuple[str, float]
            if len(items) != len(args):
                raise ValueError(f"{where}: expected {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, where) for v, a in zip(items, args))
        elem = args[0] if args else Any
        return tuple(_coerce(v, elem, where) for v in items)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if annotation in (int, float, str, bool) and not isinstance(value, annotation):
        raise TypeError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def config_from_dict(cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    """Build dataclass ``cls`` from a mapping, checking names and types (nested tables become dataclasses)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        where = prefix.rstrip(".") or cls.__name__
        raise ValueError(f"{where}: unknown keys {unknown}; expected some of {sorted(names)}")
    kwargs = {k: _coerce(v, _resolve_type(cls, k), f"{prefix}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"overrides: {key!r} descends into a non-table value")
    node[parts[-1]] = value


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "model.depth=6"]`` -> ``{"a": 1, "model": {"depth": 6}}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"overrides: expected 'key=value', got {item!r}")
        _set_dotted(out, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def read_config_file(path: str | os.PathLike[str], section: str | None = None) -> dict[str, Any]:
    """Read a ``.yaml``/``.yml``/``.toml`` file; with ``section``, return that table if the file has it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config: {p} is not a file")
    if p.suffix not in (".toml", ".yaml", ".yml"):
        raise ValueError(f"config: expected a .yaml, .yml or .toml file, got {p.name}")
    try:
        text = p.read_text(encoding="utf-8")
        data = tomllib.loads(text) if p.suffix == ".toml" else (yaml.safe_load(text) or {})
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"config: {p} is not valid {p.suffix.lstrip('.').upper()} ({detail})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config: {p} must hold a table of settings, got {type(data).__name__}")
    if section is not None and isinstance(data.get(section), dict):
        return data[section]
    return data


def apply_overrides(config: C, overrides: Mapping[str, Any] | Sequence[str]) -> C:
    """A copy of dataclass ``config`` with ``overrides`` (a nested mapping or ``key=value`` strings) applied."""
    extra = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    merged = _merge(_as_plain(config), extra)
    return config_from_dict(type(config), merged)


def _as_plain(config: Any) -> dict[str, Any]:
    return {f.name: _plain_value(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain_value(v: Any) -> Any:
    return _as_plain(v) if dataclasses.is_dataclass(v) else v


def load_config(
    cls: type[C],
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    section: str | None = None,
) -> C:
    """``cls`` from its defaults, then the file at ``path`` (its ``section`` table if present), then overrides.

    The file's tables are laid over the defaults of ``cls()``, so a nested configuration keeps the settings the
    file leaves out as the outer dataclass's ``default_factory`` set them (``train: TrainConfig`` with a
    package's own ``lr``), not as the nested class's own defaults.
    """
    data = read_config_file(path, section) if path is not None else {}
    if all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
           for f in dataclasses.fields(cls)):  # fmt: skip
        base = apply_overrides(cls(), data) if data else cls()
    else:
        base = config_from_dict(cls, data)
    return apply_overrides(base, overrides) if overrides else base


def field_docs(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of a dataclass's docstring, one line of text per field name.

    Google style: ``name: text`` (continued on deeper-indented lines); ``a, b, c: text`` documents several
    fields at once. This is where a setting's meaning is written once, for the reader of the code, for
    ``--help`` and for the docs.
    """
    import inspect
    import re

    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return {}
    entries: dict[str, str] = {}
    current: list[str] = []
    names: list[str] = []
    base_indent: int | None = None

    def flush() -> None:
        text = " ".join(s.strip() for s in current).strip()
        for n in names:
            entries[n] = text

    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if base_indent is None:
            base_indent = indent
        if indent < base_indent:
            break
        match = re.match(r"^([A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_][\w]*)*)\s*:\s*(.*)$", line.strip())
        if indent == base_indent and match:
            flush()
            names = [n.strip() for n in match.group(1).split(",")]
            current = [match.group(2)]
        else:
            current.append(line)
    flush()
    return entries


def _field(cls: type, dotted: str) -> tuple[type, dataclasses.Field[Any]]:
    """The dataclass owning the last part of ``dotted`` (``"train.lr"``) and that field."""
    owner: Any = cls
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(owner)}
        if part not in fields:
            raise KeyError(f"{dotted}: {owner.__name__} has no field {part!r}")
        if i == len(parts) - 1:
            return owner, fields[part]
        owner = _resolve_type(owner, part)
        if not dataclasses.is_dataclass(owner):
            raise KeyError(f"{dotted}: {part!r} is not a nested configuration")
    raise KeyError(dotted)


def field_type(cls: type, dotted: str) -> Any:
    """The annotation of the (possibly nested, ``"train.lr"``) field ``dotted`` of dataclass ``cls``."""
    owner, f = _field(cls, dotted)
    return _resolve_type(owner, f.name)


def field_default(cls: type, dotted: str) -> Any:
    """The default of field ``dotted`` as ``cls()`` sets it (so a nested default factory's value counts)."""
    value: Any = cls()
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def has_field(cls: type, dotted: str) -> bool:
    """Whether dataclass ``cls`` has the (possibly nested) field ``dotted``."""
    try:
        _field(cls, dotted)
    except KeyError:
        return False
    return True
