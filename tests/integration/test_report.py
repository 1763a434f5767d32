"""`masktool report` in a booted systemd with the daemon running, read back the way an auditor
reads it: rendered by a real browser (headless Chromium), its DOM checked, a screenshot kept
in build/test-artifacts/."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.integration.conftest import Host, wait_until

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
OUT = "/root/report.html"
POLICY = """version: 1
include: [ospp]
exempt:
  - unit: kdump.service
    reason: "crash dumps kept <b>for</b> the kernel team"
mask:
  - unit: rp-a.service
    reason: "CIS 9.9.9: Ensure <script>alert(1)</script> rp-a is off"
    ref: xccdf_org.ssgproject.content_rule_service_rp-a_disabled
  - rp-c.service
"""


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium not installed: `make test` installs Debian's chromium")
    return found


def _browser(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(dir="/root") as profile:
        return subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )


class _Dom(HTMLParser):
    """The rendered DOM: each element's id and class, and the text under each id'd element
    and each table row."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.by_id: dict[str, str] = {}
        self.rows: list[tuple[dict[str, str], str]] = []
        self.attrs: list[tuple[str, str]] = []
        self._open: list[tuple[str, str, list[str]]] = []  # (kind, key, text parts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        self.attrs.extend((k, v) for k, v in a.items())
        if tag in ("meta", "br", "link", "img", "input"):
            return
        self.stack.append((tag, a))
        if "id" in a:
            self._open.append(("id", a["id"], []))
        elif tag == "tr":
            self._open.append(("tr", str(len(self.rows)), []))
            self.rows.append((a, ""))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            t, a = self.stack.pop()
            if ("id" in a or t == "tr") and self._open:
                kind, key, parts = self._open.pop()
                text = " ".join(" ".join(parts).split())
                if kind == "id":
                    self.by_id[key] = text
                else:
                    self.rows[int(key)] = (self.rows[int(key)][0], text)
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, _, parts in self._open:
            parts.append(data)


@pytest.fixture(scope="module")
def report(host: Host) -> Iterator[tuple[Host, subprocess.CompletedProcess[str]]]:
    for u in ("kdump.service", "debug-shell.service", "rp-a.service"):
        host.vendor_unit(u)
    # An admin's own unit file where a mask would go: refused, never overwritten.
    host.sb.write("/etc/systemd/system/rp-c.service", "[Service]\nExecStart=/bin/true\n")
    host.systemctl("daemon-reload")
    host.install_service()
    host.sb.write("/etc/masktool/policy.yaml", POLICY, 0o644)
    # The sandbox is shared with other tests, whose entries are in its journal too: the report
    # covers this test's time only (an auditor's --since does the same).
    since = datetime.now(UTC).isoformat()
    host.systemctl("start", "masktool.service")
    try:
        # Drift the daemon puts back: it must be in the report, with its latency.
        host.systemctl("unmask", "rp-a.service")
        wait_until(
            "the put-back journaled",
            lambda: bool(host.journal("MASKTOOL_UNIT=rp-a.service", "MASKTOOL_ACTION=restore")),
        )
        # As installed: the daemon's own copy of masktool, whose bundles it read.
        res = host.sb.run(["/usr/bin/masktool", "report", "--since", since, "-o", OUT], check=False)
        yield host, res
    finally:
        host.systemctl("stop", "masktool.service")
        for u in ("debug-shell.service", "systemd-coredump.socket", "ctrl-alt-del.target"):
            host.systemctl("unmask", u)
        host.systemctl("unmask", "rp-a.service")
        host.sb.path("/etc/masktool/policy.yaml").unlink()
        host.sb.path("/etc/systemd/system/rp-c.service").unlink()
        host.sb.path(OUT).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def dom(report: tuple[Host, subprocess.CompletedProcess[str]]) -> _Dom:
    host, _ = report
    page = host.sb.path(OUT)
    # Read by the browser from a copy outside the sandbox's tree, as an auditor's would be.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(page, ARTIFACTS / "report.html")
    shown = _browser("--dump-dom", (ARTIFACTS / "report.html").as_uri())
    assert shown.returncode == 0, shown.stderr[-2000:]
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    taken = _browser(
        f"--screenshot={shot}", "--window-size=1400,2000", (ARTIFACTS / "report.html").as_uri()
    )
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    d = _Dom()
    d.feed(shown.stdout)
    return d


def test_report_exits_like_check_and_says_where_it_went(
    report: tuple[Host, subprocess.CompletedProcess[str]],
) -> None:
    _, res = report
    assert res.returncode == 1, res.stderr  # rp-c.service is refused: not compliant
    assert res.stdout.startswith(f"report written to {OUT}: not compliant, 4 of 5 unit(s)"), (
        res.stdout
    )


