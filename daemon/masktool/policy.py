"""Policy files → a validated, merged `Policy` in which every rule knows its file:line.

Reads YAML with `yaml.SafeLoader` only, walks the node tree itself so that every value keeps its
line, and rejects what PyYAML would accept silently: duplicate keys, unknown keys, wrong types.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

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
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Rule:
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


@dataclass(frozen=True)
class Exemption:
    unit: str
    reason: str
    source: Location


@dataclass(frozen=True)
class Policy:
    mode: Mode
    rules: tuple[Rule, ...]  # the effective rule per unit, in policy order
    # Every rule read, effective or not, and which exemption dropped which rule: for `why`.
    all_rules: tuple[Rule, ...] = ()
    exemptions: tuple[Exemption, ...] = ()
    files: tuple[str, ...] = ()

    def rule_for(self, unit: str) -> Rule | None:
        for r in self.rules:
            if r.unit == unit:
                return r
        return None


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
        return list(node.value)

    def unit(self, node: yaml.Node) -> str | None:
        name = self.string(node, "unit")
        if name is None:
            return None
        why = unit_name_error(name)
        if why:
            self.error(node, f"invalid unit name '{name}': {why}")
            return None
        return name


@dataclass
class _FileContent:
    path: str
    mode: tuple[Mode, Location] | None
    includes: list[tuple[str, Location]]
    rules: list[Rule]
    exemptions: list[Exemption]


# libyaml's parser when PyYAML was built with it (ten times faster on a 1,000-rule policy);
# both are the safe loader and keep marks for file:line.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

TOP_KEYS = ("version", "mode", "include", "mask", "unmask", "exempt")
EXEMPT_KEYS = ("unit", "reason")
RULE_KEYS: dict[Action, tuple[str, ...]] = {
    "mask": ("unit", "reason", "stop", "runtime", "force", "with_triggers"),
    "unmask": ("unit", "reason", "enable"),
}


def parse_text(
    text: str, path: str, problems: list[tuple[str, str]], via: tuple[str, ...] = ()
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
        detail = " ".join(x for x in (e.context, e.problem) if x)
        problems.append((f"{path}{line}", f"YAML syntax error: {detail}"))
        return None
    except yaml.YAMLError as e:
        problems.append((path, f"YAML error: {e}"))
        return None
    if root is None:
        problems.append((path, "the file is empty; a policy starts with 'version: 1'"))
        return None
    keys = r.mapping(root, "the policy", TOP_KEYS)
    if keys is None:
        return None
    content = _FileContent(path, None, [], [], [])
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
    for action in ("mask", "unmask"):
        if action in keys:
            for item in r.sequence(keys[action][1], action):
                rule = _parse_rule(r, item, action, via)
                if rule:
                    content.rules.append(rule)
    if "exempt" in keys:
        for item in r.sequence(keys["exempt"][1], "exempt"):
            ex = _parse_exemption(r, item)
            if ex:
                content.exemptions.append(ex)
    return content


def _parse_rule(r: _Reader, item: yaml.Node, action: Action, via: tuple[str, ...]) -> Rule | None:
    if isinstance(item, yaml.ScalarNode):
        unit = r.unit(item)
        return Rule(unit, action, r.at(item), via=via) if unit else None
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


def _under(root: str, path: str) -> Path:
    return Path(root) / path.lstrip("/")


def default_policy_files(root: str = "/") -> list[Path]:
    files: list[Path] = []
    main = _under(root, DEFAULT_POLICY)
    if main.exists():
        files.append(main)
    d = _under(root, DEFAULT_POLICY_DIR)
    if d.is_dir():
        files.extend(sorted(p for p in d.iterdir() if p.suffix == ".yaml"))
    return files


def expand_policy_args(args: Sequence[str]) -> list[Path]:
    """--policy takes files or directories (their *.yaml in lexical order)."""
    files: list[Path] = []
    for a in args:
        p = Path(a)
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.suffix == ".yaml"))
        else:
            files.append(p)
    return files


def read_trusted(path: Path) -> str:
    """Read a policy file, refusing one that someone other than root could have written."""
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        # The daemon runs as root, so for it this means "owned by root"; a user checking a
        # draft of their own may read it.
        if st.st_uid not in (0, os.geteuid()):
            raise PermissionError(
                f"not owned by root (uid {st.st_uid}); anyone owning it could unmask units: "
                f"chown root {path}"
            )
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(
                f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"chmod go-w {path}"
            )
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise OSError(f"not UTF-8 text ({e.reason} at byte {e.start})") from e


def _bundle_candidates(name: str, root: str) -> list[Path]:
    return [
        _under(root, SITE_BUNDLE_DIR) / f"{name}.yaml",
        _under(root, VENDOR_BUNDLE_DIR) / f"{name}.yaml",
        *(d / f"{name}.yaml" for d in packaged_bundle_dirs()),
    ]


def _is_bundle_name(ref: str) -> bool:
    return "/" not in ref and not ref.endswith((".yaml", ".yml"))


def resolve_include(ref: str, including_file: Path, root: str) -> tuple[Path | None, list[Path]]:
    """The file an include names, and where it was looked for."""
    if _is_bundle_name(ref):
        candidates = _bundle_candidates(ref, root)
    else:
        p = Path(ref)
        candidates = [p if p.is_absolute() else including_file.parent / p]
    for c in candidates:
        if c.is_file():
            return c, candidates
    return None, candidates


# -- merging ----------------------------------------------------------------------------------


def load_policy(policy_args: Sequence[str] = (), root: str = "/") -> Policy:
    """Read, validate and merge the policy. Raises PolicyError naming every problem found."""
    problems: list[tuple[str, str]] = []
    files = expand_policy_args(policy_args) if policy_args else default_policy_files(root)
    if not files:
        where = (
            ", ".join(policy_args)
            or f"{_under(root, DEFAULT_POLICY)} or {_under(root, DEFAULT_POLICY_DIR)}/*.yaml"
        )
        raise PolicyError([(where, "no policy file found; write one or pass --policy FILE")])

    contents: list[_FileContent] = []
    seen: set[Path] = set()

    def read(path: Path, via: tuple[str, ...], chain: tuple[Path, ...], at: str) -> None:
        real = path.resolve()
        if real in chain:
            cycle = " -> ".join(str(p) for p in (*chain, real))
            problems.append((at, f"include cycle: {cycle}"))
            return
        if real in seen:
            return  # included twice: the rules are the same, read them once
        seen.add(real)
        try:
            text = read_trusted(path)
        except FileNotFoundError:
            problems.append((at or str(path), f"policy file {path} does not exist"))
            return
        except OSError as e:
            problems.append((str(path), f"cannot use this policy file: {e}"))
            return
        content = parse_text(text, str(path), problems, via)
        if content is None:
            return
        if via and content.mode is not None:
            problems.append(
                (
                    str(content.mode[1]),
                    "'mode' may only be set in a top-level policy, not in an included one",
                )
            )
        for ref, loc in content.includes:
            target, looked = resolve_include(ref, path, root)
            if target is None:
                tried = ", ".join(str(p) for p in looked)
                problems.append((str(loc), f"include '{ref}' not found (looked in: {tried})"))
                continue
            read(target, (*via, ref), (*chain, real), str(loc))
        contents.append(content)  # after its includes: a file's own rules override theirs

    for f in files:
        read(f, (), (), "")
    if problems:
        raise PolicyError(problems)
    return merge(contents)


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
    if problems:
        raise PolicyError(problems)
    return Policy(
        mode=mode,
        rules=tuple(effective.values()),
        all_rules=tuple(all_rules),
        exemptions=tuple(exemptions),
        files=tuple(c.path for c in contents),
    )
