"""Where training records go: a JSONL file (one line per log step) and a tqdm progress bar.

TensorBoard is written through accelerate's tracker by the Trainer itself.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from diffcore.pretrained import atomic_write_bytes


class JsonlLog:
    """Appends one JSON object per line to ``path``; every line has at least a ``step`` key.

    On resume, :meth:`truncate_after` drops the lines a killed run wrote after the checkpoint it
    resumes from, so the file reads as one uninterrupted run.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (numbers that are not finite become ``null``, as JSON requires)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")
            f.flush()

    def read(self) -> list[dict[str, Any]]:
        """All records written so far (an unfinished last line, from a killed run, is skipped)."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_after(self, step: int) -> None:
        """Keep only the records with ``step <= step`` (rewritten atomically)."""
        if not self.path.is_file():
            return
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())


LOG_FILE = "log.jsonl"
"""The name of the Trainer's JSONL log inside its ``output_dir``."""


def read_run_log(output_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The log records of the Trainer run in ``output_dir`` (``[]`` when it has none)."""
    return JsonlLog(Path(output_dir) / LOG_FILE).read()


def steady_samples_per_sec(output_dir: str | os.PathLike[str], after_step: int) -> float:
    """Training throughput of the run in ``output_dir`` once start-up is over: the median ``samples_per_sec``
    of its log windows that end after ``after_step`` (kernel selection, allocator and data-loader warm-up fall
    in the earlier ones). Benchmarks use it to size a step count to a wall-time budget from a short trial run.
    """
    late = [
        r["samples_per_sec"]
        for r in read_run_log(output_dir)
        if r.get("step", 0) > after_step and "samples_per_sec" in r
    ]
    if not late:
        raise ValueError(f"after_step: no log window of {output_dir} ends after step {after_step}")
    return float(statistics.median(late))


class ProgressBar:
    """A tqdm bar over optimizer steps showing loss, learning rate and samples/s; silent when disabled."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self._bar = tqdm(total=total, initial=initial, disable=not enabled, desc="train", dynamic_ncols=True)

    def advance(self) -> None:
        """One optimizer step done."""
        self._bar.update(1)

    def show(self, record: dict[str, Any]) -> None:
        """Show the latest log record's loss, learning rate and throughput."""
        self._bar.set_postfix(
            loss=f"{record['loss']:.4g}",
            lr=f"{record['lr']:.3g}",
            samples_s=f"{record['samples_per_sec']:.1f}",
        )

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()
