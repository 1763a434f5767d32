"""The bundles proven against the checks auditors run: for every shipped bundle, in a booted
systemd with the units running, OpenSCAP evaluates ComplianceAsCode's published OVAL check of
each rule's `ref` (SCAP Security Guide, Debian's ssg-* packages). Each must fail before
`masktool apply` and pass after; unmasking one unit again must make its check fail (the
negative control). What is evaluated is the part of each check that asks systemd: a service
rule also passes when its package is not installed, which on this Debian host is true of every
RHEL package, and would prove nothing. The table this writes is the one in the README."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests import scap
from tests.integration.conftest import Host, require_boot
from tests.sandbox import Sandbox, service_binds

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
BUNDLES = sorted(p.stem for p in POLICIES.glob("*.yaml"))
ARTIFACTS = REPO / "build" / "test-artifacts"
# Which product's copy of a check to read first: the bundle's own system where SSG has it.
DEBIAN_FIRST = ("ubuntu2204", "rhel9", "fedora")
PRODUCT_ORDER = {
    "cis-fedora": ("fedora", "rhel9", "ubuntu2204"),
    "cis-debian12-l1": DEBIAN_FIRST,
    "cis-ubuntu2204-l1": DEBIAN_FIRST,
    "stig-ubuntu2204": DEBIAN_FIRST,
}
# Units systemd itself ships on this host, used as they are: ctrl-alt-del.target's check reads
# only its link in /etc; debug-shell.service is loaded (enabled) but must never start: it
# would open a root shell on the host's /dev/tty9.
NEVER_START = {"ctrl-alt-del.target", "debug-shell.service"}
# For the bundles of the systems the package installs on, the units of real Debian packages
# (downloaded by make, installed in the sandbox only): their maintainer scripts enable and
# start them as on a real host. Stand-ins remain for what these do not ship.
UNIT_DEBS = REPO / "build" / "tools" / "debs"
REAL_PACKAGES_FOR = {"cis-debian12-l1", "cis-ubuntu2204-l1"}
WORK = "/root/scap"
# The SSG profile that stands for a bundle's benchmark, where SSG 0.1.65 has one: whether it
# selects a rule tells how much of the benchmark the proof covers (its CIS profiles check most
# services by package removal, which no mask can satisfy).
PROFILE = {
    "stig-rhel9": ("rhel9", "stig"),
    "ospp": ("rhel9", "ospp"),
    "cis-rhel9-l1": ("rhel9", "cis_server_l1"),
    "cis-ubuntu2204-l1": ("ubuntu2204", "cis_level1_server"),
}
README_BEGIN = "<!-- openscap-proof:begin -->"
README_END = "<!-- openscap-proof:end -->"


@dataclass(frozen=True)
class Row:
    bundle: str
    rule: str
    units: tuple[str, ...]
    origin: str = ""  # where the units come from: a Debian package, or stand-ins
    product: str = ""
    before: str = ""
    after: str = ""
    control: str = ""  # after unmasking one of its units again
    note: str = ""
    in_profile: str = ""  # yes | no | "" (no SSG profile for the bundle's benchmark)


def _needs_content() -> None:
    if shutil.which("oscap") is None or not (scap.CONTENT / ".unpacked").exists():
        pytest.skip("oscap or the SSG datastreams missing: `make test` installs them")
    if not (UNIT_DEBS / ".downloaded").exists():
        pytest.skip("the Debian packages of the units are missing: `make test` downloads them")


def _install_packages(sb: Sandbox) -> None:
    res = sb.sh(f"DEBIAN_FRONTEND=noninteractive dpkg -i {UNIT_DEBS}/*.deb", check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def _bundle_rules(bundle: str) -> dict[str, list[str]]:
    """rule -> the bundle's units whose rule names it, in bundle order ("" for no ref)."""
    out: dict[str, list[str]] = {}
    for r in yaml.safe_load((POLICIES / f"{bundle}.yaml").read_text())["mask"]:
        unit, ref = (r["unit"], r.get("ref", "")) if isinstance(r, dict) else (r, "")
        out.setdefault(ref.removeprefix(scap.REF_PREFIX), []).append(unit)
    return out


def _in_profile(bundle: str, rule: str) -> str:
    if bundle not in PROFILE:
        return ""
    product, profile = PROFILE[bundle]
    return "yes" if rule in scap.datastream(product).profiles[profile] else "no"


