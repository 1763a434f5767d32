"""Unit names and the unit search path, as systemd 252 defines them. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# systemd's UNIT_NAME_MAX is 256 including the terminating NUL.
UNIT_NAME_MAX = 255

UNIT_TYPES = frozenset(
    {
        "service",
        "socket",
        "target",
        "device",
        "mount",
        "automount",
        "swap",
        "timer",
        "path",
        "slice",
        "scope",
    }
)

# VALID_CHARS_WITH_AT in systemd's unit-name.c.
# Spelt out rather than taken from the string module, which only this would import.
_VALID_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + ":-_.\\@"
)


def unit_name_error(name: str) -> str | None:
    """Why `name` is not a valid unit name (None when it is): systemd's unit_name_is_valid()."""
    if not name:
        return "the unit name is empty"
    if len(name) > UNIT_NAME_MAX:
        return f"the unit name is {len(name)} characters long; systemd allows {UNIT_NAME_MAX}"
    dot = name.rfind(".")
    if dot <= 0:
        return "a unit name needs a type suffix such as .service, .socket or .target"
    suffix = name[dot + 1 :]
    if suffix not in UNIT_TYPES:
        return f"unknown unit type '.{suffix}'; one of: " + ", ".join(
            "." + t for t in sorted(UNIT_TYPES)
        )
    # issuperset first: it runs for every entry of the search path, and is almost always true.
    if not _VALID_CHARS.issuperset(name[:dot]):
        bad = sorted({c for c in name[:dot] if c not in _VALID_CHARS})
        shown = " ".join(repr(c) for c in bad)
        return f"character(s) {shown} not allowed; unit names use letters, digits and :-_.\\@"
    if name.startswith("@"):
        return "the part before '@' must not be empty"
    return None


def is_template(name: str) -> bool:
    """foo@.service"""
    return name.rfind(".") == name.find("@") + 1 and "@" in name


def is_instance(name: str) -> bool:
    """foo@bar.service"""
    at = name.find("@")
    return at > 0 and name.rfind(".") > at + 1


def template_of(name: str) -> str:
    """foo@bar.service -> foo@.service; a name with no instance is returned as it is."""
    if not is_instance(name):
        return name
    at = name.find("@")
    return name[: at + 1] + name[name.rfind(".") :]


def unit_type(name: str) -> str:
    return name[name.rfind(".") + 1 :]


def instance_of(name: str) -> str:
    """foo@bar.service -> bar; "" for a name with no instance."""
    if not is_instance(name):
        return ""
    return name[name.find("@") + 1 : name.rfind(".")]


# Unit types that may have aliases (systemd's unit_type_may_alias()).
ALIAS_TYPES = frozenset({"service", "socket", "target", "device", "timer", "path"})

# How many times systemd's loader looks a name up while following aliases before it gives up
# (unit_ids_map_get()'s FOLLOW_MAX; tried on 252: a chain of 7 alias links loads, of 8 is
# not-found). Going from an instance with no file to its template starts afresh.
FOLLOW_MAX = 8


def alias_allowed(name: str, target: str) -> bool:
    """Whether systemd accepts a link named `name` to a unit file named `target` as an alias
    (unit_validate_alias_symlink_or_warn()): the same type, one that may alias; a plain name
    to a plain name, a template to a template, an instance to a template or to the same
    instance of another template. The loader ignores a link it does not accept."""
    if unit_name_error(name) or unit_name_error(target):
        return False
    if unit_type(name) != unit_type(target) or unit_type(name) not in ALIAS_TYPES:
        return False
    if is_template(name):
        return is_template(target)
    if is_instance(name):
        return is_template(target) or instance_of(target) == instance_of(name)
    return not is_template(target) and not is_instance(target)


class Scope(Enum):
    """What a directory of the unit search path means for masks found in it."""

    PERSISTENT = "persistent"  # /etc/systemd/system: masktool's own scope
    RUNTIME = "runtime"  # /run/systemd/system: masktool's own scope, gone at reboot
    VENDOR = "vendor"  # anywhere else: masktool cannot remove a mask there


@dataclass(frozen=True)
class SearchDir:
    """A directory of the unit search path and what a mask there means."""

    path: str
    scope: Scope


ETC_DIR = "/etc/systemd/system"
RUN_DIR = "/run/systemd/system"

# `systemd-analyze unit-paths` of systemd 252 for the system manager, highest precedence first.
# Debian's build lists /lib before /usr/lib; on a merged-/usr system they are one directory and
# the observer skips the repeat.
SEARCH_PATH: tuple[SearchDir, ...] = (
    SearchDir("/etc/systemd/system.control", Scope.VENDOR),
    SearchDir("/run/systemd/system.control", Scope.VENDOR),
    SearchDir("/run/systemd/transient", Scope.VENDOR),
    SearchDir("/run/systemd/generator.early", Scope.VENDOR),
    SearchDir(ETC_DIR, Scope.PERSISTENT),
    SearchDir("/etc/systemd/system.attached", Scope.VENDOR),
    SearchDir(RUN_DIR, Scope.RUNTIME),
    SearchDir("/run/systemd/system.attached", Scope.VENDOR),
    SearchDir("/run/systemd/generator", Scope.VENDOR),
    SearchDir("/usr/local/lib/systemd/system", Scope.VENDOR),
    SearchDir("/lib/systemd/system", Scope.VENDOR),
    SearchDir("/usr/lib/systemd/system", Scope.VENDOR),
    SearchDir("/run/systemd/generator.late", Scope.VENDOR),
)

ETC_SEARCH_DIR = next(d for d in SEARCH_PATH if d.path == ETC_DIR)
RUN_SEARCH_DIR = next(d for d in SEARCH_PATH if d.path == RUN_DIR)
