"""`masktool report`'s pure parts: WHEN, a bundle reason split into benchmark id and title, and
a page that shows hostile text as text."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from masktool import evidence
from masktool.evidence import Event, Events, Host, ReportData, RuleRow, Summary
from masktool.policy import load_policy

NOW = datetime(2026, 11, 26, 12, 30, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("-30d", datetime(2026, 10, 27, 12, 30, tzinfo=UTC)),
        ("-12h", datetime(2026, 11, 26, 0, 30, tzinfo=UTC)),
        ("-90min", datetime(2026, 11, 26, 11, 0, tzinfo=UTC)),
        ("-2w", datetime(2026, 11, 12, 12, 30, tzinfo=UTC)),
        ("today", datetime(2026, 11, 26, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 25, tzinfo=UTC)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01 08:00", datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),
        ("2026-11-01T08:00:00Z", datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),
        ("2026-11-01T08:00:00+02:00", datetime(2026, 11, 1, 6, 0, tzinfo=UTC)),
    ],
)
def test_since_takes_what_journalctl_users_type(text: str, want: datetime) -> None:
    assert evidence.parse_since(text, NOW) == want


def test_since_before_the_epoch_or_beyond_reckoning_means_from_the_beginning() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for text in ("1969-12-31", "0001-01-01", "-99999999d", "-9999999999d"):
        assert evidence.parse_since(text, NOW) == epoch, text


def test_since_in_the_future_is_refused() -> None:
    with pytest.raises(evidence.SinceError, match="in the future"):
        evidence.parse_since("9999-12-31", NOW)


@pytest.mark.parametrize("text", ["30d", "last week", "", "-d", "2026-13-01"])
def test_a_since_not_understood_says_what_is(text: str) -> None:
    with pytest.raises(evidence.SinceError, match="give -30d, -12h"):
        evidence.parse_since(text, NOW)


@pytest.mark.parametrize(
    ("reason", "want"),
    [
        (
            "RHEL-09-213115: The kdump service on RHEL 9 must be disabled",
            ("RHEL-09-213115", "The kdump service on RHEL 9 must be disabled"),
        ),
        ("CIS 2.1.1: Ensure autofs services are not in use", ("CIS 2.1.1", "Ensure autofs ...")),
        ("print server", ("", "print server")),
        ("", ("", "")),
        ("needed: by the team: really", ("needed", "by the team: really")),
    ],
)
def test_a_reason_splits_into_benchmark_id_and_title(reason: str, want: tuple[str, str]) -> None:
    got = evidence.split_reason(reason)
    if want[1].endswith("..."):
        assert got[0] == want[0] and got[1].startswith(want[1][:-3])
    else:
        assert got == want


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _data(unit: str, reason: str, message: str) -> ReportData:
    row = RuleRow(
        unit=unit,
        want="masked",
        benchmark_id="",
        title=reason,
        ref="",
        where="/etc/masktool/policy.yaml:4",
        via="",
        state="masked",
        systemd="masked/inactive",
        result="compliant",
        refusal="",
        trigger_of="",
    )
    events = Events.of([Event(NOW, "restore", unit, message, "unmasked", 2.5)])
    summary = evidence.summarize([row], events)
    return ReportData(
        host=Host("web<01>", "Debian", "Linux", "m", "b"),
        generated=NOW,
        since=NOW,
        version="0",
        mode="enforce",
        daemon="masktool.service runs",
        files=(evidence.PolicyFile("/etc/masktool/policy.yaml", "ab" * 32),),
        summary=summary,
        rules=(row,),
        exemptions=(),
        events=events,
    )


def test_hostile_text_reaches_the_page_as_text_never_as_markup() -> None:
    """A unit name cannot carry markup (systemd's rules), but a reason, a host name and a
    journal MESSAGE can: any of them must show as written."""
    page = evidence.render(
        _data("a.service", '<script>alert(1)</script> "x"', "<img src=x onerror=alert(2)>")
    )
    p = _Text()
    p.feed(page)
    assert "script" not in p.tags and "img" not in p.tags
    text = "".join(p.text)
    assert '<script>alert(1)</script> "x"' in text
    assert "<img src=x onerror=alert(2)>" in text
    assert "web<01>" in text


def test_the_page_fetches_nothing() -> None:
    page = evidence.render(_data("a.service", "r", "m"))
    assert "default-src 'none'" in page
    for attr in ("src=", "href=", "url(", "@import"):
        assert attr not in page, attr


def test_the_summary_counts_and_latencies() -> None:
    rows = [
        RuleRow("a", "masked", "", "", "", "", "", "masked", "", result, "", "")
        for result in ("compliant", "compliant", "drift", "refused")
    ]
    events = Events.of(
        Event(NOW, kind, "a", "", latency_ms=lat)
        for kind, lat in [("restore", 3.0), ("restore", 1.0), ("restore", 9.0), ("error", None)]
    )
    s = evidence.summarize(rows, events)
    counts = dict(events.counts)
    assert s == Summary(4, 2, 1, 1, 3, 0, 1, 3.0, 9.0)
    assert s.verdict == "not compliant"
    assert counts == {"restore": 3, "error": 1}


def _entry(kind: str, i: int, **extra: str) -> dict[str, object]:
    return {
        "__REALTIME_TIMESTAMP": NOW + timedelta(seconds=i),
        "MASKTOOL_ACTION": kind,
        "MASKTOOL_UNIT": f"u{i}.service",
        "MASKTOOL_LATENCY_USEC": str(1000 * (i % 7 + 1)),
        **extra,
    }


def test_a_long_journal_lists_every_error_and_counts_every_entry() -> None:
    """Found by a hostile review: past the cap, a late error and the slowest put-back were
    missing from the page and its summary, which then said "compliant, 0 errors"."""
    n = evidence.MAX_EVENTS + 1000
    entries = [_entry("restore", i) for i in range(n)]
    entries.append(_entry("error", n))
    entries.append(_entry("restore", n + 1, MASKTOOL_LATENCY_USEC="90000000"))
    got = evidence.collect(entries)
    assert got.total == n + 2
    assert len(got.items) == evidence.MAX_EVENTS + 1
    assert got.items[-1].kind == "error"
    summary = evidence.summarize([], got)
    assert dict(got.counts) == {"restore": n + 1, "error": 1}
    assert summary.errors == 1 and summary.restores == n + 1
    assert summary.latency_max_ms == 90000.0


def test_entries_of_root_runs_are_about_another_tree_and_left_out() -> None:
    got = evidence.collect([_entry("mask", 1, MASKTOOL_ROOT="/srv/img"), _entry("mask", 2)])
    assert [e.unit for e in got.items] == ["u2.service"] and got.total == 1


def test_a_files_digest_is_of_the_text_its_rules_came_from(tmp_path: Path) -> None:
    """Found by a hostile review: hashed at render time, an edit in between paired the old
    rules with the new file's hash."""
    path = tmp_path / "p.yaml"
    text = "version: 1\nmask:\n  - a.service\n"
    path.write_text(text)
    path.chmod(0o644)
    policy = load_policy([str(path)])
    path.write_text(text + "  - b.service\n")
    files = evidence.policy_files(policy)
    assert files == (evidence.PolicyFile(str(path), hashlib.sha256(text.encode()).hexdigest()),)
