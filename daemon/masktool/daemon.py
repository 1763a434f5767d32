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
import time
from collections.abc import Callable, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty, SimpleQueue
from types import FrameType

from masktool import control, lastgood
from masktool.backend import Change
from masktool.deps import DependencyIndex
from masktool.engine import carry_out, observe_and_plan
from masktool.events import (
    HandlerError,
    Overflow,
    PolicyEvent,
    Rewatched,
    UnitEvent,
    WatchItem,
)
from masktool.files import TEMP_PREFIX
from masktool.journal import (
    Sender,
    drift_entries,
    error_entry,
    flap_entry,
    flap_summary_entry,
    policy_loaded_entry,
    policy_rejected_entry,
    refusal_entry,
    rule_error_entry,
    send_all,
    unit_error_entry,
)
from masktool.lock import LockError, apply_lock
from masktool.loopstate import Clock, Deadlines, Flaps, Names, OwnWrites, Retries, StopJobs
from masktool.metrics import Totals, UnitSample, render, samples, write_atomic
from masktool.plan import Plan, UnitPlan
from masktool.policy import (
    DEFAULT_POLICY,
    DEFAULT_POLICY_DIR,
    SITE_BUNDLE_DIR,
    Mode,
    Policy,
    PolicyError,
    Rule,
    load_policy,
    same_but_lines,
    same_rules,
)
from masktool.sentry import Sentry, SentryGone
from masktool.systemd_bus import Systemd, SystemdError
from masktool.tree import Tree
from masktool.units import ETC_DIR, RUN_DIR, is_instance, template_of

Notify = Callable[[str], None]

