"""The ``diffuse`` command line.

``diffuse list`` shows installed modality packages, ``diffuse bench`` runs their benchmarks, and each
installed modality adds its own subcommands (``diffuse image train``, ...).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from diffcore import __version__
from diffcore.bench import run_bench, select
from diffcore.modality import discover

console = Console()


def build_app() -> typer.Typer:
    """The ``diffuse`` app with every installed modality's subcommands attached."""
    app = typer.Typer(
        name="diffuse",
        help="Diffusion and flow generative models for every modality, from one shared core.",
        no_args_is_help=True,
        add_completion=False,
    )
    installed = discover()

    @app.command("list")
    def list_cmd() -> None:
        """List the installed modality packages with their versions."""
        table = Table(title=f"diffcore {__version__}: installed modalities")
        for col in ("modality", "package", "version", "description"):
            table.add_column(col)
        for name, item in installed.items():
            table.add_row(name, item.distribution, item.version, item.modality.description)
        console.print(table)
        if not installed:
            console.print("No modality package is installed (pip install diff-image, diff-audio, ...).")

    @app.command("bench")
    def bench_cmd(
        modalities: list[str] | None = typer.Argument(
            None, help="Modalities to benchmark (default: every installed one)."
        ),
        quick: bool = typer.Option(False, "--quick", help="Small CPU-sized runs (minutes, not hours)."),
        out: Path = typer.Option(
            Path("runs"), "--out", help="Folder under which bench-<timestamp>/ is written."
        ),
    ) -> None:
        """Run each installed modality's benchmark; write report.md and report.json."""
        try:
            chosen = select(installed, modalities or [])
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="MODALITIES") from exc
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as bar:
            task = bar.add_task("benchmarks", total=len(chosen))

            def on_start(name: str) -> None:
                bar.update(task, description=f"benchmark: {name}")

            report = run_bench(chosen, out, quick, on_start=on_start)
            bar.update(task, completed=len(chosen), description="benchmarks done")
        table = Table(title=f"diffuse bench ({'quick' if quick else 'full'})")
        for col in ("modality", "status", "seconds", "summary"):
            table.add_column(col)
        for r in report.results:
            style = {"ok": "green", "failed": "red"}.get(r.status, "yellow")
            table.add_row(
                r.modality, f"[{style}]{r.status}[/{style}]", f"{r.seconds:.1f}", r.summary or (r.error or "")
            )
        console.print(table)
        console.print(f"report: {report.folder / 'report.md'}")
        if report.failed:
            raise typer.Exit(code=1)

    for name, item in installed.items():
        if item.modality.app is not None:
            app.add_typer(item.modality.app, name=name, help=item.modality.description)
    return app


def main() -> None:
    """Console-script entry point."""
    build_app()()
