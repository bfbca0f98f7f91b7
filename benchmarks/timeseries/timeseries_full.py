"""diff-timeseries benchmark: train on the synthetic set (+ the statsmodels series, last 12 points held out),
generate from held-out captions at the trained lengths (24, 48, 96) and an untrained one (72), and score every
target of the diff-timeseries issue (caption adherence, C-FID and MRR@10 against their train-vs-test floors,
forecasting CRPS / MASE against seasonal naive, ETS and ARIMA, imputation MAE against linear interpolation).

    uv run python benchmarks/timeseries/timeseries_full.py --quick        # CPU, < 5 minutes
    uv run python benchmarks/timeseries/timeseries_full.py                # one GPU (H100: about 8 minutes)
    uv run python benchmarks/timeseries/timeseries_full.py --resume       # continue a cut GPU run in --out

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
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
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
        variant="quick" if args.quick else None,
        device=settings.device if settings.device != "auto" else None,
        packages=("diffcore", "diff-timeseries", "statsmodels"),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
