"""inotify (watchdog) → events for the daemon's queue.

Unit directories are watched for created, deleted and moved entries only: the inotify mask itself
leaves out opens, reads and writes, so a daemon-reload reading every unit file wakes nothing.
Policy directories also report finished writes (editors that rewrite a file in place).
The handler puts small records on a queue; the daemon's thread does the work. One thing is
done at once, on the watching thread itself: the daemon's `react` may put back a mask that was
just removed, so that it never waits behind a reconcile in progress.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog import events as _events
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import ObservedWatch
from watchdog.observers.inotify import InotifyObserver

from masktool.events import (
    HandlerError,
    Overflow,
    PolicyEvent,
    React,
    Sink,
    UnitEvent,
)

# Closing a file that was open for writing (IN_CLOSE_WRITE) tells that a file being written has
# settled; daemon-reload's reads close files that were opened read-only, a different event.
_UNIT_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
]
# In a policy directory: a policy file written, removed, renamed, or its mode or owner
# changed; a directory made, removed, renamed or changed (policy.d made after the daemon
# started, or made writable by others). The daemon looks at the files again.
_POLICY_EVENTS: list[type[FileSystemEvent]] = [
    *_UNIT_EVENTS,
    FileModifiedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    DirModifiedEvent,
    # chmod/chown: their own kinds since watchdog 5 ("modified" before, as in Debian's 2.2.1)
    *(
        c
        for c in (
            getattr(_events, "FileAttribEvent", None),
            getattr(_events, "DirAttribEvent", None),
        )
        if c is not None
    ),
]
# What says a policy file or directory changed; never an open or a read (the daemon's own).
_POLICY_KINDS = frozenset({"created", "deleted", "moved", "closed", "modified", "attrib"})
# In the parent of a unit directory: that directory made, removed, or renamed over.
_PARENT_EVENTS: list[type[FileSystemEvent]] = [
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
]


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
            if event.event_type not in _POLICY_KINDS:
                return  # opens and reads (watchdog 2.2.1 has no event_filter to drop them)
            if event.is_directory:
                self.sink(PolicyEvent(_text(event.src_path), time.monotonic()))
                return
            for p in (event.src_path, getattr(event, "dest_path", "")):
                path = _text(p)
                if path.endswith(".yaml"):
                    self.sink(PolicyEvent(path, time.monotonic()))
        except Exception as e:  # noqa: BLE001 - reported to the daemon, which journals it
            self.sink(HandlerError(f"inotify handler for policy files: {e!r}"))


class ParentsHandler(FileSystemEventHandler):
    """Events in the directories that hold the watched ones: a watch follows the directory it
    was put on, so one renamed over, or removed and made again, is no longer watched."""

    def __init__(self, watched: dict[str, str], changed: Callable[[str], None]) -> None:
        self.watched = watched  # the path events name -> the directory as the caller names it
        self.changed = changed

    def dispatch(self, event: FileSystemEvent) -> None:
        for p in (event.src_path, getattr(event, "dest_path", "")):
            d = self.watched.get(os.fsdecode(p)) if p else None
            if d is not None:
                self.changed(d)


class _OverflowLog(logging.Handler):
    """watchdog logs a lost-events overflow and carries on; this turns the log record into an
    event so the daemon runs a full reconcile at once instead of at the next backstop."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.sink(Overflow(time.monotonic()))


def _identity(d: str) -> tuple[str, int, int]:
    """Where a directory really is, and which one it is there."""
    real = os.path.realpath(d)
    try:
        st = os.stat(real)
    except OSError:
        return (real, 0, 0)
    return (real, st.st_dev, st.st_ino)


def _schedule(
    obs: InotifyObserver,
    handler: FileSystemEventHandler,
    path: str,
    kinds: list[type[FileSystemEvent]] | None,
) -> ObservedWatch:
    if kinds is None:
        return obs.schedule(handler, path, recursive=False)
    try:
        return obs.schedule(handler, path, recursive=False, event_filter=kinds)
    except TypeError:
        # watchdog before 2.3 (Debian 12 ships 2.2.1) has no event_filter: the inotify mask then
        # includes opens, which wake the observer on every daemon-reload; the handlers still
        # pass on only the kinds of events they want.
        return obs.schedule(handler, path, recursive=False)


