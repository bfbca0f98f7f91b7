"""``report.html``: one static page, inline CSS and inline SVG, no script and nothing fetched from the
network; every sample is referenced by a path relative to the report folder, so the folder can be copied.

Per modality: its status and summary, each metric beside its target with the verdict, a chart of the
targeted metrics, and the files it wrote: pictures as ``<img>``, audio as ``<audio controls>``, video as
``<video controls>``, structures (PDB, mmCIF, PLY) as a download link with a small projection, text samples
as their first lines, anything else as a link.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from diffcore.bench.figures import ChartRow, fmt, structure_preview, target_chart
from diffcore.bench.samples import read_structure, sample_kind
from diffcore.modality import BenchResult

if TYPE_CHECKING:
    from diffcore.bench.runner import BenchReport

TEXT_PREVIEW_LINES = 12
TEXT_PREVIEW_CHARS = 2000

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #212121; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .6rem 0; } th, td { padding: .25rem .6rem; text-align: left;
        border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; }
pre { background: #f7f7f7; padding: .5rem; overflow-x: auto; max-height: 16rem; }
.status { display: inline-block; padding: 0 .45rem; border-radius: .6rem; color: #fff; font-size: 12px; }
.ok, .met { background: #2e7d32; } .failed, .not-met { background: #c62828; }
.not-implemented, .pending, .missing { background: #9e9e9e; } .unfinished, .running { background: #ef6c00; }
.note { background: #fff3e0; border-left: 4px solid #ef6c00; padding: .5rem .8rem; }
.samples { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.samples figure { margin: 0; max-width: 100%; } .samples img { max-width: 512px; max-height: 512px;
        image-rendering: pixelated; border: 1px solid #ddd; } .samples video { max-width: 512px; }
figcaption { font-size: 12px; color: #616161; } svg text { font: 12px sans-serif; fill: #212121; }
"""


def render_html(report: BenchReport) -> str:
    """The content of ``report.html``."""
    mode = "quick" if report.quick else "full"
    env = report.calls[-1].environment if report.calls else {}
    body = [
        f"<h1>diffuse bench <small>({mode})</small></h1>",
        _facts(report, env),
    ]
    if not report.finished:
        body.append(
            f'<p class="note">Unfinished: continue with <code>{escape(report.resume_command)}</code> '
            "(add <code>--max-minutes N</code> to stop cleanly within a time limit).</p>"
        )
    rows = [
        f'<tr><td><a href="#{_anchor(r.modality)}">{escape(r.modality)}</a></td>'
        f"<td>{escape(report.packages.get(r.modality, ''))}</td><td>{_badge(r.status)}</td>"
        f'<td class="num">{r.seconds:.1f}</td><td class="num">{targets_met(r)}</td>'
        f"<td>{escape(r.summary or r.error or '')}</td></tr>"
        for r in report.results
    ]
    body += [
        "<h2>Modalities</h2>",
        _table(("modality", "package", "status", "seconds", "targets met", "summary"), rows),
    ]
    body += [_section(r, report.folder) for r in report.results]
    body += ["<h2>Calls</h2>", _calls(report), "<h2>Versions</h2>", _versions(env)]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>diffuse bench ({mode})</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def targets_met(result: BenchResult) -> str:
    """``"2/3"``: targets met out of targets set; empty without targets."""
    verdicts = result.verdicts()
    return f"{sum(v == 'met' for v in verdicts.values())}/{len(verdicts)}" if verdicts else ""


def _facts(report: BenchReport, env: dict) -> str:
    facts = [
        ("device", env.get("device", "?")),
        ("started", report.started or "?"),
        ("ended", report.ended or "not finished"),
        ("calls", str(len(report.calls))),
    ]
    return _table(None, [f"<tr><th>{k}</th><td>{escape(v)}</td></tr>" for k, v in facts])


