"""What the watching process reports to the daemon, one small record per event. Kept apart
from watch.py: the daemon reads these records and never imports watchdog itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class UnitEvent:
    name: str  # the entry's name: a unit name, or something else in the directory
    directory: str
    kind: str  # created | deleted | closed (a file written and closed: it may have settled)
    at: float  # time.monotonic() when it was read
    fixed: str = ""  # what `react` did about it at once: "mask", "unmask", or nothing


@dataclass(frozen=True)
class PolicyEvent:
    path: str
    at: float


@dataclass(frozen=True)
class Overflow:
    """The kernel's inotify queue overflowed: events were lost."""

    at: float


@dataclass(frozen=True)
class HandlerError:
    message: str


@dataclass(frozen=True)
class Rewatched:
    """A watched unit directory was replaced (renamed over, removed and made again, made at
    last): it is watched anew, and what happened meanwhile was not seen."""

    directory: str
    at: float


WatchItem = UnitEvent | PolicyEvent | Overflow | HandlerError | Rewatched
Sink = Callable[[WatchItem], None]
React = Callable[[UnitEvent], UnitEvent]
