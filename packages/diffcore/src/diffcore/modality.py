"""The contract between ``diffcore`` and the modality packages.

A modality package registers one :class:`Modality` under the entry-point group
``diffcore.modalities``; installing the package is all it takes for ``diffuse`` to find it::

    [project.entry-points."diffcore.modalities"]
    audio = "diff_audio.cli:modality"
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

ENTRY_POINT_GROUP = "diffcore.modalities"

BenchStatus = Literal["ok", "not-implemented", "failed", "unfinished", "pending", "running"]
"""A benchmark returns ``ok``, ``not-implemented``, ``failed`` or ``unfinished`` (stopped at a checkpoint, to be
resumed); the runner marks ``pending`` (not started yet) and ``running`` (started by a call that was cut)."""

FINISHED: frozenset[str] = frozenset({"ok", "not-implemented", "failed"})
"""The statuses a resumed run keeps; every other one runs again."""

Direction = Literal[">=", "<=", ">", "<"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)


@dataclass(frozen=True)
class Target:
    """What a metric should reach: met when ``measured <direction> value`` (``">="``: higher is better)."""

    direction: Direction
    value: float

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction: expected one of {DIRECTIONS}, got {self.direction!r}")
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool):
            raise ValueError(f"value: expected a number, got {self.value!r}")

    def met(self, measured: float | None) -> bool | None:
        """Whether ``measured`` meets the target; None when there is no finite measurement."""
        if measured is None or not math.isfinite(measured):
            return None
        return {
            ">=": measured >= self.value,
            "<=": measured <= self.value,
            ">": measured > self.value,
            "<": measured < self.value,
        }[self.direction]

    def __str__(self) -> str:
        return f"{self.direction} {self.value:.4g}"


def _as_target(name: str, spec: Any) -> Target:
    """``Target``, ``(direction, value)`` or ``{"direction": ..., "value": ...}`` (as read from JSON)."""
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, Mapping):
        spec = (spec.get("direction"), spec.get("value"))
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        try:
            return Target(*spec)
        except ValueError as exc:
            raise ValueError(f"targets[{name!r}]: {exc}") from None
    raise ValueError(f"targets[{name!r}]: expected (direction, value) such as ('>=', 0.9), got {spec!r}")


Verdict = Literal["met", "not met", "missing"]


@dataclass
class BenchResult:
    """What one modality's benchmark did.

    Attributes:
        modality: the modality's name.
        status: ``ok``, ``not-implemented``, ``failed`` or ``unfinished`` (see :data:`BenchStatus`).
        summary: one or two sentences for the report.
        seconds: wall time of the benchmark; the runner adds the time of earlier calls of a resumed run.
        metrics: metric name -> measured value.
        targets: metric name -> :class:`Target` (or ``(direction, value)``, e.g. ``(">=", 0.9)``); the report
            says met / not met beside each measured value.
        files: paths relative to the benchmark's folder (or the report folder) of what it wrote: pictures,
            audio, video, structures (PDB / CIF / PLY), text samples, metrics JSON; the report shows them.
        error: the exception of a ``failed`` benchmark.
    """

    modality: str
    status: BenchStatus
    summary: str = ""
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    error: str | None = None
    targets: dict[str, Target] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in get_args(BenchStatus):
            raise ValueError(f"status: expected one of {get_args(BenchStatus)}, got {self.status!r}")
        self.targets = {name: _as_target(name, spec) for name, spec in self.targets.items()}

    def verdicts(self) -> dict[str, Verdict]:
        """Metric name -> ``met``, ``not met`` or ``missing`` (not measured, or not finite), for each target."""
        out: dict[str, Verdict] = {}
        for name, target in self.targets.items():
            value = self.metrics.get(name)
            met = target.met(float(value)) if isinstance(value, (int, float)) else None
            out[name] = "missing" if met is None else ("met" if met else "not met")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready values (``dataclasses.asdict``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchResult:
        """The inverse of :meth:`to_dict`; keys that are not fields (the report's own) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class BenchStopped(Exception):
    """Raised by a benchmark that stopped at a checkpoint (its :class:`BenchContext` said to stop).

    The runner records it as ``unfinished`` with the message as summary; the next
    ``diffuse bench --resume`` calls the benchmark again with ``context.resume = True``.
    """


@dataclass(frozen=True)
class BenchContext:
    """What a benchmark is told about its call, for long benchmarks that checkpoint and resume.

    A benchmark receives it when its signature has a ``context`` parameter
    (``def bench(out_dir, quick, context: BenchContext = BenchContext())``); ``bench(out_dir, quick)``
    still works. Such a benchmark saves its state under ``out_dir`` as it goes, checks
    :meth:`should_stop` between steps, and when told to stop returns ``status="unfinished"`` (or raises
    :class:`BenchStopped`, e.g. through :meth:`stop_if_due`).

    Attributes:
        resume: True when ``out_dir`` holds the state of an earlier call that did not finish.
        deadline: a ``time.monotonic()`` value after which the benchmark should stop, or None (no budget).
        stop_requested: returns True when the call is asked to end early (SIGTERM, tests); None for never.
    """

    resume: bool = False
    deadline: float | None = None
    stop_requested: Callable[[], bool] | None = None

    def seconds_left(self) -> float:
        """Seconds until the deadline (``inf`` without one, negative once passed)."""
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def should_stop(self) -> bool:
        """True once the deadline has passed or a stop was requested: save state and return."""
        return self.seconds_left() <= 0 or (self.stop_requested is not None and self.stop_requested())

    def stop_if_due(self, progress: str = "stopped at a checkpoint") -> None:
        """Raise :class:`BenchStopped` with ``progress`` (said in the report) when :meth:`should_stop`."""
        if self.should_stop():
            raise BenchStopped(progress)


BenchFn = Callable[[Path, bool], BenchResult]
"""``bench(out_dir, quick) -> BenchResult``: write everything under ``out_dir``. A benchmark that can
resume adds a ``context: BenchContext = BenchContext()`` parameter (see :class:`BenchContext`)."""


def takes_context(bench: Callable[..., Any]) -> bool:
    """Whether ``bench`` accepts a ``context`` keyword (a resumable benchmark)."""
    try:
        params = inspect.signature(bench).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    return "context" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@dataclass(frozen=True)
class Modality:
    """A modality package's registration.

    name: the subcommand name (``diffuse <name> ...``).
    description: one line for ``diffuse list`` and ``--help``.
    app: a ``typer.Typer`` with the package's subcommands (train, sample, evaluate, ...), or None.
    bench: the benchmark ``diffuse bench`` runs, or None when the package has none yet.
    nodes: returns workflow node types (:class:`diffcore.workflows.NodeType`) beyond the one per command
        (building blocks such as ``image.encode_prompt``), or None.
    """

    name: str
    description: str
    app: Any = None
    bench: BenchFn | None = None
    nodes: Callable[[], Sequence[Any]] | None = None


@dataclass(frozen=True)
class InstalledModality:
    """A discovered modality together with the distribution that provides it.

    package: the import name of the package (``diff_image``), from the entry point's module.
    """

    modality: Modality
    distribution: str
    version: str
    package: str = ""


def not_implemented_bench(name: str, what: str) -> BenchFn:
    """A benchmark that says honestly that the package's benchmark is not written yet."""

    def bench(out_dir: Path, quick: bool) -> BenchResult:
        return BenchResult(modality=name, status="not-implemented", summary=f"not implemented yet: {what}")

    return bench


def discover() -> dict[str, InstalledModality]:
    """Every installed modality, by name, found through the ``diffcore.modalities`` entry points.

    A package whose entry point fails to load raises: a broken install should be loud.
    """
    found: dict[str, InstalledModality] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if not isinstance(obj, Modality):
            raise TypeError(
                f"entry point {ep.name!r} ({ep.value}) must point to a diffcore.modality.Modality, "
                f"got {type(obj).__name__}"
            )
        dist = ep.dist
        found[obj.name] = InstalledModality(
            modality=obj,
            distribution=dist.name if dist is not None else "?",
            version=dist.version if dist is not None else "?",
            package=ep.module.partition(".")[0],
        )
    return dict(sorted(found.items()))