def _section(r: BenchResult, folder: Path) -> str:
    parts = [
        f'<section id="{_anchor(r.modality)}"><h2>{escape(r.modality)}</h2>',
        f"<p>{_badge(r.status)} in {r.seconds:.1f} s</p>",
    ]
    if r.summary:
        parts.append(f"<p>{escape(r.summary)}</p>")
    if r.error:
        parts.append(f"<pre>{escape(r.error)}</pre>")
    parts.append(_metrics(r))
    if r.files:
        parts += ["<h3>Files</h3>", '<div class="samples">', *(_sample(f, folder) for f in r.files), "</div>"]
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _metrics(r: BenchResult) -> str:
    verdicts = r.verdicts()
    names = list(r.metrics) + [m for m in r.targets if m not in r.metrics]
    if not names:
        return ""
    rows = []
    for name in names:
        target = r.targets.get(name)
        verdict = verdicts.get(name)
        value = fmt(r.metrics[name]) if name in r.metrics else "missing"
        rows.append(
            f'<tr><td>{escape(name)}</td><td class="num">{escape(value)}</td>'
            f"<td>{escape(str(target)) if target else ''}</td><td>{_badge(verdict) if verdict else ''}</td></tr>"
        )
    table = _table(("metric", "value", "target", "verdict"), rows)
    chart_rows = [
        ChartRow(
            metric=name,
            value=float(r.metrics[name]) if isinstance(r.metrics.get(name), (int, float)) else None,
            direction=target.direction,
            target=float(target.value),
            verdict=verdicts[name],
        )
        for name, target in r.targets.items()
    ]
    chart = target_chart(chart_rows, f"{r.modality}: measured values and targets") if chart_rows else ""
    return table + chart


def _sample(file: str, folder: Path) -> str:
    """One file the benchmark wrote, shown as its kind allows; ``file`` is relative to ``folder``."""
    src = escape(quote(file, safe="/"))
    name = escape(file)
    path = folder / file
    caption = f'<figcaption><a href="{src}">{name}</a>{"" if path.exists() else " (missing)"}</figcaption>'
    kind = sample_kind(file)
    if kind == "image":
        inner = f'<img src="{src}" alt="{name}" loading="lazy">'
    elif kind == "audio":
        inner = f'<audio controls preload="none" src="{src}"></audio>'
    elif kind == "video":
        inner = f'<video controls preload="metadata" src="{src}"></video>'
    elif kind == "structure":
        structure = read_structure(path)
        inner = structure_preview(structure, f"preview of {file}") if structure is not None else ""
    elif kind == "text":
        inner = _text_head(path)
    else:
        inner = ""
    return f'<figure class="{kind}">{inner}{caption}</figure>'


def _text_head(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(TEXT_PREVIEW_CHARS)
    except OSError:
        return ""
    lines = head.splitlines()[:TEXT_PREVIEW_LINES]
    return f"<pre>{escape(chr(10).join(lines))}</pre>"


def _calls(report: BenchReport) -> str:
    rows = [
        f"<tr><td>{escape(c.started)}</td><td>{escape(c.ended or 'cut')}</td>"
        f"<td>{escape(c.environment.get('device', '?'))}</td><td>{escape(c.stopped or '')}</td></tr>"
        for c in report.calls
    ]
    return _table(("started", "ended", "device", "stopped"), rows)


def _versions(env: dict) -> str:
    items = [(k, env.get(k)) for k in ("python", "torch", "cuda", "diffcore", "platform")]
    items += list(env.get("packages", {}).items())
    rows = [f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in items if v is not None]
    return _table(None, rows)


def _table(header: tuple[str, ...] | None, rows: list[str]) -> str:
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>" if header else ""
    return f"<table>{head}{''.join(rows)}</table>"


def _badge(status: str) -> str:
    return f'<span class="status {status.replace(" ", "-")}">{escape(status)}</span>'


def _anchor(name: str) -> str:
    return "m-" + "".join(c if c.isalnum() else "-" for c in name)
