"""Node types: typed ports and parameters, the registry that holds them, and the check of a workflow against it.

A node type is a function of its parameters and its input values that returns its output values (one per output
port). Port types are strings; a link is allowed only between ports of one type (``"files"``,
``"pipeline:image"``, ``"sampler"``, ...). Parameter kinds are the few a form can edit: ``int``, ``float``,
``str``, ``text`` (several lines), ``path``, ``bool``, ``choice`` and ``list`` (a list of strings or numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from diffcore.workflows.graph import GraphError, Workflow

__all__ = ["NodeCall", "NodeRegistry", "NodeType", "Param", "ParamKind", "Port", "validate"]

ParamKind = Literal["int", "float", "str", "text", "path", "bool", "choice", "list"]


@dataclass(frozen=True)
class Port:
    """An input or output of a node type.

    Attributes:
        name: the port's name, unique among the node type's inputs (or outputs).
        type: what flows through it (``"files"``, ``"pipeline:image"``, ``"sampler"``); links join equal types.
        optional: an input that may stay unconnected.
        help: one line for the editor.
    """

    name: str
    type: str
    optional: bool = False
    help: str = ""


@dataclass(frozen=True)
class Param:
    """A parameter of a node type, edited in the node's form and stored in the workflow file.

    Attributes:
        name: the key in the node's ``params`` (a command's dotted configuration key, e.g. ``"train.steps"``).
        kind: how it is edited and checked (see :data:`ParamKind`).
        default: the value when the workflow leaves it out; None with ``required`` means there is none.
        choices: the allowed values of a ``choice``.
        nullable: None is allowed (``guidance: float | None``).
        required: the workflow must give a value.
        help: one line for the editor.
        item: the element type of a ``list`` (``"int"``, ``"float"``, ``"str"``), or ``""`` when any will do.
    """

    name: str
    kind: ParamKind
    default: Any = None
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    required: bool = False
    help: str = ""
    item: str = ""

    def check(self, value: Any, node_id: str) -> Any:
        """``value`` if it fits this parameter, else :class:`GraphError` naming the node and parameter."""
        if value is None and (self.nullable or (not self.required and self.default is None)):
            return None
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "str": isinstance(value, str),
            "text": isinstance(value, str),
            "path": isinstance(value, str),
            "bool": isinstance(value, bool),
            "choice": value in self.choices,
            "list": isinstance(value, list)
            and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value),
        }[self.kind]
        if self.required and self.kind in ("str", "path") and value == "":
            ok = False
        if ok and self.kind == "list" and self.item:
            want = {"int": int, "float": (int, float), "str": str}[self.item]
            ok = all(isinstance(v, want) for v in value)
        if not ok:
            expected = f"one of {list(self.choices)}" if self.kind == "choice" else f"a {self.kind}"
            if self.kind == "list" and self.item:
                expected = f"a list of {self.item}"
            if self.required and value in ("", None):
                expected = f"a value ({self.kind}); it is required"
            raise GraphError(
                f"node {node_id!r} param {self.name!r}: expected {expected}, got {value!r}",
                node=node_id,
                port=self.name,
            )
        return (
            float(value) if self.kind == "float" else value
        )  # 10 and 10.0 are one value (and one cache key)

    def to_dict(self) -> dict[str, Any]:
        """JSON description for the editor."""
        return {
            "name": self.name,
            "kind": self.kind,
            "default": self.default,
            "choices": list(self.choices),
            "nullable": self.nullable,
            "required": self.required,
            "help": self.help,
            "item": self.item,
        }


@dataclass
class NodeCall:
    """What a node's function receives.

    Attributes:
        node_id: the node's id in the workflow.
        params: every parameter, the workflow's values over the defaults, checked.
        inputs: input port -> the value its link delivers (unconnected optional ports are absent).
        out_dir: an empty folder that becomes the node's cached output (node types with ``writes_files``), or None.
        device: the run's device setting (``auto | cpu | cuda``).
        root: the folder relative paths in parameters are read against.
    """

    node_id: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    out_dir: Path | None
    device: str = "auto"
    root: Path = field(default_factory=Path.cwd)

    def path(self, value: str) -> Path:
        """A path parameter, relative ones read against :attr:`root`."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p


