"""One shape for every modality's ``train | sample | evaluate`` commands.

A command is a function of one dataclass configuration; :func:`config_command` gives it the options every
``diffuse`` command shares and builds the configuration in one order of precedence:

    the dataclass defaults  <  the ``--config`` file (YAML or TOML, the command's settings as top-level keys)
                            <  ``--set key=value`` (dotted keys for nested settings, YAML values)
                            <  the named options (``--device``, ``--seed``, ``--out`` and the command's own)

Shared options (same name, same meaning in every modality):

- ``--config FILE``, ``--set key=value`` (repeatable)
- ``--device auto|cpu|cuda``, ``--seed N`` (mapped to the configuration's ``device`` / ``seed``, top-level
  or under ``train.``)
- ``--out DIR`` (the configuration's ``output_dir`` where it has one, else the folder the command writes)
- ``--pipeline DIR`` for commands that use a saved pipeline (``sample``, ``evaluate``)
- ``--resume`` and ``--ema-decay`` for commands that train (a configuration with ``train: TrainConfig``)
- ``--debug``: show the traceback of an error instead of the one-line message
- ``--quiet`` / ``-q``: no progress bars or progress lines (progress is on otherwise: training, every sampling
  loop, evaluation; see :mod:`diffcore.progress`)

A named option's help is the field's line of the dataclass docstring (``Attributes:``) and its default the
dataclass's own, so every default is stated once. Mistakes (a bad value, a missing file, an unknown key)
print ``error: <message>`` on one line and exit with status 2.

    @config_command(app, "train", ImageTrainConfig, options=["train.steps", "data.path"])
    def train_cmd(config: TrainImageConfig, out: Path) -> None:
        pipe = train(config)
        ...
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import typer
from typer.core import TyperCommand

from diffcore import progress
from diffcore.config import (
    apply_overrides,
    field_default,
    field_docs,
    field_type,
    has_field,
    load_config,
)

__all__ = [
    "USER_ERRORS",
    "CommandError",
    "CommandSpec",
    "OneLineUsageErrors",
    "config_command",
    "fail",
    "load_pipeline",
    "option_help",
    "run_or_fail",
]

F = TypeVar("F", bound=Callable[..., Any])

USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    NotImplementedError,
)
"""Exceptions that mean "the input was wrong" (or "not built yet"): one line and exit 2, not a traceback."""


class CommandError(Exception):
    """An error a command reports to the user as one line (``error: ...``, exit status 2)."""


def fail(message: str, code: int = 2) -> typing.NoReturn:
    """Print ``error: message`` on standard error and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


def run_or_fail(fn: Callable[[], Any], debug: bool = False) -> Any:
    """Run ``fn``; a user error becomes a one-line message and exit 2 (the traceback with ``debug``)."""
    try:
        return fn()
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except (CommandError, *USER_ERRORS) as exc:
        if debug:
            raise
        fail(str(exc) or type(exc).__name__)


# click's UsageError, whichever click typer parses with (its own copy since typer 0.24): the base of typer.BadParameter
_USAGE_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class OneLineUsageErrors(TyperCommand):
    """A command whose mistakes on the command line itself (an unknown option, a value that is not a number,
    a missing argument) print one ``error: ...`` line and exit 2, like every other user mistake, instead of
    click's usage box; ``--debug`` keeps click's own report."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse as click does, but print a usage error as one ``error: ...`` line and exit 2 (the traceback
        with ``--debug``)."""
        debug = "--debug" in args
        try:
            return super().parse_args(ctx, args)
        except _USAGE_ERROR as exc:
            if debug:
                raise
            fail(" ".join(exc.format_message().split()))


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return annotation


def _literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    annotation = _strip_optional(annotation)
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else None


def _cli_type(annotation: Any) -> Any:
    """The type typer parses a field's value as (``None`` default means "not given")."""
    annotation = _strip_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return str
    if origin is tuple:
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        elem = _strip_optional(args[0]) if args else str
        return list[elem if elem in (int, float, str) else str]  # type: ignore[valid-type]
    if annotation in (int, float, str, bool):
        return annotation
    if annotation is Path:
        return str
    return str  # anything else is parsed as YAML by the configuration loader


