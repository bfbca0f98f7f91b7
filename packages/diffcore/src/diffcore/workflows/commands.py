"""Workflow nodes made from the modality packages' commands, found through the modality contract.

Every command a modality builds with :func:`diffcore.cli.options.config_command` becomes a node
``<modality>.<command>`` (``image.sample``, ``audio.sample``, ``image.edit.inpaint``, ``protein.train``): its
parameters are the command's named options (their defaults and help from the configuration dataclass) plus
``settings`` (``key=value`` lines, the command line's ``--set``); it reads a ``pipeline:<modality>`` input when
the command takes ``--pipeline``; the sampler, guidance, prompt and LoRA inputs exist where its configuration has
those settings. Its output ``files`` is the folder the command wrote (``--out``); a ``train`` node also outputs
the trained pipeline. Each modality also gets ``<modality>.load_pipeline``. So a workflow runs exactly the code
``diffuse <modality> <command>`` runs, for every installed package.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from diffcore.cli.options import CommandSpec, load_pipeline, option_help
from diffcore.config import (
    apply_overrides,
    field_default,
    field_type,
    has_field,
    load_config,
)
from diffcore.modality import InstalledModality
from diffcore.workflows.builtin import (
    GuidanceSetting,
    LoraSetting,
    PromptSetting,
    SamplerSetting,
    folder_fingerprint,
)
from diffcore.workflows.graph import GraphError
from diffcore.workflows.nodes import NodeCall, NodeRegistry, NodeType, Param, ParamKind, Port

__all__ = ["add_modality_nodes", "command_specs"]

GUIDANCE_KEYS = ("guidance", "guidance_scale")
PROMPT_KEYS = ("prompts", "captions", "prompt")


def command_specs(app: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], CommandSpec]]:
    """``(command path, spec)`` for every ``config_command`` of a typer ``app`` and its sub-groups."""
    for cmd in app.registered_commands:
        spec = getattr(cmd.callback, "__diffcore_command__", None)
        if spec is not None:
            yield (*prefix, spec.name), spec
    for group in app.registered_groups:
        yield from command_specs(group.typer_instance, (*prefix, group.name or ""))


def _param_kind(annotation: Any) -> tuple[ParamKind, tuple[Any, ...], bool] | None:
    """(kind, choices, nullable) of a configuration field's annotation, or None when a form cannot edit it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    nullable = False
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        nullable = len(inner) < len(args)
        if len(inner) != 1:
            return None
        annotation = inner[0]
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "choice", args, nullable
    if annotation is bool:
        return "bool", (), nullable
    if annotation in (int, float, str):
        return annotation.__name__, (), nullable  # type: ignore[return-value]
    if annotation is Path:
        return "path", (), nullable
    if origin in (tuple, list) or annotation in (tuple, list):
        return "list", (), nullable
    return None


def _item_type(annotation: Any) -> str:
    """``"int"`` / ``"float"`` / ``"str"`` for ``tuple[int, ...]`` and the like (inside ``| None`` too), else ``""``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None) and a is not Ellipsis]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _item_type(args[0])
    if typing.get_origin(annotation) in (tuple, list) and args and all(a is args[0] for a in args):
        return args[0].__name__ if args[0] in (int, float, str) else ""
    return ""


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _params(spec: CommandSpec) -> tuple[Param, ...]:
    cls = spec.config_class
    keys = list(spec.options)
    seed_key = "seed" if has_field(cls, "seed") else "train.seed"
    if seed_key not in keys:
        keys.append(seed_key)
    out: list[Param] = []
    for key in keys:
        kind = _param_kind(field_type(cls, key))
        if kind is None:
            continue
        default = _plain(field_default(cls, key))
        annotation = field_type(cls, key)
        out.append(
            Param(
                key,
                kind[0],
                default,
                choices=kind[1],
                nullable=kind[2] or default is None,
                help=option_help(cls, key),
                item=_item_type(annotation),
            )
        )
    for own in _own_params(spec):
        out.append(own)
    out.append(Param("settings", "text", "", help="More settings, one key=value per line (as --set)."))
    return tuple(out)


LORA_OWN = ("adapter", "adapter_weight")
"""A command's own parameters that the ``lora`` input sets."""


