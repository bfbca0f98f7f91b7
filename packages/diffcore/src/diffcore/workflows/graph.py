"""A workflow: a typed graph of nodes saved as JSON, and the checks that refuse a bad one.

The file (``format: "diffcore-workflow"``, ``version: 1``)::

    {"format": "diffcore-workflow", "version": 1,
     "nodes": [
       {"id": "load", "type": "image.load_pipeline", "params": {"path": "runs/image/pipeline"}},
       {"id": "draw", "type": "image.sample", "params": {"num_samples": 4},
        "inputs": {"pipeline": ["load", "pipeline"]}},
       {"id": "save", "type": "save.image", "params": {"folder": "out"}, "inputs": {"files": ["draw", "files"]}}]}

Each input names the ``[node id, output port]`` it reads. ``position`` (``[x, y]``, the editor's) is kept and
otherwise ignored. :func:`validate` refuses unknown node types, unknown parameters, unknown or missing inputs,
type mismatches and cycles, each with one message naming the node and the port.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffcore.io import write_json

FORMAT = "diffcore-workflow"
VERSION = 1

__all__ = ["FORMAT", "VERSION", "GraphError", "Node", "Workflow", "load_workflow"]


class GraphError(ValueError):
    """A workflow that cannot run; ``node`` and ``port`` say where (either may be None)."""

    def __init__(self, message: str, node: str | None = None, port: str | None = None) -> None:
        super().__init__(message)
        self.node, self.port = node, port


@dataclass
class Node:
    """One node of a workflow.

    Attributes:
        id: unique within the workflow.
        type: a node type's name in the :class:`~diffcore.workflows.nodes.NodeRegistry` (``"image.sample"``).
        params: parameter name -> JSON value; missing ones take the node type's defaults.
        inputs: input port -> ``(source node id, source output port)``.
        position: where the editor draws it (``[x, y]``), or None.
    """

    id: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, tuple[str, str]] = field(default_factory=dict)
    position: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The node as it is written in the JSON file."""
        out: dict[str, Any] = {"id": self.id, "type": self.type, "params": self.params}
        out["inputs"] = {port: list(src) for port, src in self.inputs.items()}
        if self.position is not None:
            out["position"] = list(self.position)
        return out


@dataclass
class Workflow:
    """A graph of :class:`Node` s in file order; :meth:`order` gives them in an order that runs."""

    nodes: list[Node] = field(default_factory=list)
    name: str = ""

    def node(self, node_id: str) -> Node:
        """The node called ``node_id``."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise GraphError(f"no node {node_id!r} in the workflow", node=node_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the file."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "nodes": [n.to_dict() for n in self.nodes],
        }

    def save(self, path: str | Path) -> Path:
        """Write the workflow to ``path`` (atomically)."""
        return write_json(self.to_dict(), path)

    @classmethod
    def from_dict(cls, data: Any) -> Workflow:
        """Read the JSON object of a workflow file, checking its shape (not yet its node types: :func:`validate`)."""
        if not isinstance(data, Mapping):
            raise GraphError(f"workflow: expected a JSON object, got {type(data).__name__}")
        if data.get("format", FORMAT) != FORMAT:
            raise GraphError(f"format: expected {FORMAT!r}, got {data.get('format')!r}")
        if data.get("version", VERSION) != VERSION:
            raise GraphError(f"version: expected {VERSION}, got {data.get('version')!r}")
        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, list):
            raise GraphError(f"nodes: expected a list of nodes, got {type(raw_nodes).__name__}")
        nodes: list[Node] = []
        seen: set[str] = set()
        for i, raw in enumerate(raw_nodes):
            node = _node_from_dict(raw, i)
            if node.id in seen:
                raise GraphError(f"node {node.id!r}: the id is used twice", node=node.id)
            seen.add(node.id)
            nodes.append(node)
        return cls(nodes=nodes, name=str(data.get("name", "")))

    def order(self) -> list[Node]:
        """The nodes sorted so that each comes after the nodes it reads (Kahn's algorithm, file order kept among
        equals). Raises :class:`GraphError` naming a node and port on a cycle or a link to a missing node."""
        by_id = {n.id: n for n in self.nodes}
        for n in self.nodes:
            for port, (src, _) in n.inputs.items():
                if src not in by_id:
                    raise GraphError(
                        f"node {n.id!r} input {port!r}: no node {src!r} in the workflow", node=n.id, port=port
                    )
        indegree = {n.id: len({src for src, _ in n.inputs.values()}) for n in self.nodes}
        readers: dict[str, set[str]] = {n.id: set() for n in self.nodes}
        for n in self.nodes:
            for src, _ in n.inputs.values():
                readers[src].add(n.id)
        ready = [n.id for n in self.nodes if indegree[n.id] == 0]
        out: list[Node] = []
        while ready:
            nid = ready.pop(0)
            out.append(by_id[nid])
            for reader in [m.id for m in self.nodes if m.id in readers[nid]]:
                indegree[reader] -= 1
                if indegree[reader] == 0:
                    ready.append(reader)
        if len(out) < len(self.nodes):
            stuck = next(n for n in self.nodes if indegree[n.id] > 0)
            port = next(p for p, (src, _) in stuck.inputs.items() if by_id[src] not in out)
            raise GraphError(
                f"node {stuck.id!r} input {port!r}: the workflow has a cycle through it",
                node=stuck.id,
                port=port,
            )
        return out


def _node_from_dict(raw: Any, index: int) -> Node:
    if not isinstance(raw, Mapping):
        raise GraphError(f"nodes[{index}]: expected an object, got {type(raw).__name__}")
    node_id, node_type = raw.get("id"), raw.get("type")
    if not isinstance(node_id, str) or not node_id:
        raise GraphError(f"nodes[{index}].id: expected a non-empty string, got {node_id!r}")
    if not isinstance(node_type, str) or not node_type:
        raise GraphError(
            f"node {node_id!r}: 'type' must be a node type's name, got {node_type!r}", node=node_id
        )
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        raise GraphError(f"node {node_id!r}: 'params' must be an object, got {params!r}", node=node_id)
    inputs: dict[str, tuple[str, str]] = {}
    raw_inputs = raw.get("inputs", {})
    if not isinstance(raw_inputs, Mapping):
        raise GraphError(f"node {node_id!r}: 'inputs' must be an object, got {raw_inputs!r}", node=node_id)
    for port, src in raw_inputs.items():
        if not (isinstance(src, (list, tuple)) and len(src) == 2 and all(isinstance(s, str) for s in src)):
            raise GraphError(
                f"node {node_id!r} input {port!r}: expected [node id, output port], got {src!r}",
                node=node_id,
                port=port,
            )
        inputs[port] = (src[0], src[1])
    position = raw.get("position")
    return Node(id=node_id, type=node_type, params=dict(params), inputs=inputs, position=position)


def load_workflow(path: str | Path) -> Workflow:
    """Read a workflow file (JSON); a file that is not valid JSON raises :class:`GraphError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise GraphError(f"workflow: {p} is not a file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GraphError(f"workflow: {p} is not valid JSON ({exc})") from exc
    return Workflow.from_dict(data)