class Watcher:
    """One inotify observer for the life of the process; directories are watched and unwatched
    one at a time (a replaced one watched anew), never by stopping and restarting it all.

    Two observers, in fact, both for the life of the process: an observer dispatches every
    event on one thread, and a put-back in a unit directory must not wait there behind events
    of the others (a daemon-reload opens files in /etc/systemd, the parent watched for a
    replaced directory, and watchdog 2.2.1 cannot filter them out: measured, the put-back
    after `systemctl unmask` then lost the race to systemctl's reload about half the time)."""

    def __init__(self, sink: Sink, react: React | None = None) -> None:
        self.sink = sink
        self.react = react
        self._obs = InotifyObserver()  # unit directories only
        self._obs.daemon = True
        self._aux = InotifyObserver()  # policy directories, and the parents of unit ones
        self._aux.daemon = True
        # (role, directory as the caller names it) -> the watch on where it really is
        self._watches: dict[tuple[str, str], ObservedWatch] = {}
        self._ids: dict[tuple[str, str], tuple[str, int, int]] = {}  # what each watch is on
        self._policy_handler = _PolicyDirHandler(sink)
        self._log_handler = _OverflowLog(sink)
        self._lock = threading.Lock()

    @property
    def unit_dirs(self) -> list[str]:
        return [d for role, d in self._watches if role == "unit"]

    @property
    def policy_dirs(self) -> list[str]:
        return [d for role, d in self._watches if role == "policy"]

    def start(self) -> None:
        logging.getLogger("watchdog.observers.inotify_c").addHandler(self._log_handler)
        self._obs.start()
        self._aux.start()

    def stop(self) -> None:
        logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._log_handler)
        for obs in (self._obs, self._aux):
            obs.stop()
        for obs in (self._obs, self._aux):
            obs.join(timeout=5)

    def watch_units(self, dirs: Iterable[str]) -> None:
        self._set("unit", dirs)

    def watch_policy(self, dirs: Iterable[str]) -> bool:
        """Watch these policy directories (those that exist), and no others; whether that
        changed anything."""
        return self._set("policy", dirs)

    def rewatch(self, directory: str) -> None:
        """Watch a unit directory anew: it was replaced, and the old watch follows the old
        one (or died with it)."""
        with self._lock:
            old = self._watches.pop(("unit", directory), None)
            if old is not None:
                self._unschedule("unit", old)
            self._add("unit", directory)

    def add(self, handler: FileSystemEventHandler, path: str) -> None:
        """The parent of a unit directory, for as long as the process runs: entries made,
        removed or moved there (opens and closes too with watchdog 2.2.1, which has no
        filter; they wait on the other observer's thread, not the put-back's)."""
        _schedule(self._aux, handler, path, _PARENT_EVENTS)

    def _set(self, role: str, dirs: Iterable[str]) -> bool:
        wanted = [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]
        changed = False
        with self._lock:
            for (r, d), old in list(self._watches.items()):
                if r == role and d not in wanted:
                    del self._watches[(r, d)]
                    self._unschedule(r, old)
                    changed = True
            for d in wanted:
                w = self._watches.get((role, d))
                if w is not None and self._ids.get((role, d)) != _identity(d):
                    # Replaced since it was watched (renamed over, made again, its link
                    # pointed elsewhere): the old watch follows the old directory.
                    del self._watches[(role, d)]
                    self._unschedule(role, w)
                    w = None
                if w is None:
                    self._add(role, d)
                    changed = True
        return changed

    def _add(self, role: str, d: str) -> None:
        # inotify watches what a path names without following a link (watchdog adds the watch
        # with IN_DONT_FOLLOW): a /etc/systemd/system that is a link would be watched as the
        # link, and report nothing. Watch the directory it leads to.
        real = os.path.realpath(d)
        if any(w.path == real for (r, _), w in self._watches.items() if r == role):
            return  # two names of one directory (a policy directory linked to another)
        handler: FileSystemEventHandler
        if role == "unit":
            handler, kinds = _UnitDirHandler(d, real, self.sink, self.react), _UNIT_EVENTS
        else:
            handler, kinds = self._policy_handler, _POLICY_EVENTS
        obs = self._obs if role == "unit" else self._aux
        try:
            self._ids[(role, d)] = _identity(d)
            self._watches[(role, d)] = _schedule(obs, handler, real, kinds)
        except OSError as e:
            # Gone in between, or not ours to read: said, and looked at again on the next
            # change (a replaced directory is watched anew, a policy reload watches again).
            self.sink(HandlerError(f"cannot watch {d}: {e}"))

    def _unschedule(self, role: str, w: ObservedWatch) -> None:
        with contextlib.suppress(KeyError):
            (self._obs if role == "unit" else self._aux).unschedule(w)
