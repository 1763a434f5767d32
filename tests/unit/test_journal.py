"""Journal entries are built by a pure function; a list stands in for the sender."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from masktool.backend import ApplyResult, Change
from masktool.journal import MESSAGE_IDS, apply_entries, journal_sender, send_all
from masktool.observe import Entry, EntryKind, LiveState, UnitObservation
from masktool.plan import plan
from masktool.policy import Location, Policy, Rule
from masktool.units import ETC_SEARCH_DIR, SEARCH_PATH

ETC = ETC_SEARCH_DIR
USR = next(d for d in SEARCH_PATH if d.path == "/usr/lib/systemd/system")


def _obs(unit: str, kind: EntryKind, load: str) -> UnitObservation:
    d = ETC if kind == EntryKind.MASK else USR
    return UnitObservation(
        unit, unit, (Entry(d, unit, kind),), live=LiveState(unit, load, "inactive")
    )


def test_one_entry_per_changed_unit_and_per_refusal() -> None:
    rules = (
        Rule("a.service", "mask", Location("/etc/masktool/policy.yaml", 4), reason="STIG X"),
        Rule("b.service", "mask", Location("/etc/masktool/policy.yaml", 5)),
        Rule("c.service", "mask", Location("/etc/masktool/policy.yaml", 6)),
    )
    pol = Policy("enforce", rules)
    before = plan(
        pol,
        {
            "a.service": _obs("a.service", EntryKind.UNIT_FILE, "loaded"),
            "b.service": _obs("b.service", EntryKind.MASK, "masked"),
            "c.service": UnitObservation(
                "c.service", "c.service", (Entry(ETC, "c.service", EntryKind.UNIT_FILE),)
            ),
        },
        live=True,
    )
    after = plan(
        pol,
        {
            "a.service": _obs("a.service", EntryKind.MASK, "masked"),
            "b.service": _obs("b.service", EntryKind.MASK, "masked"),
            "c.service": before.units[2].obs,
        },
        live=True,
    )
    res = ApplyResult(changes=[Change("a.service", "mask", "symlink")], reloads=1)
    entries = apply_entries(before, res, after, latency_usec=1234)
    assert [e["MASKTOOL_ACTION"] for e in entries] == ["mask", "refuse"]
    a, c = entries
    assert a["MESSAGE_ID"] == MESSAGE_IDS["mask"]
    assert a["OBJECT_SYSTEMD_UNIT"] == "a.service"
    assert a["MASKTOOL_POLICY"] == "/etc/masktool/policy.yaml:4"
    assert a["MASKTOOL_REASON"] == "STIG X"
    assert a["MASKTOOL_WAS"] == "unmasked"
    assert a["MASKTOOL_HAVE"] == "masked (LoadState=masked ActiveState=inactive)"
    assert a["MASKTOOL_LATENCY_USEC"] == "1234"
    assert "STIG X" in a["MESSAGE"]
    assert c["MASKTOOL_UNIT"] == "c.service"
    assert "conflict" in c["MESSAGE"]

    sent: list[tuple[str, dict[str, Any]]] = []
    send_all(entries, lambda message, **fields: sent.append((message, fields)))
    assert sent[0][0] == a["MESSAGE"]
    assert "MESSAGE" not in sent[0][1]


def test_message_ids_are_distinct_128_bit() -> None:
    ids = list(MESSAGE_IDS.values())
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_sender_hands_sendv_what_systemd_journal_send_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """journal_sender skips importing systemd.journal: the lines it sends are that module's."""
    import systemd._journal
    from systemd import journal

    ours: list[tuple[str, ...]] = []
    theirs: list[tuple[str, ...]] = []
    monkeypatch.setattr(systemd._journal, "sendv", lambda *lines: ours.append(lines))
    monkeypatch.setattr(journal, "sendv", lambda *lines: theirs.append(lines))
    send = journal_sender()
    fields = {"MESSAGE_ID": MESSAGE_IDS["mask"], "PRIORITY": "5", "MASKTOOL_UNIT": "a.service"}
    where: dict[str, Any] = {"CODE_FILE": "/x/cli.py", "CODE_LINE": 7, "CODE_FUNC": "f"}
    for s in (send, journal.send):
        s("masked a.service \u00e9", **where, **fields)
        s("no location given", MASKTOOL_UNIT="b.service")  # the caller's, found by each
        s("only a message")
    assert ours == theirs
    assert ours[1][1].startswith("CODE_FILE=") and ours[1][1].endswith("test_journal.py")


def test_every_message_id_is_explained_by_the_catalog() -> None:
    catalog = (Path(__file__).resolve().parents[2] / "packaging/masktool.catalog").read_text()
    for kind, mid in MESSAGE_IDS.items():
        assert f"\n-- {mid}\n" in catalog, f"{kind} ({mid}) has no catalog entry"
