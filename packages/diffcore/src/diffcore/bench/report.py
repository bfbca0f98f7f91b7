"""The run's report, in three forms written side by side in its folder (all through :mod:`diffcore.io`):

- ``report.json``: everything, machine-readable; it is also the state :func:`~diffcore.bench.resume_bench`
  continues from.
- ``report.md``: one table of the modalities, then per modality its metrics beside their targets and
  links to its files.
- ``report.html``: the same with the samples shown (:mod:`diffcore.bench.html`); a static page with
  relative links, so the folder can be copied anywhere.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from diffcore.bench.figures import fmt
from diffcore.bench.html import render_html, targets_met
from diffcore.io import write_json, write_text
from diffcore.modality import BenchResult

if TYPE_CHECKING:
    from diffcore.bench.runner import BenchReport


def write_report(report: BenchReport) -> None:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``report.folder``."""
    write_json(report_dict(report), report.folder / "report.json")
    write_text(report.folder / "report.md", render_markdown(report))
    write_text(report.folder / "report.html", render_html(report))


def report_dict(report: BenchReport) -> dict[str, Any]:
    """The content of ``report.json``."""
    return {
        "quick": report.quick,
        "finished": report.finished,
        "started": report.started,
        "ended": report.ended,
        "resume": None if report.finished else report.resume_command,
        "environment": report.calls[-1].environment if report.calls else {},
        "calls": [asdict(c) for c in report.calls],
        "modalities": [
            {**r.to_dict(), "package": report.packages.get(r.modality), "verdicts": r.verdicts()}
            for r in report.results
        ],
    }


def render_markdown(report: BenchReport) -> str:
    """The content of ``report.md``."""
    env = report.calls[-1].environment if report.calls else {}
    lines = [
        f"# diffuse bench ({'quick' if report.quick else 'full'})",
        "",
        f"Device: {env.get('device', '?')}. Python {env.get('python', '?')}, torch {env.get('torch', '?')}, "
        f"diffcore {env.get('diffcore', '?')}.",
        "",
        f"Started {report.started}; "
        + (f"ended {report.ended}." if report.finished else "not finished.")
        + (f" {len(report.calls)} calls." if len(report.calls) > 1 else ""),
    ]
    if not report.finished:
        lines += ["", f"Unfinished: continue with `{report.resume_command}`."]
    lines += [
        "",
        "| modality | package | status | seconds | targets met | summary |",
        "| --- | --- | --- | ---: | ---: | --- |",
    ]
    for r in report.results:
        lines.append(
            f"| {r.modality} | {report.packages.get(r.modality, '')} | {r.status} | {r.seconds:.1f} "
            f"| {targets_met(r)} | {_cell(r.summary or r.error or '')} |"
        )
    for r in report.results:
        lines += _markdown_section(r)
    return "\n".join(lines) + "\n"


def _markdown_section(r: BenchResult) -> list[str]:
    lines = ["", f"## {r.modality}", "", f"Status: **{r.status}** in {r.seconds:.1f} s."]
    if r.summary:
        lines += ["", r.summary]
    if r.error:
        lines += ["", f"Error: `{r.error}`"]
    verdicts = r.verdicts()
    names = list(r.metrics) + [m for m in r.targets if m not in r.metrics]
    if names:
        lines += ["", "| metric | value | target | verdict |", "| --- | ---: | --- | --- |"]
        for name in names:
            value = fmt(r.metrics[name]) if name in r.metrics else "missing"
            target = r.targets.get(name)
            lines.append(f"| {name} | {value} | {target or ''} | {verdicts.get(name, '')} |")
    if r.files:
        lines += ["", "Files:", ""] + [f"- [{f}]({f})" for f in r.files]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
