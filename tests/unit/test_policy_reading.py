"""Reading policy files on real directories: every file read through a Tree (nothing outside
--root DIR), discovery as systemd and sudo do it, trust checks on every directory, and odd
entries (FIFOs, sockets, devices, link loops, names that are not UTF-8) that give one clear
problem instead of a hang or a traceback."""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from masktool.policy import MAX_INCLUDE_DEPTH, PolicyError, load_policy

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
NOBODY = 65534


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    path.chmod(mode)
    return path


def _policy(*units: str) -> str:
    return "version: 1\nmask:\n" + "".join(f"  - {u}\n" for u in units)


def _units(args: list[str], root: str = "/") -> list[str]:
    return [r.unit for r in load_policy(args, root).rules]


def _problems(args: list[str], root: str = "/") -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as err:
        load_policy(args, root)
    text = str(err.value)
    text.encode("utf-8")  # printable and journaled as is: never a UnicodeEncodeError
    assert "Traceback" not in text
    for where, what in err.value.problems:
        assert "\n" not in where
        assert "\n" not in what
    return err.value.problems


def _bytes_path(d: Path, name: bytes) -> Path:
    return Path(os.fsdecode(os.fsencode(str(d)) + b"/" + name))


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A read that blocks (a FIFO opened without O_NONBLOCK) fails the test instead of hanging
    the run."""

    def hung(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError("policy reading hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    """DIR/etc/masktool of a --root tree DIR (tmp_path / "root")."""
    d = tmp_path / "root/etc/masktool"
    d.mkdir(parents=True)
    return d


def _root(etc: Path) -> str:
    return str(etc.parent.parent)


# -- odd files where a policy file is expected -------------------------------------------------


def test_fifo_policy_file_is_one_problem_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    ((where, what),) = _problems([str(fifo)])
    assert where == str(fifo)
    assert "FIFO" in what


def test_fifo_include_is_one_problem_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "inc.yaml")
    top = _write(tmp_path / "top.yaml", "version: 1\ninclude: [inc.yaml]\n")
    ((where, what),) = _problems([str(top)])
    assert where == str(tmp_path / "inc.yaml")
    assert "FIFO" in what


def test_fifo_in_policy_d_is_one_problem(etc: Path) -> None:
    os.mkfifo(etc.parent.parent / "fifo.yaml")
    (etc / "policy.d").mkdir()
    os.symlink("/fifo.yaml", etc / "policy.d/10-fifo.yaml")  # absolute: inside the tree
    ((where, what),) = _problems([], _root(etc))
    assert where == str(etc / "policy.d/10-fifo.yaml")
    assert "FIFO" in what


def test_fifo_bundle_is_one_problem(etc: Path) -> None:
    (etc / "policies").mkdir()
    os.mkfifo(etc / "policies/hard.yaml")
    _write(etc / "policy.yaml", "version: 1\ninclude: [hard]\n")
    ((where, what),) = _problems([], _root(etc))
    assert where == str(etc / "policies/hard.yaml")
    assert "FIFO" in what


def test_socket_as_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
        ((where, what),) = _problems([str(path)])
    finally:
        s.close()
    assert where == str(path)
    assert "socket" in what


def test_device_as_policy_file(tmp_path: Path) -> None:
    link = tmp_path / "null.yaml"
    os.symlink("/dev/null", link)
    ((_, what),) = _problems([str(link)])
    assert "character device, not a regular file" in what


def test_directory_as_included_file(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    top = _write(tmp_path / "top.yaml", "version: 1\ninclude: [dir.yaml]\n")
    ((where, what),) = _problems([str(top)])
    assert where == str(tmp_path / "dir.yaml")
    assert "directory" in what


def test_symlink_loop_in_policy_d(etc: Path) -> None:
    _write(etc / "policy.yaml", _policy("a.service"))
    (etc / "policy.d").mkdir()
    os.symlink("10-loop.yaml", etc / "policy.d/10-loop.yaml")
    ((where, what),) = _problems([], _root(etc))
    assert where == str(etc / "policy.d/10-loop.yaml")
    assert "too many levels of symbolic links" in what


def test_symlink_loop_as_include_is_not_a_runtime_error(tmp_path: Path) -> None:
    """Path.resolve() raises RuntimeError on a loop; the tree gives ELOOP, which is a problem."""
    os.symlink("b.yaml", tmp_path / "a.yaml")
    os.symlink("a.yaml", tmp_path / "b.yaml")
    top = _write(tmp_path / "top.yaml", "version: 1\ninclude: [a.yaml]\n")
    ((where, what),) = _problems([str(top)])
    assert where == str(tmp_path / "a.yaml")
    assert "symbolic links" in what


def test_dangling_link_as_policy_file(tmp_path: Path) -> None:
    os.symlink("gone.yaml", tmp_path / "p.yaml")
    ((where, what),) = _problems([str(tmp_path / "p.yaml")])
    assert where == str(tmp_path / "p.yaml")
    assert "gone.yaml does not exist" in what


def test_dangling_link_in_policy_d_is_a_problem(etc: Path) -> None:
    (etc / "policy.d").mkdir()
    os.symlink("/nowhere/site.yaml", etc / "policy.d/10-site.yaml")
    ((where, what),) = _problems([], _root(etc))
    assert where == str(etc / "policy.d/10-site.yaml")
    assert "does not exist" in what


def test_dangling_default_policy_link_is_a_problem_not_ignored(etc: Path) -> None:
    _write(etc / "policy.d/10-x.yaml", _policy("x.service"))
    os.symlink("gone.yaml", etc / "policy.yaml")
    ((where, what),) = _problems([], _root(etc))
    assert where == str(etc / "policy.yaml")
    assert "does not exist" in what


def test_missing_policy_file(tmp_path: Path) -> None:
    ((where, what),) = _problems([str(tmp_path / "no.yaml")])
    assert where == str(tmp_path / "no.yaml")
    assert what == f"policy file {tmp_path / 'no.yaml'} does not exist"


def test_policy_file_that_is_not_utf8_text(tmp_path: Path) -> None:
    p = _write(tmp_path / "p.yaml", b"version: 1\nmask: [\xff\xfe]\n")
    ((where, what),) = _problems([str(p)])
    assert where == str(p)
    assert "not UTF-8 text" in what


def test_binary_policy_file_is_one_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "p.yaml", b"version: 1\x00\n")
    ((where, what),) = _problems([str(p)])
    assert where == str(p)
    assert "control characters" in what


def test_policy_d_that_is_a_regular_file(etc: Path) -> None:
    _write(etc / "policy.yaml", _policy("a.service"))
    _write(etc / "policy.d", "x")
    ((where, what),) = _problems([], _root(etc))
    assert where == str(etc / "policy.d")
    assert "is a regular file, not a directory" in what


def test_unreadable_policy_file_as_another_user(tmp_path: Path) -> None:
    """A user checking the policy gets "permission denied" as a problem, not a traceback."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else tmp_path.parent
    d = base / f"masktool-test-{os.getpid()}"
    d.mkdir(mode=0o755)
    try:
        d.chmod(0o755)
        p = _write(d / "p.yaml", _policy("a.service"), mode=0o600)
        # A forked child that becomes another user: masktool is imported already, so nothing
        # of the checkout or the virtualenv (which may live where that user cannot read) is
        # read again.
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            os.close(r)
            try:
                os.setgroups([])
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
                load_policy([str(p)])
                out = b"loaded"
            except PolicyError as e:
                out = str(e).encode()
            except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails
                out = f"unexpected {e!r}".encode()
            os.write(w, out)
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            said = f.read().decode()
        os.waitpid(pid, 0)
        assert said == f"{p}: cannot use this policy file: Permission denied"
    finally:
        for q in d.iterdir():
            q.unlink()
        d.rmdir()


