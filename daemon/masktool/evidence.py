"""`masktool report`: what an auditor files. A check of the host (rules, exemptions, what
systemd reports now) and masktool's journal entries since WHEN, gathered into plain data by
pure functions, then rendered once by a Jinja2 template with autoescaping on: no unit name,
reason or journal message a local user could shape ever reaches the page as markup.

The journal is read at the edge (`read_events`), and only entries journald attributes to
root: any local user can send an entry carrying MASKTOOL_* fields.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from masktool import __version__
from masktool.plan import Plan, UnitPlan
from masktool.policy import Exemption, Policy, Rule
from masktool.report import rule_col, systemd_col

# The journal's kinds an auditor asks about: something undid the policy and was put back, a
# refusal, an error, a flap, a policy rejected; and the changes masktool made.
EVENT_KINDS = (
    "restore",
    "drift",
    "refuse",
    "error",
    "flap",
    "policy-rejected",
    "policy-loaded",
    "mask",
    "unmask",
    "stop",
    "release",
)
# A page an auditor can print: at most this many routine entries (masks made, policy loads) are
# listed. What went wrong (errors, refusals, rejections, flaps) is always listed, and the
# counts and latencies always cover every entry.
MAX_EVENTS = 2000
ALWAYS_LISTED = frozenset({"error", "policy-rejected", "refuse", "flap", "drift"})


class SinceError(ValueError):
    """--since is not a time masktool understands."""


_RELATIVE = re.compile(r"-(\d+)\s*(s|min|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime) -> datetime:
    """WHEN as journalctl takes the common forms: -30d, -12h, -90min, today, yesterday, a date
    (2026-11-01) or a time (2026-11-01 08:00, 2026-11-01T08:00:00Z). A time with no zone is
    UTC: reports are compared across hosts."""
    when = _parse_when(text.strip(), now)
    if when > now:
        raise SinceError(f"--since {text!r} is in the future ({when:%Y-%m-%d %H:%M:%S} UTC)")
    # Before the journal's epoch nothing was written: from the beginning, then.
    return max(when, EPOCH)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _parse_when(t: str, now: datetime) -> datetime:
    m = _RELATIVE.fullmatch(t)
    if m:
        try:
            return now - timedelta(seconds=int(m[1]) * _UNITS[m[2]])
        except OverflowError:
            return EPOCH
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if t == "today":
        return midnight
    if t == "yesterday":
        return midnight - timedelta(days=1)
    try:
        when = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise SinceError(
            f"--since {t!r}: give -30d, -12h, -90min, today, yesterday, a date such as "
            "2026-11-01 or a time such as '2026-11-01 08:00' (UTC)"
        ) from None
    try:
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        return EPOCH


@dataclass(frozen=True)
class Event:
    """One journal entry of masktool's, as the report shows it."""

    when: datetime
    kind: str
    unit: str
    message: str
    was: str = ""  # what masktool found (drift put back)
    latency_ms: float | None = None  # event seen to verified by systemd
    rule: str = ""  # file:line
    ref: str = ""


@dataclass(frozen=True)
class Events:
    """What the journal held for the report, and what keeps it from being the whole story."""

    items: tuple[Event, ...]  # listed on the page (see MAX_EVENTS)
    total: int  # every entry found
    problem: str = ""  # why the journal could not be read (not root, say)
    counts: tuple[tuple[str, int], ...] = ()  # every entry, by kind
    latencies_ms: tuple[float, ...] = ()  # of every put-back, sorted

    @staticmethod
    def of(items: Iterable[Event], problem: str = "") -> Events:
        """Events listing all of `items` (for tests and small journals)."""
        listed = tuple(items)
        acc = _Tally()
        for e in listed:
            acc.add(e)
        return Events(listed, len(listed), problem, *acc.totals())


class _Tally:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.latencies: list[float] = []

    def add(self, e: Event) -> None:
        self.counts[e.kind] = self.counts.get(e.kind, 0) + 1
        if e.kind == "restore" and e.latency_ms is not None:
            self.latencies.append(e.latency_ms)

    def totals(self) -> tuple[tuple[tuple[str, int], ...], tuple[float, ...]]:
        return tuple(sorted(self.counts.items())), tuple(sorted(self.latencies))


