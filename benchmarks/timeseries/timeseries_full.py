"""diff-timeseries benchmark: train on the synthetic set (+ the statsmodels series, last 12 points held out),
generate from held-out captions at the trained lengths (24, 48, 96) and an untrained one (72), and score every
target of the diff-timeseries issue (caption adherence, C-FID and MRR@10 against their train-vs-test floors,
forecasting CRPS / MASE against seasonal naive, ETS and ARIMA, imputation MAE against linear interpolation).

    uv run python benchmarks/timeseries/timeseries_full.py --quick        # CPU, < 5 minutes
    uv run python benchmarks/timeseries/timeseries_full.py                # one GPU (H100: training capped at 420 s)
    uv run python benchmarks/timeseries/timeseries_full.py --resume       # continue a cut GPU run in --out
    uv run python benchmarks/timeseries/timeseries_full.py --quick --set prior_base=validated \
        --variant quick-validated                                          # an option, its own result file

Without uv (a GPU machine with torch, statsmodels, pandas and matplotlib installed):

    PYTHONPATH=$(ls -d packages/*/src | paste -sd:) python benchmarks/timeseries/timeseries_full.py \
        --out runs/timeseries_full            # add --resume to continue a cut run

A check of the whole path at toy size, no result file: ``--device cpu --set steps=3 --set vae_steps=3
--set prior_steps=3 --set num_series=32 --set eval_samples=8 --no-result``.

Prints a table and writes benchmarks/results/timeseries_full[-quick]-<device>.json; CSVs and PNGs (samples per
length, the co2 fan chart) under --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from diff_timeseries.bench import FULL, QUICK, run_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="The CPU settings (QUICK); targets: trend adherence."
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="Run folder (default runs/timeseries_full[-quick])."
    )
    parser.add_argument(
        "--resume", action="store_true", help="Continue the run in --out from its checkpoints."
    )
    parser.add_argument("--device", default=None, help="Override the device (cpu | cuda | auto).")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks (GPU).")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override one BenchSettings field (repeatable), e.g. --set steps=100.",
    )
    parser.add_argument(
        "--no-result", action="store_true", help="Do not write the result file (checks, toy sizes)."
    )
    parser.add_argument(
        "--variant",
        default=None,
        help="Name the result file's variant (default: quick or none), e.g. quick-scaled for a --set run.",
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    settings = _override(settings, args.set, parser)
    if args.device:
        settings = dataclasses.replace(
            settings,
            device=args.device,
            mixed_precision="no" if args.device == "cpu" else settings.mixed_precision,
        )
    if args.compile:
        settings = dataclasses.replace(settings, compile=True)
    out = args.out or Path("runs/timeseries_full" + ("-quick" if args.quick else ""))
    result = run_bench(settings, out, quick=args.quick, resume=args.resume)
    verdicts = result.verdicts()
    print(f"{'metric':48s} {'value':>12s}  target")
    for name in sorted(result.metrics):
        if (
            name.startswith("forecast_")
            and not name.startswith(("forecast_beats", "forecast_at_least"))
            and "_crps_" not in name
        ):
            continue
        value = result.metrics[name]
        target = result.targets.get(name)
        mark = f"{target.direction} {target.value:g}: {verdicts[name]}" if target else ""
        print(f"{name:48s} {value:12.4f}  {mark}")
    if args.no_result:
        return
    path = write_result(
        {
            "settings": dataclasses.asdict(settings),
            "seconds": result.seconds,
            "summary": result.summary,
            "metrics": result.metrics,
            "targets": {k: [t.direction, t.value] for k, t in result.targets.items()},
            "verdicts": verdicts,
            "files": [str(out / f) for f in result.files],
        },
        script="timeseries_full",
        variant=args.variant or ("quick" if args.quick else None),
        device=settings.device if settings.device != "auto" else None,
        packages=("diffcore", "diff-timeseries", "statsmodels"),
    )
    print(f"wrote {path}")


def _override(settings, pairs: list[str], parser: argparse.ArgumentParser):
    fields = {f.name: f for f in dataclasses.fields(settings)}
    changes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            parser.error(f"--set: expected KEY=VALUE with KEY one of {', '.join(fields)}, got {pair!r}")
        current = getattr(settings, key)
        try:
            if isinstance(current, bool):
                changes[key] = value.lower() in ("1", "true", "yes")
            elif current is None or isinstance(current, float):
                changes[key] = None if value.lower() == "none" else float(value)
            else:
                changes[key] = type(current)(value)
        except ValueError:
            parser.error(f"--set: {key} expects a {type(current).__name__}, got {value!r}")
    return dataclasses.replace(settings, **changes)


if __name__ == "__main__":
    main()
