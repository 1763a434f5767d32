"""Policy files → a validated, merged `Policy` in which every rule knows its file:line.

Reads YAML with `yaml.SafeLoader` only, walks the node tree itself so that every value keeps its
line, and rejects what PyYAML would accept silently: duplicate keys, unknown keys, wrong types.

Files are read through `Tree` (tree.py), never by plain host paths: with --root DIR the default
files, absolute includes and links are resolved inside DIR; every directory on the way and the file
must be root's; a FIFO, socket, device, link loop or file that is not UTF-8 is one problem naming
the file, never a hang or a traceback. Includes are followed without recursion, at most
MAX_INCLUDE_DEPTH deep.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import yaml

from masktool.tree import NotRegularFileError, Tree, UntrustedPathError, shown
from masktool.units import unit_name_error

Action = Literal["mask", "unmask"]
Mode = Literal["enforce", "audit"]

DEFAULT_POLICY = "/etc/masktool/policy.yaml"
DEFAULT_POLICY_DIR = "/etc/masktool/policy.d"
SITE_BUNDLE_DIR = "/etc/masktool/policies"
VENDOR_BUNDLE_DIR = "/usr/share/masktool/policies"


def packaged_bundle_dirs() -> list[Path]:
    """Bundles shipped with the code: inside the wheel, or policies/ of a source checkout."""
    here = Path(__file__).resolve().parent
    return [p for p in (here / "policies", here.parent.parent / "policies") if p.is_dir()]


@dataclass(frozen=True, order=True)
class Location:
    """Where a rule or setting was read: file and line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Rule:
    """One mask or unmask rule as the policy states it."""

    unit: str
    action: Action
    source: Location
    reason: str = ""
    stop: bool = True
    runtime: bool = False
    force: bool = False
    enable: bool = False
    with_triggers: bool = False  # mask the sockets, timers and paths that start it too
    trigger_of: str = ""  # set on rules masktool derives for with_triggers: the unit triggered
    # Include chain from a top-level file down to the file that holds the rule ("" = top level).
    via: tuple[str, ...] = ()
    # For a rule from an include: where the top-level file includes the chain ("file:line"),
    # the file a site changes to exempt it.
    included_at: str = ""
    # The ComplianceAsCode rule that checks this one, for auditors ("" = none given).
    ref: str = ""


@dataclass(frozen=True)
class Exemption:
    """A unit dropped from included bundles, and why."""

    unit: str
    reason: str
    source: Location


@dataclass(frozen=True)
class Policy:
    """The merged policy: the rule in force per unit, and what it was merged from."""

    mode: Mode
    rules: tuple[Rule, ...]  # the effective rule per unit, in policy order
    # Every rule read, effective or not, and which exemption dropped which rule: for `why`.
    all_rules: tuple[Rule, ...] = ()
    exemptions: tuple[Exemption, ...] = ()
    files: tuple[str, ...] = ()
    # Each file's text as it was parsed, beside `files`: an auditor's report hashes the very
    # text the rules came from, not a second read. Kept as text, not hashed here: hashlib
    # loads OpenSSL, megabytes the daemon would carry for a report it never writes.
    texts: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def rule_for(self, unit: str) -> Rule | None:
        for r in self.rules:
            if r.unit == unit:
                return r
        return None


@dataclass(frozen=True)
class Draft:
    """A policy file not installed yet, read in place of (or added at) the path it will be
    installed at, so that it is validated and planned as it will merge (`--as PATH --draft
    FILE`, a configuration tool's `validate:`)."""

    installed: str  # absolute, inside the tree the policy is read in
    file: str  # a host path, as given


@dataclass
class PolicyError(Exception):
    """One or more problems, each naming file:line. Nothing is applied when one is raised."""

    problems: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(f"{where}: {what}" for where, what in self.problems)


# -- reading YAML with locations --------------------------------------------------------------