def _journal_problem() -> str:
    """Why the system journal may be out of reach: only root and the groups journald grants
    read it; anyone else sees their own user journal at most, which holds no masktool entry."""
    if os.geteuid() == 0:
        return ""
    import grp

    readers = set()
    for name in ("systemd-journal", "adm", "wheel"):
        try:
            readers.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            continue  # no such group on this system
    if readers & set(os.getgroups()):
        return ""
    return "the system journal is readable by root and groups systemd-journal and adm only"


def read_events(since: datetime, until: datetime | None = None) -> Events:
    """masktool's journal entries about this host from `since` on, sent by root (the daemon,
    or the CLI run by root), oldest first. Entries of `--root` runs are about another tree (a
    rescue mount, an image) and are left out."""
    from systemd import journal

    problem = _journal_problem()
    try:
        reader = journal.Reader()
    except OSError as e:
        return Events((), 0, f"the journal cannot be opened: {e.strerror or e}")
    with reader:
        reader.add_match(SYSLOG_IDENTIFIER="masktool")
        reader.add_match(_UID="0")
        reader.seek_realtime(since)
        return collect(reader, problem, until)


def collect(
    entries: Iterable[Mapping[str, Any]], problem: str = "", until: datetime | None = None
) -> Events:
    """The report's events from journal entries, oldest first (see MAX_EVENTS)."""
    items: list[Event] = []
    routine = 0
    total = 0
    tally = _Tally()
    for entry in entries:
        when = entry.get("__REALTIME_TIMESTAMP")
        kind = str(entry.get("MASKTOOL_ACTION", ""))
        if not isinstance(when, datetime) or kind not in EVENT_KINDS:
            continue
        if "MASKTOOL_ROOT" in entry:
            continue
        if until is not None and when > until:
            break
        e = _event(entry, when.astimezone(UTC), kind)
        total += 1
        tally.add(e)
        if kind in ALWAYS_LISTED:
            items.append(e)
        elif routine < MAX_EVENTS:
            routine += 1
            items.append(e)
    return Events(tuple(items), total, problem, *tally.totals())


def _event(entry: Mapping[str, Any], when: datetime, kind: str) -> Event:
    latency: float | None = None
    raw = entry.get("MASKTOOL_LATENCY_USEC")
    if raw is not None:
        try:
            latency = int(str(raw)) / 1000
        except ValueError:
            latency = None
    return Event(
        when=when,
        kind=kind,
        unit=str(entry.get("MASKTOOL_UNIT", "")),
        message=str(entry.get("MESSAGE", "")),
        was=str(entry.get("MASKTOOL_WAS", "")),
        latency_ms=latency,
        rule=str(entry.get("MASKTOOL_POLICY", "")),
        ref=str(entry.get("MASKTOOL_REF", "")),
    )


# -- the page's data ------------------------------------------------------------------------

_BENCHMARK_ID = re.compile(r"([A-Za-z0-9][A-Za-z0-9 ._/-]{0,38}[A-Za-z0-9]): (.+)", re.S)


def split_reason(reason: str) -> tuple[str, str]:
    """A bundle's reason reads "ID: title" ("RHEL-09-213115: The kdump service ...",
    "CIS 2.1.1: Ensure ..."): the benchmark id and title, or ("", reason) when it does not."""
    m = _BENCHMARK_ID.fullmatch(reason.strip())
    return (m[1], m[2]) if m else ("", reason)


@dataclass(frozen=True)
class RuleRow:
    unit: str
    want: str
    benchmark_id: str
    title: str
    ref: str
    where: str  # file:line, or bundle:line for a bundled rule
    via: str  # include chain
    state: str
    systemd: str  # LoadState/ActiveState as systemd reports it now
    result: str  # compliant | drift | refused
    refusal: str
    trigger_of: str


@dataclass(frozen=True)
class ExemptRow:
    unit: str
    reason: str
    where: str
    drops: str  # the bundled rule(s) it drops, bundle:line


@dataclass(frozen=True)
class PolicyFile:
    path: str
    sha256: str  # of the text the rules were read from


@dataclass(frozen=True)
class Host:
    name: str
    os: str
    kernel: str
    machine_id: str
    boot_id: str


