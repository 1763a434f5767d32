from __future__ import annotations

import pytest

from masktool.units import is_instance, is_template, template_of, unit_name_error


@pytest.mark.parametrize(
    "name",
    [
        "debug-shell.service",
        "ctrl-alt-del.target",
        "getty@.service",
        "getty@tty1.service",
        "systemd-fsck@dev-disk-by\\x2duuid-1234.service",
        "a@b@c.service",  # systemd allows '@' inside the instance
        "-.mount",
        "-.slice",
        "telnet.socket",
        "x" * 247 + ".service",
    ],
)
def test_valid(name: str) -> None:
    assert unit_name_error(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("sshd", "type suffix"),
        (".service", "type suffix"),
        ("foo.serv", "unknown unit type"),
        ("foo bar.service", "not allowed"),
        ("foo/bar.service", "not allowed"),
        ("@.service", "must not be empty"),
        ("@x.service", "must not be empty"),
        ("x" * 248 + ".service", "255"),
    ],
)
def test_invalid(name: str, why: str) -> None:
    err = unit_name_error(name)
    assert err is not None
    assert why in err


def test_template_helpers() -> None:
    assert is_template("foo@.service")
    assert not is_template("foo@bar.service")
    assert not is_template("foo.service")
    assert is_instance("foo@bar.service")
    assert not is_instance("foo@.service")
    assert template_of("foo@bar.service") == "foo@.service"
    assert template_of("foo.service") == "foo.service"
