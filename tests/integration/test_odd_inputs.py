"""Every subcommand over a corpus of odd trees and inputs: FIFOs, sockets and devices where files
are expected, link loops, names that are not UTF-8, directories that are files or links out of
the tree, hostile policy directories, deep include chains. Offline (--root DIR), live in a booted
systemd, and the daemon.

A run fails on a traceback, an exit code outside the contract (0 ok, 1 drift, 2 error), a hang
(every command has a deadline), a change outside the tree, or a daemon that stops enforcing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import Host, require_boot, wait_until
from tests.sandbox import Sandbox, install_masktool_service, service_binds

MASKTOOL = str(Path(sys.executable).parent / "masktool")
UNIT = "[Unit]\nDescription=odd\n[Service]\nExecStart=/bin/sleep infinity\n"
POLICY = (
    "version: 1\nmask:\n  - odd-a.service\n  - odd-c.service\n  - odd-d.service\n"
    "unmask:\n  - odd-b.service\n"
)
ETC = "etc/systemd/system"
VENDOR = "usr/local/lib/systemd/system"
DEADLINE = 30.0  # seconds; a command taking longer is hung


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], None]  # adds the odd entries to a tree whose / is the path given
    codes: frozenset[int] = frozenset({0, 1})  # exit codes allowed for check/plan/apply/why
    message: str = ""  # with exit 2: what stderr must say
    live: bool = True  # also safe to put into a booted system
    enforced: bool = True  # the daemon must still put a removed mask back (else: fail to start)
    says: str = ""  # what a live `check` after `apply` must say about it
    journal: str = ""  # what the journal entry for odd-e's mask must carry as MASKTOOL_POLICY


def _fifo(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(p)


def _socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


def _bytes_name(d: Path, name: bytes) -> Path:
    return Path(os.fsdecode(os.fsencode(str(d)) + b"/" + name))


def _policy_d(top: Path) -> Path:
    d = top / "etc/masktool/policy.d"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write(p: Path, text: str | bytes) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    p.chmod(0o644)


def _include_chain(top: Path) -> None:
    d = top / "etc/masktool/chain"
    d.mkdir(parents=True)
    for i in range(900):
        _write(d / f"c{i}.yaml", f"version: 1\ninclude: [c{i + 1}.yaml]\n" if i < 899 else POLICY)
    _write(_policy_d(top) / "10-chain.yaml", "version: 1\ninclude: [../chain/c0.yaml]\n")


def _policy_dir_world_writable(top: Path) -> None:
    d = _policy_d(top)
    _write(d / "10-x.yaml", "version: 1\nmask: [odd-d.service]\n")
    d.chmod(0o1777)


def _non_utf8_names(top: Path) -> None:
    etc = top / ETC
    _write(_bytes_name(etc, b"odd-\xff.service"), UNIT)
    _write(_bytes_name(etc / "odd-a.service.d", b"\xfe.conf"), "[Unit]\nRequires=odd-b.service\n")
    _bytes_name(etc, b"odd-\xfd.service.wants").mkdir()
    _write(_bytes_name(_policy_d(top), b"20-\xff.yaml"), "version: 1\nmask: [odd-e.service]\n")


def _fifo_drop_ins(t: Path) -> None:
    _fifo(t / ETC / "odd-a.service.d/zz.conf")
    _fifo(t / VENDOR / "odd-b.service.d/zz.conf")


def _link_loop(t: Path) -> None:
    os.symlink("odd-x.service", t / ETC / "odd-c.service")
    os.symlink("odd-c.service", t / ETC / "odd-x.service")


def _search_dir_is_a_file(t: Path) -> None:
    shutil.rmtree(t / "run/systemd/system")
    _write(t / "run/systemd/system", "x")


def _fifo_drop_in_of_a_dependency(t: Path) -> None:
    # Loading odd-a loads odd-w (Wants=) and reads al-a's drop-ins (an alias of odd-a): systemd
    # would block on either FIFO though neither belongs to a policy unit.
    _write(t / VENDOR / "odd-a.service", UNIT.replace("[Unit]\n", "[Unit]\nWants=odd-w.service\n"))
    _write(t / VENDOR / "odd-w.service", UNIT)
    _fifo(t / ETC / "odd-w.service.d/zz.conf")
    os.symlink("odd-a.service", t / VENDOR / "al-a.service")
    _fifo(t / ETC / "al-a.service.d/zz.conf")


def _dropin_linked_to_dev_zero(t: Path) -> None:
    # A typo for /dev/null: systemd reads /dev/zero as the drop-in, without end.
    (t / ETC / "odd-a.service.d").mkdir()
    os.symlink("/dev/zero", t / ETC / "odd-a.service.d/override.conf")


def _lock_and_backup_files(t: Path) -> None:
    os.symlink("root@host.4242:1700000000", _policy_d(t) / ".#10-site.yaml")
    _write(_policy_d(t) / ".10-site.yaml", "not: [a policy")


CASES = [
    # systemd 252's PID 1 blocks opening these when it loads the unit: never ask it to.
    Case("fifo-drop-ins", _fifo_drop_ins, says="odd-a.service.d/zz.conf (a FIFO)"),
    Case(
        "fifo-drop-ins-of-a-dependency-and-an-alias",
        _fifo_drop_in_of_a_dependency,
        says="odd-w.service.d/zz.conf (a FIFO)",
    ),
    Case(
        "drop-in-linked-to-a-character-device",
        _dropin_linked_to_dev_zero,
        says="odd-a.service.d/override.conf (leads to /dev/zero, a character device)",
    ),
    Case(
        "fifo-unit-file",
        lambda t: _fifo(t / ETC / "odd-c.service"),
        says="/etc/systemd/system/odd-c.service (a FIFO)",
    ),
    Case("socket-unit-file", lambda t: _socket(t / ETC / "odd-c.service")),
    Case(
        "device-node-unit-file",
        lambda t: os.mknod(t / ETC / "odd-c.service", 0o600 | stat.S_IFCHR, os.makedev(1, 3)),
    ),
    Case(
        "link-loop",
        _link_loop,
    ),
    Case(
        "dangling-link", lambda t: os.symlink("/nowhere/odd-c.service", t / ETC / "odd-c.service")
    ),
    Case("directory-as-unit-file", lambda t: (t / ETC / "odd-c.service").mkdir()),
    Case("wants-is-a-fifo", lambda t: _fifo(t / ETC / "odd-w.target.wants")),
    Case(
        "huge-unit-file", lambda t: _write(t / VENDOR / "odd-big.service", "#" * (6 << 20) + "\n")
    ),
    Case("non-utf8-names", _non_utf8_names, journal="/etc/masktool/policy.d/20-\\xff.yaml:2"),
    Case(
        "search-dir-is-a-file",
        _search_dir_is_a_file,
        live=False,
    ),
    Case(
        "policy-fifo",
        lambda t: _fifo(_policy_d(t) / "10-fifo.yaml"),
        codes=frozenset({2}),
        message="FIFO",
        enforced=False,
    ),
    Case(
        "policy-link-loop",
        lambda t: os.symlink("10-loop.yaml", _policy_d(t) / "10-loop.yaml"),
        codes=frozenset({2}),
        message="symbolic links",
        enforced=False,
    ),
    Case(
        "policy-lock-and-backup-files",
        _lock_and_backup_files,
    ),
    Case(
        "policy-not-utf8-text",
        lambda t: _write(_policy_d(t) / "10-bin.yaml", b"version: 1\nmask: [\xff\xfe]\n"),
        codes=frozenset({2}),
        message="UTF-8",
        enforced=False,
    ),
    Case(
        "policy-dir-world-writable",
        _policy_dir_world_writable,
        codes=frozenset({2}),
        message="policy.d",
        enforced=False,
    ),
    Case(
        "include-chain-900",
        _include_chain,
        codes=frozenset({2}),
        message="include",
        enforced=False,
    ),
]


def _base(top: Path) -> None:
    for n in ("a", "b", "c", "d", "e"):
        _write(top / VENDOR / f"odd-{n}.service", UNIT)
    (top / ETC).mkdir(parents=True, exist_ok=True)
    (top / "run/systemd/system").mkdir(parents=True, exist_ok=True)
    (top / "var/lib/masktool").mkdir(parents=True, exist_ok=True)
    _write(top / "etc/masktool/policy.yaml", POLICY)


def _check(res: subprocess.CompletedProcess[bytes], argv: list[str], case: Case) -> None:
    out, err = (res.stdout.decode("utf-8"), res.stderr.decode("utf-8"))  # UTF-8, always
    what = f"{case.name}: {' '.join(argv)} exited {res.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, what
    allowed = {0, 2} if argv[0] == "validate" and 2 in case.codes else case.codes
    if argv[0] == "validate" and 2 not in case.codes:
        allowed = {0}
    assert res.returncode in allowed, what
    if res.returncode == 2:
        assert case.message in err, what
        assert len(err.strip().splitlines()) <= 3, what  # one clear problem, not a dump


COMMANDS = [["validate"], ["check"], ["plan"], ["why", "odd-a.service"], ["apply"], ["check"]]


def _masktool(*argv: str, inside: Sandbox | None = None) -> subprocess.CompletedProcess[str]:
    """masktool run on this host (or inside a booted sandbox), with a deadline: a hang fails."""
    prefix = inside.nsenter_prefix() if inside is not None else []
    return subprocess.run(
        [*prefix, MASKTOOL, *argv], capture_output=True, text=True, timeout=DEADLINE, check=False
    )


def _snapshot(d: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(d)), p.lstat().st_ino, p.lstat().st_mtime_ns) for p in d.rglob("*")
    )


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host directory every --root tree links to: it must never change."""
    d = tmp_path / "outside"
    (d / "etc/systemd/system").mkdir(parents=True)
    _write(d / "etc/systemd/system/odd-c.service", UNIT)
    os.symlink("/dev/null", d / "etc/systemd/system/odd-b.service")
    _write(d / "etc/masktool/policy.yaml", "version: 1\nunmask: [odd-a.service]\n")
    return d


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_offline(case: Case, tmp_path: Path, outside: Path) -> None:
    if os.geteuid() != 0:
        require_boot()  # root only (device nodes, owners); fails instead of skipping in CI
    top = tmp_path / "tree"
    _base(top)
    case.build(top)
    before = _snapshot(outside)
    for argv in COMMANDS:
        full = [MASKTOOL, *argv, "--root", str(top)]
        res = subprocess.run(full, capture_output=True, timeout=DEADLINE, check=False)
        _check(res, argv, case)
    assert _snapshot(outside) == before


