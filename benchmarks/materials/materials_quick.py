"""diff-materials' quick CPU benchmark (what ``diffuse bench materials --quick`` runs): one network trained for at
most 200 s on the generated perovskites (polymorph-grouped 10 % held out), 32 ab initio samples (structural and
SMACT validity, COV, Wasserstein, uniqueness, novelty) and structure prediction of 20 held-out formulas
(StructureMatcher match rate). Target: structural validity >= 90 %.

    uv run python benchmarks/materials/materials_quick.py            # <= 5 min on a CPU

Prints a table and writes benchmarks/results/materials_quick-<device>.json (CIF files, the picture and the
model under --out).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from diff_materials.bench import QUICK, TARGETS, run_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/materials-quick"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a BenchSettings field (e.g. --set seed=1 --set coords=flow); the result "
                             "file records the settings used")  # fmt: skip
    args = parser.parse_args()
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(QUICK)}
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            parser.error(f"--set: expected KEY=VALUE with KEY one of {sorted(fields)}, got {item!r}")
        current = getattr(QUICK, key)
        kind = type(current) if current is not None else float
        overrides[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    settings = dataclasses.replace(QUICK, device=args.device, **overrides)
    t0 = time.perf_counter()
    result = run_bench(args.out, settings)
    seconds = time.perf_counter() - t0
    for name, value in result.metrics.items():
        target = TARGETS.get(name)
        print(f"{name:28s} {value:10.4f}" + (f"   target {target[0]} {target[1]}" if target else ""))
    print(f"{'wall_s':28s} {seconds:10.1f}")
    path = write_result({"settings": dataclasses.asdict(settings), "metrics": result.metrics, "wall_s": seconds,
                         "targets": {k: list(v) for k, v in TARGETS.items()}, "summary": result.summary},
                        script="materials_quick", device=args.device, packages=("diff-materials",))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
