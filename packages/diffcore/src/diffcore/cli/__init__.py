"""The ``diffuse`` command line.

``diffuse list`` shows installed modality packages, ``diffuse bench`` runs their benchmarks, and each
installed modality adds its own subcommands (``diffuse image train``, ...).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from diffcore import __version__, progress
from diffcore.cli.options import fail
from diffcore.modality import InstalledModality, discover

if TYPE_CHECKING:
    from diffcore.bench import BenchReport

console = Console()

EXIT_UNFINISHED = 3
"""``diffuse bench``'s exit status when the run stopped before the end (a time budget, SIGTERM)."""


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
        resume: Path | None = typer.Option(
            None,
            "--resume",
            help="Continue the run in this bench-<timestamp> folder: finished benchmarks are kept, an "
            "unfinished one continues from its checkpoints.",
        ),
        max_minutes: float | None = typer.Option(
            None,
            "--max-minutes",
            help="Time budget of this call: benchmarks stop at their next checkpoint after it, and the "
            "run is left to --resume.",
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display on standard error."),
    ) -> None:
        """Run each installed modality's benchmark; write report.md, report.html and report.json.

        Exits 0 when every benchmark finished, 1 when one failed, 3 when the run is unfinished (resume it).
        """
        if max_minutes is not None and not max_minutes > 0:
            fail(f"--max-minutes: expected a positive number of minutes, got {max_minutes:g}")
        max_seconds = None if max_minutes is None else 60 * max_minutes
        from diffcore.bench import load_report, select, still_to_run  # here: diffuse --help stays light

        try:  # the user's mistakes, found before anything runs
            if resume is not None:
                saved = load_report(resume)
                _check_resume_arguments(saved, modalities or [], quick)
                todo = still_to_run(saved, installed)
            else:
                todo = select(installed, modalities or [])
        except ValueError as exc:
            fail(str(exc))
        report = _run_or_resume(todo, quick, out, resume, max_seconds, quiet)
        _print_summary(report)
        if not report.finished:
            why = report.calls[-1].stopped or "stopped"
            again = f" --max-minutes {max_minutes:g}" if max_minutes is not None else ""
            console.print(
                f"[yellow]unfinished ({why}):[/yellow] continue with  {report.resume_command}{again}"
            )
            raise typer.Exit(code=EXIT_UNFINISHED)
        if report.failed:
            raise typer.Exit(code=1)

    app.command("run")(run_cmd)
    app.command("serve")(serve_cmd)
    for name, item in installed.items():
        if item.modality.app is not None:
            app.add_typer(item.modality.app, name=name, help=_group_help(item))
    return app


