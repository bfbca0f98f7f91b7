"""``diffuse bench``: run each installed modality's benchmark and write one report.

A run lives in ``<root>/bench-<timestamp>/``: one sub-folder per modality holding what its benchmark wrote,
and ``report.json`` (everything, machine-readable, and the run's state), ``report.md`` and ``report.html``
(a static page showing each metric beside its target and the samples). A run cut by a time limit continues
with :func:`resume_bench` (``diffuse bench --resume <folder>``)::

    from diffcore.bench import resume_bench, run_bench, select
    from diffcore.modality import discover

    installed = discover()
    report = run_bench(select(installed, ["image"]), Path("runs"), quick=False, max_seconds=540)
    while not report.finished:
        report = resume_bench(report.folder, installed, max_seconds=540)

- ``runner``: the run, its state and resumption (:class:`BenchReport`, :func:`run_bench`, :func:`resume_bench`)
- ``report``: ``report.json`` and ``report.md``; ``html``: ``report.html``
- ``figures``: the hand-written SVG charts; ``samples``: what kind each written file is, structure readers
"""

from diffcore.bench.report import write_report
from diffcore.bench.runner import (
    BenchReport,
    Call,
    load_report,
    resume_bench,
    run_bench,
    run_one,
    select,
    still_to_run,
)

__all__ = [
    "BenchReport",
    "Call",
    "load_report",
    "resume_bench",
    "run_bench",
    "run_one",
    "select",
    "still_to_run",
    "write_report",
]
