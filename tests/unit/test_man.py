"""The man pages say what --help and the policy parser say: every command, every option, every
policy key."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from masktool.cli import _parser
from masktool.policy import EXEMPT_KEYS, RULE_KEYS, TOP_KEYS

MAN = Path(__file__).resolve().parents[2] / "packaging/man"


def _text(page: str) -> str:
    # roff writes a literal hyphen as \-
    return (MAN / page).read_text().replace("\\-", "-")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    ap = _parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _synopsis(page: str, command: str) -> str:
    text = _text(page)
    block = text[text.index(".SH SYNOPSIS") : text.index(".SH DESCRIPTION")]
    part = block.split(f".B masktool {command}\n", 1)[1]
    return part.split(".br", 1)[0]


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_command_and_option_is_in_masktool_8(command: str) -> None:
    parser = _subcommands()[command]
    options = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    options.discard("--help")
    synopsis = _synopsis("masktool.8", command)
    for opt in options:
        assert opt in synopsis, f"{opt} of '{command}' missing from the SYNOPSIS of masktool.8"
        assert re.search(rf"^\.BI? {re.escape(opt)}\b", _text("masktool.8"), re.M), (
            f"{opt} is not described under OPTIONS in masktool.8"
        )
    assert re.search(rf"^\.B {command}\b", _text("masktool.8"), re.M), f"{command} undocumented"


def test_exit_codes_match_the_help() -> None:
    epilog = _parser().epilog or ""
    for code in ("0", "1", "2"):
        assert f"{code} " in epilog
        assert f".B {code}\n" in _text("masktool.8")


def test_every_policy_key_is_in_masktool_policy_5() -> None:
    text = _text("masktool-policy.5")
    keys = {*TOP_KEYS, *EXEMPT_KEYS, *(k for ks in RULE_KEYS.values() for k in ks)}
    for key in keys:
        assert re.search(rf"^\.B {key}$|\.BR? {key}\b", text, re.M), f"policy key {key} missing"
