"""Running the benchmarks: one folder per run, continued call after call.

A run lives in ``<root>/bench-<timestamp>/``: one sub-folder per modality, and ``report.json``, which is
also the run's state. The report is rewritten (atomically) whenever a benchmark starts or ends, so a call
cut at any moment leaves a folder that :func:`resume_bench` continues: finished benchmarks are kept, the
one that was running or stopped at a checkpoint is called again with ``context.resume = True`` (a
benchmark without a ``context`` parameter simply runs again), and those not started run after it.
"""

from __future__ import annotations

import json
import platform
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from diffcore.bench.report import write_report
from diffcore.io import write_text
from diffcore.modality import (
    FINISHED,
    BenchContext,
    BenchResult,
    BenchStopped,
    InstalledModality,
    takes_context,
)

REPORT_JSON = "report.json"


@dataclass
class Call:
    """One call of ``diffuse bench`` on a run; a resumed run has several.

    Attributes:
        started: when the call began (ISO 8601, UTC).
        ended: when it ended, or None while it runs (or when it was killed).
        stopped: why it ended before the run was finished (``time budget``, ``stop requested``,
            ``interrupted``, ``a benchmark stopped at a checkpoint``), or None.
        environment: the device and the versions it ran with (:func:`environment`).
    """

    started: str
    ended: str | None = None
    stopped: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchReport:
    """A benchmark run: its folder, its setting, the results so far and the calls that made them.

    Attributes:
        folder: ``<root>/bench-<timestamp>``.
        quick: the small CPU-sized benchmarks (``--quick``) or the full ones.
        results: one per selected modality, in the order they run.
        packages: modality -> the distribution providing it (``diff-image 0.1.0``).
        calls: the calls that worked on this run, oldest first.
    """

    folder: Path
    quick: bool
    results: list[BenchResult]
    packages: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    @property
    def failed(self) -> list[BenchResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def unfinished(self) -> list[BenchResult]:
        """Benchmarks a resumed call still has to run (``unfinished``, ``running`` or ``pending``)."""
        return [r for r in self.results if r.status not in FINISHED]

    @property
    def finished(self) -> bool:
        return not self.unfinished

    @property
    def started(self) -> str | None:
        return self.calls[0].started if self.calls else None

    @property
    def ended(self) -> str | None:
        """When the last call ended, once every benchmark is finished; None before."""
        return self.calls[-1].ended if self.calls and self.finished else None

    @property
    def resume_command(self) -> str:
        """The command that continues this run."""
        return f"diffuse bench --resume {self.folder}"

    def result(self, modality: str) -> BenchResult:
        """The result of the named modality (``StopIteration`` if it was not run)."""
        return next(r for r in self.results if r.modality == modality)

    def _set(self, result: BenchResult) -> None:
        i = next(i for i, r in enumerate(self.results) if r.modality == result.modality)
        self.results[i] = result


def select(installed: Mapping[str, InstalledModality], names: Sequence[str]) -> list[InstalledModality]:
    """The modalities to run: all installed ones when ``names`` is empty, else those named."""
    if not names:
        return list(installed.values())
    unknown = [n for n in names if n not in installed]
    if unknown:
        have = ", ".join(installed) or "none"
        raise ValueError(f"modality: unknown {unknown}; installed modalities are: {have}")
    return [installed[n] for n in names]


def run_bench(
    installed: Sequence[InstalledModality],
    root: Path,
    quick: bool,
    on_start: Callable[[str], None] | None = None,
    *,
    max_seconds: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> BenchReport:
    """Start a run of the benchmarks of ``installed`` in a new ``root/bench-<timestamp>/`` and write its report.

    ``max_seconds``: the time budget of this call; benchmarks are told the deadline (:class:`BenchContext`),
    none starts after it, and the run is left for :func:`resume_bench`. ``stop``: returns True to end the
    call early the same way (a signal handler, tests). ``on_start(name)`` is called as each benchmark starts.
    """
    folder = _new_folder(root)
    report = BenchReport(
        folder=folder,
        quick=quick,
        results=[BenchResult(modality=i.modality.name, status="pending") for i in installed],
        packages={i.modality.name: f"{i.distribution} {i.version}" for i in installed},
    )
    return _run(report, list(installed), on_start, max_seconds, stop)


def resume_bench(
    folder: Path,
    installed: Mapping[str, InstalledModality],
    on_start: Callable[[str], None] | None = None,
    *,
    max_seconds: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> BenchReport:
    """Continue the run in ``folder``: keep the finished benchmarks, run the others (see :func:`run_bench`)."""
    report = load_report(folder)
    items = still_to_run(report, installed)
    for item in items:
        report.packages[item.modality.name] = f"{item.distribution} {item.version}"
    return _run(report, items, on_start, max_seconds, stop)


def still_to_run(report: BenchReport, installed: Mapping[str, InstalledModality]) -> list[InstalledModality]:
    """The installed modalities whose benchmarks ``report`` has not finished; an error names any missing."""
    todo = [r.modality for r in report.unfinished]
    missing = [n for n in todo if n not in installed]
    if missing:
        have = ", ".join(installed) or "none"
        raise ValueError(
            f"resume: {report.folder} still has to run {missing}, not installed here (installed: {have})"
        )
    return [installed[n] for n in todo]


def load_report(folder: Path) -> BenchReport:
    """The run saved in ``folder`` (its ``report.json``)."""
    path = Path(folder) / REPORT_JSON
    if not path.is_file():
        raise ValueError(
            f"resume: expected a folder written by diffuse bench (with {REPORT_JSON}), got {folder}"
        )
    data = json.loads(path.read_text())
    return BenchReport(
        folder=Path(folder),
        quick=bool(data["quick"]),
        results=[BenchResult.from_dict(m) for m in data["modalities"]],
        packages={m["modality"]: m.get("package") or "" for m in data["modalities"]},
        calls=[Call(**c) for c in data.get("calls", [])],
    )


def _run(
    report: BenchReport,
    items: list[InstalledModality],
    on_start: Callable[[str], None] | None,
    max_seconds: float | None,
    stop: Callable[[], bool] | None,
) -> BenchReport:
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    call = Call(started=_now(), environment=environment(report.packages))
    report.calls.append(call)
    write_report(report)
    running: str | None = None
    try:
        for item in items:
            name = item.modality.name
            earlier = report.result(name)
            context = BenchContext(
                resume=earlier.status in ("running", "unfinished"), deadline=deadline, stop_requested=stop
            )
            if context.should_stop():
                call.stopped = _why(deadline, stop)
                break
            report._set(replace(earlier, status="running"))
            write_report(report)
            running = name
            if on_start is not None:
                on_start(name)
            result = run_one(item, report.folder / name, report.quick, context)
            running = None
            result.seconds += earlier.seconds  # the time of earlier calls (zero for a first start)
            report._set(result)
            write_report(report)
        if call.stopped is None and any(r.status == "unfinished" for r in report.results):
            call.stopped = _why(deadline, stop)
    except KeyboardInterrupt:
        call.stopped = "interrupted"
        if running is not None:
            report._set(replace(report.result(running), status="unfinished", summary="interrupted (Ctrl-C)"))
        raise
    finally:
        call.ended = _now()
        write_report(report)
    return report


def _why(deadline: float | None, stop: Callable[[], bool] | None) -> str:
    """Why a call ends with benchmarks left to run."""
    if deadline is not None and time.monotonic() >= deadline:
        return "time budget"
    if stop is not None and stop():
        return "stop requested"
    return "a benchmark stopped at a checkpoint"


def run_one(
    item: InstalledModality, out_dir: Path, quick: bool, context: BenchContext | None = None
) -> BenchResult:
    """Run one benchmark in ``out_dir``; an exception becomes a ``failed`` result with its traceback, a
    :class:`BenchStopped` an ``unfinished`` one, never a crash. ``context`` reaches benchmarks that take it."""
    name = item.modality.name
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = item.modality.bench
    if bench is None:
        return BenchResult(modality=name, status="not-implemented", summary="this package has no benchmark")
    start = time.perf_counter()
    try:
        if takes_context(bench):
            result = bench(out_dir, quick, context=context or BenchContext())
        else:
            result = bench(out_dir, quick)
    except BenchStopped as stopped:
        summary = str(stopped) or "stopped at a checkpoint"
        return BenchResult(modality=name, status="unfinished", summary=summary, seconds=_since(start))
    except Exception as exc:  # a benchmark's failure is reported, the others still run
        write_text(out_dir / "error.txt", traceback.format_exc())
        return BenchResult(
            modality=name,
            status="failed",
            seconds=_since(start),
            error=f"{type(exc).__name__}: {exc}",
            files=[f"{name}/error.txt"],
        )
    if not isinstance(result, BenchResult):
        return BenchResult(
            modality=name,
            status="failed",
            seconds=_since(start),
            error=f"benchmark returned {type(result).__name__}, expected BenchResult",
        )
    seconds = result.seconds if result.seconds else _since(start)
    return replace(
        result, modality=name, seconds=seconds, files=[_in_report(f, out_dir) for f in result.files]
    )


def _in_report(file: str, out_dir: Path) -> str:
    """A benchmark's file as a path relative to the report folder (``<modality>/<file>``)."""
    name = out_dir.name
    path = Path(file)
    if path.is_absolute():
        try:
            return path.relative_to(out_dir.parent).as_posix()
        except ValueError:
            return path.as_posix()  # outside the run folder: the report links it as it is
    return file if file.startswith(f"{name}/") else f"{name}/{file}"


def environment(packages: Mapping[str, str]) -> dict[str, Any]:
    """The device (GPU names, or CPU) and the versions of python, torch, diffcore and each package."""
    import torch

    from diffcore import __version__

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    device = ", ".join(f"{n} x {g}" if n > 1 else g for g, n in Counter(gpus).items())
    return {
        "device": device or f"CPU ({platform.machine()}, {_cpu_count()} cores)",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if gpus else None,
        "diffcore": __version__,
        "packages": dict(packages),
    }


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _new_folder(root: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = root / f"bench-{stamp}"
    n = 1
    while folder.exists():  # two runs in the same second get distinct folders
        n += 1
        folder = root / f"bench-{stamp}-{n}"
    folder.mkdir(parents=True)
    return folder


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _since(start: float) -> float:
    return time.perf_counter() - start