def _own_params(spec: CommandSpec) -> list[Param]:
    """The command function's own typer options / arguments that a form can edit (``mode`` of ``image edit``)."""
    out: list[Param] = []
    defaults = spec.own_defaults()
    for p in spec.own:
        kind = _param_kind(p.annotation) if p.name not in LORA_OWN else None
        if kind is None:
            continue
        info = p.default
        required = getattr(info, "default", None) is ...
        out.append(
            Param(
                p.name,
                kind[0],
                _plain(defaults[p.name]),
                choices=kind[1],
                nullable=kind[2],
                required=required,
                help=(getattr(info, "help", None) or "").split(". ")[0],
            )
        )
    return out


def _guidance_key(cls: type) -> str | None:
    """The configuration's guidance-scale setting (a float ``guidance`` or ``guidance_scale``), or None."""
    for key in GUIDANCE_KEYS:
        if has_field(cls, key) and (_param_kind(field_type(cls, key)) or ("",))[0] == "float":
            return key
    return None


def _inputs(modality: str, spec: CommandSpec) -> tuple[Port, ...]:
    cls = spec.config_class
    ports: list[Port] = []
    if spec.pipeline is not None:
        ports.append(Port("pipeline", f"pipeline:{modality}", help="A saved pipeline of this modality."))
    if has_field(cls, "sampler") or has_field(cls, "steps"):
        ports.append(Port("sampler", "sampler", optional=True, help="Overrides sampler / steps / grid."))
    if _guidance_key(cls) is not None:
        ports.append(Port("guidance", "guidance", optional=True, help="Overrides the guidance scale."))
    if any(has_field(cls, k) for k in PROMPT_KEYS):
        ports.append(Port("prompt", "prompt", optional=True, help="Overrides the prompts."))
    if any(p.name == "adapter" for p in spec.own):
        ports.append(Port("lora", "lora", optional=True, help="LoRA adapter to load before sampling."))
    return tuple(ports)


def _setting_overrides(cls: type, call: NodeCall) -> dict[str, Any]:
    """Configuration keys set by the connected sampler / guidance / prompt nodes."""
    out: dict[str, Any] = {}
    s: SamplerSetting | None = call.inputs.get("sampler")
    if s is not None:
        for key, value in (("sampler", s.sampler), ("steps", s.steps), ("grid", s.grid)):
            if value is None:
                continue
            if not has_field(cls, key):
                raise GraphError(
                    f"node {call.node_id!r} input 'sampler': this command has no {key!r} setting",
                    node=call.node_id,
                    port="sampler",
                )
            out[key] = value
    g: GuidanceSetting | None = call.inputs.get("guidance")
    if g is not None:
        out[str(_guidance_key(cls))] = g.scale
    p: PromptSetting | None = call.inputs.get("prompt")
    if p is not None:
        key = next(k for k in PROMPT_KEYS if has_field(cls, k))
        kind = _param_kind(field_type(cls, key))
        out[key] = list(p.prompts) if kind and kind[0] == "list" else "\n".join(p.prompts)
    return out


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def build_config(spec: CommandSpec, call: NodeCall, out: Path) -> Any:
    """The command's configuration from the node's parameters and setting inputs (the command line's order:
    defaults < ``settings`` lines < named parameters < connected setting nodes), with ``out`` and the run's
    device."""
    cls = spec.config_class
    params = dict(call.params)
    lines = [line.strip() for line in params.pop("settings", "").splitlines() if line.strip()]
    own_names = {p.name for p in _own_params(spec)}
    defaults = {p.name: p.default for p in _params(spec) if p.name not in own_names}
    # like the command line's named options, a parameter counts only when set (not at its default), so a
    # ``settings`` line for the same key is not undone by the default
    named = {k: v for k, v in params.items() if k in defaults and v != defaults[k]}
    named.update(_setting_overrides(cls, call))
    named[spec.device_key] = call.device
    if spec.out_key:
        named[spec.out_key] = str(out)
    try:
        base = load_config(cls, None, overrides=lines)
        return apply_overrides(base, _nest(named))
    except (TypeError, KeyError, ValueError) as exc:
        raise GraphError(f"node {call.node_id!r}: {exc}", node=call.node_id) from exc


