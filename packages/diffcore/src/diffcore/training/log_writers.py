"""Where training records go: a JSONL file (one line per log step) and the progress on standard error.

TensorBoard is written through accelerate's tracker by the Trainer itself.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from diffcore.io import write_text
from diffcore.progress import current_listener, format_seconds, is_interactive, quiet


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
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


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
    """Training progress on ``stream`` (standard error): loss, steps/s and ETA.

    On a terminal (or a Jupyter kernel) a tqdm bar; otherwise (a log file, a batch job) one plain line per
    :meth:`show`, which the Trainer calls every ``log_every`` steps, so logs are not filled with bar redraws.
    Nothing at all when ``enabled`` is false or progress is silenced (:func:`diffcore.progress.quiet`).

    Args:
        total: the run's last step.
        initial: the step training starts from (after a resume); steps/s and ETA count from here.
        enabled: show anything at all.
        stream: where to write; default ``sys.stderr`` at construction.
    """

    def __init__(self, total: int, initial: int, enabled: bool, stream: TextIO | None = None) -> None:
        self._stream = sys.stderr if stream is None else stream
        enabled = enabled and not quiet()
        self.interactive = enabled and is_interactive(self._stream)
        self.plain = enabled and not self.interactive
        self._total, self._initial, self._step = total, initial, initial
        self._start = time.perf_counter()
        self._listener = current_listener()  # the web UI's live progress (diffcore.progress.listening)
        if self._listener is not None:
            self._listener("train", initial, total)
        self._bar = tqdm(
            total=total,
            initial=initial,
            disable=not self.interactive,
            desc="train",
            unit=" steps",
            file=self._stream,
            dynamic_ncols=True,
            bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA {remaining}, "
            "{rate_fmt}{postfix}]",
        )

    def advance(self) -> None:
        """One optimizer step done."""
        self._step += 1
        self._bar.update(1)
        if self._listener is not None:
            self._listener("train", self._step, self._total)

    def show(self, record: dict[str, Any]) -> None:
        """Show the latest log record's loss and learning rate (with steps/s and ETA)."""
        if self.interactive:
            self._bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{record['lr']:.3g}")
        elif self.plain:
            self._stream.write(self.line(record) + "\n")
            self._stream.flush()

    def line(self, record: dict[str, Any]) -> str:
        """The plain progress line for ``record``:
        ``train step 40/100 (40%): loss 0.1234, lr 0.0001, 12.5 steps/s, ETA 0:00:04``."""
        done = self._step - self._initial
        rate = done / max(time.perf_counter() - self._start, 1e-9)
        eta = format_seconds((self._total - self._step) / rate) if rate > 0 else "?"
        return (
            f"train step {self._step}/{self._total} ({100 * self._step / self._total:.0f}%): "
            f"loss {record['loss']:.4g}, lr {record['lr']:.3g}, {rate:.3g} steps/s, ETA {eta}"
        )

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()
