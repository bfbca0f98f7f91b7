"""Node workflows: a typed graph of nodes saved as JSON, run headless by ``diffuse run workflow.json`` or from the
web UI (``diffuse serve``).

- :mod:`~diffcore.workflows.graph`: the file format, :class:`Workflow` and :class:`GraphError`;
- :mod:`~diffcore.workflows.nodes`: node types, ports, parameters, the registry and :func:`validate`;
- :mod:`~diffcore.workflows.builtin`: sampler, guidance, prompt, LoRA and save nodes;
- :mod:`~diffcore.workflows.commands`: one node per command of every installed modality (``image.sample``,
  ``audio.sample``, ``protein.train``, ...), found through the modality contract;
- :mod:`~diffcore.workflows.executor`: the run, with progress events and the cache of unchanged nodes.

    registry = default_registry()
    result = Executor(registry, "runs/workflows").run(load_workflow("workflow.json"))
"""

from __future__ import annotations

from diffcore.workflows.executor import Event, Executor, NodeError, RunResult
from diffcore.workflows.graph import GraphError, Node, Workflow, load_workflow
from diffcore.workflows.nodes import NodeCall, NodeRegistry, NodeType, Param, Port, validate

__all__ = [
    "Event",
    "Executor",
    "GraphError",
    "Node",
    "NodeCall",
    "NodeError",
    "NodeRegistry",
    "NodeType",
    "Param",
    "Port",
    "RunResult",
    "Workflow",
    "default_registry",
    "load_workflow",
    "validate",
]


def default_registry() -> NodeRegistry:
    """The built-in nodes and a node per command of every installed modality package."""
    from diffcore.modality import discover
    from diffcore.workflows.builtin import add_builtin_nodes
    from diffcore.workflows.commands import add_modality_nodes

    return add_modality_nodes(add_builtin_nodes(NodeRegistry()), discover())