@pytest.mark.parametrize("linked", ["etc/systemd/system", "etc/masktool", "var/lib/masktool"])
@pytest.mark.parametrize("how", ["absolute", "relative-climbing"])
def test_offline_never_leaves_the_tree(
    tmp_path: Path, outside: Path, linked: str, how: str
) -> None:
    """A directory of the tree linked to a host directory is resolved inside the tree, as
    chroot and systemctl --root resolve it; the host directory is never read as policy nor
    changed."""
    if os.geteuid() != 0:
        require_boot()
    top = tmp_path / "tree"
    _base(top)
    _write(top / ETC / "odd-c.service", UNIT)  # a conflict that force moves aside
    _write(
        top / "etc/masktool/policy.yaml",
        "version: 1\nmask:\n  - unit: odd-c.service\n    force: true\n  - odd-b.service\n"
        "unmask:\n  - odd-a.service\n",
    )
    target = outside / linked
    target.mkdir(parents=True, exist_ok=True)
    # What the link leads to inside the tree, made so that the commands can work there.
    inside = top / str(target).lstrip("/")
    shutil.copytree(top / linked, inside, symlinks=True)
    shutil.rmtree(top / linked)
    depth = len(Path(linked).parts) - 1
    link = str(target) if how == "absolute" else "../" * (depth + 20) + str(target).lstrip("/")
    os.symlink(link, top / linked)
    before = _snapshot(outside)
    for argv in COMMANDS:
        full = [MASKTOOL, *argv, "--root", str(top)]
        raw = subprocess.run(full, capture_output=True, timeout=DEADLINE, check=False)
        _check(raw, argv, Case("escape", lambda t: None))
    assert _snapshot(outside) == before
    assert (
        os.readlink(inside / "odd-b.service" if linked == ETC else top / ETC / "odd-b.service")
        == "/dev/null"
    )


