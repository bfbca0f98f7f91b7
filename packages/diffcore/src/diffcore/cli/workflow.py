"""``diffuse run``: a node workflow run headless, with a progress line per node (:mod:`diffcore.workflows`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from diffcore.cli.options import fail

__all__ = ["list_node_types", "run_workflow_file"]


def list_node_types(console: Console) -> None:
    """Print every node type: name, inputs, outputs."""
    from diffcore.workflows import default_registry

    registry = default_registry()
    table = Table(title=f"{len(registry)} node types")
    for col in ("type", "inputs", "outputs", "description"):
        table.add_column(col)
    for item in registry.describe():
        ins = ", ".join(f"{p['name']}:{p['type']}{'?' if p['optional'] else ''}" for p in item["inputs"])
        outs = ", ".join(f"{p['name']}:{p['type']}" for p in item["outputs"])
        table.add_row(item["name"], ins, outs, item["description"][:80])
    console.print(table)


def run_workflow_file(
    path: Path, work_dir: Path, device: str, use_cache: bool, quiet: bool, debug: bool, console: Console
) -> None:
    """Load, check and run the workflow at ``path``; print what ran, what was cached and what was saved."""
    from diffcore.workflows import Executor, GraphError, NodeError, default_registry, load_workflow

    try:
        workflow = load_workflow(path)
        executor = Executor(
            default_registry(), work_dir, device=device, use_cache=use_cache, quiet=quiet or None
        )
        executor.keys(workflow)  # the graph is checked before anything runs
    except GraphError as exc:
        if debug:
            raise
        fail(str(exc))
    columns = TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    with Progress(*columns, console=console, disable=quiet, transient=True) as bar:
        task = bar.add_task("workflow", total=None)

        def on_event(event: dict[str, Any]) -> None:
            kind, node = event["event"], event.get("node")
            if kind == "node_start":
                bar.update(task, description=f"{node} ({event['type']})", completed=0, total=None)
            elif kind == "progress":
                bar.update(
                    task, description=f"{node}: {event['desc']}", completed=event["n"], total=event["total"]
                )
            elif kind == "node_done" and not quiet:
                how = "cached" if event["cached"] else f"ran in {event['seconds']:.1f}s"
                if event["needed"]:
                    console.print(f"{node}: {how}")

        try:
            result = executor.run(workflow, on_event)
        except (GraphError, NodeError) as exc:
            if debug:
                raise
            bar.stop()
            fail(str(exc))
    for f in result.files:
        typer.echo(f"saved {f}")
    typer.echo(f"{len(result.ran)} nodes ran, {len(result.cached)} cached, {result.seconds:.1f}s")
