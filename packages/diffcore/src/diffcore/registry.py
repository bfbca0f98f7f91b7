"""Tables of things picked by name: schedules, samplers, time grids, training-time ``t`` samplers, loss
weightings, discrete schedules. One helper for all of them, so every table registers, lists and looks up
names the same way and a wrong name gets the same one-line error naming the choices.

    SCHEDULES: Registry[Callable[..., Schedule]] = Registry("schedule")
    SCHEDULES.add("ve", VE)

    @GRIDS.register("uniform")
    def uniform(schedule, steps, t_start=1.0, t_end=0.0): ...

    SCHEDULES.get("ve")      # ValueError "schedule: unknown name 'vee'; expected one of [...]" otherwise
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> entry table. ``kind`` names the parameter in error messages (``"sampler"``, ``"grid"``...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Register ``entry`` under ``name`` and return it; a taken name is refused unless ``replace``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind}: expected a non-empty name, got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind}: {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def wrap(entry: T) -> T:
            return self.add(name, entry, replace=replace)

        return wrap

    def get(self, name: str) -> T:
        """The entry registered as ``name``."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"{self.kind}: unknown name {name!r}; expected one of {self.names()}") from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