# -- live, in a booted systemd of its own (odd entries go into its real /etc) -----------------


@pytest.fixture(scope="module")
def live() -> Iterator[Sandbox]:
    require_boot()
    venv = Path(sys.executable).parent.parent
    with Sandbox(binds=service_binds(venv)) as sb:
        install_masktool_service(sb)
        yield sb


AREAS = [ETC, VENDOR, "run/systemd/system", "etc/masktool", "var/lib/masktool"]


@pytest.fixture
def odd_live(live: Sandbox, request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, Case]]:
    case: Case = request.param
    top = live.root
    existing = {a: set(os.listdir(top / a)) if (top / a).is_dir() else set() for a in AREAS}
    _base(top)
    case.build(top)
    live.run(["systemctl", "daemon-reload"])
    yield live, case
    live.run(["systemctl", "stop", "masktool.service"], check=False)
    for a in AREAS:
        d = top / a
        if not d.is_dir():
            continue
        d.chmod(0o755)
        for name in set(os.listdir(d)) - existing[a]:
            p = d / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    live.run(["systemctl", "daemon-reload"])


LIVE = [c for c in CASES if c.live]


@pytest.mark.parametrize("odd_live", LIVE, ids=[c.name for c in LIVE], indirect=True)
def test_live_and_daemon(odd_live: tuple[Sandbox, Case]) -> None:
    sb, case = odd_live
    for argv in COMMANDS:
        res = subprocess.run(
            [*sb.nsenter_prefix(), MASKTOOL, *argv],
            capture_output=True,
            timeout=DEADLINE,
            check=False,
        )
        _check(res, argv, case)
    # After apply, the check verifies with systemd: it must say why it does not ask.
    assert case.says in res.stdout.decode(), res.stdout.decode()
    if case.journal:
        out = sb.run(
            ["journalctl", "--no-pager", "-o", "json", "MASKTOOL_UNIT=odd-e.service", "_UID=0"]
        ).stdout
        sent = [json.loads(line).get("MASKTOOL_POLICY") for line in out.splitlines()]
        assert case.journal in sent, sent
    # The daemon over the same tree: it starts (READY=1 after a full reconcile: a hang would
    # time the start out), stays up, and puts a removed mask back. With the policy rejected
    # and no good copy saved it has nothing to enforce: its start fails, at once and saying
    # why, rather than hanging or saying `active`.
    start = sb.run(["systemctl", "start", "masktool.service"], check=False, timeout=DEADLINE)
    if not case.enforced:
        assert start.returncode != 0, case.name
        shown = sb.run(["systemctl", "status", "masktool.service"], check=False).stdout
        assert "status=6/NOTCONFIGURED" in shown, shown
        assert case.message in shown, shown
        assert "Traceback" not in shown, shown
        return
    assert start.returncode == 0, start.stderr
    link = sb.path(f"/{ETC}/odd-d.service")
    wait_until("odd-d masked", link.is_symlink, 5)
    link.unlink()
    wait_until("odd-d put back", link.is_symlink, 5)
    active = sb.run(["systemctl", "is-active", "masktool.service"], check=False).stdout.strip()
    assert active == "active", case.name
    _ = Host  # the session sandbox is not used here: odd entries would leak into other tests