# systemd's "not configured" (EXIT_NOTCONFIGURED): no policy to enforce. masktool.service does
# not restart on it (RestartPreventExitStatus=), so the failed start is what the admin sees.
EXIT_NOT_CONFIGURED = 6


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
    retry_delay: float = 5.0  # after a failed reconcile (systemd unreachable, ...) or change
    retry_most: float = 300.0  # a unit that keeps failing is retried this often at most
    stop_timeout: float = 120.0  # a stop job still running after this is reported
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


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        systemd: Systemd,
        send: Sender,
        notify: Notify,
        clock: Clock = time.monotonic,
    ) -> None:
        self.cfg = config
        self.systemd = systemd
        self.send = send
        self.notify = notify
        self.clock = clock
        self.queue: SimpleQueue[WatchItem | SignalItem] = SimpleQueue()
        self.policy: Policy | None = None
        self.stats = Stats()
        self.stopping = False
        # When to act: "full" (reconcile everything; the backstop), "batch" (the units named
        # by events, once a burst has settled), "reload" (read the policy files and enforce
        # them: asked for by SIGHUP), "look" (read them only, to say whether they changed
        # since: a policy event), "ping" (the watchdog), "sentry" (start the watching process
        # again). Retries, stop jobs and
        # flap windows keep their own times (_nearest).
        self.due: Deadlines[str] = Deadlines()
        self.due.set("full", 0.0)
        self.flaps: Flaps[UnitPlan] = Flaps(clock, config.flap_changes, config.flap_window)
        self.own = OwnWrites(clock, config.own_write_window)
        self.names = Names()
        self.retries = Retries(clock, config.retry_delay, config.retry_most)
        self.stops = StopJobs(clock, config.stop_timeout)
        self._policy_watch: list[str] = []  # policy directories the watching process watches
        self._pending: set[str] = set()  # policy units named by events since the last reconcile
        self._pending_since: float | None = None  # when the oldest of them arrived
        self._guard: dict[str, str] = {}  # unit -> "mask"/"unmask": what the sentry may do
        self._fast: dict[str, tuple[str, Change]] = {}  # put back by the sentry: was, change
        self._sentry: Sentry | None = None
        self._reported: dict[str, str] = {}  # unit -> last refusal/drift journaled for it
        self._index: DependencyIndex | None = None  # reverse dependencies, rebuilt on change
        self._index_at = 0.0
        self._samples: dict[str, UnitSample] = {}  # last known compliance per unit, for metrics
        self._policy_ok = False
        self._policy_source = "none"  # files, saved (the copy on disk) or none: for metrics
        self._rejected = ""  # the first problem of the policy files, while they are rejected
        self._unsaved = ""  # why the policy in force could not be kept on disk, if it could not
        self._problems: list[tuple[str, str]] = []  # of the policy files at the last reload
        self._unapplied = ""  # how the policy files differ from the policy in force, if they do
        # The reload requests (control) taken when the files were last read; answered once
        # the policy read is enforced. None: no reload to answer.
        self._to_answer: list[str] | None = None
        self._reconcile_error = ""  # why the last reconcile failed, until one succeeds
        self._unrecorded = ""  # why the ledger could not be written, said once
        self._recorded: set[str] | None = None  # units (un)masked before: the ledger, read once
        self._last_reconcile = 0.0
        self._reconnects = systemd.reconnects
        self._ping_every = _watchdog_interval()
        if self._ping_every:
            self.due.set("ping", clock() + self._ping_every)

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self._load_policy()
        if self.policy is None:
            # Nothing to enforce, not even a copy saved on disk: a daemon that runs would say
            # `active` and do nothing. It fails its start instead, with the first problem
            # (journaled in full), and systemd does not restart it (RestartPreventExitStatus).
            first = f"{self._problems[0][0]}: {self._problems[0][1]}" if self._problems else ""
            print(
                f"masktool: no policy to enforce ({first}); fix the policy files, check them "
                "with `masktool validate`, then `systemctl restart masktool`",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_NOT_CONFIGURED
        self._start_sentry()
        self._watch_policy_dirs()
        # Drift made while the daemon was down is fixed before it reports ready.
        self._reconcile(None, self.clock())
        self.notify("READY=1\nSTATUS=" + self.status())
        try:
            while not self.stopping:
                self._step()
        finally:
            self.notify("STOPPING=1")
            if self._sentry is not None:
                self._sentry.stop()
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.queue.put(SignalItem(signum))

    def _nearest(self) -> float:
        """The next moment the loop has work, whatever happens meanwhile."""
        parts = (self.due, self.retries, self.stops, self.flaps)
        return min((t for p in parts if (t := p.nearest()) is not None), default=float("inf"))

    def _step(self) -> None:
        timeout = max(0.0, self._nearest() - self.clock())
        try:
            item = self.queue.get(timeout=min(timeout, self.cfg.backstop))
            self._handle(item)
            # Take what else is already queued before acting: a burst becomes one reconcile.
            while True:
                self._handle(self.queue.get_nowait())
        except Empty:
            pass
        self._run_due()

    def _handle(self, item: WatchItem | SignalItem) -> None:
        now = self.clock()
        if isinstance(item, SignalItem):
            if item.signum == signal.SIGHUP:
                self.due.set("reload", now)
            else:
                self.stopping = True
        elif isinstance(item, UnitEvent):
            self._on_unit_event(item)
        elif isinstance(item, PolicyEvent):
            # Saved is not applied: the files are read to say whether they differ from the
            # policy in force (STATUS, metrics, `masktool check`); a reload applies them.
            self.due.set("look", item.at + self.cfg.policy_settle)
        elif isinstance(item, Overflow):
            self._journal(
                [error_entry("inotify queue overflowed; events were lost: reconciling every unit")]
            )
            self.due.set("full", now)
        elif isinstance(item, Rewatched):
            self._journal(
                [
                    error_entry(
                        f"{item.directory} was replaced; watching it again and reconciling "
                        "every unit"
                    )
                ]
            )
            self.due.set("full", now)
        elif isinstance(item, SentryGone):
            if not self.stopping:
                # Events may have been lost with it: look at everything once it watches again.
                self._start_sentry()
                self.due.set("full", self.clock())
        elif isinstance(item, HandlerError):
            self._journal([error_entry(item.message)])

    def _run_due(self) -> None:
        if self.stopping:
            return
        now = self.clock()
        if self.due.take("reload", now):
            # The requests waiting now are answered by this reload: the files are read after
            # each was made. One made later has sent a SIGHUP of its own: the next reload.
            asked = control.take_requests()
            # Watch first, then read: a file written in between is read, one written after
            # is seen.
            self._watch_policy_dirs()
            self.due.clear("look")
            if self._load_policy():
                self._watch_policy_dirs()  # the new policy may include files elsewhere
                self.due.set("full", now)
            self._to_answer = (self._to_answer or []) + asked
        elif self.due.take("look", now):
            self._watch_policy_dirs()
            self._look_at_files()
        if self.due.take("sentry", now):
            self._start_sentry()
        self._look_at_stop_jobs()
        for unit in self.retries.due():
            self._note_pending(unit, now)
        if self.due.is_due("full", now):
            self._reconcile(None, now)
        elif self.due.take("batch", now):
            units, since = self._pending, self._pending_since or now
            self._pending, self._pending_since = set(), None
            self._reconcile(units, since)
        if self._to_answer is not None:
            # After the reconcile above: `systemctl reload masktool` returns once the new
            # policy is enforced, so a `masktool check` right after sees it.
            self._answer()
        for last, held in self.flaps.ended():
            self._journal([flap_summary_entry(last, held, self.cfg.flap_window)])
        if self._ping_every and self.due.take("ping", now):
            self.notify("WATCHDOG=1")
            self.due.set("ping", now + self._ping_every)

    # -- events ------------------------------------------------------------------------------

    def _note_pending(self, unit: str, at: float) -> None:
        self._pending.add(unit)
        if self._pending_since is None:
            self._pending_since = at
            self.due.set("batch", at + self.cfg.coalesce)

    def _on_unit_event(self, ev: UnitEvent) -> None:
        path = f"{ev.directory}/{ev.name}"
        if self.own.consume(path, ev.kind, ev.at) or ev.name.startswith(TEMP_PREFIX):
            return  # a link PID 1 wrote or removed for us, or masktool's own rename aside
        self._index = None  # any new, removed or rewritten entry may change a dependency
        units = self.names.owners(ev.name)
        if not units and is_instance(ev.name):
            units = self.names.owners(template_of(ev.name))
        if not units:
            return
        if ev.fixed == "mask":
            self.own.expect([(path, "created")])
            change = Change(
                ev.name, "mask", f"symlink (direct) {path} -> /dev/null", path, effect="created"
            )
            self._fast[ev.name] = ("unmasked", change)
        elif ev.fixed == "unmask":
            self.own.expect([(path, "deleted")])
            change = Change(ev.name, "unmask", f"unlink (direct) {path}", path, effect="deleted")
            self._fast[ev.name] = ("masked", change)
        self.stats.last_event = f"{ev.kind} {path} at {_wallclock()}"
        for unit in units:
            self._note_pending(unit, ev.at)

    def _start_sentry(self) -> None:
        """The process that watches the unit directories and puts masks back at once
        (masktool.sentry). If it cannot be started, the daemon says so and tries again."""
        if self._sentry is not None:
            self._sentry.stop()
            self._sentry = None
        sentry = Sentry([ETC_DIR, RUN_DIR], self.queue.put)
        sentry.arm(self._guard)  # sent once it runs, with the policy directories
        sentry.watch_policy(self._policy_watch)
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
            again = self.clock() + self.cfg.retry_delay
            self.due.set("sentry", again)
            self.due.earlier("full", again)
            return
        self._sentry = sentry
        self.due.clear("sentry")

    def _arm(self) -> None:
        """What the sentry may do at once, by unit name; sent to it when it changes."""
        guard: dict[str, str] = dict(self.names.guard())
        if guard != self._guard:
            self._guard = guard
            if self._sentry is not None:
                self._sentry.arm(guard)

    # -- policy ------------------------------------------------------------------------------

    def _read_files(self) -> tuple[Policy | None, list[tuple[str, str]]]:
        """The policy the files say, or why they cannot be used."""
        try:
            return load_policy(self.cfg.policy_args, "/"), []
        except PolicyError as e:
            return None, list(e.problems)
        except Exception as e:  # noqa: BLE001
            # Nothing on disk may end the daemon: whatever reading the files raised (a flaw of
            # masktool's own, even) rejects them, in full in the journal, and enforcing goes on.
            why = f"cannot be read ({type(e).__name__}: {e}); please report this"
            return None, [("policy", why)]

    def _load_policy(self) -> bool:
        """Read the policy files; on success enforce them and keep a copy on disk. On any
        failure keep what is in force; at start, with nothing in force, the saved copy.
        Returns whether the policy in force changed."""
        new, problems = self._read_files()
        if new is not None:
            self._problems = []
            self._unapplied = ""
            self._accept(new, "files")
            self._journal([policy_loaded_entry(new.files, len(new.rules), new.mode)])
            self._save_last_good(new)
            return True
        self._problems = list(problems)
        self._unapplied = ""
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

    def _look_at_files(self) -> None:
        """After a change to the policy files: read them and say whether they differ from the
        policy in force. Nothing is enforced from them until a reload."""
        new, problems = self._read_files()
        pol = self.policy
        said = (self._unapplied, self._rejected, self._policy_source)
        if new is not None and pol is not None and same_rules(new, pol):
            # The files say what is in force (an edit undone, say): nothing waits, and a
            # rejection of an earlier reload no longer stands.
            unapplied = ""
            self._policy_ok, self._rejected, self._policy_source = True, "", "files"
            self._problems = []
        elif new is not None and pol is not None and same_but_lines(new, pol):
            unapplied = (
                "policy files edited, rules unchanged but on other lines: "
                "`systemctl reload masktool` updates the file:line masktool cites"
            )
        elif new is not None:
            unapplied = (
                "policy files changed, not applied: `systemctl reload masktool` applies them"
            )
            # What an earlier reload rejected is no longer what the files say.
            self._rejected = ""
        else:
            first = f"{problems[0][0]}: {problems[0][1]}" if problems else "unknown problem"
            unapplied = f"policy files changed and would be rejected: {first}"
        self._unapplied = unapplied
        if (self._unapplied, self._rejected, self._policy_source) != said:
            self.notify("STATUS=" + self.status())
            self._write_metrics()

    def _answer(self) -> None:
        """Tell each `masktool reload` (control.request_reload) how its reload went."""
        tokens, self._to_answer = self._to_answer or [], None
        pol = self.policy
        result = control.ReloadResult(
            pid=os.getpid(),
            accepted=self._policy_ok,
            enforced=self._policy_ok and not self._reconcile_error,
            problems=tuple(self._problems),
            error=self._reconcile_error,
            in_force=self._policy_source,
            rules=len(pol.rules) if pol is not None else 0,
            mode=pol.mode if pol is not None else "",
            at=_wallclock(),
        )
        for token in tokens:
            try:
                control.answer(token, result)
            except OSError as e:
                self.stats.errors += 1
                self._journal(
                    [
                        error_entry(
                            f"cannot answer a reload request in {control.REQUEST_DIR} "
                            f"({e.strerror or e}): its `masktool reload` waits in vain"
                        )
                    ]
                )
        self.notify("STATUS=" + self.status())

    def _accept(self, new: Policy, source: str) -> None:
        if source == "files":
            self._policy_ok = True
            self._rejected = ""
        self._policy_source = source
        old, self.policy = self.policy, new
        if old is not None and same_rules(old, new):
            # The same rules (a configuration tool reloads after every run): what was
            # journaled stays journaled, and a failing unit keeps its back-off.
            return
        self._samples = {}
        self._reported = {}
        # Read the ledger again: `masktool release` may have emptied it since (a rule can be
        # released only while no rule of the daemon's covers it).
        self._recorded = None
        self.names.reset(new)
        # Failures of the old rules are not the new ones': every unit is reconciled anew.
        self.retries = Retries(self.clock, self.cfg.retry_delay, self.cfg.retry_most)
        self._arm()

    def _save_last_good(self, policy: Policy) -> None:
        path = lastgood.state_path()
        try:
            lastgood.save(policy, path)
            self._unsaved = ""
        except OSError as e:
            self._unsaved = f"; the policy cannot be kept in {path} ({e.strerror})"
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
        files = [DEFAULT_POLICY, *(self.policy.files if self.policy is not None else ())]
        dirs.extend(str(Path(f).parent) for f in files)
        # A policy file that is a link (policy.yaml -> /srv/site/policy.yaml): its target's
        # directory too, where it is edited.
        dirs.extend(str(Path(os.path.realpath(f)).parent) for f in files if Path(f).is_symlink())
        return dirs

    def _watch_policy_dirs(self) -> None:
        """The policy directories that exist now (policy.d made since, a new include's) are
        watched by the watching process (the daemon itself never imports watchdog); those
        gone are dropped."""
        self._policy_watch = [d for d in dict.fromkeys(self._policy_dirs()) if Path(d).is_dir()]
        if self._sentry is not None and not self._sentry.watch_policy(self._policy_watch):
            self._journal(
                [error_entry("the watching process did not confirm it watches the policy files")]
            )

    # -- reconciling -------------------------------------------------------------------------

    def _reconcile(self, units: set[str] | None, since: float) -> None:
        """Make the units named (all when None) match the policy, verify, journal."""
        if units is None:
            self.due.set("full", self.clock() + self.cfg.backstop)
            self.due.clear("batch")
            self._pending, self._pending_since = set(), None
        pol = self.policy
        if pol is None:
            return
        # A unit waiting for its retry is left to it by a full pass (a reload, the backstop):
        # each failure would otherwise be journaled again and its back-off undone.
        waiting = self.retries.waiting() - self.retries.due() if units is None else set()
        rules = [
            r
            for r in pol.rules
            if (units is None and r.unit not in waiting) or (units is not None and r.unit in units)
        ]
        if not rules:
            return
        self.stats.reconciles += 1
        try:
            with apply_lock(timeout=60):
                self._converge_each(pol.mode, rules, since, units)
            self._reconcile_error = ""
        except (SystemdError, OSError, LockError) as e:
            self._reconcile_error = str(e)
            self.stats.errors += 1
            self._journal(
                [error_entry(f"reconcile failed, retrying in {self.cfg.retry_delay:.0f}s: {e}")]
            )
            self.due.earlier("full", self.clock() + self.cfg.retry_delay)
        if self.systemd.reconnects != self._reconnects:
            # A new connection (dbus restarted, systemd re-executed): anything may have changed.
            self._reconnects = self.systemd.reconnects
            self.due.set("full", self.clock())
        self.notify("STATUS=" + self.status())
        self._write_metrics()

    def _converge_each(
        self, mode: Mode, rules: list[Rule], since: float, asked: set[str] | None
    ) -> None:
        """All rules in one pass; if reading the host fails for one of them (a file masktool
        may not read, say), each rule on its own, so that one unit's error is that unit's and
        every other unit converges."""
        try:
            self._converge(Policy(mode, tuple(rules)), since, asked)
            return
        except OSError:
            if len(rules) == 1:
                raise
        for r in rules:
            try:
                self._converge(Policy(mode, (r,)), since, None if asked is None else {r.unit})
            except OSError as e:
                self.stats.errors += 1
                delay = self.retries.failed(r.unit)
                self._journal(
                    [
                        rule_error_entry(
                            r, f"cannot read the host's state ({e}); trying again in {delay:.0f}s"
                        )
                    ]
                )

    def _write_metrics(self) -> None:
        if not self.cfg.metrics:
            return
        text = render(
            self._samples.values(),
            policy_ok=self._policy_ok,
            last_reconcile=self._last_reconcile,
            policy_source=self._policy_source,
            # The files are not the policy in force: changed since, or rejected at a reload.
            policy_pending=bool(self._unapplied)
            or (self.policy is not None and not self._policy_ok),
            mode=self.policy.mode if self.policy is not None else None,
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
        if asked is None or self._index is None or self.clock() - self._index_at > 60:
            self._index = DependencyIndex("/")
            self._index_at = self.clock()
        for attempt in range(3):
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
                self._settled(before)
                return
            # Units that were as the policy wants (seen so by a pass, or put back by the
            # watching process): a change now is a put-back of drift, journaled as such.
            restored = set(fast) | {u for u, s in self._samples.items() if s.compliant}
            restored |= self._acted_before()
            out = carry_out(
                before,
                sub,
                "/",
                self.systemd,
                started=since,
                index=self._index,
                also_masked=frozenset(self.names.mask_names),
                stopping=frozenset(self.stops.running()),
                done_already=[change for _, change in fast.values()],
                # The loop goes on serving events while systemd stops units; it looks at
                # them on a timer (StopJobs).
                wait_for_stops=False,
            )
            res, after = out.result, out.after
            self._record(before, res.changes)
            self.own.expect((c.path, c.effect) for c in res.changes if c.path and c.effect)
            for c in res.changes:
                if c.what == "stop":
                    self.stops.started(c.unit)
            self._samples.update((s.unit, s) for s in samples(after.units))
            was = {u: w for u, (w, _) in fast.items()}
            # Refusals are journaled once, when they appear (_report_once).
            entries = [
                e
                for e in out.entries(was=was, restored=restored)
                if e["MASKTOOL_ACTION"] != "refuse"
            ]
            self.stats.reloads += res.reloads
            changed = {c.unit for c in res.changes if c.unit}
            # Drift put back, not every change: a reload adding rules is a rollout, and must
            # not read as something undoing the policy (the flapping alert counts these).
            self.stats.fixed += len(changed & restored)
            self._note_flaps(after, changed)
            failed = out.failed
            # Done when nothing is left to do; when systemd refused a change (it would likely
            # refuse it again at once: the unit waits for its retry); or after three tries.
            left = not (after.compliant or not after.actions)
            done = not left or bool(failed) or attempt == 2
            if done:
                stuck = failed | (
                    {u.obs.unit for u in after.units if not u.compliant} if left else set()
                )
                delays = self._settled(after, stuck, journaled=failed)
                entries = [_with_retry(e, delays) for e in entries]
            self._journal(self._unless_quiet(entries))
            if done:
                return
            query = [u.obs.unit for u in after.units if not u.compliant]
            since = self.clock()

    def _acted_before(self) -> set[str]:
        if self._recorded is None:
            from masktool import ledger

            self._recorded = ledger.acted_before(Tree("/"))
        return self._recorded

    def _record(self, p: Plan, changes: list[Change]) -> None:
        """Note in the ledger what was changed, so that `masktool release` can undo it."""
        from masktool import ledger

        rules = {u.obs.unit: (str(u.rule.source), u.rule.trigger_of) for u in p.units}
        recorded = self._acted_before()
        for c in changes:
            if c.what in ("mask", "mask-runtime", "unmask"):
                recorded.add(c.unit)
        why = ledger.record(changes, Tree("/"), rules)
        if why is not None and why != self._unrecorded:
            self.stats.errors += 1
            self._journal([error_entry(why)])
        self._unrecorded = why or ""

    def _settled(
        self, p: Plan, failed: Set[str] = frozenset(), journaled: Set[str] = frozenset()
    ) -> dict[str, float]:
        """The end of a pass: units as the policy wants, or with nothing left to do (refused,
        waiting for another rule, or for their stop job, looked at on its own timer) are
        forgotten by the retries; those that failed, or still are not as the policy wants
        after the attempts, are tried again later, each on its own back-off. Returns the
        delays, by unit; those not `journaled` yet get an entry here."""
        delays: dict[str, float] = {}
        for u in p.units:
            # By the rule the daemon reconciles: an activator's is its unit's.
            name = u.rule.trigger_of or u.rule.unit
            if u.compliant or (not u.actions and u.obs.unit not in failed):
                self.retries.succeeded(name)
                continue
            delay = delays[u.obs.unit] = self.retries.failed(name)
            self.stats.errors += 1
            if u.obs.unit not in journaled:
                self._journal(
                    [
                        unit_error_entry(
                            u,
                            f"{u.obs.unit} is still {u.state.value}, not {u.want}; trying "
                            f"again in {delay:.0f}s",
                        )
                        | {"MASKTOOL_RETRY_SEC": f"{delay:.0f}"}
                    ]
                )
        return delays

    def _look_at_stop_jobs(self) -> None:
        """Stop jobs due a look: those done are verified with a reconcile of their units;
        one running past the timeout is reported and retried like any failed change."""
        due = self.stops.due()
        if not due:
            return
        try:
            states = {s.name: s for s in self.systemd.list_units_by_names(sorted(due))}
        except SystemdError as e:
            self._journal([error_entry(f"cannot look at stop jobs: {e}")])
            return
        now = self.clock()
        for unit in due:
            s = states.get(unit)
            if s is not None and s.running and self.stops.still_running(unit):
                continue
            self.stops.done(unit)
            owners = self.names.owners(unit) or {unit}
            if s is None or not s.running:
                for owner in owners:
                    self._note_pending(owner, now)  # verified by a reconcile of its own
                continue
            # Still running: a failed change like any other, tried again on its back-off (a
            # new stop job, or systemd's running one), not at once.
            for owner in owners:
                delay = self.retries.failed(owner)
                self.stats.errors += 1
                message = (
                    f"{unit} still runs {self.cfg.stop_timeout:.0f}s after masktool asked "
                    f"systemd to stop it; trying again in {delay:.0f}s"
                )
                rule = self.policy.rule_for(owner) if self.policy is not None else None
                entry = rule_error_entry(rule, message) if rule else error_entry(message)
                self._journal([entry | {"MASKTOOL_RETRY_SEC": f"{delay:.0f}"}])

    def _observe_and_plan(self, sub: Policy, query: list[str]) -> Plan:
        return observe_and_plan(
            sub,
            "/",
            self.systemd,
            query,
            index=self._index,
            also_masked=frozenset(self.names.mask_names),
            deps_of_masked=False,
            # A stop job already asked for is not asked for again while it runs.
            stopping=frozenset(self.stops.running()),
        )

    def _learn_names(self, p: Plan) -> None:
        """Events name entries; remember which names (aliases, activators masked with
        with_triggers) lead to which policy rules. Also keeps the per-unit metrics."""
        self._last_reconcile = time.time()
        self._samples.update((s.unit, s) for s in samples(p.units))
        self.names.learn(p)
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
        for u in after.units:
            if u.obs.unit not in changed:
                continue
            count = self.flaps.put_back(u.obs.unit, u)
            if count:
                self._journal([flap_entry(u, count, self.cfg.flap_window)])

    def _unless_quiet(self, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        """The entries of units that flap are counted for their summary, not written."""
        return [
            e
            for e in entries
            if e["MASKTOOL_ACTION"] == "flap" or not self.flaps.hold(e.get("MASKTOOL_UNIT", ""))
        ]

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
        saved = "; the last good policy saved on disk" if self._policy_source == "saved" else ""
        unapplied = f"; {self._unapplied}" if self._unapplied else ""
        failed = (
            f"; the last reconcile failed ({self._reconcile_error})"
            if self._reconcile_error
            else ""
        )
        n = self.stats.journal_lost
        lost = f"; journal entries lost: {n} (journald unreachable)" if n else ""
        waiting = len(self.retries.waiting())
        retry = f"; failing, retried later: {waiting}" if waiting else ""
        return (
            f"{pol.mode}: {len(pol.rules)} unit(s){saved}; drift fixed {self.stats.fixed}; "
            f"refused {self.stats.refused}; reloads {self.stats.reloads}; "
            f"flapping {self.flaps.flapping()}{retry}; "
            f"last event: {self.stats.last_event}{rejected}{unapplied}{failed}{lost}"
            f"{self._unsaved}"
        )


def _with_retry(entry: dict[str, str], delays: dict[str, float]) -> dict[str, str]:
    """An error entry of a unit that will be tried again says when."""
    delay = delays.get(entry.get("MASKTOOL_UNIT", ""))
    if entry["MASKTOOL_ACTION"] != "error" or delay is None:
        return entry
    return entry | {
        "MESSAGE": f"{entry['MESSAGE']}; trying again in {delay:.0f}s",
        "MASKTOOL_RETRY_SEC": f"{delay:.0f}",
    }


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
