"""The reload handshake (masktool.control): each asker gets the answer of a reload that read
the files after it asked, never one already under way; what is not a request is left alone."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from masktool.control import ControlError, ReloadResult, answer, request_reload, take_requests


def _result(accepted: bool) -> ReloadResult:
    problems = () if accepted else (("/etc/masktool/policy.yaml:4", "unknown key 'stpo'"),)
    return ReloadResult(4242, accepted, accepted, problems, "", "files", 3, "enforce", "now")


class FakeDaemon:
    """Takes the requests present when a SIGHUP arrives; answers them `lag` polls later."""

    def __init__(self, directory: Path, lag: int = 2, alive: bool = True) -> None:
        self.dir, self.lag, self.alive = directory, lag, alive
        self.taken: list[str] = []
        self.polls = 0
        self.now = 0.0
        self.verdict = True

    def kill(self, pid: int, sig: int) -> None:
        if not self.alive or pid != 4242:
            raise ProcessLookupError
        if sig == signal.SIGHUP:
            self.taken = take_requests(str(self.dir))
            return
        self.polls += 1
        if self.taken and self.polls >= self.lag:
            for t in self.taken:
                answer(t, _result(self.verdict), str(self.dir))
            self.taken = []

    def sleep(self, s: float) -> None:
        self.now += 1.0

    def clock(self) -> float:
        return self.now


def test_the_answer_to_this_request_is_returned(tmp_path: Path) -> None:
    d = FakeDaemon(tmp_path / "reload.d")
    d.verdict = False
    r = request_reload(4242, directory=str(d.dir), kill=d.kill, sleep=d.sleep, clock=d.clock)
    assert (r.accepted, r.problems) == (
        False,
        (("/etc/masktool/policy.yaml:4", "unknown key 'stpo'"),),
    )
    assert os.listdir(d.dir) == []  # the asker removes its request


def test_a_reload_under_way_does_not_answer_a_later_request(tmp_path: Path) -> None:
    # The finding: an asker took the answer of a reload that had read the files before it
    # asked (and reported broken files as enforced).
    directory = tmp_path / "reload.d"
    directory.mkdir(mode=0o700)
    (directory / "1-00000000000000aa").touch()
    under_way = take_requests(str(directory))  # the daemon began a reload for this one
    d = FakeDaemon(directory, lag=10**9)
    for t in under_way:
        answer(t, _result(True), str(directory))  # ... and answers it while we wait
    with pytest.raises(ControlError, match="did not answer within 5s"):
        request_reload(
            4242, 5.0, directory=str(directory), kill=d.kill, sleep=d.sleep, clock=d.clock
        )


def test_a_daemon_that_is_gone_is_said(tmp_path: Path) -> None:
    d = FakeDaemon(tmp_path / "reload.d", alive=False)
    with pytest.raises(ControlError, match="not running"):
        request_reload(4242, directory=str(d.dir), kill=d.kill, sleep=d.sleep, clock=d.clock)


def test_only_empty_files_with_a_tokens_name_are_requests(tmp_path: Path) -> None:
    directory = tmp_path / "reload.d"
    directory.mkdir()
    (directory / "12-0123456789abcdef").touch()
    (directory / "13-0123456789abcdef").write_text("{}")  # answered already
    (directory / "14-0123456789abcdef").symlink_to("/etc/passwd")
    (directory / "../x").touch()
    (directory / "not-a-token").touch()
    os.mkfifo(directory / "15-0123456789abcdef")
    assert take_requests(str(directory)) == ["12-0123456789abcdef"]
    # Nobody came for them for ten minutes: removed.
    assert take_requests(str(directory), now=directory.stat().st_mtime + 601) == []
    assert sorted(os.listdir(directory)) == []


def test_a_request_directory_that_is_not_roots_own_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "reload.d"
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    d = FakeDaemon(directory)
    with pytest.raises(ControlError, match="not root's own"):
        request_reload(4242, directory=str(directory), kill=d.kill, sleep=d.sleep, clock=d.clock)
    link = tmp_path / "link.d"
    link.symlink_to(tmp_path)
    with pytest.raises(ControlError, match="not a directory masktool made"):
        request_reload(4242, directory=str(link), kill=d.kill, sleep=d.sleep, clock=d.clock)
