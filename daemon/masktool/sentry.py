"""The fast put-back, in a process of its own.

`systemctl unmask X` removes the link and then asks PID 1 for a daemon-reload; `rm` of the link
followed by `systemctl daemon-reload` does the same by hand. A mask written back before that
reload reads the directory keeps X masked, and a `systemctl start X` right after is refused.
That takes a millisecond or two, but only if nothing else holds the interpreter: pystemd keeps
Python's global lock while it waits for a D-Bus reply, and a reply waits while PID 1 reloads
(100 ms and more), so a put-back on a thread of the daemon's process could wait that long behind
the daemon's own calls, and the start got through (tried: 1 in a few hundred).

So the unit directories are watched by a small child process that does nothing else: it reads
the inotify events, puts back a removed mask (or removes an added one) for the names the daemon
gave it, and passes every event on to the daemon, saying what it did. The daemon verifies,
journals and does everything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from masktool.events import HandlerError, Overflow, PolicyEvent, Rewatched, UnitEvent, WatchItem
from masktool.files import NotAMaskError, remove_mask, write_mask
from masktool.tree import Tree
from masktool.units import ETC_DIR, ETC_SEARCH_DIR

HOST = Tree("/")


def react(ev: UnitEvent, guard: dict[str, str]) -> UnitEvent:
    """Undo a removed mask (or an added one) in /etc at once, by writing the link itself.
    `guard` maps unit names to "mask" or "unmask": what may be done for them here."""
    action = guard.get(ev.name)
    if action is None or ev.directory != ETC_DIR or ev.kind == "closed":
        return ev
    path = f"{ev.directory}/{ev.name}"
    try:
        if ev.kind == "deleted" and action == "mask":
            if write_mask(HOST, ETC_SEARCH_DIR, ev.name):
                return replace(ev, fixed="mask")
        elif (
            ev.kind == "created"
            and action == "unmask"
            # Only a link is put back here. A new 0-byte file is what `cp`, `>` and editors
            # create before they write: the daemon decides once it is settled.
            and stat.S_ISLNK(os.lstat(path).st_mode)
            and remove_mask(HOST, ETC_SEARCH_DIR, ev.name)
        ):
            return replace(ev, fixed="unmask")
    except (OSError, NotAMaskError):
        pass  # e.g. a unit file was put there: the daemon's reconcile reports the conflict
    return ev


def _encode(item: WatchItem) -> str:
    if isinstance(item, UnitEvent):
        return json.dumps({"t": "unit", **asdict(item)})
    if isinstance(item, PolicyEvent):
        return json.dumps({"t": "policy", "path": item.path, "at": item.at})
    if isinstance(item, Rewatched):
        return json.dumps({"t": "rewatched", "directory": item.directory, "at": item.at})
    if isinstance(item, Overflow):
        return json.dumps({"t": "overflow", "at": item.at})
    if isinstance(item, HandlerError):
        return json.dumps({"t": "error", "message": item.message})
    return json.dumps({"t": "error", "message": f"unexpected event {item!r}"})


def _decode(line: str) -> WatchItem:
    d = json.loads(line)
    t = d.pop("t")
    if t == "unit":
        return UnitEvent(**d)
    if t == "overflow":
        return Overflow(d["at"])
    if t == "policy":
        return PolicyEvent(d["path"], d["at"])
    if t == "rewatched":
        return Rewatched(d["directory"], d["at"])
    return HandlerError(str(d["message"]))


_IN_Q_OVERFLOW = 0x4000


def _notice_overflow(on_overflow: Callable[[], None]) -> None:
    """Call `on_overflow` when the kernel says inotify's queue overflowed (events were lost).

    watchdog 7.1 logs it (watch.py turns the log into an event); watchdog 2.2.1, which Debian
    12 ships, drops the event without a word. Both parse the kernel's buffer with one static
    method of their inotify class (`Inotify` in 2.2.1, `InotifyFD` in 7.1): it is wrapped here
    to see the overflow record (wd -1, IN_Q_OVERFLOW) go by."""
    from watchdog.observers import inotify_c

    for cls_name in ("Inotify", "InotifyFD"):
        cls = getattr(inotify_c, cls_name, None)
        parse = getattr(cls, "_parse_event_buffer", None) if cls is not None else None
        if cls is None or parse is None:
            continue

        def parse_and_notice(buf: bytes, _parse: Callable[[bytes], Any] = parse) -> Any:
            for record in _parse(buf):
                if record[0] == -1 and record[1] & _IN_Q_OVERFLOW:
                    on_overflow()
                yield record

        cls._parse_event_buffer = staticmethod(parse_and_notice)


def main(dirs: list[str]) -> None:
    """The child: watch the unit directories `dirs` (and the policy directories it is told),
    put masks back for the names it is told, write every event to stdout as a JSON line.

    Each line on stdin is a JSON object: {"guard": {name: "mask" | "unmask"}} replaces what
    may be put back; {"policy": [directories]} replaces the policy directories watched, and
    is answered {"t": "watching"} once they are."""
    # Only this process imports watchdog: the daemon, which imports this module for Sentry,
    # is spared its memory (ctypes, the observer's threads).
    from masktool.watch import ParentsHandler, Watcher

    # `systemctl kill -s HUP masktool` (and Ctrl-C on a daemon run by hand) reaches this
    # process too: a reload is the daemon's business, and this one ends when its stdin does.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    guard: dict[str, str] = {}
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def send(item: WatchItem) -> None:
        say(_encode(item))

    def guarded(ev: UnitEvent) -> UnitEvent:
        return react(ev, guard)

    import logging  # here: only this process logs (watchdog's overflow warning, to the journal)

    logging.basicConfig(level=logging.WARNING)
    _notice_overflow(lambda: send(Overflow(time.monotonic())))
    watcher = Watcher(send, guarded)
    watcher.watch_units(dirs)

    def rewatch(d: str) -> None:
        # On the thread of the observer that watches parents; the unit directory's observer
        # takes the new watch at once.
        watcher.rewatch(d)
        send(Rewatched(d, time.monotonic()))

    # Events name the parent as it really is (links resolved), the child by its own name.
    watched = {str(Path(d).parent.resolve() / Path(d).name): d for d in dirs}
    for parent in dict.fromkeys(Path(p).parent for p in watched):
        if parent.is_dir():
            watcher.add(ParentsHandler(watched, rewatch), str(parent))
    watcher.start()
    say(json.dumps({"t": "ready"}))  # watching: the daemon may now say it is ready
    try:
        for line in sys.stdin:
            msg = json.loads(line)
            if "guard" in msg:
                guard = msg["guard"]  # a new dict each time: `guarded` reads the current one
            if "policy" in msg:
                watcher.watch_policy(msg["policy"])
                say(json.dumps({"t": "watching"}))
    finally:
        watcher.stop()  # stdin closed: the daemon is gone, and so is this process


class SentryGone(HandlerError):
    """The child ended: the daemon starts another and reconciles everything."""

    def __init__(self) -> None:
        super().__init__("the watching process ended")


class Sentry:
    """The child process (see the module's text), seen from the daemon."""

    def __init__(self, dirs: list[str], sink: Callable[[WatchItem], None]) -> None:
        self.dirs = dirs
        self.sink = sink
        self._proc: subprocess.Popen[str] | None = None
        self._guard: dict[str, str] = {}
        self._policy: list[str] = []
        self._ready = threading.Event()
        self._watching = threading.Event()

    def start(self, timeout: float = 30.0) -> None:
        """Start the child, and return once it watches: drift made after this is seen."""
        # The child finds masktool where this process found it.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "masktool.sentry", *self.dirs],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
            env=env,
            close_fds=True,
        )
        self._proc = proc
        self._ready.clear()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        self._send({"guard": self._guard, "policy": self._policy})
        if not self._ready.wait(timeout):
            raise OSError(f"the watching process did not start watching within {timeout:.0f}s")
        if proc.poll() is not None:
            raise OSError(f"the watching process ended as it started (status {proc.returncode})")

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            kind = json.loads(line).get("t")
            if kind == "ready":
                self._ready.set()
            elif kind == "watching":
                self._watching.set()
            else:
                self.sink(_decode(line))
        self._ready.set()  # ended before it was ready: start() must not wait out its timeout
        self._watching.set()
        if proc is self._proc:
            self.sink(HandlerError("the watching process ended; starting it again"))
            self.sink(SentryGone())

    def arm(self, guard: dict[str, str]) -> None:
        """What it may put back at once, by name."""
        self._guard = guard
        self._send({"guard": guard})

    def watch_policy(self, dirs: list[str], timeout: float = 5.0) -> bool:
        """Watch these policy directories (and no others); returns once they are watched, or
        False if the child did not say so in time."""
        self._policy = dirs
        self._watching.clear()
        return self._send({"policy": dirs}) and self._watching.wait(timeout)

    def _send(self, msg: dict[str, object]) -> bool:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        try:
            proc.stdin.write(json.dumps(msg) + "\n")
            proc.stdin.flush()
        except (OSError, ValueError):
            return False  # it ended: _read reports it, and the daemon starts a new one
        return True

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
