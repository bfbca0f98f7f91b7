"""The ``diffuse bench`` runner: run each installed modality's benchmark and write a report.

The report lands in ``<root>/bench-<timestamp>/``: ``report.json`` (machine-readable), ``report.md``
(one section per modality: what was trained, how long, its metrics, links to its files) and one
sub-folder per modality holding whatever that benchmark wrote.
"""

from __future__ import annotations

import json
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from diffcore.modality import BenchResult, InstalledModality


@dataclass
class BenchReport:
    folder: Path
    results: list[BenchResult]
    quick: bool

    @property
    def failed(self) -> list[BenchResult]:
        return [r for r in self.results if r.status == "failed"]


def select(installed: dict[str, InstalledModality], names: Sequence[str]) -> list[InstalledModality]:
    """The modalities to run: all installed ones when ``names`` is empty, else those named."""
    if not names:
        return list(installed.values())
    unknown = [n for n in names if n not in installed]
    if unknown:
        have = ", ".join(installed) or "none"
        raise ValueError(f"modality: unknown {unknown}; installed modalities are: {have}")
    return [installed[n] for n in names]


def run_one(item: InstalledModality, out_dir: Path, quick: bool) -> BenchResult:
    """Run one benchmark; an exception becomes a ``failed`` result with its traceback, never a crash."""
    name = item.modality.name
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = item.modality.bench
    if bench is None:
        return BenchResult(modality=name, status="not-implemented", summary="this package has no benchmark")
    start = time.perf_counter()
    try:
        result = bench(out_dir, quick)
    except Exception as exc:  # a benchmark's failure is reported, the others still run
        (out_dir / "error.txt").write_text(traceback.format_exc())
        return BenchResult(
            modality=name,
            status="failed",
            seconds=time.perf_counter() - start,
            error=f"{type(exc).__name__}: {exc}",
            files=[f"{name}/error.txt"],
        )
    if not isinstance(result, BenchResult):
        return BenchResult(
            modality=name,
            status="failed",
            seconds=time.perf_counter() - start,
            error=f"benchmark returned {type(result).__name__}, expected BenchResult",
        )
    if result.seconds == 0.0:
        result.seconds = time.perf_counter() - start
    # Files are reported relative to the report folder.
    result.files = [f if f.startswith(f"{name}/") else f"{name}/{f}" for f in result.files]
    return result


def run_bench(
    installed: Sequence[InstalledModality],
    root: Path,
    quick: bool,
    on_start: Callable[[str], None] | None = None,
) -> BenchReport:
    """Run the benchmarks of ``installed`` one after the other and write the report under ``root``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = root / f"bench-{stamp}"
    n = 1
    while folder.exists():  # two runs in the same second get distinct folders
        n += 1
        folder = root / f"bench-{stamp}-{n}"
    folder.mkdir(parents=True)
    results = []
    for item in installed:
        if on_start is not None:
            on_start(item.modality.name)
        results.append(run_one(item, folder / item.modality.name, quick))
    report = BenchReport(folder=folder, results=results, quick=quick)
    versions = {i.modality.name: f"{i.distribution} {i.version}" for i in installed}
    write_report(report, versions)
    return report


def _environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return env


def write_report(report: BenchReport, versions: dict[str, str]) -> None:
    """Write ``report.json`` and ``report.md`` into ``report.folder``."""
    env = _environment()
    data = {
        "created": datetime.now(timezone.utc).isoformat(),
        "quick": report.quick,
        "environment": env,
        "modalities": [{**r.to_dict(), "package": versions.get(r.modality)} for r in report.results],
    }
    tmp = report.folder / "report.json.tmp"
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(report.folder / "report.json")

    lines = [
        f"# diffuse bench ({'quick' if report.quick else 'full'})",
        "",
        f"Python {env['python']}, torch {env['torch']}, device: {env['cuda'] or 'CPU'}.",
        "",
        "| modality | package | status | seconds | summary |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for r in report.results:
        lines.append(
            f"| {r.modality} | {versions.get(r.modality, '')} | {r.status} | {r.seconds:.1f} | {r.summary} |"
        )
    for r in report.results:
        lines += ["", f"## {r.modality}", "", f"Status: **{r.status}** in {r.seconds:.1f} s."]
        if r.summary:
            lines += ["", r.summary]
        if r.error:
            lines += ["", f"Error: `{r.error}`"]
        if r.metrics:
            lines += ["", "| metric | value |", "| --- | ---: |"]
            lines += [
                f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                for k, v in r.metrics.items()
            ]
        if r.files:
            lines += ["", "Files:", ""] + [f"- [{f}]({f})" for f in r.files]
    (report.folder / "report.md").write_text("\n".join(lines) + "\n")