def run_cmd(
    workflow: Path | None = typer.Argument(
        None, help="A workflow JSON file (written by diffuse serve or by hand)."
    ),
    work_dir: Path = typer.Option(
        Path("runs/workflows"), "--work-dir", help="Where node outputs are kept (cache/<key>/ per node)."
    ),
    device: str = typer.Option("auto", "--device", help="Device of every node: auto | cpu | cuda."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every node again, even unchanged ones."),
    list_nodes: bool = typer.Option(False, "--list-nodes", help="List the node types and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display on standard error."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
) -> None:
    """Run a node workflow headless: each node's progress, unchanged nodes taken from the cache, and the files the
    save nodes wrote. A bad graph is refused before anything runs, naming the node and port."""
    from diffcore.cli.workflow import list_node_types, run_workflow_file

    _check_device(device)
    if list_nodes:
        list_node_types(console)
        return
    if workflow is None:
        fail("WORKFLOW: expected a workflow JSON file (or --list-nodes)")
    run_workflow_file(workflow, work_dir, device, not no_cache, quiet, debug, console)


def serve_cmd(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (default: this machine only)."
    ),
    port: int = typer.Option(8188, "--port", help="Port (0: any free port)."),
    root: Path = typer.Option(
        Path("."),
        "--root",
        help="Folder that relative paths, saved workflows (workflows/) and runs are under.",
    ),
    device: str = typer.Option("auto", "--device", help="Device of every node: auto | cpu | cuda."),
    bench_dir: Path = typer.Option(
        Path("runs"), "--bench-dir", help="Folder searched for diffuse bench reports (report.json)."
    ),
) -> None:
    """Start the local web UI: a node-graph editor for workflows, a run queue with live progress and previews, a
    gallery of outputs and a page per bench report. Requests from other origins are refused."""
    from diffcore.ui.server import serve

    _check_device(device)
    if not 0 <= port < 65536:
        fail(f"--port: expected 0..65535, got {port}")
    serve(host=host, port=port, root=root, device=device, bench_dir=bench_dir)


def _check_device(device: str) -> None:
    if device not in ("auto", "cpu", "cuda"):
        fail(f"--device: expected auto, cpu or cuda, got {device!r}")


def _group_help(item: InstalledModality) -> str:
    """A modality's line in ``diffuse --help``: its description, then its subcommands."""
    commands = [
        c.name or (c.callback.__name__ if c.callback else "?") for c in item.modality.app.registered_commands
    ]
    described = item.modality.description.rstrip(".")
    return f"{described}. Commands: {', '.join(commands)}." if commands else described


def _run_or_resume(
    todo: list[InstalledModality],
    quick: bool,
    out: Path,
    resume: Path | None,
    max_seconds: float | None,
    quiet: bool = False,
) -> BenchReport:
    """Run ``todo`` in a new run under ``out`` or in the run ``resume``, with a progress line and SIGTERM as
    a stop request."""
    from diffcore.bench import resume_bench, run_bench

    columns = SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()
    with (
        progress.configured(quiet=True if quiet else None),
        _stop_on_sigterm() as stop,
        Progress(*columns, console=console, disable=quiet or progress.quiet()) as bar,
    ):
        task = bar.add_task("benchmarks", total=len(todo))

        def on_start(name: str) -> None:
            bar.update(task, description=f"benchmark: {name}")

        if resume is not None:
            installed = {i.modality.name: i for i in todo}
            report = resume_bench(resume, installed, on_start, max_seconds=max_seconds, stop=stop)
        else:
            report = run_bench(todo, out, quick, on_start, max_seconds=max_seconds, stop=stop)
        bar.update(task, completed=len(todo), description="benchmarks done")
    return report


def _check_resume_arguments(saved: BenchReport, modalities: list[str], quick: bool) -> None:
    """A resumed run keeps its own modalities and setting; naming others is a mistake, not a new run."""
    if quick and not saved.quick:
        raise ValueError(f"--quick: the run in {saved.folder} is a full one; resume it without --quick")
    ran = [r.modality for r in saved.results]
    if modalities and modalities != ran:
        raise ValueError(
            f"MODALITIES: the run in {saved.folder} benchmarks {ran}; resume it without naming modalities"
        )


@contextmanager
def _stop_on_sigterm() -> Iterator[Callable[[], bool]]:
    """Yield ``stop()``, which turns True once SIGTERM arrives (``timeout`` and machine leases send it before
    killing): the running benchmark stops at its next checkpoint and the report is written. A second SIGTERM
    gets the previous handling (by default, the process ends at once)."""
    event = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if event.is_set():
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            signal.raise_signal(signal.SIGTERM)
        event.set()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application): no handler, never asked to stop
        yield event.is_set
        return
    try:
        yield event.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_summary(report: BenchReport) -> None:
    table = Table(title=f"diffuse bench ({'quick' if report.quick else 'full'})")
    for col in ("modality", "status", "seconds", "summary"):
        table.add_column(col)
    for r in report.results:
        style = {"ok": "green", "failed": "red"}.get(r.status, "yellow")
        table.add_row(
            r.modality, f"[{style}]{r.status}[/{style}]", f"{r.seconds:.1f}", r.summary or (r.error or "")
        )
    console.print(table)
    console.print(f"report: {report.folder / 'report.html'} (and report.md, report.json)")


def main() -> None:
    """Console-script entry point."""
    build_app()()