def _plan(bundle: str) -> tuple[list[tuple[scap.Check, tuple[str, ...]]], list[Row]]:
    """The checks that can be evaluated (with the units they examine), and a row saying why
    for each that cannot."""
    order = PRODUCT_ORDER.get(bundle, scap.PRODUCTS)
    checks, rows = [], []
    for rule, units in _bundle_rules(bundle).items():
        if not rule:
            note = "no ComplianceAsCode rule named (no `ref:`): nothing to run"
            rows.append(Row(bundle, "", tuple(units), note=note))
            continue
        check = scap.find_check(rule, order)
        profile = _in_profile(bundle, rule)
        if check is None:
            note = "no published check in SSG 0.1.65"
            rows.append(Row(bundle, rule, tuple(units), note=note, in_profile=profile))
            continue
        examined = tuple(u for u in units if check.examines(u))
        if not examined:
            looks = " or ".join(f"`{p}`" for p in check.unit_patterns or check.paths)
            note = f"not this unit: the check examines units matching {looks}"
            rows.append(
                Row(
                    bundle, rule, tuple(units), product=check.product, note=note, in_profile=profile
                )
            )
            continue
        checks.append((check, examined))
        if len(examined) < len(units):
            others = tuple(u for u in units if u not in examined)
            note = "not these units: the check examines only " + ", ".join(examined)
            rows.append(
                Row(bundle, rule, others, product=check.product, note=note, in_profile=profile)
            )
    return checks, rows


def _unit_file_exists(sb: Sandbox, unit: str) -> bool:
    return any(
        sb.path(f"{d}/{unit}").exists()
        for d in ("/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system")
    )


def _stand_in(h: Host, unit: str) -> None:
    """A unit the host has no package for: one that runs (or listens) until masked."""
    if unit.endswith(".socket"):
        h.vendor_unit(
            unit,
            f"[Socket]\nListenStream=/run/stand-in-{unit}\n[Install]\nWantedBy=sockets.target\n",
        )
        service = unit.removesuffix(".socket") + ".service"
        if not _unit_file_exists(h.sb, service):
            h.vendor_unit(service, "[Service]\nExecStart=/bin/sleep infinity\n")
    else:
        h.vendor_unit(
            unit,
            "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
        )


def _package_of(sb: Sandbox, unit: str) -> str:
    for d in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        res = sb.run(["dpkg-query", "-S", f"{d}/{unit}"], check=False)
        if res.returncode == 0:
            return res.stdout.split(":", 1)[0]
    return ""


def _prepare(h: Host, units: list[str]) -> dict[str, str]:
    """Every examined unit loaded and, where it may, running: the state the check must fail.
    Returns where each unit comes from: the Debian package that ships it, or a stand-in."""
    started = []
    origin = {}
    for unit in units:
        package = _package_of(h.sb, unit)
        origin[unit] = f"Debian {package}" if package else "stand-in"
        if unit in NEVER_START:
            continue
        if not _unit_file_exists(h.sb, unit):
            _stand_in(h, unit)
        started.append(unit)
    if "debug-shell.service" in units:
        # Loaded (enabled) so the check sees it; a drop-in keeps it from ever starting.
        h.sb.write(
            "/etc/systemd/system/debug-shell.service.d/never.conf",
            "[Unit]\nConditionPathExists=/never/start/a/root/shell\n",
        )
    h.systemctl("daemon-reload")
    if "debug-shell.service" in units:
        h.systemctl("enable", "debug-shell.service")
    if started:
        # Kept loaded whatever becomes of them (bluetooth.service is wanted only by
        # bluetooth.target, which nothing pulls in without the hardware): the check sees only
        # the units systemd has loaded.
        h.systemctl("add-wants", "multi-user.target", *started)
    if started:
        # A real daemon may fail to start in the sandbox (dovecot without certificates):
        # loaded and not masked is what the check must fail on.
        h.systemctl("enable", "--now", *started, check=False)
    return origin


def _evaluate(sb: Sandbox, checks: list[scap.Check]) -> dict[str, scap.Verdict]:
    out: dict[str, scap.Verdict] = {}
    for product in sorted({c.product for c in checks}):
        mine = [c for c in checks if c.product == product]
        doc = f"{WORK}/{product}.xml"
        sb.path(WORK).mkdir(parents=True, exist_ok=True)
        sb.path(doc).write_bytes(scap.oval_document(mine))
        res = sb.run(
            ["oscap", "oval", "eval", "--results", f"{WORK}/{product}-results.xml", doc],
            check=False,
        )
        # oscap exits 0 whatever the checks decided: the results file says.
        assert res.returncode == 0, res.stdout + res.stderr
        out |= scap.results(sb.path(f"{WORK}/{product}-results.xml").read_text(), mine)
    return out


