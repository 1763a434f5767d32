"""The daemon's state parts, driven by a fake clock."""

from __future__ import annotations

from pathlib import Path

from masktool.loopstate import Deadlines, Flaps, Names, OwnWrites, Retries, StopJobs
from masktool.policy import load_policy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_deadlines_nearest_take_and_earlier() -> None:
    d: Deadlines[str] = Deadlines()
    assert d.nearest() is None
    d.set("full", 10.0)
    d.set("batch", 3.0)
    assert d.nearest() == 3.0
    d.earlier("full", 20.0)
    assert d.get("full") == 10.0
    d.earlier("full", 5.0)
    assert d.get("full") == 5.0
    assert not d.take("batch", 2.9)
    assert d.take("batch", 3.0)
    assert d.get("batch") is None
    assert d.is_due("full", 6.0)
    assert d.is_due("full", 6.0)  # is_due leaves it; take clears it
    d.clear("full")
    assert d.nearest() is None


def test_flaps_never_hold_back_put_backs_only_the_journal() -> None:
    clock = FakeClock()
    f: Flaps[str] = Flaps(clock, changes=5, window=60.0)
    counts = []
    for i in range(12):
        counts.append(f.put_back("x.service", f"plan {i}"))
        clock.advance(1)
    # Announced once, at the fifth put-back; not again inside the window.
    assert counts == [0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]
    assert f.flapping() == 1
    held = [f.hold("x.service") for _ in range(7)]
    assert held == [True] * 7
    assert not f.hold("other.service")
    assert list(f.ended()) == []  # the window is not over
    assert f.nearest() == 1000.0 + 4 + 60
    clock.advance(60)
    assert list(f.ended()) == [("plan 11", 7)]
    assert list(f.ended()) == []
    assert f.flapping() == 0
    assert not f.hold("x.service")


def test_flaps_forget_put_backs_older_than_the_window() -> None:
    clock = FakeClock()
    f: Flaps[str] = Flaps(clock, changes=3, window=10.0)
    for _ in range(10):
        assert f.put_back("x.service", "p") == 0
        clock.advance(6)  # two at most in any 10 s


def test_own_writes_are_consumed_once_and_expire() -> None:
    clock = FakeClock()
    own = OwnWrites(clock, window=5.0)
    own.expect([("/etc/systemd/system/a.service", "created")] * 2)
    assert own.consume("/etc/systemd/system/a.service", "created", clock())
    assert not own.consume("/etc/systemd/system/a.service", "deleted", clock())
    assert own.consume("/etc/systemd/system/a.service", "created", clock())
    assert not own.consume("/etc/systemd/system/a.service", "created", clock())
    own.expect([("/etc/systemd/system/b.service", "deleted")])
    # An event after the window is someone else's.
    assert not own.consume("/etc/systemd/system/b.service", "deleted", clock() + 5.1)
    assert len(own) == 0


def test_own_writes_whose_events_never_came_are_forgotten() -> None:
    clock = FakeClock()
    own = OwnWrites(clock, window=5.0)
    own.expect([(f"/etc/systemd/system/u{i}.service", "created") for i in range(100)])
    assert len(own) == 100
    clock.advance(5.1)
    own.expect([("/etc/systemd/system/last.service", "created")])
    assert len(own) == 1
    # One used up, then more expected: nothing of the first is left behind to trip on.
    assert own.consume("/etc/systemd/system/last.service", "created", clock())
    own.expect([("/etc/systemd/system/last.service", "created")])
    assert own.consume("/etc/systemd/system/last.service", "created", clock())
    assert len(own) == 0


def test_retries_back_off_from_5s_to_5min_and_forget_on_success() -> None:
    clock = FakeClock()
    r = Retries(clock, first=5.0, most=300.0)
    delays = [r.failed("x.service") for _ in range(9)]
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert r.due() == set()
    clock.advance(299)
    assert r.due() == set()
    clock.advance(1)
    assert r.due() == {"x.service"}
    r.succeeded("x.service")
    assert r.waiting() == set()
    assert r.failed("x.service") == 5
    assert r.nearest() == clock() + 5


def test_stop_jobs_are_looked_at_sooner_first_then_given_up() -> None:
    clock = FakeClock()
    s = StopJobs(clock, timeout=120.0)
    s.started("slow.service")
    assert s.running() == {"slow.service"}
    assert s.due() == set()
    looks = 0
    waits = []
    while True:
        at = s.nearest()
        assert at is not None
        waits.append(round(at - clock(), 3))
        clock.now = at
        assert s.due() == {"slow.service"}
        looks += 1
        if not s.still_running("slow.service"):
            break
    assert waits[0] == 0.01
    assert max(waits) == 1.0  # never more than a second between looks
    assert clock() - 1000.0 >= 120.0
    assert looks < 140
    assert s.running() == set()
    s.started("quick.service")
    s.done("quick.service")
    assert s.nearest() is None


def test_names_learn_aliases_and_activators_and_guard(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        "version: 1\nmask:\n  - a.service\n  - unit: r.service\n    runtime: true\n"
        "unmask:\n  - u.service\n"
    )
    pol = load_policy([str(p)])
    n = Names()
    n.reset(pol)
    assert n.owners("a.service") == {"a.service"}
    assert n.guard() == {"a.service": "mask", "u.service": "unmask"}  # runtime: not guarded
    assert n.mask_names == {"a.service", "r.service"}
    n.reset(None)
    assert n.guard() == {}


def test_names_learn_aliases_and_activators_from_a_plan(tmp_path: Path) -> None:
    """After a plan: an event on the unit an alias names, or on a with_triggers activator,
    concerns the rule; the activator is guarded like the rule's own unit."""
    import os

    from masktool.engine import observe_and_plan

    usr = tmp_path / "usr/lib/systemd/system"
    usr.mkdir(parents=True)
    (usr / "a.service").write_text("[Service]\nExecStart=/bin/true\n")
    os.symlink("a.service", usr / "b.service")
    (usr / "c.service").write_text("[Service]\nExecStart=/bin/true\n")
    (usr / "c.socket").write_text("[Socket]\nListenStream=/run/c\n")
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\nmask:\n  - b.service\n  - unit: c.service\n    with_triggers: true\n")
    pol = load_policy([str(p)])
    n = Names()
    n.reset(pol)
    assert n.owners("c.socket") == set()
    n.learn(observe_and_plan(pol, str(tmp_path), None))
    assert n.owners("a.service") == {"b.service"}
    assert n.owners("c.socket") == {"c.service"}
    assert n.guard() == {"b.service": "mask", "c.service": "mask", "c.socket": "mask"}
    assert "c.socket" in n.mask_names
    assert n.refused == set()