def _format_default(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value) or "none"
    if value is None:
        return "none"
    if value == "":
        return "empty"
    return str(value)


def _first_sentence(text: str) -> str:
    """The docstring line up to its first full stop, without reST markup (help stays short)."""
    import re

    text = text.replace("``", "").replace(":class:", "").replace(":func:", "").replace(":mod:", "")
    text = re.sub(r"`~?([\w.]+)`", r"\1", text)
    match = re.search(r"\.\s+(?=[A-Z(])", text)
    return text[: match.start()] if match else text.rstrip(".")


def option_help(config_class: type, key: str) -> str:
    """Help text of setting ``key`` (``"train.lr"``): its docstring line, choices and default."""
    owner_key, _, leaf = key.rpartition(".")
    owner = field_type(config_class, owner_key) if owner_key else config_class
    text = _first_sentence(field_docs(_strip_optional(owner)).get(leaf, ""))
    choices = _literal_choices(field_type(config_class, key))
    parts = [text.rstrip(".")] if text else []
    if choices:
        parts.append("one of " + " | ".join(str(c) for c in choices))
    parts.append(f"default: {_format_default(field_default(config_class, key))}")
    return "; ".join(parts) + "."


def _find_key(config_class: type, name: str) -> str | None:
    for key in (name, f"train.{name}"):
        if has_field(config_class, key):
            return key
    return None