# -- discovery: what counts as policy in a directory -------------------------------------------


def test_lock_backup_and_swap_files_are_not_policy(etc: Path) -> None:
    d = etc / "policy.d"
    _write(d / "10-site.yaml", _policy("site.service"))
    os.symlink("root@host.4242:1700000000", d / ".#10-site.yaml")  # emacs lock: dangling
    _write(d / ".old.yaml", "not: [a policy")
    _write(d / ".10-site.yaml.swp", b"\x00\x01binary")
    _write(d / "10-site.yaml~", "not: [a policy")
    _write(d / "10-site.yaml.rpmnew", "not: [a policy")
    assert _units([], _root(etc)) == ["site.service"]


def test_policy_directory_argument_skips_dot_files(tmp_path: Path) -> None:
    d = tmp_path / "d"
    _write(d / "1.yaml", _policy("one.service"))
    os.symlink("nowhere", d / ".#1.yaml")
    _write(d / ".2.yaml", "broken: [")
    assert _units([str(d)]) == ["one.service"]


def test_policy_d_sorted_by_bytes(etc: Path) -> None:
    d = etc / "policy.d"
    _write(d / "b.yaml", _policy("b.service"))
    _write(d / "B.yaml", _policy("upper-b.service"))
    _write(d / "a.yaml", _policy("a.service"))
    _write(_bytes_path(d, b"\xc3\xa9.yaml"), _policy("e-acute.service"))
    assert _units([], _root(etc)) == [
        "upper-b.service",
        "a.service",
        "b.service",
        "e-acute.service",
    ]