def _links_to_dev_null(sb: Sandbox, inside: str) -> bool:
    res = sb.run(["readlink", inside], check=False)
    return res.returncode == 0 and res.stdout.strip() == "/dev/null"


def _control_unit(units: tuple[str, ...]) -> str:
    startable = [u for u in units if u not in NEVER_START]
    return next((u for u in startable if u.endswith(".service")), (startable or list(units))[0])


def _word(v: scap.Verdict) -> str:
    if v.result == "true":
        return "vacuous" if v.vacuous else "pass"
    return "fail" if v.result == "false" else v.result


@cache
def _prove(bundle: str) -> tuple[Row, ...]:
    _needs_content()
    require_boot()
    checks, rows = _plan(bundle)
    venv = Path(sys.executable).parent.parent
    with Sandbox(binds=service_binds(venv)) as sb:
        h = Host(sb)
        if bundle in REAL_PACKAGES_FOR:
            _install_packages(sb)
        units = [u for _, us in checks for u in us]
        # A check looks at every unit its pattern matches: all of the bundle's must run.
        origin = _prepare(h, units)
        only = [c for c, _ in checks]
        before = _evaluate(sb, only)
        policy = h.policy(f"proof-{bundle}", f"version: 1\ninclude: [{bundle}]\n")
        applied = h.masktool_run("apply", "--policy", policy)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        after = _evaluate(sb, only)
        # Where each mask is: a check reads what systemd says now, and a mask in /run would
        # pass it until the next boot.
        persistent = {
            u: _links_to_dev_null(sb, f"/etc/systemd/system/{u}") for _, us in checks for u in us
        }
        # The negative control: one unit of each check unmasked and started again (the
        # checks share no unit: one evaluation answers for all).
        # A service where the check has one: a socket cannot start while its service is
        # masked, so unmasking the socket would leave the service half untried.
        undone = [_control_unit(us) for _, us in checks]
        h.systemctl("unmask", *undone)
        startable = [u for u in undone if u not in NEVER_START]
        if startable:
            # Unmasked is enough to fail a check; started where a partner left masked (a
            # socket and its service) does not forbid it.
            h.systemctl("start", *startable, check=False)
        control = _evaluate(sb, only)
    for check, examined in checks:
        done = after[check.rule]
        word = _word(done)
        if word == "pass" and not all(done.saw_masked(u) for u in examined):
            word = "incomplete"  # true, but not on every unit the bundle names
        if word == "pass" and not all(persistent[u] for u in examined):
            word = "runtime only"
        note = "the whole check"
        if check.packages:
            note = f"its systemd part (not its branch for package {', '.join(check.packages)})"
        rows.append(
            Row(
                bundle,
                check.rule,
                examined,
                ", ".join(dict.fromkeys(origin[u] for u in examined)),
                check.product,
                _word(before[check.rule]),
                word,
                _word(control[check.rule]),
                note,
                _in_profile(bundle, check.rule),
            )
        )
    order = list(_bundle_rules(bundle))
    return tuple(sorted(rows, key=lambda r: (order.index(r.rule), not r.before)))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_each_check_fails_before_apply_passes_after_and_fails_again_when_undone(
    bundle: str,
) -> None:
    start = time.monotonic()
    rows = _prove(bundle)
    proven = [r for r in rows if r.before]
    assert proven, f"{bundle}: no rule of it could be checked"
    wrong = [r for r in proven if (r.before, r.after, r.control) != ("fail", "pass", "fail")]
    assert not wrong, wrong
    assert time.monotonic() - start < 300


def _table() -> str:
    lines = [
        "| bundle | ComplianceAsCode rule | in SSG's profile | unit(s) | before | after "
        "| unmasked again | evaluated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bundle in BUNDLES:
        for r in _prove(bundle):
            units = ", ".join(r.units) + (f" ({r.origin})" if r.origin else "")
            evaluated = f"{r.product}: {r.note}" if r.product else r.note
            rule = f"`{r.rule}`" if r.rule else "-"
            profile = r.in_profile or "-"
            row = (
                f"| {bundle} | {rule} | {profile} | {units} | {r.before or '-'} "
                f"| {r.after or '-'} | {r.control or '-'} "
                f"| {evaluated.replace('|', chr(92) + '|')} |"
            )
            lines.append(row)
    return "\n".join(lines) + "\n"


def test_the_readme_shows_the_proof_as_it_ran() -> None:
    table = _table()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "openscap-proof.md").write_text(table)
    readme = (REPO / "README.md").read_text()
    shown = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip("\n") + "\n"
    assert shown == table, (
        "the README's proof table differs from this run: see build/test-artifacts/openscap-proof.md"
    )