def _set_nested(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _get_nested(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part)
    return config


def _option_names(key: str, explicit: str | Sequence[str] | None) -> tuple[str, ...]:
    if explicit is None:
        return ("--" + key.rpartition(".")[2].replace("_", "-"),)
    return (explicit,) if isinstance(explicit, str) else tuple(explicit)


def _resolve_pipeline_class(spec: str | type) -> type:
    if isinstance(spec, type):
        return spec
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclasses.dataclass(frozen=True)
class _Option:
    param: str  # python parameter name in the generated signature
    key: str  # dotted configuration key
    flags: tuple[str, ...]  # command-line option names, the long one first


@dataclasses.dataclass(frozen=True)
class CommandSpec:
    """What :func:`config_command` registered, kept on the typer callback as ``__diffcore_command__`` so that
    other front ends (:mod:`diffcore.workflows`) can run the same command without the command line.

    Attributes:
        name: the command (``"sample"``).
        config_class: the dataclass the command runs on.
        fn: the decorated function, called as ``fn(config, out=Path, [pipeline=...], **own)``.
        pipeline: the pipeline class (or ``"module:Class"``) for commands on a saved pipeline, else None.
        out_key: the configuration's ``output_dir`` key, or None when ``default_out`` names the folder.
        default_out: the output folder when the configuration has none.
        device_key: the configuration's ``device`` key (``"device"`` or ``"train.device"``).
        options: the configuration keys offered as named options, in order.
        own: the function's own parameters (beyond config, out, pipeline), with their typer defaults.
        help: the command's help text.
    """

    name: str
    config_class: type
    fn: Callable[..., Any]
    pipeline: str | type | None
    out_key: str | None
    default_out: str | None
    device_key: str
    options: tuple[str, ...]
    own: tuple[inspect.Parameter, ...]
    help: str

    def own_defaults(self) -> dict[str, Any]:
        """The function's own parameters at their defaults (typer's ``Option(default)`` unwrapped)."""
        out: dict[str, Any] = {}
        for p in self.own:
            default = getattr(p.default, "default", p.default)
            out[p.name] = None if default is ... or default is inspect.Parameter.empty else default
        return out

    def load_pipeline(self, folder: Path, device: str) -> Any:
        """The saved pipeline in ``folder`` on ``device`` (``auto | cpu | cuda``), as ``--pipeline`` loads it."""
        if self.pipeline is None:
            raise TypeError(f"command {self.name!r} takes no pipeline")
        return load_pipeline(self.pipeline, folder, device)

    def run(self, config: Any, out: Path, pipeline: Any = None, **own: Any) -> Any:
        """Call the command's function on a built configuration, as the command line does after parsing."""
        call = {**self.own_defaults(), **own, "out": out}
        if self.pipeline is not None:
            call["pipeline"] = pipeline
        return self.fn(config, **call)


TRAINING_OPTIONS: dict[str, str] = {"train.resume": "--resume", "train.ema_decay": "--ema-decay"}
"""Named options every command whose configuration nests diffcore's ``TrainConfig`` as ``train`` gets, unless it
names them itself: ``--resume latest`` continues a run, ``--ema-decay`` sets the EMA's decay (``--set
train.ema_decay=null`` turns the EMA off)."""


def config_command(
    app: typer.Typer,
    name: str,
    config_class: type,
    *,
    section: str | None = None,
    options: Sequence[str] | Mapping[str, str | Sequence[str]] = (),
    pipeline: str | type | None = None,
    default_out: str | None = None,
    help: str | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as command ``name`` of ``app``, taking a ``config_class`` instance.

    Args:
        app: the modality's ``typer.Typer``.
        name: the command (``"train"``, ``"sample"``, ``"evaluate"``, ...).
        config_class: the dataclass the command runs on; it must have ``device`` and ``seed`` fields, at the
            top level or under ``train``.
        section: read this table of a ``--config`` file instead of its top level (default: the top level, so
            that a file's ``[train]`` table is unambiguously the nested ``TrainConfig``).
        options: configuration keys offered as named options: ``["train.steps", "data.path"]`` gives
            ``--steps`` and ``--path``; a mapping ``{"data.path": "--data"}`` names the option itself, and
            ``{"num_samples": ("--num-samples", "-n")}`` adds a short alias.
        pipeline: for commands on a saved pipeline: its class (or ``"module:Class"``, imported when the
            command runs). Adds a required ``--pipeline DIR``; the function receives ``pipeline=`` loaded on
            the configuration's device.
        default_out: ``--out``'s default when the configuration has no ``output_dir`` (top-level or under
            ``train``).
        help: the command's help (default: the function's docstring).

    The decorated function is called as ``fn(config, out=Path, [pipeline=...], **its_own_options)``: any
    further parameters it declares (typer options or arguments) stay on the command line as written.
    """
    device_key = _find_key(config_class, "device")
    seed_key = _find_key(config_class, "seed")
    if device_key is None or seed_key is None:
        raise TypeError(
            f"{config_class.__name__}: a command's configuration needs 'device' and 'seed' fields "
            "(top-level or under 'train')"
        )
    out_key = _find_key(config_class, "output_dir")
    if out_key is None and default_out is None:
        raise TypeError(f"{config_class.__name__} has no output_dir; pass default_out for --out")
    if isinstance(options, Mapping):
        named = [(key, flag) for key, flag in options.items()]
    else:
        named = [(key, None) for key in options]
    taken = {f for key, flag in named for f in _option_names(key, flag)}
    for (
        key,
        flag,
    ) in TRAINING_OPTIONS.items():  # every training command continues runs and sets its EMA the same way
        if has_field(config_class, key) and key not in dict(named) and flag not in taken:
            named.append((key, flag))
    shortcut: list[_Option] = []
    for key, flag in named:
        if not has_field(config_class, key):
            raise TypeError(f"options: {config_class.__name__} has no setting {key!r}")
        shortcut.append(
            _Option(param=f"opt_{key.replace('.', '__')}", key=key, flags=_option_names(key, flag))
        )

    def decorate(fn: F) -> F:
        own = [
            p
            for p in inspect.signature(fn, eval_str=True).parameters.values()
            if p.name not in ("config", "out", "pipeline")
        ]
        params: list[inspect.Parameter] = list(own)
        kw = inspect.Parameter.KEYWORD_ONLY

        def add(pname: str, annotation: Any, option: Any) -> None:
            params.append(inspect.Parameter(pname, kw, default=option, annotation=annotation))

        if pipeline is not None:
            add("opt_pipeline", Path, typer.Option(..., "--pipeline", help="A saved pipeline folder."))
        out_help = (
            f"Output folder ({out_key}; default: {field_default(config_class, out_key)})."
            if out_key
            else f"Output folder (default: {default_out})."
        )
        add("opt_out", Path | None, typer.Option(None, "--out", help=out_help))
        add(
            "opt_device",
            str | None,
            typer.Option(None, "--device", help=option_help(config_class, device_key)),
        )
        add("opt_seed", int | None, typer.Option(None, "--seed", help=option_help(config_class, seed_key)))
        for opt in shortcut:
            annotation = field_type(config_class, opt.key)
            cli_type = _cli_type(annotation)
            long, *short = opt.flags
            flags = (long, *short) if cli_type is not bool else (f"{long}/--no-{long.removeprefix('--')}",)
            add(
                opt.param,
                cli_type | None,
                typer.Option(None, *flags, help=option_help(config_class, opt.key)),
            )
        add(
            "opt_config",
            Path | None,
            typer.Option(
                None,
                "--config",
                help="YAML or TOML file of settings (this command's fields as top-level keys; nested "
                "settings as tables, e.g. [train] for the optimisation)."
                if section is None
                else f"YAML or TOML file of settings: its '{section}' table.",
            ),
        )
        add(
            "opt_set",
            list[str] | None,
            typer.Option(
                None,
                "--set",
                help="Override one setting, key=value (YAML value; dotted keys for nested settings, "
                "e.g. train.lr=1e-4). Repeatable.",
            ),
        )
        add(
            "opt_debug",
            bool,
            typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
        )
        add(
            "opt_quiet",
            bool,
            typer.Option(
                False, "--quiet", "-q", help="No progress bars or progress lines on standard error."
            ),
        )

        def command(**kwargs: Any) -> Any:
            debug = bool(kwargs.pop("opt_debug"))
            quiet = True if kwargs.pop("opt_quiet") else None
            named_values: dict[str, Any] = {}
            for opt in shortcut:
                value = kwargs.pop(opt.param)
                if value is not None:
                    _set_nested(named_values, opt.key, tuple(value) if isinstance(value, list) else value)
            for key, value in (
                (device_key, kwargs.pop("opt_device")),
                (seed_key, kwargs.pop("opt_seed")),
            ):
                if value is not None:
                    _set_nested(named_values, key, value)
            out_value = kwargs.pop("opt_out")
            if out_key and out_value is not None:
                _set_nested(named_values, out_key, str(out_value))
            config_file, sets = kwargs.pop("opt_config"), kwargs.pop("opt_set")
            pipeline_dir = kwargs.pop("opt_pipeline", None)

            def build() -> Any:
                try:
                    cfg = load_config(config_class, config_file, overrides=list(sets or []), section=section)
                    return apply_overrides(cfg, named_values) if named_values else cfg
                except (TypeError, KeyError) as exc:  # a wrong type or key in the user's settings
                    raise CommandError(str(exc)) from exc

            cfg = run_or_fail(build, debug)
            out = Path(_get_nested(cfg, out_key)) if out_key else Path(out_value or default_out)
            call: dict[str, Any] = dict(kwargs, out=out)
            if pipeline is not None:
                call["pipeline"] = run_or_fail(
                    lambda: load_pipeline(pipeline, pipeline_dir, _get_nested(cfg, device_key)), debug
                )
            with progress.configured(
                quiet=quiet, progress=True
            ):  # this command's sampling loops show progress
                return run_or_fail(lambda: fn(cfg, **call), debug)

        command.__name__, command.__qualname__ = fn.__name__, fn.__qualname__
        command.__doc__, command.__module__ = fn.__doc__, fn.__module__
        command.__annotations__ = {}
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__diffcore_command__ = CommandSpec(  # type: ignore[attr-defined]
            name=name,
            config_class=config_class,
            fn=fn,
            pipeline=pipeline,
            out_key=out_key,
            default_out=default_out,
            device_key=device_key,
            options=tuple(opt.key for opt in shortcut),
            own=tuple(own),
            help=help or inspect.getdoc(fn) or "",
        )
        app.command(name, help=help, cls=OneLineUsageErrors)(command)
        return fn

    return decorate


def load_pipeline(spec: str | type, folder: Path, device: str) -> Any:
    """The saved pipeline of class ``spec`` (or ``"module:Class"``) in ``folder`` on ``device``
    (``auto | cpu | cuda``), as ``--pipeline DIR`` loads it."""
    from diffcore.device import resolve_device

    cls = _resolve_pipeline_class(spec)
    if not folder.is_dir():
        raise FileNotFoundError(f"--pipeline: {folder} is not a folder (expected a saved pipeline)")
    return cls.from_pretrained(folder, device=resolve_device(device))
