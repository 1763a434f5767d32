"""inotify (watchdog) → events for the daemon's queue.

Unit directories are watched for created, deleted and moved entries only: the inotify mask itself
leaves out opens, reads and writes, so a daemon-reload reading every unit file wakes nothing.
Policy directories also report finished writes (editors that rewrite a file in place).
The handler puts small records on a queue; the daemon's thread does the work. One thing is
done at once, on the watching thread itself: the daemon's `react` may put back a mask that was
just removed, so that it never waits behind a reconcile in progress.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver


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

# Closing a file that was open for writing (IN_CLOSE_WRITE) tells that a file being written has
# settled; daemon-reload's reads close files that were opened read-only, a different event.
_UNIT_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
]
# A directory created among the policy directories (policy.d made after the daemon started)
# makes the daemon look again, and watch it.
_POLICY_EVENTS: list[type[FileSystemEvent]] = [*_UNIT_EVENTS, DirCreatedEvent]


def _text(p: bytes | str) -> str:
    return os.fsdecode(p)


class _UnitDirHandler(FileSystemEventHandler):
    def __init__(self, directory: str, real: str, sink: Sink, react: React | None) -> None:
        self.directory = directory  # as the daemon names it
        self.real = real  # where it really is, links resolved: what inotify reports
        self.sink = sink
        self.react = react

    def dispatch(self, event: FileSystemEvent) -> None:
        # Errors here would end watchdog's dispatch thread: report them and carry on.
        try:
            now = time.monotonic()
            if event.event_type == "moved":
                self._emit(_text(event.src_path), "deleted", now)
                self._emit(_text(event.dest_path), "created", now)
            elif event.event_type in ("created", "deleted", "closed"):
                self._emit(_text(event.src_path), event.event_type, now)
        except Exception as e:  # noqa: BLE001 - reported to the daemon, which journals it
            self.sink(HandlerError(f"inotify handler for {self.directory}: {e!r}"))

    def _emit(self, path: str, kind: str, now: float) -> None:
        d, name = os.path.split(path)
        if d == self.real:
            ev = UnitEvent(name, self.directory, kind, now)
            self.sink(self.react(ev) if self.react is not None else ev)


class _PolicyDirHandler(FileSystemEventHandler):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            if event.is_directory:
                if event.event_type == "created":
                    self.sink(PolicyEvent(_text(event.src_path), time.monotonic()))
                return
            for p in (event.src_path, getattr(event, "dest_path", "")):
                path = _text(p)
                if path.endswith(".yaml"):
                    self.sink(PolicyEvent(path, time.monotonic()))
        except Exception as e:  # noqa: BLE001 - reported to the daemon, which journals it
            self.sink(HandlerError(f"inotify handler for policy files: {e!r}"))


class _OverflowLog(logging.Handler):
    """watchdog logs a lost-events overflow and carries on; this turns the log record into an
    event so the daemon runs a full reconcile at once instead of at the next backstop."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.sink(Overflow(time.monotonic()))


def _schedule(
    obs: InotifyObserver,
    handler: FileSystemEventHandler,
    path: str,
    kinds: list[type[FileSystemEvent]],
) -> None:
    try:
        obs.schedule(handler, path, recursive=False, event_filter=kinds)
    except TypeError:
        # watchdog before 2.3 (Debian 12 ships 2.2.1) has no event_filter: the inotify mask then
        # includes opens, which wake the observer on every daemon-reload; the handlers still
        # pass on only the kinds of events they want.
        obs.schedule(handler, path, recursive=False)


class Watcher:
    def __init__(
        self,
        unit_dirs: Iterable[str],
        policy_dirs: Iterable[str],
        sink: Sink,
        react: React | None = None,
    ) -> None:
        self.sink = sink
        self.react = react
        self.unit_dirs = [d for d in dict.fromkeys(unit_dirs) if Path(d).is_dir()]
        self.policy_dirs = [d for d in dict.fromkeys(policy_dirs) if Path(d).is_dir()]
        self._observer: InotifyObserver | None = None
        self._log_handler = _OverflowLog(sink)

    def start(self) -> None:
        obs = InotifyObserver()
        # inotify watches what a path names without following a link (watchdog adds the watch
        # with IN_DONT_FOLLOW): a /etc/systemd/system that is a link would be watched as the
        # link, and report nothing. Watch the directory it leads to.
        for d in self.unit_dirs:
            real = os.path.realpath(d)
            _schedule(obs, _UnitDirHandler(d, real, self.sink, self.react), real, _UNIT_EVENTS)
        policy_handler = _PolicyDirHandler(self.sink)
        for d in dict.fromkeys(os.path.realpath(p) for p in self.policy_dirs):
            _schedule(obs, policy_handler, d, _POLICY_EVENTS)
        logging.getLogger("watchdog.observers.inotify_c").addHandler(self._log_handler)
        obs.daemon = True
        obs.start()
        self._observer = obs

    def stop(self) -> None:
        logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._log_handler)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