def test_the_summary_on_top(dom: _Dom) -> None:
    assert dom.by_id["verdict"] == "not compliant"
    assert dom.by_id["n-compliant"] == "4 compliant"
    assert dom.by_id["n-refused"] == "1 refused"
    assert dom.by_id["n-drift"] == "0 in drift"
    assert dom.by_id["n-restores"].startswith("1 put back since")
    assert dom.by_id["latency"].endswith("ms)")
    assert "masktool.service runs and enforces these policy files" in dom.by_id["daemon"]
    assert "journal-problem" not in dom.by_id


def test_every_rule_with_benchmark_ref_file_line_and_what_systemd_says(dom: _Dom) -> None:
    rules = {a["data-unit"]: text for a, text in dom.rows if "rule" in a.get("class", "")}
    assert set(rules) == {
        "debug-shell.service",
        "systemd-coredump.socket",
        "ctrl-alt-del.target",
        "rp-a.service",
        "rp-c.service",
    }
    a = rules["rp-a.service"]
    # The reason's markup shows as text: the browser made no element of it.
    assert "CIS 9.9.9 : Ensure <script>alert(1)</script> rp-a is off" in a, a
    # The ref without the prefix every ComplianceAsCode id shares (the column's head has it).
    assert " service_rp-a_disabled " in a
    assert "/etc/masktool/policy.yaml:7" in a
    assert "masked/inactive" in a and a.endswith("compliant")
    d = rules["debug-shell.service"]
    assert "service_debug-shell_disabled" in d and "via ospp" in d
    assert " service_debug-shell_disabled " in d
    c = rules["rp-c.service"]
    assert "refused" in c and "conflict" in c and "is a unit file" in c


def test_the_rules_table_names_the_ref_prefix_once(dom: _Dom) -> None:
    assert "Checked by xccdf_org.ssgproject.content_rule_" in dom.by_id["rules"]


def test_exemptions_with_their_reason_and_what_they_drop(dom: _Dom) -> None:
    rows = [text for a, text in dom.rows if a.get("class") == "exemption"]
    assert len(rows) == 1
    assert rows[0].startswith("kdump.service crash dumps kept <b>for</b> the kernel team")
    assert "/etc/masktool/policy.yaml:4" in rows[0] and "ospp:" in rows[0]


def test_policy_files_with_their_sha256(
    dom: _Dom,
) -> None:
    text = dom.by_id["files"]
    site = hashlib.sha256(POLICY.encode()).hexdigest()
    assert f"/etc/masktool/policy.yaml {site}" in text
    bundle = (REPO / "policies" / "ospp.yaml").read_bytes()
    assert f"/opt/masktool-src/policies/ospp.yaml {hashlib.sha256(bundle).hexdigest()}" in text


def test_the_journal_put_back_refusal_and_masks(dom: _Dom) -> None:
    events = [(a["class"], text) for a, text in dom.rows if "event" in a.get("class", "")]
    restores = [t for c, t in events if c == "event restore"]
    assert len(restores) == 1
    assert "rp-a.service unmasked" in restores[0] and " ms " in restores[0]
    assert "masktool put rp-a.service back" in restores[0]
    assert any(c == "event refuse" and "rp-c.service" in t for c, t in events)
    assert {"event mask", "event policy-loaded"} <= {c for c, _ in events}


def test_the_page_holds_no_script_and_fetches_nothing(dom: _Dom) -> None:
    assert "script" not in dom.tags and "img" not in dom.tags
    assert not [(k, v) for k, v in dom.attrs if k in ("src", "href")]


def test_not_as_root_the_page_says_the_journal_was_not_read(
    report: tuple[Host, subprocess.CompletedProcess[str]],
) -> None:
    """Found by a hostile review: a user's own journal made the page look complete."""
    host, _ = report
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    res = host.sb.run([*as_nobody, "/usr/bin/masktool", "report", "-o", "-"], check=False)
    assert res.returncode in (0, 1), res.stderr
    d = _Dom()
    d.feed(res.stdout)
    assert d.by_id["journal-problem"] == (
        "Journal not read: the system journal is readable by root and groups systemd-journal "
        "and adm only"
    )


def test_since_is_taken_as_journalctl_users_write_it(host: Host) -> None:
    res = host.masktool_run("report", "--since", "-1h", "--policy", "/dev/null/none")
    assert "--since" not in res.stderr and "expected one argument" not in res.stderr, res.stderr


def test_an_unknown_since_and_an_output_that_is_not_a_file_are_refused(host: Host) -> None:
    res = host.masktool_run("report", "--since", "last tuesday")
    assert res.returncode == 2 and "give -30d, -12h" in res.stderr, res.stderr
    fifo = "/root/report-fifo.html"
    os.mkfifo(host.sb.path(fifo))
    try:
        res = host.masktool_run("report", "-o", fifo)
        assert res.returncode == 2 and "not a regular file" in res.stderr, res.stderr
    finally:
        host.sb.path(fifo).unlink()
