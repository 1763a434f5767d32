"""The daemon's state, in small parts, each handed its clock (time.monotonic in the daemon, a
fake one in the unit tests): when to act (Deadlines), which put-backs flap (Flaps), which
inotify events are masktool's own (OwnWrites), which names concern which rules (Names), when to
try a failed unit again (Retries) and which stop jobs are still running (StopJobs).

Nothing here talks to systemd or the disk; the daemon (daemon.py) wires the parts together.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from masktool.plan import Plan
from masktool.policy import Action, Policy, Rule

Clock = Callable[[], float]
K = TypeVar("K")
T = TypeVar("T")


class Deadlines(Generic[K]):
    """Named points in time; the loop sleeps until the nearest one."""

    def __init__(self) -> None:
        self._at: dict[K, float] = {}

    def set(self, key: K, when: float) -> None:
        self._at[key] = when

    def earlier(self, key: K, when: float) -> None:
        """Set, unless it is already due sooner."""
        self._at[key] = min(when, self._at.get(key, when))

    def clear(self, key: K) -> None:
        self._at.pop(key, None)

    def get(self, key: K) -> float | None:
        return self._at.get(key)

    def is_due(self, key: K, now: float) -> bool:
        at = self._at.get(key)
        return at is not None and at <= now

    def take(self, key: K, now: float) -> bool:
        """Whether it is due; if so it is cleared."""
        if self.is_due(key, now):
            del self._at[key]
            return True
        return False

    def nearest(self) -> float | None:
        return min(self._at.values(), default=None)


@dataclass
class _Flap(Generic[T]):
    times: deque[float] = field(default_factory=deque)  # recent put-backs
    quiet_until: float = 0.0  # entries for it are counted, not written, until then
    suppressed: int = 0
    last: T | None = None  # what the summary names it by (the daemon: its last plan)


class Flaps(Generic[T]):
    """Put-backs per unit. Enforcement never backs off: a unit held back even for seconds is a
    unit anyone can start by unmasking it a few times in a row. Only the journal is spared:
    `changes` put-backs within `window` seconds make a flap, announced once; the unit's
    entries in the next window are counted and summed up when it ends."""

    def __init__(self, clock: Clock, changes: int = 5, window: float = 60.0) -> None:
        self.clock = clock
        self.changes = changes
        self.window = window
        self._units: dict[str, _Flap[T]] = {}

    def put_back(self, unit: str, last: T) -> int:
        """Count one put-back; returns the count in the window when the unit starts flapping
        now (announce it), else 0."""
        now = self.clock()
        f = self._units.setdefault(unit, _Flap())
        f.last = last
        f.times.append(now)
        while f.times[0] < now - self.window:
            f.times.popleft()
        if f.quiet_until > now or len(f.times) < self.changes:
            return 0
        f.quiet_until = now + self.window
        return len(f.times)

    def quiet(self, unit: str) -> bool:
        f = self._units.get(unit)
        return f is not None and f.quiet_until > self.clock()

    def hold(self, unit: str) -> bool:
        """Whether an entry of `unit` is to be counted rather than written (it is counted)."""
        if not self.quiet(unit):
            return False
        self._units[unit].suppressed += 1
        return True

    def ended(self) -> Iterator[tuple[T, int]]:
        """Units whose quiet window is over, with how many entries were held back (forgets
        them; yields only those with some)."""
        now = self.clock()
        for f in self._units.values():
            if f.quiet_until and f.quiet_until <= now:
                f.quiet_until = 0.0
                if f.suppressed and f.last is not None:
                    yield f.last, f.suppressed
                f.suppressed = 0

    def flapping(self) -> int:
        now = self.clock()
        return sum(1 for f in self._units.values() if f.quiet_until > now)

    def nearest(self) -> float | None:
        now = self.clock()
        return min(
            (f.quiet_until for f in self._units.values() if f.quiet_until > now), default=None
        )


EventKind = Literal["created", "deleted"]


class OwnWrites:
    """Events masktool's own writes will cause, recognised when they arrive and then dropped:
    each expected event is consumed once, and expires after `window` seconds. Both the loop
    and the thread reading the watching process use it."""

    def __init__(self, clock: Clock, window: float = 5.0) -> None:
        self.clock = clock
        self.window = window
        self._expected: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def expect(self, events: Iterable[tuple[str, EventKind]]) -> None:
        now = self.clock()
        until = now + self.window
        with self._lock:
            # Writes whose events never came (a directory replaced meanwhile, say) expire here:
            # the daemon runs for months.
            for key in [k for k, v in self._expected.items() if not v or v[-1] < now]:
                del self._expected[key]
            for path, kind in events:
                self._expected.setdefault((path, kind), deque()).append(until)

    def consume(self, path: str, kind: str, at: float) -> bool:
        """Whether an event at `at` was expected (then it is used up)."""
        with self._lock:
            expiries = self._expected.get((path, kind))
            while expiries and expiries[0] < at:
                expiries.popleft()
            if not expiries:
                self._expected.pop((path, kind), None)
                return False
            expiries.popleft()
            if not expiries:
                del self._expected[(path, kind)]
            return True

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._expected.values())


class Names:
    """Which entry names concern which rules of the policy in force: a rule's own name, the
    aliases and instances it is reached by, the activators with_triggers adds. Also what the
    watching process may put back at once (`guard`)."""

    def __init__(self) -> None:
        self.reset(None)

    def reset(self, policy: Policy | None) -> None:
        self._policy = policy
        self._owners: dict[str, set[str]] = {}  # entry name -> policy units it concerns
        self.mask_names: set[str] = set()  # every name the policy masks, resolved or not
        self.refused: set[str] = set()  # rules refused at their last plan: no fast path
        # Rules derived for the activators of with_triggers units (learned at each plan, the
        # first right after the policy is loaded): guarded like any other.
        self.activators: dict[str, Rule] = {}
        for r in policy.rules if policy is not None else ():
            self._owners.setdefault(r.unit, set()).add(r.unit)
            if r.action == "mask":
                self.mask_names.add(r.unit)

    def owners(self, name: str) -> set[str]:
        return self._owners.get(name, set())

    def learn(self, p: Plan) -> None:
        for u in p.units:
            owner = u.rule.trigger_of or u.rule.unit
            if u.rule.trigger_of:
                self.activators[u.rule.unit] = u.rule
            for n in (u.obs.unit, *u.obs.alias_chain):
                self._owners.setdefault(n, set()).add(owner)
                if u.rule.action == "mask":
                    self.mask_names.add(n)
            # A change to the unit an alias or an instance resolves to changes its state too.
            for n in u.obs.via:
                self._owners.setdefault(n, set()).add(owner)
            if u.refusal:
                self.refused.add(u.rule.unit)
            else:
                self.refused.discard(u.rule.unit)

    def guard(self) -> dict[str, Action]:
        """Names the watching process puts back at once: in enforce mode, every rule not
        refused, but runtime masks (a mask in /run is not what it writes)."""
        pol = self._policy
        if pol is None or pol.mode != "enforce":
            return {}
        return {
            r.unit: r.action
            for r in (*pol.rules, *self.activators.values())
            if r.unit not in self.refused and (r.action == "unmask" or not r.runtime)
        }


class Retries:
    """Units whose change failed, tried again after `first` seconds, doubling up to `most`;
    forgotten once they converge."""

    def __init__(self, clock: Clock, first: float = 5.0, most: float = 300.0) -> None:
        self.clock = clock
        self.first = first
        self.most = most
        self._units: dict[str, tuple[float, float]] = {}  # unit -> (due, delay)

    def failed(self, unit: str) -> float:
        """Schedule the next try; returns the delay."""
        prev = self._units.get(unit)
        delay = self.first if prev is None else min(prev[1] * 2, self.most)
        self._units[unit] = (self.clock() + delay, delay)
        return delay

    def succeeded(self, unit: str) -> None:
        self._units.pop(unit, None)

    def due(self) -> set[str]:
        now = self.clock()
        return {u for u, (at, _) in self._units.items() if at <= now}

    def waiting(self) -> set[str]:
        return set(self._units)

    def nearest(self) -> float | None:
        return min((at for at, _ in self._units.values()), default=None)


class StopJobs:
    """Stop jobs masktool started and has not yet seen finish: the loop keeps serving events
    while they run and looks at them again on a timer, sooner at first. A job still running
    after `timeout` seconds is given up (reported, and retried like any failed change)."""

    def __init__(self, clock: Clock, timeout: float = 120.0) -> None:
        self.clock = clock
        self.timeout = timeout
        self._jobs: dict[str, tuple[float, float]] = {}  # unit -> (started, next look)

    def started(self, unit: str) -> None:
        now = self.clock()
        started = self._jobs[unit][0] if unit in self._jobs else now  # asked again: same job
        self._jobs[unit] = (started, now + 0.01)

    def running(self) -> set[str]:
        return set(self._jobs)

    def due(self) -> set[str]:
        now = self.clock()
        return {u for u, (_, at) in self._jobs.items() if at <= now}

    def still_running(self, unit: str) -> bool:
        """Looked, and it runs on: True if it may still stop (look again later, the wait
        doubling up to a second), False once the time is up (forgotten)."""
        now = self.clock()
        started, at = self._jobs[unit]
        if now - started >= self.timeout:
            del self._jobs[unit]
            return False
        wait = min(max((at - started) * 2, 0.01), 1.0)
        self._jobs[unit] = (started, now + wait)
        return True

    def done(self, unit: str) -> None:
        self._jobs.pop(unit, None)

    def nearest(self) -> float | None:
        return min((at for _, at in self._jobs.values()), default=None)