def _own(state: Path) -> set[Path]:
    """masktool's own files in /var/lib/masktool besides displaced copies: the --root lock
    and the ledger."""
    return {state / ".lock", state / "ledger.json"}


def test_displace_on_a_full_disk_leaves_the_original_and_no_partial_copy(tmp_path: Path) -> None:
    """ENOSPC in the middle of the copy: the admin's file stays where it was, whole."""
    if os.geteuid() != 0:
        require_boot()
    top = tmp_path / "tree"
    _base(top)
    body = "# " + "x" * (256 << 10) + "\n[Service]\nExecStart=/bin/true\n"
    _write(top / ETC / "odd-c.service", body)
    _write(
        top / "etc/masktool/policy.yaml",
        "version: 1\nmask:\n  - unit: odd-c.service\n    force: true\n",
    )
    full = top / "var/lib/masktool"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tiny", str(full)], check=True)
    try:
        res = _masktool("apply", "--root", str(top))
        assert res.returncode == 1, res.stdout + res.stderr
        assert "No space left on device" in res.stdout + res.stderr
        assert "Traceback" not in res.stderr
        assert (top / ETC / "odd-c.service").read_text() == body
        left = [
            p for p in full.rglob("*") if (p.is_file() or p.is_symlink()) and p not in _own(full)
        ]
        assert left == [], f"partial copies left: {left}"
    finally:
        subprocess.run(["umount", str(full)], check=True)