@dataclass(frozen=True)
class NodeType:
    """A kind of node.

    Attributes:
        name: the registry key and the workflow file's ``type`` (``"image.sample"``).
        title: the editor's heading.
        category: the editor's menu group (a modality's name, ``"sampling"``, ``"save"``).
        run: ``run(call) -> {output port: value}``.
        inputs: the input ports.
        outputs: the output ports.
        params: the parameters.
        description: one or two sentences for the editor.
        cacheable: an unchanged node (same type, parameters and inputs) is not run again.
        writes_files: the node writes into ``call.out_dir``, which is kept as its on-disk cache.
        restore: rebuilds the outputs from a kept ``out_dir`` (default: every ``files`` output is that folder).
        fingerprint: extra text for the cache key from the parameters (e.g. the state of a folder it reads).
    """

    name: str
    title: str
    category: str
    run: Callable[[NodeCall], dict[str, Any]]
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()
    params: tuple[Param, ...] = ()
    description: str = ""
    cacheable: bool = True
    writes_files: bool = False
    restore: Callable[[Path, NodeCall], dict[str, Any]] | None = None
    fingerprint: Callable[[NodeCall], str] | None = None

    def input(self, name: str) -> Port | None:
        """The input port called ``name``, or None."""
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str) -> Port | None:
        """The output port called ``name``, or None."""
        return next((p for p in self.outputs if p.name == name), None)

    def resolve_params(self, node_id: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter: ``given`` over the defaults, each checked; an unknown name is an error."""
        known = {p.name: p for p in self.params}
        for name in given:
            if name not in known:
                raise GraphError(
                    f"node {node_id!r} ({self.name}): unknown param {name!r}; expected some of {sorted(known)}",
                    node=node_id,
                    port=name,
                )
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = p.check(given[p.name], node_id)
            elif p.required:
                raise GraphError(
                    f"node {node_id!r} param {p.name!r}: missing; it is required ({p.kind})",
                    node=node_id,
                    port=p.name,
                )
            else:
                out[p.name] = p.default
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON description for the editor."""
        return {
            "name": self.name,
            "title": self.title,
            "category": self.category,
            "description": self.description,
            "inputs": [vars(p) for p in self.inputs],
            "outputs": [vars(p) for p in self.outputs],
            "params": [p.to_dict() for p in self.params],
        }


class NodeRegistry:
    """Node type name -> :class:`NodeType`. :func:`diffcore.workflows.default_registry` fills one with the core's
    nodes and every installed modality's commands."""

    def __init__(self) -> None:
        self._types: dict[str, NodeType] = {}

    def add(self, node_type: NodeType) -> NodeType:
        """Register ``node_type``; a name given twice is an error."""
        if node_type.name in self._types:
            raise ValueError(f"node type {node_type.name!r} is registered twice")
        self._types[node_type.name] = node_type
        return node_type

    def get(self, name: str, node_id: str | None = None) -> NodeType:
        """The node type ``name``; an unknown one raises :class:`GraphError` (naming ``node_id`` if given)."""
        if name not in self._types:
            where = f"node {node_id!r}: " if node_id else ""
            raise GraphError(
                f"{where}unknown node type {name!r}; installed types include {sorted(self._types)[:8]}... "
                "(diffuse run --list-nodes shows all)",
                node=node_id,
            )
        return self._types[name]

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._types))

    def __len__(self) -> int:
        return len(self._types)

    def describe(self) -> list[dict[str, Any]]:
        """Every node type as JSON for the editor, sorted by category then name."""
        return [t.to_dict() for t in sorted(self._types.values(), key=lambda t: (t.category, t.name))]


def validate(workflow: Workflow, registry: NodeRegistry) -> list[str]:
    """Check ``workflow`` against ``registry``; return its node ids in an order that runs.

    Raises :class:`GraphError` naming the node and port for: an unknown node type, an unknown or ill-typed
    parameter, an unknown input port, a link to a missing node or output port, a link between ports of
    different types, a required input left unconnected, and a cycle.
    """
    by_id = {n.id: n for n in workflow.nodes}
    for node in workflow.nodes:
        kind = registry.get(node.type, node.id)
        kind.resolve_params(node.id, node.params)
        for port, (src, src_port) in node.inputs.items():
            target = kind.input(port)
            if target is None:
                names = [p.name for p in kind.inputs]
                raise GraphError(
                    f"node {node.id!r} ({node.type}): unknown input {port!r}; expected one of {names}",
                    node=node.id,
                    port=port,
                )
            if src not in by_id:
                raise GraphError(
                    f"node {node.id!r} input {port!r}: no node {src!r} in the workflow",
                    node=node.id,
                    port=port,
                )
            source = registry.get(by_id[src].type, src).output(src_port)
            if source is None:
                raise GraphError(
                    f"node {node.id!r} input {port!r}: node {src!r} ({by_id[src].type}) has no output {src_port!r}",
                    node=node.id,
                    port=port,
                )
            if source.type != target.type:
                raise GraphError(
                    f"node {node.id!r} input {port!r}: expects {target.type}, got {source.type} from "
                    f"node {src!r} output {src_port!r}",
                    node=node.id,
                    port=port,
                )
        for p in kind.inputs:
            if not p.optional and p.name not in node.inputs:
                raise GraphError(
                    f"node {node.id!r} ({node.type}) input {p.name!r}: missing; connect an output of type {p.type}",
                    node=node.id,
                    port=p.name,
                )
    return [n.id for n in workflow.order()]