def _command_node(modality: str, path: tuple[str, ...], spec: CommandSpec, pipeline_spec: Any) -> NodeType:
    name = ".".join((modality, *path))
    trains = spec.pipeline is None and path[-1] == "train" and pipeline_spec is not None
    outputs = [Port("files", "files", help="The folder the command wrote.")]
    if trains:
        outputs.append(Port("pipeline", f"pipeline:{modality}", help="The trained pipeline."))

    def restore(out_dir: Path, call: NodeCall) -> dict[str, Any]:
        values: dict[str, Any] = {"files": out_dir}
        if trains:
            values["pipeline"] = load_pipeline(pipeline_spec, out_dir / "pipeline", call.device)
        return values

    def run(call: NodeCall) -> dict[str, Any]:
        assert call.out_dir is not None
        config = build_config(spec, call, call.out_dir)
        own: dict[str, Any] = {p.name: call.params[p.name] for p in _own_params(spec)}
        lora: LoraSetting | None = call.inputs.get("lora")
        if lora is not None:
            own |= {"adapter": list(lora.paths), "adapter_weight": list(lora.weights)}
        spec.run(config, call.out_dir, call.inputs.get("pipeline"), **own)
        return restore(call.out_dir, call)

    summary = (inspect.cleandoc(spec.help).split("\n\n")[0]).replace("\n", " ")
    return NodeType(
        name=name,
        title=f"{modality} {' '.join(path)}",
        category=modality,
        run=run,
        inputs=_inputs(modality, spec),
        outputs=tuple(outputs),
        params=_params(spec),
        description=f"diffuse {modality} {' '.join(path)}: {summary}",
        writes_files=True,
        restore=restore,
    )


def _load_node(modality: str, pipeline_spec: Any) -> NodeType:
    def run(call: NodeCall) -> dict[str, Any]:
        folder = call.path(call.params["path"])
        if not folder.is_dir():
            raise GraphError(
                f"node {call.node_id!r} param 'path': {folder} is not a folder (expected a saved {modality} pipeline)",
                node=call.node_id,
                port="path",
            )
        return {"pipeline": load_pipeline(pipeline_spec, folder, call.device)}

    return NodeType(
        name=f"{modality}.load_pipeline",
        title=f"{modality} load pipeline",
        category=modality,
        run=run,
        outputs=(Port("pipeline", f"pipeline:{modality}"),),
        params=(
            Param("path", "path", "", required=True, help="A saved pipeline folder (OUT/pipeline of train)."),
        ),
        description=f"Load a saved {modality} pipeline (pipeline.json and its components).",
        fingerprint=lambda call: folder_fingerprint(call.path(call.params["path"])),
    )


def add_modality_nodes(registry: NodeRegistry, installed: dict[str, InstalledModality]) -> NodeRegistry:
    """Add ``<modality>.load_pipeline``, one node per ``config_command`` and the ``Modality.nodes`` of every
    installed modality."""
    for name, item in installed.items():
        app = item.modality.app
        if app is None:
            continue
        specs = list(command_specs(app))
        pipeline_spec = next((s.pipeline for _, s in specs if s.pipeline is not None), None)
        if pipeline_spec is not None:
            registry.add(_load_node(name, pipeline_spec))
        for path, spec in specs:
            registry.add(_command_node(name, path, spec, pipeline_spec))
    for item in installed.values():
        for node in item.modality.nodes() if item.modality.nodes is not None else ():
            registry.add(node)
    return registry