def test_world_writable_sticky_policy_d_refused_naming_it(etc: Path) -> None:
    _write(etc / "policy.yaml", _policy("a.service"))
    d = etc / "policy.d"
    _write(d / "10-x.yaml", _policy("x.service"))
    d.chmod(0o1777)
    ((where, what),) = _problems([], _root(etc))
    assert where == str(d)
    assert f"policy directory {d} is writable by group or others (mode 1777)" in what
    assert f"chmod go-w {d}" in what


def test_group_writable_policy_directory_argument_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    _write(d / "1.yaml", _policy("one.service"))
    d.chmod(0o775)
    ((where, what),) = _problems([str(d)])
    assert where == str(d)
    assert str(d) in what
    assert "chmod go-w" in what


def test_group_writable_parent_directory_refused_naming_it(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    p = _write(parent / "sub/p.yaml", _policy("a.service"))
    parent.chmod(0o775)
    ((where, what),) = _problems([str(p)])
    assert where == str(p)
    assert f"directory {parent} is writable by group or others" in what
    assert f"chmod go-w {parent}" in what


@ROOT_ONLY
def test_parent_directory_owned_by_another_user_refused_naming_it(tmp_path: Path) -> None:
    parent = tmp_path / "theirs"
    p = _write(parent / "p.yaml", _policy("a.service"))
    os.chown(parent, NOBODY, NOBODY)
    ((where, what),) = _problems([str(p)])
    assert where == str(p)
    assert f"directory {parent}" in what
    assert f"chown root {parent}" in what


@ROOT_ONLY
def test_policy_d_owned_by_another_user_refused(etc: Path) -> None:
    d = etc / "policy.d"
    _write(d / "10-x.yaml", _policy("x.service"))
    os.chown(d, NOBODY, NOBODY)
    ((where, what),) = _problems([], _root(etc))
    assert where == str(d)
    assert f"chown root {d}" in what


@ROOT_ONLY
def test_policy_file_owned_by_another_user_says_chown_root(tmp_path: Path) -> None:
    p = _write(tmp_path / "p.yaml", _policy("a.service"))
    os.chown(p, NOBODY, NOBODY)
    ((_, what),) = _problems([str(p)])
    assert "not owned by root" in what
    assert f"chown root {p}" in what


def test_group_writable_policy_file_says_chmod_go_w(tmp_path: Path) -> None:
    p = _write(tmp_path / "p.yaml", _policy("a.service"), mode=0o664)
    ((_, what),) = _problems([str(p)])
    assert f"chmod go-w {p}" in what


def test_root_file_in_sticky_world_writable_dir_accepted(tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    p = _write(sticky / "p.yaml", _policy("a.service"))
    assert _units([str(p)]) == ["a.service"]


@ROOT_ONLY
def test_other_users_file_in_sticky_dir_refused(tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    p = _write(sticky / "p.yaml", _policy("a.service"))
    os.chown(p, NOBODY, NOBODY)
    ((where, what),) = _problems([str(p)])
    assert where == str(p)
    assert "others can write to" in what


def test_non_utf8_name_in_policy_d_accepted_and_shown_escaped(etc: Path) -> None:
    p = _write(_bytes_path(etc / "policy.d", b"20-\xff.yaml"), _policy("odd.service"))
    pol = load_policy([], _root(etc))
    shown = f"{etc}/policy.d/20-\\xff.yaml"
    assert pol.files == (shown,)
    (rule,) = pol.rules
    assert rule.source.file == shown
    str(rule.source).encode("utf-8")
    p.write_text("version: 1\nmask: [odd]\n")
    ((where, what),) = _problems([], _root(etc))
    assert where == f"{shown}:2"
    assert "invalid unit name" in what


def test_non_utf8_name_of_a_fifo_in_policy_d(etc: Path) -> None:
    (etc / "policy.d").mkdir()
    os.mkfifo(_bytes_path(etc / "policy.d", b"\xfe.yaml"))
    ((where, what),) = _problems([], _root(etc))
    assert where == f"{etc}/policy.d/\\xfe.yaml"
    assert "\\xfe.yaml is a FIFO" in what


def test_control_characters_in_names_stay_on_one_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "a\nb\x1b[31m.yaml", "version: 1\nmask: [x]\n")
    ((where, _),) = _problems([str(p)])
    assert where == f"{tmp_path}/a\\x0ab\\x1b[31m.yaml:2"


# -- includes ----------------------------------------------------------------------------------


def _chain(d: Path, n: int) -> Path:
    """c0.yaml includes c1.yaml ... includes c{n-1}.yaml, which masks last.service."""
    for i in range(n):
        body = f"version: 1\ninclude: [c{i + 1}.yaml]\n" if i < n - 1 else _policy("last.service")
        _write(d / f"c{i}.yaml", body)
    return d / "c0.yaml"


def test_include_chain_of_900_files_is_one_depth_problem(tmp_path: Path) -> None:
    top = _chain(tmp_path / "chain", 900)
    start = time.monotonic()
    ((where, what),) = _problems([str(top)])
    assert time.monotonic() - start < 5
    deepest = tmp_path / f"chain/c{MAX_INCLUDE_DEPTH}.yaml"
    assert where == f"{deepest}:2"
    assert what == (
        f"include 'c{MAX_INCLUDE_DEPTH + 1}.yaml' would nest includes {MAX_INCLUDE_DEPTH + 1} "
        f"levels deep (the chain starts at {top}); the limit is {MAX_INCLUDE_DEPTH}"
    )
    assert str(top) in what


def test_include_chain_at_the_limit_is_fine(tmp_path: Path) -> None:
    top = _chain(tmp_path / "chain", MAX_INCLUDE_DEPTH + 1)  # top level + 32 nested
    assert _units([str(top)]) == ["last.service"]
    top = _chain(tmp_path / "longer", MAX_INCLUDE_DEPTH + 2)
    ((where, _),) = _problems([str(top)])
    assert where == f"{tmp_path}/longer/c{MAX_INCLUDE_DEPTH}.yaml:2"


def test_include_chain_from_policy_d_in_root(etc: Path) -> None:
    _chain(etc / "chain", 900)
    _write(etc / "policy.d/10-chain.yaml", "version: 1\ninclude: [../chain/c0.yaml]\n")
    ((where, what),) = _problems([], _root(etc))
    assert where.endswith(".yaml:2")
    assert str(MAX_INCLUDE_DEPTH) in what


def test_include_cycle_through_a_link_is_detected(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "version: 1\ninclude: [b.yaml]\n")
    _write(tmp_path / "real-b.yaml", "version: 1\ninclude: [a-link.yaml]\n")
    os.symlink("real-b.yaml", tmp_path / "b.yaml")
    os.symlink("a.yaml", tmp_path / "a-link.yaml")
    ((where, what),) = _problems([str(tmp_path / "a.yaml")])
    assert where == f"{tmp_path}/b.yaml:2"
    assert what.startswith("include cycle: ")
    assert what.endswith(f"{tmp_path}/a-link.yaml")


def test_file_included_twice_is_read_once(tmp_path: Path) -> None:
    _write(tmp_path / "common.yaml", _policy("c.service"))
    _write(tmp_path / "a.yaml", "version: 1\ninclude: [common.yaml]\n")
    _write(tmp_path / "b.yaml", "version: 1\ninclude: [./common.yaml, a.yaml]\n")
    pol = load_policy([str(tmp_path / "b.yaml")])
    assert [r.unit for r in pol.all_rules] == ["c.service"]


def test_relative_include_is_relative_to_the_including_file(tmp_path: Path) -> None:
    _write(tmp_path / "site/common/base.yaml", _policy("base.service"))
    top = _write(tmp_path / "site/top.yaml", "version: 1\ninclude: [common/base.yaml]\n")
    pol = load_policy([str(top)])
    assert [r.unit for r in pol.rules] == ["base.service"]
    assert pol.rules[0].source.file == f"{tmp_path}/site/common/base.yaml"
    assert pol.rules[0].via == ("common/base.yaml",)


def test_relative_include_in_root_stays_in_root(etc: Path) -> None:
    _write(etc / "common.yaml", _policy("common.service"))
    _write(etc / "policy.d/10-site.yaml", "version: 1\ninclude: [../common.yaml]\n")
    assert _units([], _root(etc)) == ["common.service"]


def test_relative_include_climbing_above_root_stays_in_root(etc: Path, tmp_path: Path) -> None:
    """`..` never climbs above the tree's top, as in a chroot."""
    _write(tmp_path / "host.yaml", _policy("host.service"))
    _write(etc / "policy.yaml", "version: 1\ninclude: [../../../../../host.yaml]\n")
    ((where, what),) = _problems([], _root(etc))
    assert where == f"{etc}/policy.yaml:2"
    assert "not found" in what
    _write(etc.parent.parent / "host.yaml", _policy("inside.service"))
    assert _units([], _root(etc)) == ["inside.service"]


def test_absolute_include_under_root_is_read_inside_root(etc: Path, tmp_path: Path) -> None:
    host = _write(tmp_path / "host/site.yaml", _policy("host.service"))
    _write(etc / "policy.yaml", f"version: 1\ninclude: [{host}]\n")
    ((where, what),) = _problems([], _root(etc))
    assert where == f"{etc}/policy.yaml:2"
    inside = f"{_root(etc)}{host}"
    assert what == f"include '{host}' not found (looked in: {inside})"
    _write(Path(inside), _policy("inside.service"))
    pol = load_policy([], _root(etc))
    assert [r.unit for r in pol.rules] == ["inside.service"]
    assert pol.rules[0].source.file == inside


def test_absolute_include_under_root_etc_masktool(etc: Path) -> None:
    _write(etc / "x.yaml", _policy("x.service"))
    _write(etc / "policy.yaml", "version: 1\ninclude: [/etc/masktool/x.yaml]\n")
    pol = load_policy([], _root(etc))
    assert [r.unit for r in pol.rules] == ["x.service"]
    assert pol.rules[0].source.file == str(etc / "x.yaml")


def test_absolute_include_in_a_host_policy_is_a_host_path(tmp_path: Path) -> None:
    inc = _write(tmp_path / "inc.yaml", _policy("inc.service"))
    top = _write(tmp_path / "top.yaml", f"version: 1\ninclude: [{inc}]\n")
    assert _units([str(top)], str(tmp_path / "unused-root")) == ["inc.service"]


@pytest.mark.parametrize("target", ["host-dir", "/etc/masktool-elsewhere"])
def test_root_etc_masktool_linked_to_absolute_path_is_read_inside_root(
    tmp_path: Path, target: str
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    link_to = str(tmp_path / target) if target == "host-dir" else target
    if target == "host-dir":  # exists on the host, with a policy that must never be read
        _write(tmp_path / target / "policy.yaml", _policy("host.service"))
        _write(tmp_path / target / "policy.d/10-host.yaml", _policy("host-d.service"))
    os.symlink(link_to, root / "etc/masktool")
    # Not inside the tree: a clear "not found" that names where the link leads, inside DIR.
    ((where, what),) = _problems([], str(root))
    assert where == f"{root}/etc/masktool/policy.yaml or {root}/etc/masktool/policy.d/*.yaml"
    assert what.startswith("no policy file found")
    assert f"leads to {root}{link_to}/policy.yaml" in what
    # Inside the tree: that is what is read.
    _write(root / link_to.lstrip("/") / "policy.yaml", _policy("inside.service"))
    _write(root / link_to.lstrip("/") / "policy.d/10-in.yaml", _policy("inside-d.service"))
    pol = load_policy([], str(root))
    assert [r.unit for r in pol.rules] == ["inside.service", "inside-d.service"]


def test_root_etc_masktool_linked_to_itself_is_a_problem(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc/masktool", root / "etc/masktool")  # inside the tree: a loop
    problems = _problems([], str(root))
    assert problems
    assert all("symbolic links" in what for _, what in problems)


def test_bundle_looked_up_inside_root_only(etc: Path, tmp_path: Path) -> None:
    _write(etc / "policy.yaml", "version: 1\ninclude: [site-hard]\n")
    os.symlink(str(tmp_path / "host-policies"), etc / "policies")
    _write(tmp_path / "host-policies/site-hard.yaml", _policy("host.service"))
    ((where, what),) = _problems([], _root(etc))
    assert where == f"{etc}/policy.yaml:2"
    assert "include 'site-hard' not found" in what
    _write(
        etc.parent.parent / str(tmp_path / "host-policies/site-hard.yaml").lstrip("/"),
        _policy("in.service"),
    )
    assert _units([], _root(etc)) == ["in.service"]


def test_unknown_bundle_lists_where_it_looked_and_what_exists(etc: Path) -> None:
    _write(etc / "policies/site-a.yaml", _policy("a.service"))
    _write(etc / "policies/site-b.yaml", _policy("b.service"))
    os.symlink("nowhere", etc / "policies/.#site-a.yaml")
    _write(etc / "policy.yaml", "version: 1\ninclude: [site-c]\n")
    ((where, what),) = _problems([], _root(etc))
    assert where == f"{etc}/policy.yaml:2"
    assert f"looked in: {etc}/policies/site-c.yaml, " in what
    assert f"{_root(etc)}/usr/share/masktool/policies/site-c.yaml" in what
    assert f"known bundles: site-a, site-b (in {etc}/policies)" in what


def test_site_bundle_that_cannot_be_used_does_not_fall_back(etc: Path) -> None:
    _write(etc.parent.parent / "usr/share/masktool/policies/hard.yaml", _policy("vendor.service"))
    _write(etc / "policies/hard.yaml", _policy("site.service"), mode=0o666)
    _write(etc / "policy.yaml", "version: 1\ninclude: [hard]\n")
    ((where, what),) = _problems([], _root(etc))
    assert where == f"{etc}/policies/hard.yaml"
    assert "chmod go-w" in what


def test_dangling_site_bundle_does_not_fall_back(etc: Path) -> None:
    _write(etc.parent.parent / "usr/share/masktool/policies/hard.yaml", _policy("vendor.service"))
    (etc / "policies").mkdir()
    os.symlink("/nowhere/hard.yaml", etc / "policies/hard.yaml")
    _write(etc / "policy.yaml", "version: 1\ninclude: [hard]\n")
    ((where, what),) = _problems([], _root(etc))
    assert where == f"{etc}/policies/hard.yaml"
    assert "does not exist" in what


def test_vendor_bundle_when_there_is_no_site_bundle(etc: Path) -> None:
    _write(etc.parent.parent / "usr/share/masktool/policies/hard.yaml", _policy("vendor.service"))
    _write(etc / "policy.yaml", "version: 1\ninclude: [hard]\n")
    assert _units([], _root(etc)) == ["vendor.service"]


def test_packaged_bundle_found_without_root_copies(etc: Path) -> None:
    _write(etc / "policy.yaml", "version: 1\ninclude: [stig-rhel9]\n")
    pol = load_policy([], _root(etc))
    assert pol.rules
    assert all(r.via == ("stig-rhel9",) for r in pol.rules)


def test_include_with_a_nul_character(tmp_path: Path) -> None:
    top = _write(tmp_path / "top.yaml", 'version: 1\ninclude: ["a\\0b"]\n')
    ((where, what),) = _problems([str(top)])
    assert where == f"{top}:2"
    assert what == "include 'a\\x00b' contains a NUL character, which no file name can"


def test_include_with_a_lone_surrogate(tmp_path: Path) -> None:
    top = _write(tmp_path / "top.yaml", 'version: 1\ninclude: ["c\\ud800"]\n')
    ((where, what),) = _problems([str(top)])
    assert where == f"{top}:2"
    # libyaml refuses the escape; PyYAML's own parser accepts it and the include is refused
    assert "not valid text" in what or "invalid Unicode character escape" in what


# -- speed -------------------------------------------------------------------------------------


def test_thousand_rules_load_fast(tmp_path: Path) -> None:
    p = _write(tmp_path / "p.yaml", _policy(*(f"u{i}.service" for i in range(1000))))
    load_policy([str(p)])  # warm up imports and caches
    start = time.perf_counter()
    pol = load_policy([str(p)])
    elapsed = time.perf_counter() - start
    assert len(pol.rules) == 1000
    assert elapsed < 0.5, f"{elapsed:.3f}s for 1,000 rules"


def test_policy_file_mode_bits_untouched(tmp_path: Path) -> None:
    p = _write(tmp_path / "p.yaml", _policy("a.service"), mode=0o600)
    load_policy([str(p)])
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