class _Reader:
    """Validates one file's node tree and turns it into rules, collecting problems as it goes."""

    def __init__(self, path: str, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems

    def at(self, node: yaml.Node) -> Location:
        return Location(self.path, node.start_mark.line + 1)

    def error(self, node: yaml.Node | None, message: str) -> None:
        where = str(self.at(node)) if node is not None else self.path
        self.problems.append((where, message))

    def mapping(
        self, node: yaml.Node, what: str, allowed: Iterable[str]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping (key: value)")
            return None
        if node.tag != "tag:yaml.org,2002:map":
            self.error(node, f"{what} has the tag '{node.tag}'; a policy uses no YAML tags")
            return None
        allowed = list(allowed)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                self.error(key_node, f"{what}: keys must be plain strings")
                continue
            key = str(key_node.value)
            if key in out:
                first = self.at(out[key][0])
                self.error(
                    key_node, f"duplicate key '{key}' in {what} (first at line {first.line})"
                )
                continue
            if key not in allowed:
                self.error(
                    key_node, f"unknown key '{key}' in {what}; allowed: {', '.join(allowed)}"
                )
                continue
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node: yaml.Node, key: str, kind: type) -> object | None:
        tags = {
            str: "tag:yaml.org,2002:str",
            bool: "tag:yaml.org,2002:bool",
            int: "tag:yaml.org,2002:int",
        }
        names = {str: "a string", bool: "true or false", int: "an integer"}
        if not isinstance(node, yaml.ScalarNode) or node.tag != tags[kind]:
            self.error(node, f"'{key}' must be {names[kind]}")
            return None
        if kind is bool:
            return yaml.SafeLoader.bool_values[str(node.value).lower()]
        if kind is int:
            try:
                return int(str(node.value), 0)
            except ValueError:
                self.error(node, f"'{key}' must be an integer")
                return None
        return str(node.value)

    def string(self, node: yaml.Node, key: str) -> str | None:
        v = self.scalar(node, key, str)
        return v if isinstance(v, str) else None

    def boolean(self, node: yaml.Node, key: str) -> bool | None:
        v = self.scalar(node, key, bool)
        return v if isinstance(v, bool) else None

    def sequence(self, node: yaml.Node, key: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []  # "mask:" with nothing under it
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"'{key}' must be a list")
            return []
        if node.tag != "tag:yaml.org,2002:seq":
            self.error(node, f"'{key}' has the tag '{node.tag}'; a policy uses no YAML tags")
            return []
        return list(node.value)

    def ref(self, node: yaml.Node) -> str | None:
        text = self.string(node, "ref")
        if text is None:
            return None
        problem = ref_error(text)
        if problem:
            self.error(node, problem)
            return None
        return text

    def unit(self, node: yaml.Node) -> str | None:
        name = self.string(node, "unit")
        if name is None:
            return None
        why = unit_name_error(name)
        if why:
            self.error(node, f"invalid unit name '{name}': {why}")
            return None
        return name


# The four private classes below are plain classes, not dataclasses: each dataclass costs a
# quarter of a millisecond to define, in every run of every command.


class _FileContent:
    """What one policy file says."""

    __slots__ = ("exemptions", "includes", "mode", "path", "rules", "text")

    def __init__(self, path: str, text: str = "") -> None:
        self.path = path
        self.text = text
        self.mode: tuple[Mode, Location] | None = None
        self.includes: list[tuple[str, Location]] = []
        self.rules: list[Rule] = []
        self.exemptions: list[Exemption] = []


# libyaml's parser when PyYAML was built with it (ten times faster on a 1,000-rule policy);
# both are the safe loader and keep marks for file:line.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

REF_PREFIX = "xccdf_org.ssgproject.content_rule_"
_REF_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")


def ref_error(text: str) -> str | None:
    """Why `text` is not a ComplianceAsCode rule id (None when it is one)."""
    rest = text.removeprefix(REF_PREFIX)
    if rest != text and _REF_ID.fullmatch(rest):
        return None
    if _REF_ID.fullmatch(text):
        return f"'ref' takes the full rule id: write '{REF_PREFIX}{text}'"
    return (
        f"'ref' must be a ComplianceAsCode rule id such as '{REF_PREFIX}service_kdump_disabled'"
        f", not '{text}'"
    )


TOP_KEYS = ("version", "mode", "include", "mask", "unmask", "exempt")
EXEMPT_KEYS = ("unit", "reason")
RULE_KEYS: dict[Action, tuple[str, ...]] = {
    "mask": ("unit", "reason", "ref", "stop", "runtime", "force", "with_triggers"),
    "unmask": ("unit", "reason", "ref", "enable"),
}


def parse_text(
    text: str,
    path: str,
    problems: list[tuple[str, str]],
    via: tuple[str, ...] = (),
    included_at: str = "",
) -> _FileContent | None:
    """Parse one policy document. Problems are appended; None when the file is unusable."""
    r = _Reader(path, problems)
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        detail = " ".join(" ".join(x.split()) for x in (e.context, e.problem) if x)
        problems.append((f"{path}{line}", f"YAML syntax error: {detail}"))
        return None
    except yaml.YAMLError as e:
        problems.append((path, f"YAML error: {' '.join(str(e).split())}"))
        return None
    if root is None:
        problems.append((path, "the file is empty; a policy starts with 'version: 1'"))
        return None
    keys = r.mapping(root, "the policy", TOP_KEYS)
    if keys is None:
        return None
    content = _FileContent(path, text)
    if "version" not in keys:
        r.error(root, "missing 'version: 1' at the top of the policy")
    else:
        _key_node, node = keys["version"]
        v = r.scalar(node, "version", int)
        if v is not None and v != 1:
            r.error(node, f"unsupported policy version {v}; this masktool reads version 1")
    if "mode" in keys:
        _, node = keys["mode"]
        m = r.string(node, "mode")
        if m is not None:
            if m in ("enforce", "audit"):
                content.mode = ("enforce" if m == "enforce" else "audit", r.at(node))
            else:
                r.error(node, f"mode must be 'enforce' or 'audit', not '{m}'")
    if "include" in keys:
        for item in r.sequence(keys["include"][1], "include"):
            inc = r.string(item, "include")
            if inc:
                content.includes.append((inc, r.at(item)))
            elif inc == "":
                r.error(item, "an include must name a bundle or a path")
    # A unit listed twice in one file is a slip (a paste, a merge): which of the two was
    # meant is the admin's to say.
    # (Masked and unmasked in one file is the merge's "both" error.)
    for action in ("mask", "unmask"):
        listed: dict[str, tuple[str, Location]] = {}
        if action in keys:
            for item in r.sequence(keys[action][1], action):
                rule = _parse_rule(r, item, action, via, included_at)
                if rule and _first_listing(r, listed, rule.unit, f"{action}ed", rule.source):
                    content.rules.append(rule)
    if "exempt" in keys:
        exempted: dict[str, tuple[str, Location]] = {}
        for item in r.sequence(keys["exempt"][1], "exempt"):
            ex = _parse_exemption(r, item)
            if ex and _first_listing(r, exempted, ex.unit, "exempted", ex.source):
                content.exemptions.append(ex)
    return content


def _first_listing(
    r: _Reader, listed: dict[str, tuple[str, Location]], unit: str, how: str, at: Location
) -> bool:
    """Whether this is the unit's first listing in the file; if not, the second is an error."""
    first = listed.setdefault(unit, (how, at))
    if first[1] is at:
        return True
    r.problems.append(
        (
            str(at),
            f"{unit} is listed twice in this file: {how} here and {first[0]} at line "
            f"{first[1].line}; keep one",
        )
    )
    return False


def _parse_rule(
    r: _Reader, item: yaml.Node, action: Action, via: tuple[str, ...], included_at: str
) -> Rule | None:
    if isinstance(item, yaml.ScalarNode):
        unit = r.unit(item)
        return Rule(unit, action, r.at(item), via=via, included_at=included_at) if unit else None
    fields = r.mapping(item, f"a {action} rule", RULE_KEYS[action])
    if fields is None:
        return None
    if "unit" not in fields:
        r.error(item, f"a {action} rule needs 'unit: NAME'")
        return None
    unit = r.unit(fields["unit"][1])
    values: dict[str, object] = {}
    ok = unit is not None
    for key in ("stop", "runtime", "force", "enable", "with_triggers"):
        if key in fields:
            b = r.boolean(fields[key][1], key)
            ok = ok and b is not None
            values[key] = b
    reason = ""
    if "reason" in fields:
        s = r.string(fields["reason"][1], "reason")
        ok = ok and s is not None
        reason = s or ""
    ref = ""
    if "ref" in fields:
        ref_or_none = r.ref(fields["ref"][1])
        ok = ok and ref_or_none is not None
        ref = ref_or_none or ""
    if not ok or unit is None:
        return None
    return Rule(
        unit,
        action,
        r.at(item),
        reason=reason,
        stop=bool(values.get("stop", True)),
        runtime=bool(values.get("runtime", False)),
        force=bool(values.get("force", False)),
        enable=bool(values.get("enable", False)),
        with_triggers=bool(values.get("with_triggers", False)),
        via=via,
        included_at=included_at,
        ref=ref,
    )


def _parse_exemption(r: _Reader, item: yaml.Node) -> Exemption | None:
    if isinstance(item, yaml.ScalarNode):
        r.error(item, "an exemption needs a reason: write '- unit: NAME' and 'reason: WHY'")
        return None
    fields = r.mapping(item, "an exemption", EXEMPT_KEYS)
    if fields is None:
        return None
    if "unit" not in fields or "reason" not in fields:
        r.error(item, "an exemption needs both 'unit' and 'reason' (auditors read the reason)")
        return None
    unit = r.unit(fields["unit"][1])
    reason = r.string(fields["reason"][1], "reason")
    if unit is None or not reason:
        if reason == "":
            r.error(fields["reason"][1], "the exemption's reason is empty")
        return None
    return Exemption(unit, reason, r.at(item))


# -- finding and reading files ----------------------------------------------------------------
#
# Every policy file is read through a Tree (tree.py): one path component at a time, links
# resolved inside the tree (so with --root DIR nothing outside DIR is read), FIFOs and devices
# refused without blocking, and every directory on the way and the file checked to be root's.

HOST = Tree("/")

# How deep includes may nest (a top-level file is level 0). Deeper is a mistake, or a loop
# through paths that name different files.
MAX_INCLUDE_DEPTH = 32

_NOT_FOUND = (FileNotFoundError, NotADirectoryError)


def _join(directory: str, name: str) -> str:
    """`directory/name` as strings (no normalising: `..` is resolved by Tree, like the kernel
    resolves it, after the links before it)."""
    if name.startswith("/") or not directory:
        return name
    return f"{directory.rstrip('/')}/{name}"


class _Source:
    """A policy file to read: a tree and the path inside it, and the path named in messages."""

    __slots__ = ("inside", "name", "text_from", "tree")

    def __init__(self, tree: Tree, inside: str, name: str, text_from: str = "") -> None:
        self.tree = tree
        self.inside = inside  # absolute, inside the tree, not resolved
        self.name = name  # the host path (or the path as given on the command line), not escaped
        # A draft's: its text is read from this host path; it stands at `inside` (its includes
        # are found from there, in that tree).
        self.text_from = text_from

    @property
    def shown(self) -> str:
        """The name in messages, in Location.file and in Policy.files."""
        return shown(self.name)

    def include(self, ref: str) -> _Source:
        """The file a path include names: an absolute path is in this file's tree, a relative
        one is relative to this file's directory."""
        if ref.startswith("/"):
            return _Source(self.tree, ref, self.tree.host(ref))
        name = self.tree.host(self.inside) if self.text_from else self.name
        return _Source(
            self.tree,
            _join(os.path.split(self.inside)[0], ref),
            _join(os.path.split(name)[0], ref),
        )


class _Top:
    """A policy file named on the command line or at a default location."""

    __slots__ = ("optional", "source")

    def __init__(self, source: _Source, optional: bool = False) -> None:
        self.source = source
        self.optional = optional  # a default location: missing means "not used", not an error


def _why(e: OSError) -> str:
    """What an OSError says, on one line. Tree's errors carry the whole message (with the path,
    escaped) in strerror; plain ones from the kernel say what failed (the caller names where)."""
    text = e.strerror or str(e)
    if isinstance(e, UntrustedPathError) and ", not root" in text and "not owned" not in text:
        text = f"not owned by root: {text}"
    return " ".join(text.split())


def _lexists(tree: Tree, inside: str) -> bool:
    """Whether the last component of `inside` exists at all (a dangling link does)."""
    directory, name = os.path.split(inside)
    parent = tree.real_dir(directory)
    if parent is None:
        return False
    try:
        os.lstat(_join(parent, name))
    except OSError:
        return False
    return True


def _is_regular_file(tree: Tree, inside: str) -> bool:
    final, exists = tree.chase(inside)
    try:
        return exists and stat.S_ISREG(os.lstat(tree.host(final)).st_mode)
    except OSError:
        return False


def _leads_to(src: _Source) -> str:
    """' (NAME leads to X, which does not exist)' when links on the way to a missing file
    point elsewhere; "" when there is no link to blame."""
    final, _ = src.tree.chase(src.inside)
    if final == os.path.normpath("/" + src.inside.lstrip("/")):
        return ""
    return f" ({src.shown} leads to {src.tree.shown(final)}, which does not exist)"


def _is_policy_name(name: str) -> bool:
    # Like systemd's drop-ins and sudo's includedir: names starting with a dot are editors' lock
    # files (.#site.yaml, often a dangling link), backups and swap files.
    return name.endswith(".yaml") and not name.startswith(".")


def _policy_names(names: Iterable[str]) -> list[str]:
    return sorted((n for n in names if _is_policy_name(n)), key=os.fsencode)


def _list_policy_dir(
    tree: Tree,
    inside: str,
    name: str,
    problems: list[tuple[str, str]],
    *,
    optional: bool,
    draft_at: str = "",
) -> list[_Top]:
    """The policy files of a directory, in lexical (byte) order. The directory itself must be
    root's and writable by nobody else, sticky or not: anyone who can add a file to it could
    unmask units. `draft_at`: the host path a draft will be installed at; counted in when it
    is in this directory (the reader reads the draft there)."""
    base = inside.rstrip("/")
    head, tail = os.path.split(draft_at)
    here = tree.host(tree.chase(base)[0]) if draft_at else ""
    added = [tail] if draft_at and head == here and _is_policy_name(tail) else []
    try:
        fd = tree.open_dir(inside, trust=True)
    except OSError as e:
        if isinstance(e, _NOT_FOUND) and optional and not _lexists(tree, inside):
            return [_Top(_Source(tree, f"{base}/{n}", _join(name, n))) for n in added]
        why = _why(e)
        if isinstance(e, NotADirectoryError) and _is_regular_file(tree, inside):
            why = f"{shown(name)} is a regular file, not a directory"
        problems.append((shown(name), f"cannot use this policy directory: {why}"))
        return []
    try:
        st = os.fstat(fd)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problems.append(
                (
                    shown(name),
                    f"policy directory {shown(name)} is writable by group or others (mode "
                    f"{stat.S_IMODE(st.st_mode):04o}); even with the sticky bit anyone could add "
                    f"a policy file to it: chmod go-w {shown(name)}",
                )
            )
            return []
        names = os.listdir(fd)
    except OSError as e:
        problems.append((shown(name), f"cannot list this policy directory: {_why(e)}"))
        return []
    finally:
        os.close(fd)
    listed = _policy_names(set(names) | set(added))
    return [_Top(_Source(tree, f"{base}/{n}", _join(name, n))) for n in listed]


def _top_sources(
    policy_args: Sequence[str], tree: Tree, problems: list[tuple[str, str]], draft_at: str = ""
) -> list[_Top]:
    """The top-level policy files: --policy files and directories (host paths), else the
    default locations inside the tree."""
    if not policy_args:
        main = _Source(tree, DEFAULT_POLICY, tree.host(DEFAULT_POLICY))
        return [
            _Top(main, optional=True),
            *_list_policy_dir(
                tree,
                DEFAULT_POLICY_DIR,
                tree.host(DEFAULT_POLICY_DIR),
                problems,
                optional=True,
                draft_at=draft_at,
            ),
        ]
    tops: list[_Top] = []
    for a in policy_args:
        try:
            inside = _join(str(Path.cwd()), a) if not a.startswith("/") else a
        except OSError as e:
            problems.append((shown(a), f"cannot use this policy path: {_why(e)}"))
            continue
        try:
            os.close(HOST.open_dir(inside))
        except OSError:
            tops.append(_Top(_Source(HOST, inside, a)))  # reading it says what is wrong
            continue
        tops.extend(_list_policy_dir(HOST, inside, a, problems, optional=False, draft_at=draft_at))
    return tops


def _final_host_path(src: _Source) -> str:
    """Where `src` leads, links resolved inside its tree, as a host path."""
    return src.tree.host(src.tree.chase(src.inside)[0])


def _draft_host(tree: Tree, draft: Draft | None) -> str:
    if draft is None:
        return ""
    return tree.host(tree.chase(os.path.normpath("/" + draft.installed.lstrip("/")))[0])


class _NotText(ValueError):
    pass


def _read(src: _Source) -> tuple[str, str]:
    """The text of a policy file and its final path inside its tree. Raises OSError (with a
    message naming the culprit: the file, a directory on the way, a link) or _NotText."""
    if src.text_from:
        data, _ = HOST.read_file(src.text_from, trust=True)
        return _decode(data), src.tree.chase(src.inside)[0]
    try:
        data, final = src.tree.read_file(src.inside, trust=True)
    except OSError as e:
        if e.errno == errno.ENXIO:  # open() of a socket, or of a device with no driver
            final, exists = src.tree.chase(src.inside)
            mode = os.lstat(src.tree.host(final)).st_mode if exists else 0
            if exists and not stat.S_ISREG(mode):
                raise NotRegularFileError(src.tree.host(final), mode) from e
        raise
    return _decode(data), final


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _NotText(f"not UTF-8 text ({e.reason} at byte {e.start})") from e


def _is_bundle_name(ref: str) -> bool:
    return "/" not in ref and not ref.endswith((".yaml", ".yml"))


def _bad_include(ref: str) -> str:
    """Why `ref` cannot name a file ("" when it can): YAML escapes can make strings no file
    name holds."""
    if "\0" in ref:
        return "contains a NUL character, which no file name can"
    try:
        ref.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid text (a lone surrogate from a \\u escape?)"
    return ""


def _bundle_dirs(tree: Tree) -> list[tuple[Tree, str]]:
    return [
        (tree, SITE_BUNDLE_DIR),
        (tree, VENDOR_BUNDLE_DIR),
        *((HOST, str(d)) for d in packaged_bundle_dirs()),
    ]


def _bundles_known(dirs: Sequence[tuple[Tree, str]]) -> str:
    """'known bundles: a, b (in DIR); c (in DIR2)' for a "not found" message."""
    found: list[str] = []
    for tree, inside in dirs:
        try:
            with tree.dir(inside) as fd:
                names = os.listdir(fd)
        except OSError:
            continue
        bundles = [shown(n[: -len(".yaml")]) for n in _policy_names(names)]
        if bundles:
            found.append(f"{', '.join(bundles)} (in {tree.shown(inside)})")
    return f"known bundles: {'; '.join(found)}" if found else "no bundles are installed"


# -- reading, include by include -------------------------------------------------------------


class _Open:
    """A file being read: its includes are read (depth first) before its own rules count."""

    __slots__ = ("content", "included_at", "key", "next_include", "source", "via")

    def __init__(
        self,
        key: tuple[str, str],
        source: _Source,
        content: _FileContent,
        via: tuple[str, ...],
        included_at: str,
    ) -> None:
        self.key = key  # (tree top, final path inside the tree): the same file, however named
        self.source = source
        self.content = content
        self.via = via  # the include chain that led here ("" = top level)
        self.included_at = included_at  # the top-level include this file came by ("" = top)
        self.next_include = 0


class _PolicyReader:
    def __init__(
        self, tree: Tree, problems: list[tuple[str, str]], draft: Draft | None = None
    ) -> None:
        self.tree = tree  # where default files and bundles are looked up
        self.problems = problems
        self.contents: list[_FileContent] = []
        self.seen: set[tuple[str, str]] = set()
        self._bundle_dirs: list[tuple[Tree, str]] | None = None
        self.draft = draft
        self.draft_at = _draft_host(tree, draft)
        self.draft_read = False

    def sub(self, src: _Source) -> _Source:
        """The draft, when `src` is (or leads to) the path it will be installed at; else
        `src`. The draft stands in that place: only its text comes from the draft's file."""
        if self.draft is None or _final_host_path(src) != self.draft_at:
            return src
        self.draft_read = True
        f = self.draft.file
        return _Source(
            src.tree, src.inside, f, f if f.startswith("/") else _join(str(Path.cwd()), f)
        )

    def problem(self, where: str, what: str) -> None:
        self.problems.append((where, what))

    def bundle_dirs(self) -> list[tuple[Tree, str]]:
        if self._bundle_dirs is None:
            self._bundle_dirs = _bundle_dirs(self.tree)
        return self._bundle_dirs

    def read_top(self, top: _Top) -> None:
        src = self.sub(top.source)
        try:
            text, final = _read(src)
        except _NOT_FOUND as e:
            if top.optional and not _lexists(src.tree, src.inside):
                return
            if isinstance(e, FileNotFoundError) and not _lexists(src.tree, src.inside):
                self.problem(src.shown, f"policy file {src.shown} does not exist{_leads_to(src)}")
            else:
                self.problem(src.shown, f"cannot use this policy file: {_why(e)}")
            return
        except OSError as e:
            self.problem(src.shown, f"cannot use this policy file: {_why(e)}")
            return
        except _NotText as e:
            self.problem(src.shown, f"cannot use this policy file: {e}")
            return
        first = self.open((src, text, final), (), [], "")
        stack = [first] if first else []
        while stack:  # no recursion: an include chain is bounded by MAX_INCLUDE_DEPTH only
            here = stack[-1]
            if here.next_include >= len(here.content.includes):
                self.contents.append(here.content)  # after its includes: its rules override
                stack.pop()
                continue
            ref, loc = here.content.includes[here.next_include]
            here.next_include += 1
            if len(stack) > MAX_INCLUDE_DEPTH:
                self.problem(
                    str(loc),
                    f"include '{ref}' would nest includes {len(stack)} levels deep (the chain "
                    f"starts at {stack[0].source.shown}); the limit is {MAX_INCLUDE_DEPTH}",
                )
                continue
            found = self.resolve(ref, here.source, str(loc))
            if found is None:
                continue
            child = self.open(found, (*here.via, ref), stack, str(loc))
            if child:
                stack.append(child)

    def open(
        self, found: tuple[_Source, str, str], via: tuple[str, ...], stack: list[_Open], at: str
    ) -> _Open | None:
        src, text, final = found
        key = (src.tree.top, final)
        for i, f in enumerate(stack):
            if f.key == key:
                cycle = " -> ".join([*(g.source.shown for g in stack[i:]), src.shown])
                self.problem(at, f"include cycle: {cycle}")
                return None
        if key in self.seen:
            return None  # included twice: the rules are the same, read them once
        self.seen.add(key)
        # The include in a top-level file this chain started at (where a site exempts).
        included_at = (stack[-1].included_at or at) if stack else ""
        content = parse_text(text, src.shown, self.problems, via, included_at)
        if content is None:
            return None
        if via and content.mode is not None:
            self.problem(
                str(content.mode[1]),
                "'mode' may only be set in a top-level policy, not in an included one",
            )
        return _Open(key, src, content, via, included_at)

    def resolve(self, ref: str, including: _Source, at: str) -> tuple[_Source, str, str] | None:
        """Find and read what an include names: (source, text, final path), or None with the
        problem recorded."""
        bad = _bad_include(ref)
        if bad:
            self.problem(at, f"include '{ref}' {bad}")
            return None
        if _is_bundle_name(ref):
            dirs = self.bundle_dirs()
            candidates = [_Source(t, f"{d}/{ref}.yaml", t.host(f"{d}/{ref}.yaml")) for t, d in dirs]
        else:
            candidates = [including.include(ref)]
        candidates = [self.sub(c) for c in candidates]
        for c in candidates:
            try:
                text, final = _read(c)
            except _NOT_FOUND as e:
                if _lexists(c.tree, c.inside):  # a dangling link, or a path through a file
                    self.problem(c.shown, f"cannot use this policy file: {_why(e)}")
                    return None
                continue
            except OSError as e:
                # A site bundle that cannot be used is an error, not a reason to fall back.
                self.problem(c.shown, f"cannot use this policy file: {_why(e)}")
                return None
            except _NotText as e:
                self.problem(c.shown, f"cannot use this policy file: {e}")
                return None
            return c, text, final
        tried = ", ".join(c.shown for c in candidates)
        if _is_bundle_name(ref):
            known = _bundles_known(self.bundle_dirs())
            self.problem(at, f"include '{ref}' not found (looked in: {tried}); {known}")
        else:
            leads = _leads_to(candidates[0])
            self.problem(at, f"include '{ref}' not found (looked in: {tried}){leads}")
        return None


def load_policy(
    policy_args: Sequence[str] = (), root: str = "/", draft: Draft | None = None
) -> Policy:
    """Read, validate and merge the policy. Raises PolicyError naming every problem found.

    Default files are read inside `root` (like `systemctl --root`); --policy arguments are
    host paths. Includes are resolved in the tree of the file that includes them; bundles in
    `root`, then among masktool's own files. With `draft`, its file is read wherever the
    policy would read the path it will be installed at.
    """
    tree = Tree(root)
    problems: list[tuple[str, str]] = []
    reader = _PolicyReader(tree, problems, draft)
    for top in _top_sources(policy_args, tree, problems, reader.draft_at):
        reader.read_top(top)
    if draft is not None and not reader.draft_read:
        problems.append(
            (
                shown(draft.file),
                f"--as {shown(draft.installed)}: no policy masktool reads is at that path, so "
                "the draft would change nothing; drafts go at "
                f"{DEFAULT_POLICY}, {DEFAULT_POLICY_DIR}/NAME.yaml, or "
                f"{SITE_BUNDLE_DIR}/NAME.yaml when a policy includes NAME",
            )
        )
    if not reader.contents and not problems:
        if policy_args:
            where = ", ".join(shown(a) for a in policy_args)
            note = ""
        else:
            main = _Source(tree, DEFAULT_POLICY, tree.host(DEFAULT_POLICY))
            where = f"{main.shown} or {tree.shown(DEFAULT_POLICY_DIR)}/*.yaml"
            note = _leads_to(main)
        problems.append((where, f"no policy file found; write one or pass --policy FILE{note}"))
    if problems:
        raise PolicyError([(shown(w), shown(m)) for w, m in problems])
    return merge(reader.contents)


def same_rules(a: Policy, b: Policy) -> bool:
    """Whether two policies enforce the same, each rule from the same file:line."""
    return (a.mode, a.rules) == (b.mode, b.rules)


def same_but_lines(a: Policy, b: Policy) -> bool:
    """Whether two policies differ at most in the line numbers of their rules (a comment
    added above them, say): the same rules, from the same files."""

    def key(r: Rule) -> Rule:
        return replace(
            r, source=Location(r.source.file, 0), included_at=r.included_at.rpartition(":")[0]
        )

    return a.mode == b.mode and [key(r) for r in a.rules] == [key(r) for r in b.rules]


# -- merging ----------------------------------------------------------------------------------


def _unmatched_exemptions(
    exemptions: Sequence[Exemption], rules: Sequence[Rule]
) -> list[tuple[str, str]]:
    """An exemption that matches no rule does nothing: most likely a typo, and the unit it
    meant is still masked. (The finding: `kdumpd.service` exempted, kdump stopped.)"""
    named = {r.unit for r in rules}
    out = []
    for e in exemptions:
        if e.unit in named:
            continue
        bundled = sorted({r.unit for r in rules if r.via})
        # Imported here: only a mistake needs it.
        from difflib import get_close_matches

        close = get_close_matches(e.unit, bundled, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        where = "the included bundles" if bundled else "the policy (it includes no bundle)"
        out.append((str(e.source), f"exempt {e.unit} matches no rule of {where}{hint}"))
    return out


def merge(contents: Sequence[_FileContent]) -> Policy:
    problems: list[tuple[str, str]] = []
    mode: Mode = "enforce"
    mode_at: Location | None = None
    for c in contents:
        if c.mode is None:
            continue
        if mode_at is not None and c.mode[0] != mode:
            problems.append(
                (str(c.mode[1]), f"mode '{c.mode[0]}' contradicts mode '{mode}' set at {mode_at}")
            )
        mode, mode_at = c.mode
    exemptions = [e for c in contents for e in c.exemptions]
    exempt = {e.unit: e for e in exemptions}
    all_rules = [r for c in contents for r in c.rules]

    effective: dict[str, Rule] = {}
    for rule in all_rules:
        ex = exempt.get(rule.unit)
        if ex is not None:
            if not rule.via:
                problems.append(
                    (
                        str(rule.source),
                        f"{rule.unit} is exempted at {ex.source}; "
                        "exemptions drop units from included bundles, so remove one of the two",
                    )
                )
            continue
        prev = effective.get(rule.unit)
        if prev is not None and prev.action != rule.action:
            problems.append(
                (
                    str(rule.source),
                    f"{rule.unit} is both {rule.action}ed here and "
                    f"{prev.action}ed at {prev.source}; keep one (or exempt it from the bundle)",
                )
            )
            continue
        # A later rule for the same unit (a site file after its bundles) overrides the earlier.
        effective[rule.unit] = rule
    problems.extend(_unmatched_exemptions(exemptions, all_rules))
    if problems:
        raise PolicyError(problems)
    return Policy(
        mode=mode,
        rules=tuple(effective.values()),
        all_rules=tuple(all_rules),
        exemptions=tuple(exemptions),
        files=tuple(c.path for c in contents),
        texts=tuple(c.text for c in contents),
    )