@pytest.mark.parametrize(
    "where",
    [
        "missing-dir/x.prom",
        "a-directory.prom",
        "a-fifo.prom",
        "a-link.prom",
        "a-device.prom",
        "policy.yaml",  # a regular file, but not metrics: never replaced
        "",
    ],
)
def test_metrics_that_cannot_be_written_are_one_clear_error(tmp_path: Path, where: str) -> None:
    """Only a *.prom regular file (or a new *.prom name) is replaced, and that is checked before
    anything is done: renaming over /dev/null replaced the host's /dev/null, and with it every
    mask; renaming over any file replaced it."""
    if os.geteuid() != 0:
        require_boot()
    top = tmp_path / "tree"
    _base(top)
    (tmp_path / "a-directory.prom").mkdir()
    os.mkfifo(tmp_path / "a-fifo.prom")
    (tmp_path / "a-link.prom").symlink_to("a-directory.prom")
    os.mknod(tmp_path / "a-device.prom", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    _write(tmp_path / "policy.yaml", POLICY)
    before = _snapshot(tmp_path)
    res = _masktool(
        "check", "--root", str(top), "--metrics", str(tmp_path / where) if where else ""
    )
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""  # refused before any work
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "metrics" in res.stderr
    assert _snapshot(tmp_path) == before


def test_displace_that_cannot_remove_the_original_leaves_no_copies(tmp_path: Path) -> None:
    """A unit file that cannot be removed (bind-mounted over, immutable): every attempt
    fails cleanly, and no copy piles up in displaced/."""
    if os.geteuid() != 0:
        require_boot()
    top = tmp_path / "tree"
    _base(top)
    _write(top / ETC / "odd-c.service", UNIT)
    _write(tmp_path / "bound.service", UNIT)
    _write(
        top / "etc/masktool/policy.yaml",
        "version: 1\nmask:\n  - unit: odd-c.service\n    force: true\n",
    )
    subprocess.run(
        ["mount", "--bind", str(tmp_path / "bound.service"), str(top / ETC / "odd-c.service")],
        check=True,
    )
    try:
        for _ in range(3):
            res = _masktool("apply", "--root", str(top))
            assert res.returncode == 1, res.stdout + res.stderr
            assert "Traceback" not in res.stderr
            assert ".masktool-" not in res.stdout + res.stderr  # no internal names
            assert f"{top}/etc/systemd/system/odd-c.service" in res.stdout + res.stderr
    finally:
        subprocess.run(["umount", str(top / ETC / "odd-c.service")], check=True)
    state = top / "var/lib/masktool"
    left = [p for p in state.rglob("*") if p not in _own(state)]
    assert left in ([], [state / "displaced"]), left
    assert (top / ETC / "odd-c.service").read_text() == UNIT


@pytest.mark.parametrize("root", ["", "/nonexistent", "/etc/hostname", "/", "//", "/etc/.."])
def test_a_root_that_is_no_tree_is_a_usage_error(root: str) -> None:
    """`--root ''` once meant the running system, and `--root /` worked on it offline: links
    written that systemd was not told about, compliance read from disk alone."""
    if os.geteuid() != 0:
        require_boot()
    for argv in COMMANDS:
        res = _masktool(*argv, "--root", root)
        assert res.returncode == 2, (argv, res.stdout, res.stderr)
        assert "not a directory" in res.stderr or "is the running system" in res.stderr


def test_daemon_watches_a_linked_etc_systemd_system() -> None:
    """inotify on a link watches the link: a /etc/systemd/system that is a link to another
    directory must still have its drift put back at once."""
    require_boot()
    venv = Path(sys.executable).parent.parent
    with Sandbox(binds=service_binds(venv)) as sb:
        install_masktool_service(sb)
        top = sb.root
        _base(top)
        sb.run(
            ["sh", "-c", "mv /etc/systemd/system /srv/ess && ln -s /srv/ess /etc/systemd/system"]
        )
        sb.run(["systemctl", "daemon-reload"])
        sb.run(["systemctl", "start", "masktool.service"], timeout=DEADLINE)
        link = sb.path("/srv/ess/odd-d.service")
        wait_until("odd-d masked", link.is_symlink, 5)
        link.unlink()
        wait_until("odd-d put back through the linked directory", link.is_symlink, 2)
        sb.run(["systemctl", "mask", "odd-b.service"])
        wait_until(
            "a mask of an unmask rule removed",
            lambda: not link.with_name("odd-b.service").is_symlink(),
            2,
        )


def test_enable_and_reload_are_not_asked_while_systemd_would_hang(live: Sandbox) -> None:
    """Enabling reads [Install], drop-ins and Also= units; a daemon-reload also reads the
    manager's own system.conf.d: a FIFO in either place hung PID 1."""
    top = live.root
    body = UNIT + "[Install]\nWantedBy=multi-user.target\n"
    _write(top / VENDOR / "odd-en.service", body)
    _write(top / VENDOR / "odd-rl.service", UNIT)
    os.symlink("/dev/null", top / ETC / "odd-en.service")
    live.run(["systemctl", "daemon-reload"])
    live.run(["systemctl", "start", "odd-rl.service"])
    _write(
        top / "etc/masktool/test-en.yaml",
        "version: 1\nunmask:\n  - unit: odd-en.service\n    enable: true\n",
    )
    _write(top / "etc/masktool/test-rl.yaml", "version: 1\nmask:\n  - odd-rl.service\n")
    fifos = [top / ETC / "odd-en.service.d/x.conf", top / "etc/systemd/system.conf.d/x.conf"]
    for f in fifos:
        _fifo(f)
    try:
        for policy, said in (("test-en", "enable not done"), ("test-rl", "daemon-reload not done")):
            res = _masktool("apply", "--policy", f"/etc/masktool/{policy}.yaml", inside=live)
            assert res.returncode == 1, res.stdout + res.stderr
            assert said in res.stdout + res.stderr, res.stdout + res.stderr
            state = live.run(["systemctl", "is-system-running"], check=False, timeout=10)
            assert state.stdout.strip() in ("running", "degraded")
        # Offline, systemctl --root enable would block on it just the same.
        tree = top / "srv/odd-tree"
        _base(tree)
        _write(tree / VENDOR / "odd-en.service", body)
        os.symlink("/dev/null", tree / ETC / "odd-en.service")
        _fifo(tree / ETC / "odd-en.service.d/x.conf")
        _write(
            tree / "etc/masktool/policy.yaml",
            "version: 1\nunmask:\n  - unit: odd-en.service\n    enable: true\n",
        )
        res = _masktool("apply", "--root", str(tree))
        assert res.returncode == 1 and "enable not done" in res.stdout + res.stderr, (
            res.stdout + res.stderr
        )
    finally:
        for f in fifos:
            f.unlink()
        shutil.rmtree(top / "srv/odd-tree", ignore_errors=True)
        for name in ("test-en", "test-rl"):
            (top / f"etc/masktool/{name}.yaml").unlink()
        for u in ("odd-en.service", "odd-rl.service"):
            (top / ETC / u).unlink(missing_ok=True)
        live.run(["systemctl", "daemon-reload"])
        live.run(["systemctl", "stop", "odd-rl.service"])
