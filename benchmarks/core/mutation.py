"""Mutation scores of diffcore's numerical core (issue #24): run one suite of ``scripts/mutate.py`` (a module,
the tests that check it, and its surviving mutants judged equivalent, all listed in ``SUITES`` there) on the
CPU and write ``benchmarks/results/mutation-<suite>-cpu.json`` (summary, survivors, every mutant's result).

    OMP_NUM_THREADS=1 uv run python benchmarks/core/mutation.py paths.schedules
    uv run python benchmarks/core/mutation.py --list                 # the suites
    uv run python benchmarks/core/mutation.py NAME --resume          # keep the killed mutants of the file
                                                                     # already there, rerun the others
    uv run python benchmarks/core/mutation.py NAME --relabel         # rerun nothing: judge the file's
                                                                     # survivors against SUITES again
    uv run python benchmarks/core/mutation.py --docs                 # the markdown of docs/verification.md's
                                                                     # table and lists, from the result files

``docs/verification.md`` has the table of scores.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import result_path, write_result

ROOT = Path(__file__).resolve().parents[2]


def _mutate():
    spec = importlib.util.spec_from_file_location("mutate", ROOT / "scripts" / "mutate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def main() -> int:
    mutate = _mutate()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("suite", nargs="?", choices=sorted(mutate.SUITES), help="the suite to run")
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    p.add_argument("--resume", action="store_true", help="keep the killed mutants of the existing result")
    p.add_argument("--relabel", action="store_true", help="only judge the existing result's survivors again")
    p.add_argument(
        "--docs", action="store_true", help="print the markdown of the scores from the result files"
    )
    args = p.parse_args()
    if args.docs:
        print(docs_markdown(mutate.SUITES))
        return 0
    if args.list or not args.suite:
        for name, suite in mutate.SUITES.items():
            print(f"{name:22s} {suite['module']}")
        return 0
    out = result_path("mutation", args.suite, "cpu")
    if args.relabel:
        result = mutate.relabel_suite(args.suite, json.loads(out.read_text()))
    else:
        resume = json.loads(out.read_text()) if args.resume and out.exists() else None
        result = mutate.run_suite(args.suite, resume=resume)
    print(write_result(result, script="mutation", variant=args.suite, device="cpu"))
    return 0


def docs_markdown(suites: dict) -> str:
    """The score table, the equivalent survivors and the survivors left, of every suite with a result file; a
    suite whose module changed since its run is marked stale (its line numbers and counts are of the old source)."""
    rows, equivalent, left, missing = [], [], [], []
    for name in suites:
        path = result_path("mutation", name, "cpu")
        if not path.exists():
            missing.append(f"`{name}`")
            continue
        result = json.loads(path.read_text())
        s = result["summary"]
        source = (ROOT / result["module"]).read_text()
        stale = hashlib.sha256(source.encode()).hexdigest() != result["source_sha256"]
        score = f"{100 * s['score']:.1f}%" + (" (stale: the module changed since)" if stale else "")
        rows.append(f"| `{name}` | {s['mutants']} | {s['killed']} | {s['survived']} | {s['equivalent']} | "
                    f"{s['identical']} | {score} | `{path.name}` |")  # fmt: skip
        lines = source.splitlines() if not stale else []
        for r in result["results"]:
            code = lines[r["line"] - 1].strip() if lines else ""
            what = f"- `{name}` #{r['id']} (line {r['line']}, `{r['what']}`)" + (
                f": `{code}`" if code else ""
            )
            if r["status"] == "equivalent":
                equivalent.append(f"{what} — {r['detail']}")
            elif r["status"] == "survived":
                left.append(what)
    head = (
        "| suite (`<suite>`) | mutants | killed | survived | equivalent | identical | score | result file |"
    )
    out = [head, "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, ""]
    if missing:
        out += [f"Not run yet: {', '.join(missing)}.", ""]
    out += ["## Surviving mutants judged equivalent", "", *equivalent, "", "## Survivors not killed yet", ""]
    out += left or ["None."]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
