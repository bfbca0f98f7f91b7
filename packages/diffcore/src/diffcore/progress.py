"""Progress on standard error for long work (training, sampling, evaluation, benchmarks), and one switch for it.

Who shows progress:

- the :class:`~diffcore.training.Trainer` always (``TrainConfig.progress_bar``);
- :func:`diffcore.sample` when asked (``progress=True``), or by default when :func:`enabled` is true, which the
  ``diffuse`` commands turn on for the whole process (so every sampling loop of a command shows progress);
- anything else through :class:`Progress`.

Nothing is shown when :func:`quiet` is true (``diffuse ... --quiet``, or ``DIFFCORE_QUIET=1``). On a terminal or
a Jupyter kernel progress is a tqdm bar; in a log file or a batch job it is a plain line at most every
``every_s`` seconds (and one at the end of work that printed any), so logs are not filled with redraws.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

ProgressListener = Callable[[str, int, "int | None"], None]
"""``listener(desc, n, total)``: told of every :class:`Progress` update made in its context (see :func:`listening`)."""

_LISTENER: contextvars.ContextVar[ProgressListener | None] = contextvars.ContextVar(
    "diffcore_progress", default=None
)

QUIET_ENV = "DIFFCORE_QUIET"
PROGRESS_ENV = "DIFFCORE_PROGRESS"
_TRUE = {"1", "true", "yes", "on"}


def quiet() -> bool:
    """Whether progress is silenced for this process (``DIFFCORE_QUIET`` is ``1`` / ``true`` / ``yes`` / ``on``)."""
    return os.environ.get(QUIET_ENV, "").strip().lower() in _TRUE


def enabled() -> bool:
    """Whether library loops that show progress only on request (sampling) show it by default: ``DIFFCORE_PROGRESS``
    is set true (the ``diffuse`` commands set it) and the process is not :func:`quiet`."""
    return os.environ.get(PROGRESS_ENV, "").strip().lower() in _TRUE and not quiet()


def configure(*, quiet: bool | None = None, progress: bool | None = None) -> None:
    """Set the process-wide switches (the command line calls this once): ``quiet`` silences every progress
    display; ``progress`` makes sampling loops show progress by default. ``None`` leaves a switch as it is."""
    if quiet is not None:
        os.environ[QUIET_ENV] = "1" if quiet else "0"
    if progress is not None:
        os.environ[PROGRESS_ENV] = "1" if progress else "0"


@contextlib.contextmanager
def configured(*, quiet: bool | None = None, progress: bool | None = None) -> Iterator[None]:
    """:func:`configure` for the duration of a ``with`` block, then the switches as they were (a command run
    in-process, by a test or a notebook, leaves the process as it found it)."""
    saved = {name: os.environ.get(name) for name in (QUIET_ENV, PROGRESS_ENV)}
    configure(quiet=quiet, progress=progress)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def listening(listener: ProgressListener) -> Iterator[None]:
    """Within the block (this thread or task only), every :class:`Progress` made calls ``listener(desc, n,
    total)`` on each update and once at the start, whether or not anything is shown (the web UI's live
    progress, :mod:`diffcore.workflows`)."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def current_listener() -> ProgressListener | None:
    """The listener of the innermost :func:`listening` block around this call, or None (for progress displays that
    are not a :class:`Progress`, such as the Trainer's bar)."""
    return _LISTENER.get()


def is_interactive(stream: Any) -> bool:
    """Whether ``stream`` is a terminal or a Jupyter kernel's output (where a redrawn bar reads well)."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed stream
        return False


def format_seconds(seconds: float) -> str:
    """``3725.2`` -> ``"1:02:05"``; ``"?"`` when not finite."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Progress of ``total`` units of work (``None``: unknown) under the label ``desc``.

    A tqdm bar on an interactive ``stream`` (removed when done unless ``leave``), plain lines otherwise
    (``desc 12/50 (24%), 3.1 steps/s, ETA 0:00:12``, at most every ``every_s`` seconds, plus a last line if any
    was printed), nothing when ``show`` is false or the process is :func:`quiet`. Use as a context manager or
    call :meth:`close`. Updating never reads a tensor, so it adds no device synchronisation.

    Args:
        total: units of work, or None when unknown (adaptive samplers).
        desc: what is being done (``"sample dpmpp_2m"``).
        show: show anything at all (before :func:`quiet` is applied).
        unit: the unit's name, plural (``"steps"``).
        leave: keep the finished bar on a terminal.
        every_s: the least time between two plain lines.
        stream: where to write; default ``sys.stderr`` at construction.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        show: bool = True,
        unit: str = "steps",
        leave: bool = False,
        every_s: float = 10.0,
        stream: TextIO | None = None,
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._listener = _LISTENER.get()
        shown = show and not quiet()
        self.active = shown or self._listener is not None  # callers update only an active bar
        self.interactive = shown and is_interactive(self._stream)
        self._shown = shown
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.n = 0
        self._start = self._last_line = time.perf_counter()
        self._printed = False
        self._bar = None
        if self._listener is not None:
            self._listener(desc, 0, total)
        if self.interactive:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit=f" {unit}", leave=leave, file=self._stream, dynamic_ncols=True
            )

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.n += n
        if self._listener is not None:
            self._listener(self.desc, self.n, self.total)
        if self._bar is not None:
            self._bar.update(n)
        elif self._shown and time.perf_counter() - self._last_line >= self.every_s:
            self._write_line()

    def line(self) -> str:
        """The plain progress line now."""
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = self.n / elapsed
        if self.total:
            eta = format_seconds((self.total - self.n) / rate) if rate > 0 else "?"
            return (
                f"{self.desc} {self.n}/{self.total} ({100 * self.n / self.total:.0f}%), "
                f"{rate:.3g} {self.unit}/s, ETA {eta}"
            )
        return (
            f"{self.desc} {self.n} {self.unit}, {rate:.3g} {self.unit}/s, {format_seconds(elapsed)} elapsed"
        )

    def _write_line(self) -> None:
        self._stream.write(self.line() + "\n")
        self._stream.flush()
        self._last_line = time.perf_counter()
        self._printed = True

    def close(self) -> None:
        """Finish: close the bar, or print the last line if any line was printed."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._printed:
            self._write_line()
            self._printed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
