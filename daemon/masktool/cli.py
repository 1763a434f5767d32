"""The command line: wires policy → observe → plan → backend → verify, and maps outcomes to the
exit codes of masktool(8) (0 ok, 1 drift / not all remediated, 2 usage, policy or system error)."""

from __future__ import annotations

import argparse
import gc
import io
import os
import stat
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masktool import __version__
from masktool.backend import Change
from masktool.deps import DependencyIndex
from masktool.engine import carry_out, observe_and_plan
from masktool.journal import Sender, journal_sender, send_all
from masktool.ledger import Ledger
from masktool.lock import LockError, apply_lock
from masktool.metrics import TEXTFILE_DIR, TEXTFILE_NAME, default_path
from masktool.observe import UnitObservation, UnitTree, observe
from masktool.plan import Plan
from masktool.policy import Draft, Policy, PolicyError, load_policy, same_rules
from masktool.release import Released
from masktool.report import (
    check_text,
    plan_json,
    plan_text,
    result_json,
    result_text,
    why_text,
)
from masktool.systemd_bus import Systemd, SystemdError
from masktool.tree import Tree, shown
from masktool.units import is_template, template_of, unit_name_error

if TYPE_CHECKING:
    from masktool.lastgood import Saved

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="masktool",
        description="Keep systemd units masked or unmasked as a policy declares.",
        epilog="Exit status: 0 ok or compliant, 1 drift or not all remediated, "
        "2 usage, policy or system error.",
    )
    ap.add_argument("--version", action="version", version=f"masktool {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def root_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--root",
            metavar="DIR",
            help="work on the unbooted tree at DIR instead of the running system",
        )

    def common(p: argparse.ArgumentParser, root: bool = True, js: bool = True) -> None:
        p.add_argument(
            "--policy",
            action="append",
            default=[],
            metavar="P",
            help="policy file or directory (repeatable); default "
            "/etc/masktool/policy.yaml and /etc/masktool/policy.d/*.yaml",
        )
        if root:
            root_option(p)
        if js:
            p.add_argument("--json", action="store_true", help="machine-readable output")

    def drafts(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--as",
            dest="as_path",
            metavar="INSTALLED_PATH",
            help="with --draft: the path the draft will be installed at (such as "
            "/etc/masktool/policy.d/50-site.yaml); it is read there, in place of what is "
            "installed, with every other policy file",
        )
        p.add_argument(
            "--draft",
            metavar="FILE",
            help="with --as: a policy file not installed yet, checked as it will merge",
        )

    validate = sub.add_parser("validate", help="check the policy and exit")
    common(validate, root=True, js=False)
    drafts(validate)
    check = sub.add_parser("check", help="audit: exit 1 when a unit is not as the policy wants")
    common(check)
    check.add_argument(
        "--metrics", metavar="FILE", help="also write compliance as a Prometheus textfile to FILE"
    )
    plan = sub.add_parser("plan", help="show what apply would do")
    common(plan)
    drafts(plan)
    common(sub.add_parser("apply", help="make the host match the policy, then verify"))
    why = sub.add_parser("why", help="which rule covers UNIT, and what the host says about it")
    why.add_argument("unit", metavar="UNIT")
    common(why, js=False)
    rep = sub.add_parser(
        "report",
        help="an auditor's HTML page: host, policy files and their SHA-256, every rule and what "
        "systemd reports now, and masktool's journal since WHEN; exit 1 on drift, like check",
    )
    common(rep, root=False, js=False)
    rep.add_argument(
        "--since",
        default="-30d",
        metavar="WHEN",
        help="journal from WHEN on: -30d (default), -12h, today, yesterday, 2026-11-01, "
        "'2026-11-01 08:00' (UTC)",
    )
    rep.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the page to FILE (replaced whole, atomically) instead of standard output",
    )
    rl = sub.add_parser(
        "reload",
        help="have the running daemon read the policy files and enforce them; exit 2, naming "
        "file:line, if it rejects them (it then keeps the policy in force)",
    )
    rl.add_argument(
        "--pid",
        type=int,
        metavar="PID",
        help="the daemon's process (masktool.service's ExecReload= passes $MAINPID); default: "
        "masktool.service's main process, asked of systemd",
    )
    rl.add_argument(
        "--timeout",
        type=float,
        default=80.0,
        metavar="SECONDS",
        help="how long to wait for the daemon's answer (default 80; systemd gives a reload 90)",
    )
    rel = sub.add_parser(
        "release",
        help="undo what masktool did: remove the masks it wrote (never an admin's) and put the "
        "files it moved aside back; refuses units the running daemon still enforces",
    )
    rel.add_argument("units", nargs="*", metavar="UNIT", help="only these units (default: all)")
    root_option(rel)
    d = sub.add_parser("daemon", help="enforce continuously (see masktool.service)")
    common(d, root=False, js=False)
    d.add_argument(
        "--backstop",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="full reconcile this often, in case inotify lost events (default 600)",
    )
    d.add_argument(
        "--metrics",
        metavar="FILE",
        help=f"Prometheus textfile to keep up to date (default {TEXTFILE_DIR}/{TEXTFILE_NAME} "
        "when that directory exists; 'none' to write none)",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    # File names are bytes and need not be UTF-8; whatever slips through unescaped is shown
    # with backslashes rather than ending the run with UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(_glue_since(sys.argv[1:] if argv is None else list(argv)))
    if args.command != "daemon":
        # A command runs once and exits: what the imports made lives as long as it does, so
        # the collector need not walk it again at every collection (a thousand units make
        # several; measured: ~10 ms of a 240 ms apply). The daemon lives on and collects all.
        gc.freeze()
    try:
        return _run(args)
    except PolicyError as e:
        for where, what in e.problems:
            print(f"masktool: {where}: {what}", file=sys.stderr)
        print("masktool: policy rejected; nothing was changed", file=sys.stderr)
        return EXIT_ERROR
    except SystemdError as e:
        print(f"masktool: systemd: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (UsageError, LockError) as e:
        print(f"masktool: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        # A file or directory masktool needs and cannot use (--metrics into a missing
        # directory, a lock it cannot take, ...): one line naming it.
        print(f"masktool: {os_error_text(e)}", file=sys.stderr)
        return EXIT_ERROR


def _glue_since(argv: list[str]) -> list[str]:
    """`--since -30d` as journalctl takes it: argparse would read -30d as an option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] == "--since" and arg.startswith("-"):
            out[-1] = f"--since={arg}"
        else:
            out.append(arg)
    return out


def os_error_text(e: OSError) -> str:
    if e.filename is not None and e.strerror:
        return f"{shown(os.fsdecode(e.filename))}: {e.strerror}"
    return e.strerror or str(e)


def _run(args: argparse.Namespace) -> int:
    root: str | None = getattr(args, "root", None)
    if root is not None and (not root or not Path(root).is_dir()):
        raise UsageError(f"--root {shown(root)!r}: not a directory")
    if root is not None and Path(root).samefile("/"):
        # Offline on the running system would write links systemd is not told about, and
        # report compliance from disk alone.
        raise UsageError(
            f"--root {shown(root)!r} is the running system: leave out --root to work on it "
            "through systemd"
        )
    metrics = getattr(args, "metrics", None)
    if metrics is not None and metrics != "none":
        _check_metrics_path(metrics)
    if args.command == "daemon":
        # The daemon loads (and reloads) the policy itself: a bad one must not stop it.
        from masktool.daemon import run_daemon

        metrics = default_path() if args.metrics is None else args.metrics
        return run_daemon(tuple(args.policy), args.backstop, None if metrics == "none" else metrics)
    if args.command == "reload":
        return _reload(args.pid, args.timeout)
    if args.command == "release":
        return _release(args.units, root)
    draft = _draft(getattr(args, "as_path", None), getattr(args, "draft", None))
    policy = load_policy(args.policy, root or "/", draft)
    if args.command == "validate":
        n = len(policy.rules)
        as_ = f" (with {shown(draft.file)} as {shown(draft.installed)})" if draft else ""
        print(f"policy ok: {n} rule(s) from {len(policy.files)} file(s), mode {policy.mode}{as_}")
        return EXIT_OK
    if root is not None:
        from masktool.ledger import tree_lock

        # One apply at a time on the tree too: the ledger records what each wrote.
        with tree_lock(Tree(root)) if args.command == "apply" else nullcontext():
            return _dispatch(args, policy, root, None)
    try:
        systemd = Systemd().open()
    except SystemdError as e:
        raise UsageError(
            f"cannot reach systemd over D-Bus ({e}); run as root on a booted "
            "system, or use --root DIR for an unbooted tree"
        ) from e
    with systemd, apply_lock() if args.command == "apply" else nullcontext():
        return _dispatch(args, policy, None, systemd)


SERVICE = "masktool.service"


def _draft(as_path: str | None, draft: str | None) -> Draft | None:
    if as_path is None and draft is None:
        return None
    if as_path is None or draft is None:
        raise UsageError("--as INSTALLED_PATH and --draft FILE go together")
    if not as_path.startswith("/"):
        raise UsageError(f"--as {shown(as_path)!r}: give the absolute path it will be installed at")
    return Draft(as_path, draft)


def _reload(pid: int | None, timeout: float) -> int:
    from masktool import control

    if not (0 < timeout < float("inf")):
        raise UsageError(f"--timeout {timeout}: give a number of seconds above 0")
    started = time.monotonic()
    if pid is None:
        with Systemd().open() as systemd:
            pid = _running_daemon(systemd, started + timeout)
    else:
        _check_daemon_pid(pid)
    try:
        r = control.request_reload(pid, max(0.1, started + timeout - time.monotonic()))
    except control.ControlError as e:
        raise UsageError(str(e)) from e
    if r.accepted and r.enforced:
        print(f"masktool: policy reloaded and enforced: {r.rules} rule(s), mode {r.mode}")
        return EXIT_OK
    if r.accepted:
        print(
            f"masktool: policy reloaded ({r.rules} rule(s)), but enforcing it failed: "
            f"{r.error}; the daemon tries again (journalctl -u masktool)",
            file=sys.stderr,
        )
        return EXIT_DRIFT
    for where, what in r.problems:
        print(f"masktool: {where}: {what}", file=sys.stderr)
    kept = {
        "files": f"the policy in force stays ({r.rules} rule(s))",
        "saved": f"the last good policy saved on disk stays in force ({r.rules} rule(s))",
    }.get(r.in_force, "no policy is in force")
    print(f"masktool: the daemon rejected the policy files; {kept}", file=sys.stderr)
    return EXIT_ERROR


def _release(units: Sequence[str], root: str | None) -> int:
    from masktool import ledger
    from masktool.release import release, text

    for u in units:
        why = unit_name_error(u)
        if why:
            raise UsageError(f"invalid unit name '{u}': {why}")
    tree = Tree(root or "/")
    if root is not None:
        with ledger.tree_lock(tree):
            led = _load_ledger(tree)
            r = release(tree, led, units)
            if r.changed:
                ledger.save(led, tree)
        print(text(r, tree))
        _journal(_release_entries(r, root))
        return EXIT_OK if r.complete else EXIT_DRIFT
    try:
        systemd = Systemd().open()
    except SystemdError as e:
        raise UsageError(
            f"cannot reach systemd over D-Bus ({e}); use --root DIR for an unbooted tree"
        ) from e
    notes: list[str] = []
    with systemd, apply_lock():
        led = _load_ledger(tree)
        enforced, triggering = _enforced(systemd)
        r = release(tree, led, units, enforced, triggering)
        if r.changed:
            ledger.save(led, tree)
        # Journaled before anything else can fail: what was done is on record.
        _journal(_release_entries(r, None))
        if r.masks or r.put_back:
            # Units systemd holds as masked keep that state until it reads the files again;
            # a daemon-reload that would block PID 1 (a FIFO among the files) is not asked.
            hazards = UnitTree("/").hazards(manager_config=True)
            if hazards:
                notes.append(
                    "systemd was not reloaded: it would block on "
                    + ", ".join(hazards)
                    + "; remove that, then `systemctl daemon-reload`"
                )
            else:
                systemd.reload()
        plain = [m.unit for m in r.masks if not is_template(m.unit)]
        still = [s.name for s in systemd.list_units_by_names(plain) if s.load_state == "masked"]
        notes += [f"systemd still reports {n} masked: another mask covers it" for n in still]
    print(text(r, tree))
    for n in notes:
        print(f"note: {n}")
    return EXIT_OK if r.complete and not notes else EXIT_DRIFT


def _load_ledger(tree: Tree) -> Ledger:
    from masktool import ledger

    try:
        return ledger.load(tree)
    except ledger.LedgerError as e:
        raise UsageError(f"{e}; nothing was released") from e


def _release_entries(r: Released, root: str | None) -> list[dict[str, str]]:
    from masktool.journal import release_entry

    extra = {"MASKTOOL_ROOT": root} if root is not None else {}
    entries = [
        release_entry(
            m.unit,
            f"released {m.unit}: removed {m.path}, which it wrote at {m.at}",
            MASKTOOL_POLICY=m.rule,
            MASKTOOL_PATH=m.path,
            **extra,
        )
        for m in r.masks
    ]
    entries += [
        release_entry(
            d.unit,
            f"put {d.path} back, which it had moved aside at {d.at}",
            MASKTOOL_DISPLACED=d.copy,
            MASKTOOL_PATH=d.path,
            **extra,
        )
        for d in r.put_back
    ]
    return entries


def _enforced(systemd: Systemd) -> tuple[dict[str, str], dict[str, str]]:
    """What the running daemon masks: unit -> where to change that, for every name its mask
    rules reach (an alias rule masks the unit it names); and the same for the rules that mask
    their unit's activators too (with_triggers). Release refuses them. An auditing daemon
    masks nothing."""
    from masktool.journal import edit_advice
    from masktool.lastgood import LastGoodError

    try:
        running, saved = _daemons_copy(systemd)
    except LastGoodError as e:
        raise UsageError(
            f"{SERVICE} runs, and the policy it enforces cannot be read ({e}): stop it first "
            "(systemctl stop masktool)"
        ) from e
    if not running:
        return {}, {}
    if saved is None:
        raise UsageError(
            f"{SERVICE} runs, and the policy it enforces is not on disk: stop it first "
            "(systemctl stop masktool)"
        )
    if saved.policy.mode == "audit":
        return {}, {}
    tree = UnitTree("/")
    enforced: dict[str, str] = {}
    triggering: dict[str, str] = {}
    for r in saved.policy.rules:
        if r.action != "mask":
            continue
        for name in {r.unit, tree.observe_files(r.unit).unit}:
            enforced[name] = edit_advice(r, name)
            if r.with_triggers:
                triggering[name] = edit_advice(r, name)
    return enforced, triggering


def _daemon_policy(policy: Policy, systemd: Systemd) -> dict[str, Any] | None:
    """Whether the running daemon enforces these policy files, from the copy of the policy in
    force it keeps on disk; None when no daemon runs. When the copy cannot be read (not root,
    say) the answer is unknown, and says why, rather than silently absent."""
    from masktool.lastgood import LastGoodError, state_path

    try:
        _, saved = _daemons_copy(systemd)
    except LastGoodError as e:
        return {"running": True, "policy_is_the_files": None, "unknown": str(e)}
    if saved is None:
        # It runs, and what it enforces cannot be told: never say it does not run.
        return {
            "running": True,
            "policy_is_the_files": None,
            "unknown": f"its saved copy of the policy in force is missing ({shown(state_path())})",
        }
    same = same_rules(saved.policy, policy)
    return {"running": True, "policy_is_the_files": same, "loaded_at": saved.saved_at}


def _report(args: argparse.Namespace, policy: Policy, systemd: Systemd) -> int:
    from datetime import UTC, datetime

    from masktool import evidence
    from masktool.metrics import write_atomic

    now = datetime.now(UTC)
    try:
        since = evidence.parse_since(args.since, now)
    except evidence.SinceError as e:
        raise UsageError(str(e)) from e
    if args.output == "-":
        args.output = None  # standard output, as the convention goes
    if args.output == "":
        raise UsageError("-o '': give a file name, or - for standard output")
    if args.output is not None:
        # Checked before anything is read: a mistyped name should cost nothing.
        _check_replaceable(args.output, f"-o {shown(args.output)}")
    p = _observe_plan(policy, None, systemd, index=DependencyIndex("/"), deps_of_masked=False)
    data = evidence.gather(
        policy,
        p,
        evidence.read_events(since, now),
        host=evidence.this_host(),
        generated=now,
        since=since,
        daemon=_daemon_words(_daemon_policy(policy, systemd)),
    )
    page = evidence.render(data)
    if args.output is None:
        sys.stdout.write(page)
    else:
        try:
            write_atomic(args.output, page)
        except OSError as e:
            raise UsageError(f"cannot write {shown(args.output)}: {e.strerror or e}") from e
        print(
            f"report written to {shown(args.output)}: {data.summary.verdict}, "
            f"{data.summary.compliant} of {data.summary.units} unit(s) as the policy wants, "
            f"{data.events.total} journal entries since "
            f"{since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        )
    return EXIT_OK if p.compliant else EXIT_DRIFT


def _refuse_beside_the_daemon(path: str, systemd: Systemd) -> None:
    """node_exporter serves every *.prom file of its directory: a check's file beside the
    running daemon's gives every series twice, one of them is dropped, and a fresh timestamp
    from the check can hide a daemon that stopped."""
    parent = Path(path).parent
    if not parent.is_dir() or not Path(TEXTFILE_DIR).is_dir():
        return
    if not parent.samefile(TEXTFILE_DIR) or systemd.main_pid(SERVICE) == 0:
        return
    raise UsageError(
        f"--metrics {shown(path)}: {SERVICE} runs and keeps its own metrics in "
        f"{TEXTFILE_DIR}; a second file of the same series there would hide its own (a "
        "stopped daemon among them). Leave out --metrics: the daemon's file is current"
    )


def _daemon_words(daemon: dict[str, Any] | None) -> str:
    if daemon is None:
        return (
            f"{SERVICE} is not running: nothing puts drift back between checks; this page "
            "shows the host as it is now."
        )
    if daemon["policy_is_the_files"] is None:
        return f"{SERVICE} runs; which policy it enforces cannot be told: {daemon['unknown']}."
    if daemon["policy_is_the_files"]:
        return (
            f"{SERVICE} runs and enforces these policy files (loaded at "
            f"{daemon['loaded_at']}); drift is put back as it happens."
        )
    return (
        f"{SERVICE} runs and enforces the policy it loaded at {daemon['loaded_at']}; the policy "
        "files differ from it (changed since, or rejected at the last reload): the rules below "
        "are the files', not the daemon's."
    )


def _check_replaceable(path: str, what: str) -> None:
    """Refuse, before any work, a file masktool would write by renaming a new one over it
    (metrics.write_atomic): its directory must exist, and what is there must be a regular
    file; renaming over a FIFO, a link or a device would replace it, not write to it."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise UsageError(f"{what}: {shown(str(parent))} is not a directory")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(
            f"{what}: it exists and is not a regular file; masktool replaces no other kind of file"
        )


def _daemons_copy(systemd: Systemd) -> tuple[bool, Saved | None]:
    """Whether masktool.service runs, and then the copy of the policy in force it keeps on
    disk (None when there is none). LastGoodError when the copy cannot be read."""
    from masktool import lastgood

    if systemd.main_pid(SERVICE) == 0:
        return False, None
    return True, lastgood.load(lastgood.state_path())


def _running_daemon(systemd: Systemd, deadline: float) -> int:
    """masktool.service's main process once the service is active. A SIGHUP during its start
    would end it before it can take the signal: while it starts, restarts or reloads, wait."""
    while True:
        state = systemd.list_units_by_names([SERVICE])[0].active_state
        if state == "active":
            pid = systemd.main_pid(SERVICE)
            if pid:
                return pid
        elif state not in ("activating", "reloading", "deactivating"):
            # (deactivating: a restart may be under way; a stop ends in inactive, said here)
            raise UsageError(
                f"{SERVICE} is not running ({state}); start it: systemctl start masktool"
            )
        if time.monotonic() > deadline:
            raise UsageError(f"{SERVICE} is still {state}; try again later")
        time.sleep(0.05)


def _check_daemon_pid(pid: int) -> None:
    """A PID given by hand is signalled as root: only masktool.service's daemon is. (0 and -1
    would signal a process group or every process.)"""
    if pid <= 1:
        raise UsageError(f"--pid {pid}: not a daemon's process ID")
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError as e:
        raise UsageError(f"--pid {pid}: no such process ({e.strerror})") from e
    ours = any(line.endswith(f"/{SERVICE}") for line in cgroup.splitlines())
    # argv: the interpreter, masktool's script, "daemon" (the watching process, also of the
    # service, runs `-m masktool.sentry` and ignores SIGHUP).
    if not ours or b"daemon" not in argv[1:3]:
        raise UsageError(
            f"--pid {pid}: not the daemon of {SERVICE}; leave --pid out to ask systemd"
        )


def _check_metrics_path(path: str) -> None:
    """Refuse, before any work, a metrics file masktool must not write: only a `*.prom` name
    (the only files node_exporter's textfile collector reads), in an existing directory, and
    a regular file if it exists, which is then replaced."""
    if not path.endswith(".prom") or path.rstrip("/").endswith("/.prom"):
        raise UsageError(
            f"--metrics {shown(path)!r}: the name must end in .prom (node_exporter reads only "
            "those, and masktool replaces no other file)"
        )
    _check_replaceable(path, f"cannot write metrics to {shown(path)}")


def _observe_plan(
    policy: Policy,
    root: str | None,
    systemd: Systemd | None,
    query: Sequence[str] = (),
    index: DependencyIndex | None = None,
    *,
    deps_of_masked: bool = True,
) -> Plan:
    return observe_and_plan(
        policy, root or "/", systemd, query, index=index, deps_of_masked=deps_of_masked
    )


def _dispatch(
    args: argparse.Namespace, policy: Policy, root: str | None, systemd: Systemd | None
) -> int:
    if args.command == "why":
        return _why(args.unit, policy, root, systemd)
    if args.command == "report":
        assert systemd is not None
        return _report(args, policy, systemd)
    if args.command == "check" and args.metrics is not None and systemd is not None:
        # Before the host is observed: a refused --metrics should cost nothing.
        _refuse_beside_the_daemon(args.metrics, systemd)
    index = DependencyIndex(root or "/")
    # check and plan show every unit's dependents; apply weighs them only where it may mask.
    show_all = args.command != "apply"
    p = _observe_plan(policy, root, systemd, index=index, deps_of_masked=show_all)
    if args.command == "check":
        doc, text = plan_json("check", p, root), check_text(p)
        if systemd is not None and not args.policy:
            daemon = _daemon_policy(policy, systemd)
            if daemon is not None:
                doc["daemon"] = daemon
                if daemon["policy_is_the_files"] is None:
                    hint = "" if os.geteuid() == 0 else " (run as root to know)"
                    text += (
                        f"\nnote: cannot tell whether {SERVICE} enforces these policy files: "
                        f"{daemon['unknown']}{hint}"
                    )
                elif not daemon["policy_is_the_files"]:
                    text += (
                        f"\nnote: {SERVICE} enforces the policy it loaded at "
                        f"{daemon['loaded_at']}; the policy files differ from it (changed, or "
                        "rejected at the last reload). `systemctl reload masktool` applies them"
                    )
        _emit(args, doc, text)
        if args.metrics is not None:
            from masktool.metrics import render, samples, write_atomic

            text = render(
                samples(p.units), policy_ok=True, last_reconcile=time.time(), mode=policy.mode
            )
            try:
                write_atomic(args.metrics, text)
            except OSError as e:
                raise UsageError(
                    f"cannot write metrics to {shown(args.metrics)}: {e.strerror or e}"
                ) from e
        return EXIT_OK if p.compliant else EXIT_DRIFT
    if args.command == "plan":
        _emit(args, plan_json("plan", p, root), plan_text(p))
        return EXIT_DRIFT if p.pending else EXIT_OK
    assert args.command == "apply"
    if policy.mode == "audit":
        doc = plan_json("apply", p, root) | {"applied": False}
        _emit(args, doc, check_text(p) + "\nmode audit: nothing changed")
        return EXIT_OK if p.compliant else EXIT_DRIFT
    from masktool import ledger

    tree = Tree(root or "/")
    led = ledger.load_quietly(tree) if p.actions else None
    # Masks masktool made before and is making again: drift put back ("restore").
    restored = ledger.acted_before(tree, led) if led is not None else set()
    outcome = carry_out(p, policy, root, systemd, started=time.monotonic(), index=index)
    res, after = outcome.result, outcome.after
    _record(p, res.changes, tree, led)
    _journal(outcome.entries(root=root, restored=restored))
    if args.json:
        import json

        doc = result_json(res) | {"applied": True, "after": plan_json("apply", after, root)}
        print(json.dumps(doc, indent=2))
    else:
        out = result_text(res)
        if out:
            print(out)
        print(check_text(after))
    return EXIT_OK if after.compliant and not res.errors else EXIT_DRIFT


def _record(p: Plan, changes: list[Change], tree: Tree, led: Ledger | None) -> None:
    """Note in the ledger what apply changed, for `masktool release`."""
    from masktool import ledger

    rules = {u.obs.unit: (str(u.rule.source), u.rule.trigger_of) for u in p.units}
    why = ledger.record(changes, tree, rules, led)
    if why is not None:
        print(f"masktool: warning: {why}", file=sys.stderr)


def _journal(entries: list[dict[str, str]]) -> None:
    if not entries:
        return
    try:
        send_all(entries, _code_location_once(journal_sender()))
    except OSError as e:
        # The changes are made and verified; only their record is missing. Say so loudly.
        print(f"masktool: warning: could not write to the journal: {e}", file=sys.stderr)


def _code_location_once(send: Sender) -> Sender:
    """`send`, told the caller's CODE_FILE, CODE_LINE and CODE_FUNC, as systemd.journal.send
    finds them when it is not told: worked out at the first entry, not again for each of the
    next (a walk of the stack and a stat of the source file each, a third of the time of a
    thousand entries). send_all sends every entry from the one call."""
    import traceback

    where: dict[str, str | int] = {}

    def sender(message: str, **fields: str) -> None:
        if not where:
            caller = traceback.extract_stack(limit=2)[0]
            where.update(CODE_FILE=caller.filename, CODE_LINE=caller.lineno or 0)
            where["CODE_FUNC"] = caller.name
        send(message, **where, **fields)

    return sender


def _why(name: str, policy: Policy, root: str | None, systemd: Systemd | None) -> int:
    why = unit_name_error(name)
    if why:
        raise UsageError(f"invalid unit name '{name}': {why}")
    tree = UnitTree(root or "/")
    target = tree.observe_files(name)
    # A rule covers the unit when it names it, an alias of it, or its template.
    names = {name, target.unit, template_of(target.unit)}
    resolved = {r.unit: tree.observe_files(r.unit).unit for r in policy.all_rules}
    rules = [r for r in policy.all_rules if r.unit in names or resolved[r.unit] == target.unit]
    effective = next((policy.rule_for(r.unit) for r in rules if policy.rule_for(r.unit)), None)
    exemptions = [e for e in policy.exemptions if e.unit in names]
    index = DependencyIndex(root or "/")
    obs: UnitObservation = observe([name], root or "/", systemd, [name], index)[name]
    unit_plan = None
    if effective is None and not exemptions and any(r.with_triggers for r in policy.rules):
        # No rule names it: it may be the activator of a unit whose rule says with_triggers,
        # masked by that rule (found by planning the policy, as apply and the daemon do).
        full = observe_and_plan(policy, root or "/", systemd, [name], index=index)
        unit_plan = next(
            (u for u in full.units if u.rule.trigger_of and u.obs.unit == target.unit), None
        )
        if unit_plan is not None:
            effective = unit_plan.rule
            rules = [effective]
    elif effective is not None:
        # Plan the whole policy: whether a dependent is masked too depends on the other rules.
        full = observe_and_plan(policy, root or "/", systemd, [effective.unit], index=index)
        unit_plan = next(u for u in full.units if u.rule is effective)
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    where = f"the tree at {root}" if root else os.uname().nodename
    print(f"# masktool {__version__}, {where}, {stamp}")
    print(
        why_text(
            name=name,
            obs=obs,
            rules=rules,
            effective=effective,
            exemptions=exemptions,
            unit_plan=unit_plan,
            policy=policy,
        )
    )
    return EXIT_OK


def _emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        import json

        print(json.dumps(doc, indent=2))
    else:
        print(text)
