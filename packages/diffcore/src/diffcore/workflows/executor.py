"""Run a workflow: check it, compute each node's cache key, and run only what changed.

Cache key of a node = SHA-256 of its type, its parameters (defaults filled in), the run's device, the keys of the
nodes and ports it reads and its type's fingerprint (the state of a folder it reads). Nodes are pulled from the sinks: a node
whose key is remembered (in memory, for this :class:`Executor`) or whose output folder is kept on disk
(``<work_dir>/cache/<key>``, for nodes that write files) is not run, and neither is anything only it reads.
A node's folder is marked complete (``.done``) only once the node succeeds; a folder without the mark (a failed
or cut run) is never read and is replaced, so a failed run leaves no half-written cache entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffcore import previews, progress
from diffcore.io import write_json
from diffcore.workflows.graph import GraphError, Node, Workflow
from diffcore.workflows.nodes import NodeCall, NodeRegistry, validate

__all__ = ["Event", "Executor", "NodeError", "RunResult"]

Event = dict[str, Any]
"""What :meth:`Executor.run` reports: ``{"event": "start" | "node_start" | "progress" | "node_done" | "preview" |
"error" | "done", "node": id, ...}`` (``progress`` adds ``desc``, ``n``, ``total``; ``preview`` adds those and
``image``, a PNG data URL of the sampler's x0 estimate (:mod:`diffcore.previews`); ``node_done`` adds ``cached``,
``seconds`` and ``files``)."""


class NodeError(RuntimeError):
    """A node failed while running; ``node`` is its id and the message starts with it."""

    def __init__(self, message: str, node: str, port: str | None = None) -> None:
        super().__init__(message)
        self.node, self.port = node, port


@dataclass
class RunResult:
    """What a run did.

    Attributes:
        outputs: node id -> its output values (port -> value), for the nodes that were needed.
        ran: ids of the nodes that ran.
        cached: ids of the nodes served from the cache (or not needed because a reader was).
        files: files written by save nodes, in order.
        seconds: wall time of the run.
    """

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _jsonable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str)


class Executor:
    """Runs workflows against one :class:`NodeRegistry`, remembering node outputs between runs.

    Args:
        registry: the node types.
        work_dir: where node folders are kept (``<work_dir>/cache/<key>``).
        device: the device setting every node runs with (``auto | cpu | cuda``).
        root: the folder relative paths in the workflows are read against (default: the current folder).
        use_cache: False runs every node again (the remembered outputs are replaced).
        quiet: True hides the nodes' own progress bars on standard error (the events still report progress).
        preview_every: a ``preview`` event every this many sampling steps (and at each loop's last step); None
            (default): no previews, and sampling decodes nothing for them (``diffuse run``; ``diffuse serve`` uses 4).
    """

    def __init__(
        self,
        registry: NodeRegistry,
        work_dir: str | Path,
        *,
        device: str = "auto",
        root: str | Path | None = None,
        use_cache: bool = True,
        quiet: bool | None = None,
        preview_every: int | None = None,
    ) -> None:
        if preview_every is not None and preview_every < 1:
            raise ValueError(f"preview_every: expected >= 1 or None, got {preview_every}")
        self.quiet = quiet
        self.preview_every = preview_every
        self.registry = registry
        self.work_dir = Path(work_dir)
        self.device = device
        self.root = Path(root) if root is not None else Path.cwd()
        self.use_cache = use_cache
        self._memory: dict[str, dict[str, Any]] = {}

    def keys(self, workflow: Workflow) -> dict[str, str]:
        """Node id -> cache key (validates the workflow first)."""
        order = validate(workflow, self.registry)
        keys: dict[str, str] = {}
        for nid in order:
            node = workflow.node(nid)
            kind = self.registry.get(node.type, nid)
            params = kind.resolve_params(nid, node.params)
            parts = [node.type, _jsonable(params), self.device]  # a CPU result is not a CUDA one
            parts += [f"{port}<-{keys[src]}.{sp}" for port, (src, sp) in sorted(node.inputs.items())]
            if kind.fingerprint is not None:
                parts.append(kind.fingerprint(self._call(node, params, {}, None)))
            keys[nid] = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]
        return keys

    def _call(
        self, node: Node, params: dict[str, Any], inputs: dict[str, Any], out_dir: Path | None
    ) -> NodeCall:
        return NodeCall(node.id, params, inputs, out_dir, device=self.device, root=self.root)

    def run(self, workflow: Workflow, on_event: Callable[[Event], None] | None = None) -> RunResult:
        """Run ``workflow``; ``on_event`` hears every step (see :data:`Event`). Raises :class:`GraphError` for
        a bad graph (before anything runs) and :class:`NodeError` for a node that failed."""
        emit = on_event or (lambda event: None)
        start = time.perf_counter()
        keys = self.keys(workflow)
        result = RunResult()
        readers = {n.id: [m.id for m in workflow.nodes if any(s == n.id for s, _ in m.inputs.values())]
                   for n in workflow.nodes}  # fmt: skip
        emit({"event": "start", "nodes": [n.id for n in workflow.order()], "keys": keys})
        sinks = [n for n in workflow.order() if not readers[n.id]]
        for sink in sinks:
            self._pull(workflow, sink, keys, result, emit)
        for node in workflow.nodes:  # upstream of a cached node: not needed this time
            if node.id not in result.outputs:
                result.cached.append(node.id)
                emit({"event": "node_done", "node": node.id, "cached": True, "needed": False, "seconds": 0.0,
                      "files": []})  # fmt: skip
        result.seconds = time.perf_counter() - start
        emit({"event": "done", "seconds": result.seconds, "files": [str(f) for f in result.files]})
        return result

    def _pull(
        self, wf: Workflow, node: Node, keys: dict[str, str], result: RunResult, emit: Callable[[Event], None]
    ) -> dict[str, Any]:
        if node.id in result.outputs:
            return result.outputs[node.id]
        kind = self.registry.get(node.type, node.id)
        params = kind.resolve_params(node.id, node.params)
        key = keys[node.id]
        folder = self.work_dir / "cache" / key
        cached: dict[str, Any] | None = None
        if self.use_cache and kind.cacheable:
            if key in self._memory:
                cached = self._memory[key]
            elif kind.writes_files and (folder / ".done").is_file():
                restore = kind.restore or (
                    lambda d, c: {p.name: d for p in kind.outputs if p.type == "files"}
                )
                cached = restore(folder, self._call(node, params, {}, folder))
        if cached is not None:
            self._memory[key] = cached
            result.outputs[node.id] = cached
            result.cached.append(node.id)
            emit({"event": "node_done", "node": node.id, "cached": True, "needed": True, "seconds": 0.0,
                  "files": _listing(cached)})  # fmt: skip
            return cached
        inputs = {
            port: self._pull(wf, wf.node(src), keys, result, emit)[sp]
            for port, (src, sp) in node.inputs.items()
        }
        emit({"event": "node_start", "node": node.id, "type": node.type})
        began = time.perf_counter()
        outputs = self._execute(node, kind, params, inputs, folder, emit)
        seconds = time.perf_counter() - began
        saved = [Path(p) for p in outputs.pop("saved", [])]
        result.files += saved
        if kind.cacheable:
            self._memory[key] = outputs
        result.outputs[node.id] = outputs
        result.ran.append(node.id)
        emit({"event": "node_done", "node": node.id, "cached": False, "needed": True, "seconds": seconds,
              "files": [str(p) for p in saved] or _listing(outputs)})  # fmt: skip
        return outputs

    def _execute(self, node: Node, kind: Any, params: dict[str, Any], inputs: dict[str, Any], folder: Path,
                 emit: Callable[[Event], None]) -> dict[str, Any]:  # fmt: skip
        out_dir = None
        if kind.writes_files:  # a folder without .done (a failed or cut run) is never used and is replaced
            out_dir = folder
            _discard(out_dir)
            out_dir.mkdir(parents=True)
        call = self._call(node, params, inputs, out_dir)

        def listener(desc: str, n: int, total: int | None) -> None:
            emit({"event": "progress", "node": node.id, "desc": desc, "n": n, "total": total})

        def preview(desc: str, n: int, total: int | None, images: Any) -> None:
            emit({"event": "preview", "node": node.id, "desc": desc, "n": n, "total": total,
                  "image": previews.png_data_url(images)})  # fmt: skip

        try:
            with (
                progress.listening(listener),
                previews.previewing(preview, every=self.preview_every)
                if self.preview_every is not None
                else contextlib.nullcontext(),
                progress.configured(quiet=self.quiet, progress=True),
            ):
                outputs = kind.run(call)
        except GraphError as exc:
            _discard(out_dir)
            raise NodeError(str(exc), node.id, exc.port) from exc
        except Exception as exc:
            _discard(out_dir)
            raise NodeError(
                f"node {node.id!r} ({node.type}) failed: {type(exc).__name__}: {exc}", node.id
            ) from exc
        if out_dir is not None:
            write_json({"type": node.type, "params": params}, out_dir / ".node.json")
            (out_dir / ".done").touch()  # last: the folder is complete
        return outputs


def _discard(folder: Path | None) -> None:
    if folder is not None and folder.exists():
        shutil.rmtree(folder, ignore_errors=True)


def _listing(outputs: dict[str, Any], limit: int = 200) -> list[str]:
    """The files in the output folders of a node (for previews), at most ``limit``."""
    files: list[str] = []
    for value in outputs.values():
        if isinstance(value, Path) and value.is_dir():
            files += [str(f) for f in sorted(value.rglob("*")) if f.is_file() and not f.name.startswith(".")]
    return files[:limit]