@dataclass(frozen=True)
class Summary:
    units: int
    compliant: int
    drift: int
    refused: int
    restores: int
    refusals_journaled: int
    errors: int
    latency_median_ms: float | None
    latency_max_ms: float | None

    @property
    def verdict(self) -> str:
        if self.drift or self.refused:
            return "not compliant"
        return "compliant"


@dataclass(frozen=True)
class ReportData:
    host: Host
    generated: datetime
    since: datetime
    version: str
    mode: str
    daemon: str  # what the running daemon enforces, in words
    files: tuple[PolicyFile, ...]
    summary: Summary
    rules: tuple[RuleRow, ...]
    exemptions: tuple[ExemptRow, ...]
    events: Events


def _result(u: UnitPlan) -> str:
    return "compliant" if u.compliant else "refused" if u.refusal else "drift"


def rule_rows(p: Plan) -> tuple[RuleRow, ...]:
    rows = []
    for u in p.units:
        r = u.rule
        bid, title = split_reason(r.reason)
        rows.append(
            RuleRow(
                unit=u.obs.name,
                want=u.want,
                benchmark_id=bid,
                title=title,
                ref=r.ref,
                where=rule_col(r),
                via=" > ".join(r.via),
                state=u.state.value,
                systemd=systemd_col(u, p.live),
                result=_result(u),
                refusal=u.refusal,
                trigger_of=r.trigger_of,
            )
        )
    return tuple(rows)


def exempt_rows(
    exemptions: Iterable[Exemption], all_rules: Iterable[Rule]
) -> tuple[ExemptRow, ...]:
    rules = list(all_rules)
    rows = []
    for e in exemptions:
        drops = ", ".join(rule_col(r) for r in rules if r.unit == e.unit and r.via)
        rows.append(ExemptRow(e.unit, e.reason, str(e.source), drops))
    return tuple(rows)


def summarize(rows: Iterable[RuleRow], events: Events) -> Summary:
    """The page's summary, from every rule and every journal entry (listed or not)."""
    rows = list(rows)
    counts = dict(events.counts)
    latencies = events.latencies_ms
    median = latencies[len(latencies) // 2] if latencies else None
    return Summary(
        units=len(rows),
        compliant=sum(r.result == "compliant" for r in rows),
        drift=sum(r.result == "drift" for r in rows),
        refused=sum(r.result == "refused" for r in rows),
        restores=counts.get("restore", 0),
        refusals_journaled=counts.get("refuse", 0),
        errors=counts.get("error", 0) + counts.get("policy-rejected", 0),
        latency_median_ms=median,
        latency_max_ms=latencies[-1] if latencies else None,
    )


def policy_files(policy: Policy) -> tuple[PolicyFile, ...]:
    """Each file with the SHA-256 of the text its rules were read from."""
    import hashlib

    return tuple(
        PolicyFile(path, hashlib.sha256(text.encode()).hexdigest())
        for path, text in zip(policy.files, policy.texts, strict=True)
    )


def _first_line(path: str) -> str:
    try:
        return Path(path).read_text().strip().splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return ""


def _os_name() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?$', text, re.M)
    return m[1] if m else ""


def this_host() -> Host:
    u = os.uname()
    return Host(
        name=socket.getfqdn() or u.nodename,
        os=_os_name(),
        kernel=f"{u.sysname} {u.release} {u.machine}",
        machine_id=_first_line("/etc/machine-id"),
        boot_id=_first_line("/proc/sys/kernel/random/boot_id"),
    )


def gather(
    policy: Policy,
    p: Plan,
    events: Events,
    *,
    host: Host,
    generated: datetime,
    since: datetime,
    daemon: str,
) -> ReportData:
    rows = rule_rows(p)
    summary = summarize(rows, events)
    return ReportData(
        host=host,
        generated=generated,
        since=since,
        version=__version__,
        mode=policy.mode,
        daemon=daemon,
        files=policy_files(policy),
        summary=summary,
        rules=rows,
        exemptions=exempt_rows(policy.exemptions, policy.all_rules),
        events=events,
    )


def render(data: ReportData) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = lambda d: d.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    env.filters["ms"] = lambda v: "" if v is None else f"{v:.1f} ms"
    return env.get_template("report.html").render(r=data, max_events=MAX_EVENTS)
