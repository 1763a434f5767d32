"""The watching process's events cross a pipe as JSON lines: every kind, and file names that are
not UTF-8, come back as they went."""

from __future__ import annotations

from masktool.events import HandlerError, Overflow, PolicyEvent, Rewatched, UnitEvent
from masktool.sentry import _decode, _encode


def test_events_cross_the_pipe_unchanged() -> None:
    odd = b"x\xff\n.service".decode("utf-8", "surrogateescape")
    for item in (
        UnitEvent("a.service", "/etc/systemd/system", "deleted", 12.5, fixed="mask"),
        UnitEvent(odd, "/run/systemd/system", "created", 1.0),
        Overflow(3.0),
        PolicyEvent("/etc/masktool/policy.d/" + odd, 4.0),
        Rewatched("/etc/systemd/system", 5.0),
        HandlerError("inotify handler: boom"),
    ):
        line = _encode(item)
        assert "\n" not in line
        assert _decode(line) == item
