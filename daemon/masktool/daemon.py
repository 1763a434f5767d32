"""The enforcing daemon: the engine's loop driven by inotify events, policy reloads and a slow
backstop timer. All wiring lives here; every stage it calls is handed what it needs.

One thread does the work. watchdog's threads and the signal handlers only put small records on a
SimpleQueue (safe to call from a signal handler), and the loop takes them off with a timeout that
is the nearest deadline: coalescing a burst, the backstop, the watchdog ping, a unit's back-off.
Nothing polls: with no events and no WatchdogSec the process sleeps until the backstop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty, SimpleQueue
from types import FrameType

from masktool import lastgood
from masktool.backend import ApplyResult, Change
from masktool.backend.live import apply_live
from masktool.deps import DependencyIndex
from masktool.engine import observe_and_plan
from masktool.files import TEMP_PREFIX
from masktool.journal import (
    Sender,
    apply_entries,
    drift_entries,
    error_entry,
    flap_entry,
    flap_summary_entry,
    policy_loaded_entry,
    policy_rejected_entry,
    refusal_entry,
    send_all,
)
from masktool.lock import LockError, apply_lock
from masktool.metrics import Totals, UnitSample, render, samples, write_atomic
from masktool.plan import Plan, UnitPlan
from masktool.policy import (
    DEFAULT_POLICY,
    DEFAULT_POLICY_DIR,
    SITE_BUNDLE_DIR,
    Policy,
    PolicyError,
    Rule,
    load_policy,
)
from masktool.sentry import Sentry, SentryGone
from masktool.systemd_bus import Systemd, SystemdError
from masktool.units import ETC_DIR, RUN_DIR, is_instance, template_of
from masktool.watch import (
    HandlerError,
    Overflow,
    PolicyEvent,
    Rewatched,
    UnitEvent,
    Watcher,
    WatchItem,
)

Notify = Callable[[str], None]


@dataclass(frozen=True)
class SignalItem:
    signum: int


@dataclass
class DaemonConfig:
    policy_args: tuple[str, ...] = ()
    backstop: float = 600.0  # full reconcile this often: inotify can lose events
    coalesce: float = 0.005  # gather a burst of events this long before acting
    policy_settle: float = 0.1  # editors write several times: wait this long after the last
    flap_changes: int = 5  # this many put-backs of one unit ...
    flap_window: float = 60.0  # ... within this many seconds is a flap: its journal entries
    # are then summed up, one entry per window, while it is still put back every time
    own_write_window: float = 5.0  # how long an expected inotify event of our own is awaited
    retry_delay: float = 5.0  # after a failed reconcile (systemd unreachable, ...)
    metrics: str | None = None  # Prometheus textfile kept up to date after every reconcile


@dataclass
class Stats:
    fixed: int = 0
    refused: int = 0
    errors: int = 0
    reconciles: int = 0
    reloads: int = 0
    journal_lost: int = 0  # entries journald did not take
    last_event: str = "none"


@dataclass
class _Flap:
    """Put-backs of one unit. Enforcement never backs off: a unit held back even for seconds
    is a unit anyone can start by unmasking it a few times in a row. Only the journal is
    spared: while a unit flaps, its entries are counted and summed up once a window."""

    times: deque[float] = field(default_factory=deque)  # recent put-backs
    quiet_until: float = 0.0  # entries for it are counted, not written, until then
    suppressed: int = 0
    plan: UnitPlan | None = None  # the last plan of it, to name it in the summary


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        systemd: Systemd,
        send: Sender,
        notify: Notify,
    ) -> None:
        self.cfg = config
        self.systemd = systemd
        self.send = send
        self.notify = notify
        self.queue: SimpleQueue[WatchItem | SignalItem] = SimpleQueue()
        self.policy: Policy | None = None
        self.stats = Stats()
        self.stopping = False
        self._watcher: Watcher | None = None
        self._pending: set[str] = set()  # policy units named by events since the last reconcile
        self._pending_since: float | None = None  # when the oldest of them arrived
        self._full_due: float = 0.0  # monotonic time of the next full reconcile
        self._policy_due: float | None = None
        self._flaps: dict[str, _Flap] = {}
        self._expected: dict[tuple[str, str], list[float]] = {}  # (path, kind) -> expiries
        self._expected_lock = threading.Lock()
        self._guard: dict[str, str] = {}  # unit -> "mask"/"unmask": what the sentry may do
        self._fast: dict[str, tuple[str, Change]] = {}  # put back by the sentry: was, change
        self._sentry: Sentry | None = None
        self._sentry_due: float | None = None  # when to try starting it again
        self._reported: dict[str, str] = {}  # unit -> last refusal/drift journaled for it
        self._names: dict[str, set[str]] = {}  # entry name -> policy units it concerns
        self._mask_names: set[str] = set()  # every name the policy masks, resolved or not
        self._refused: set[str] = set()  # rules refused at their last plan: no fast path
        # Rules derived for the activators of with_triggers units (learned at each plan, the
        # first right after the policy is loaded): guarded by the sentry like any other.
        self._activators: dict[str, Rule] = {}
        self._index: DependencyIndex | None = None  # reverse dependencies, rebuilt on change
        self._index_at = 0.0
        self._samples: dict[str, UnitSample] = {}  # last known compliance per unit, for metrics
        self._policy_ok = False
        self._policy_source = "none"  # files, saved (the copy on disk) or none: for metrics
        self._rejected = ""  # the first problem of the policy files, while they are rejected
        self._last_reconcile = 0.0
        self._reconnects = systemd.reconnects
        interval = _watchdog_interval()
        self._ping_every = interval
        self._ping_due = time.monotonic() + interval if interval else None

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self._load_policy()
        self._start_sentry()
        self._restart_watcher()
        # Drift made while the daemon was down is fixed before it reports ready.
        self._reconcile(None, time.monotonic())
        self.notify("READY=1\nSTATUS=" + self.status())
        try:
            while not self.stopping:
                self._step()
        finally:
            self.notify("STOPPING=1")
            if self._sentry is not None:
                self._sentry.stop()
            if self._watcher is not None:
                self._watcher.stop()
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.queue.put(SignalItem(signum))

    def _step(self) -> None:
        now = time.monotonic()
        deadlines = [self._full_due]
        if self._pending_since is not None:
            deadlines.append(self._pending_since + self.cfg.coalesce)
        if self._policy_due is not None:
            deadlines.append(self._policy_due)
        if self._ping_due is not None:
            deadlines.append(self._ping_due)
        if self._sentry_due is not None:
            deadlines.append(self._sentry_due)
        deadlines.extend(f.quiet_until for f in self._flaps.values() if f.quiet_until > now)
        timeout = max(0.0, min(deadlines) - now)
        try:
            item = self.queue.get(timeout=timeout)
            self._handle(item)
            # Take what else is already queued before acting: a burst becomes one reconcile.
            while True:
                self._handle(self.queue.get_nowait())
        except Empty:
            pass
        self._run_due()

    def _handle(self, item: WatchItem | SignalItem) -> None:
        if isinstance(item, SignalItem):
            if item.signum == signal.SIGHUP:
                self._policy_due = time.monotonic()
            else:
                self.stopping = True
        elif isinstance(item, UnitEvent):
            self._on_unit_event(item)
        elif isinstance(item, PolicyEvent):
            self._policy_due = item.at + self.cfg.policy_settle
        elif isinstance(item, Overflow):
            self._journal(
                [error_entry("inotify queue overflowed; events were lost: reconciling every unit")]
            )
            self._full_due = time.monotonic()
        elif isinstance(item, Rewatched):
            self._journal(
                [
                    error_entry(
                        f"{item.directory} was replaced; watching it again and reconciling "
                        "every unit"
                    )
                ]
            )
            self._full_due = time.monotonic()
        elif isinstance(item, SentryGone):
            if not self.stopping:
                # Events may have been lost with it: look at everything once it watches again.
                self._start_sentry()
                self._full_due = time.monotonic()
        elif isinstance(item, HandlerError):
            self._journal([error_entry(item.message)])

    def _run_due(self) -> None:
        now = time.monotonic()
        if self.stopping:
            return
        if self._policy_due is not None and now >= self._policy_due:
            self._policy_due = None
            # Watch first, then read: a file written in between is read, one written after
            # is seen.
            self._restart_watcher()
            if self._load_policy():
                self._restart_watcher()  # the new policy may include files elsewhere
                self._full_due = now
        if self._sentry_due is not None and now >= self._sentry_due:
            self._start_sentry()
        if now >= self._full_due:
            self._reconcile(None, now)
        elif self._pending_since is not None and now >= self._pending_since + self.cfg.coalesce:
            units, since = self._pending, self._pending_since
            self._pending, self._pending_since = set(), None
            self._reconcile(units, since)
        for f in self._flaps.values():
            if f.quiet_until and f.quiet_until <= now:
                f.quiet_until = 0.0
                if f.suppressed and f.plan is not None:
                    self._journal([flap_summary_entry(f.plan, f.suppressed, self.cfg.flap_window)])
                f.suppressed = 0
        if self._ping_due is not None and now >= self._ping_due:
            self.notify("WATCHDOG=1")
            self._ping_due = now + (self._ping_every or 0)

    # -- events ------------------------------------------------------------------------------

    def _on_unit_event(self, ev: UnitEvent) -> None:
        path = f"{ev.directory}/{ev.name}"
        if self._consume_expected(path, ev.kind, ev.at) or ev.name.startswith(TEMP_PREFIX):
            return  # a link PID 1 wrote or removed for us, or masktool's own rename aside
        self._index = None  # any new, removed or rewritten entry may change a dependency
        units = self._names.get(ev.name, set())
        if not units and is_instance(ev.name):
            units = self._names.get(template_of(ev.name), set())
        if not units:
            return
        if ev.fixed == "mask":
            self._expect_own_writes([(path, "created")])
            change = Change(ev.name, "mask", f"symlink (direct) {path} -> /dev/null", path)
            self._fast[ev.name] = ("unmasked", change)
        elif ev.fixed == "unmask":
            self._expect_own_writes([(path, "deleted")])
            change = Change(ev.name, "unmask", f"unlink (direct) {path}", path)
            self._fast[ev.name] = ("masked", change)
        self.stats.last_event = f"{ev.kind} {path} at {_wallclock()}"
        self._pending |= units
        if self._pending_since is None:
            self._pending_since = ev.at

    def _start_sentry(self) -> None:
        """The process that watches the unit directories and puts masks back at once
        (masktool.sentry). If it cannot be started, the daemon says so and tries again."""
        if self._sentry is not None:
            self._sentry.stop()
            self._sentry = None
        sentry = Sentry([ETC_DIR, RUN_DIR], self.queue.put)
        try:
            sentry.start()
        except OSError as e:
            sentry.stop()
            self.stats.errors += 1
            self._journal(
                [
                    error_entry(
                        f"cannot watch the unit directories ({e}): drift is fixed at each "
                        f"reconcile only; trying again in {self.cfg.retry_delay:.0f}s"
                    )
                ]
            )
            self._sentry_due = time.monotonic() + self.cfg.retry_delay
            self._full_due = min(self._full_due, self._sentry_due)
            return
        self._sentry, self._sentry_due = sentry, None
        sentry.arm(self._guard)

    def _arm(self) -> None:
        """What the sentry may do at once, by unit name; sent to it when it changes."""
        pol = self.policy
        guard: dict[str, str] = {}
        if pol is not None and pol.mode == "enforce":
            guard = {
                r.unit: r.action
                for r in (*pol.rules, *self._activators.values())
                if r.unit not in self._refused and (r.action == "unmask" or not r.runtime)
            }
        if guard != self._guard:
            self._guard = guard
            if self._sentry is not None:
                self._sentry.arm(guard)

    def _consume_expected(self, path: str, kind: str, at: float) -> bool:
        with self._expected_lock:
            expiries = self._expected.get((path, kind))
            while expiries and expiries[0] < at:
                expiries.pop(0)
            if not expiries:
                self._expected.pop((path, kind), None)
                return False
            expiries.pop(0)
            return True

    def _expect_own_writes(self, paths: Iterable[tuple[str, str]]) -> None:
        """Events of masktool's own writes, to be recognised when they arrive (both threads
        write: _react and the reconcile)."""
        until = time.monotonic() + self.cfg.own_write_window
        with self._expected_lock:
            for path, kind in paths:
                self._expected.setdefault((path, kind), []).append(until)

    # -- policy ------------------------------------------------------------------------------

    def _load_policy(self) -> bool:
        """Read the policy files; on success enforce them and keep a copy on disk. On any
        failure keep what is in force; at start, with nothing in force, the saved copy.
        Returns whether the policy in force changed."""
        try:
            new = load_policy(self.cfg.policy_args, "/")
        except PolicyError as e:
            problems = e.problems
        except Exception as e:  # noqa: BLE001
            # Nothing on disk may end the daemon: whatever reading the files raised (a flaw of
            # masktool's own, even) rejects them, in full in the journal, and enforcing goes on.
            problems = [("policy", f"cannot be read ({type(e).__name__}: {e}); please report this")]
        else:
            self._accept(new, "files")
            self._journal([policy_loaded_entry(new.files, len(new.rules), new.mode)])
            self._save_last_good(new)
            return True
        self._policy_ok = False
        self._rejected = f"{problems[0][0]}: {problems[0][1]}"
        changed = False
        saved_at = ""
        if self.policy is None:
            saved = self._read_last_good()
            if saved is not None:
                self._accept(saved.policy, "saved")
                saved_at, changed = saved.saved_at, True
        self._journal(
            [
                policy_rejected_entry(
                    problems,
                    kept=self.policy is not None,
                    saved=(lastgood.state_path(), saved_at) if saved_at else None,
                )
            ]
        )
        self.notify("STATUS=" + self.status())
        self._write_metrics()
        return changed

    def _accept(self, new: Policy, source: str) -> None:
        if source == "files":
            self._policy_ok = True
            self._rejected = ""
        self._policy_source = source
        self._samples = {}
        self.policy = new
        self._reported = {}
        self._names = {}
        self._mask_names = set()
        self._refused = set()
        self._activators = {}
        for r in new.rules:
            self._names.setdefault(r.unit, set()).add(r.unit)
            if r.action == "mask":
                self._mask_names.add(r.unit)
        self._arm()

    def _save_last_good(self, policy: Policy) -> None:
        path = lastgood.state_path()
        try:
            lastgood.save(policy, path)
        except OSError as e:
            self.stats.errors += 1
            self._journal(
                [
                    error_entry(
                        f"cannot keep a copy of the policy in {path} ({e.strerror}): a restart "
                        "while the policy files are broken would enforce nothing"
                    )
                ]
            )

    def _read_last_good(self) -> lastgood.Saved | None:
        try:
            return lastgood.load(lastgood.state_path())
        except lastgood.LastGoodError as e:
            self.stats.errors += 1
            self._journal([error_entry(f"the saved copy of the last good policy is unusable: {e}")])
            return None

    def _policy_dirs(self) -> list[str]:
        dirs = [str(Path(DEFAULT_POLICY).parent), DEFAULT_POLICY_DIR, SITE_BUNDLE_DIR]
        for a in self.cfg.policy_args:
            p = Path(a)
            dirs.append(str(p if p.is_dir() else p.parent))
        if self.policy is not None:
            dirs.extend(str(Path(f).parent) for f in self.policy.files)
        return dirs

    def _restart_watcher(self) -> None:
        dirs = self._policy_dirs()
        if self._watcher is not None:
            if self._watcher.policy_dirs == [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]:
                return
            self._watcher.stop()
        self._watcher = Watcher([], dirs, self.queue.put)
        self._watcher.start()

    # -- reconciling -------------------------------------------------------------------------

    def _reconcile(self, units: set[str] | None, since: float) -> None:
        """Make the units named (all when None) match the policy, verify, journal."""
        if units is None:
            self._full_due = time.monotonic() + self.cfg.backstop
            self._pending, self._pending_since = set(), None
        pol = self.policy
        if pol is None:
            return
        rules = [r for r in pol.rules if units is None or r.unit in units]
        if not rules:
            return
        sub = Policy(pol.mode, tuple(rules))
        self.stats.reconciles += 1
        try:
            with apply_lock(timeout=60):
                self._converge(sub, since, units)
        except (SystemdError, OSError, LockError) as e:
            self.stats.errors += 1
            self._journal(
                [error_entry(f"reconcile failed, retrying in {self.cfg.retry_delay:.0f}s: {e}")]
            )
            self._full_due = min(self._full_due, time.monotonic() + self.cfg.retry_delay)
        if self.systemd.reconnects != self._reconnects:
            # A new connection (dbus restarted, systemd re-executed): anything may have changed.
            self._reconnects = self.systemd.reconnects
            self._full_due = time.monotonic()
        self.notify("STATUS=" + self.status())
        self._write_metrics()

    def _write_metrics(self) -> None:
        if not self.cfg.metrics:
            return
        text = render(
            self._samples.values(),
            policy_ok=self._policy_ok,
            last_reconcile=self._last_reconcile,
            policy_source=self._policy_source,
            totals=Totals(
                self.stats.fixed, self.stats.refused, self.stats.reloads, self.stats.errors
            ),
        )
        try:
            write_atomic(self.cfg.metrics, text)
        except OSError as e:
            self.stats.errors += 1
            self._journal([error_entry(f"cannot write metrics to {self.cfg.metrics}: {e}")])

    def _converge(self, sub: Policy, since: float, asked: set[str] | None) -> None:
        query = sorted(asked) if asked is not None else []
        # Drop-ins written into NAME.d/ directories make no event here (the watch is not
        # recursive): an index older than a minute is read again.
        if asked is None or self._index is None or time.monotonic() - self._index_at > 60:
            self._index = DependencyIndex("/")
            self._index_at = time.monotonic()
        for _attempt in range(3):
            before = self._observe_and_plan(sub, query)
            self._learn_names(before)
            if sub.mode == "audit":
                self._report_once(before, drift_entries(before))
                return
            self._report_once(before, [])
            # By the names planned: with_triggers adds its activators to the rules asked for.
            planned = {n for u in before.units for n in (u.rule.unit, u.obs.unit)}
            fast = {u: self._fast.pop(u) for u in list(self._fast) if u in planned}
            if not before.actions and not fast:
                return
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            res = apply_live(before, self.systemd, stamp) if before.actions else ApplyResult()
            res.changes[:0] = [change for _, change in fast.values()]
            self._expect_own_writes(
                (c.path, "created" if c.detail.startswith("symlink") else "deleted")
                for c in res.changes
                if c.path
            )
            acted = [u.obs.unit for u in before.units if u.actions or u.obs.unit in fast]
            after = self._observe_and_plan(sub, acted)
            self._samples.update((s.unit, s) for s in samples(after.units))
            latency = int((time.monotonic() - since) * 1e6)
            was = {u: w for u, (w, _) in fast.items()}
            entries = [
                e
                for e in apply_entries(before, res, after, latency, was=was)
                if e["MASKTOOL_ACTION"] != "refuse"
            ]
            self.stats.reloads += res.reloads
            changed = {c.unit for c in res.changes if c.unit}
            self.stats.fixed += len(changed)
            self._note_flaps(after, changed)
            self._journal(self._unless_quiet(entries))
            if after.compliant or not after.actions:
                return
            query = [u.obs.unit for u in after.units if not u.compliant]
            since = time.monotonic()

    def _observe_and_plan(self, sub: Policy, query: list[str]) -> Plan:
        masked = frozenset(self._mask_names)
        return observe_and_plan(
            sub,
            "/",
            self.systemd,
            query,
            index=self._index,
            also_masked=masked,
            deps_of_masked=False,
        )

    def _learn_names(self, p: Plan) -> None:
        """Events name entries; remember which names (aliases, activators masked with
        with_triggers) lead to which policy rules. Also keeps the per-unit metrics."""
        self._last_reconcile = time.time()
        self._samples.update((s.unit, s) for s in samples(p.units))
        for u in p.units:
            owner = u.rule.trigger_of or u.rule.unit
            if u.rule.trigger_of:
                self._activators[u.rule.unit] = u.rule
            for n in (u.obs.unit, *u.obs.alias_chain):
                self._names.setdefault(n, set()).add(owner)
                if u.rule.action == "mask":
                    self._mask_names.add(n)
            # A change to the unit an alias or an instance resolves to changes its state too.
            for n in u.obs.via:
                self._names.setdefault(n, set()).add(owner)
            if u.refusal:
                self._refused.add(u.rule.unit)
            else:
                self._refused.discard(u.rule.unit)
        self._arm()

    def _report_once(self, p: Plan, drift: list[dict[str, str]]) -> None:
        """Refusals and audit drift are journaled when they appear or change, not on every pass."""
        by_unit = {e["MASKTOOL_UNIT"]: e for e in drift}
        out: list[dict[str, str]] = []
        for u in p.units:
            key = u.refusal or (by_unit[u.obs.unit]["MESSAGE"] if u.obs.unit in by_unit else "")
            # By the rule: two rules can name one unit (through an alias) and be refused with
            # different words; keyed by the unit, each would undo the other's key every pass.
            if self._reported.get(u.rule.unit, "") == key:
                continue
            self._reported[u.rule.unit] = key
            if u.refusal:
                self.stats.refused += 1
                out.append(refusal_entry(u))
            elif u.obs.unit in by_unit:
                out.append(by_unit[u.obs.unit])
        self._journal(out)

    def _note_flaps(self, after: Plan, changed: set[str]) -> None:
        now = time.monotonic()
        for u in after.units:
            if u.obs.unit not in changed:
                continue
            f = self._flaps.setdefault(u.obs.unit, _Flap())
            f.plan = u
            f.times.append(now)
            while f.times[0] < now - self.cfg.flap_window:
                f.times.popleft()
            if f.quiet_until > now or len(f.times) < self.cfg.flap_changes:
                continue
            f.quiet_until = now + self.cfg.flap_window
            self._journal([flap_entry(u, len(f.times), self.cfg.flap_window)])

    def _unless_quiet(self, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        """The entries of units that flap are counted for their summary, not written."""
        now = time.monotonic()
        out = []
        for e in entries:
            f = self._flaps.get(e.get("MASKTOOL_UNIT", ""))
            if f is not None and f.quiet_until > now and e["MASKTOOL_ACTION"] != "flap":
                f.suppressed += 1
            else:
                out.append(e)
        return out

    # -- reporting ---------------------------------------------------------------------------

    def _journal(self, entries: list[dict[str, str]]) -> None:
        if not entries:
            return
        try:
            send_all(entries, self.send)
        except OSError as e:
            # journald gone or full: enforcing goes on, and STATUS (PID 1's, not journald's)
            # counts what was lost. stderr is a stream to journald too: it may be broken as
            # well, and a failed write there must not end the daemon either.
            self.stats.journal_lost += len(entries)
            with contextlib.suppress(OSError):
                print(
                    f"masktool: could not write {len(entries)} journal entries: {e}",
                    file=sys.stderr,
                    flush=True,
                )

    def status(self) -> str:
        pol = self.policy
        rejected = f"; policy files rejected: {self._rejected}" if self._rejected else ""
        if pol is None:
            return "no valid policy: enforcing nothing (see journalctl -u masktool)" + rejected
        flapping = sum(1 for f in self._flaps.values() if f.quiet_until > time.monotonic())
        saved = "; the last good policy saved on disk" if self._policy_source == "saved" else ""
        n = self.stats.journal_lost
        lost = f"; journal entries lost: {n} (journald unreachable)" if n else ""
        return (
            f"{pol.mode}: {len(pol.rules)} unit(s){saved}; drift fixed {self.stats.fixed}; "
            f"refused {self.stats.refused}; reloads {self.stats.reloads}; flapping {flapping}; "
            f"last event: {self.stats.last_event}{rejected}{lost}"
        )


def _watchdog_interval() -> float | None:
    """Half of WatchdogSec=, when systemd asks this process for pings."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


def _wallclock() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_daemon(policy_args: tuple[str, ...], backstop: float, metrics: str | None) -> int:
    from systemd import daemon as sd_daemon

    from masktool.journal import journal_sender

    def notify(state: str) -> None:
        sd_daemon.notify(state)

    try:
        systemd = Systemd().open()
    except SystemdError as e:
        print(
            f"masktool: cannot reach systemd ({e}); the daemon needs a booted system",
            file=sys.stderr,
        )
        return 2
    with systemd:
        d = Daemon(
            DaemonConfig(policy_args=policy_args, backstop=backstop, metrics=metrics),
            systemd,
            journal_sender(),
            notify,
        )
        return d.run()
