"""ComplianceAsCode's published checks, as Debian's SCAP Security Guide packages ship them:
found by rule id in a datastream, reduced to what they ask of systemd, and read back from
OpenSCAP's results.

A service rule's OVAL is OR(package not installed, AND(unit not running, LoadState=masked)).
On a Debian host without an RPM database the package branch is true for every RHEL rule, and a
check that passes without masktool proves nothing: the proof evaluates a copy of each
definition with its rpminfo/dpkginfo criteria removed (the part that checks systemd), and says
so. The systemd probe sees only units systemd has loaded, and a test that saw none is true: a
result decided on no unit at all is reported as vacuous, never as a pass.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTENT = REPO / "build" / "tools" / "ssg"
PRODUCTS = ("rhel9", "fedora", "ubuntu2204")
REF_PREFIX = "xccdf_org.ssgproject.content_rule_"

XCCDF = "http://checklists.nist.gov/xccdf/1.2"
OVAL = "http://oval.mitre.org/XMLSchema/oval-definitions-5"
OVAL_RES = "http://oval.mitre.org/XMLSchema/oval-results-5"
PACKAGE_TESTS = ("rpminfo_test", "dpkginfo_test")
SYSTEMD_TESTS = ("systemdunitproperty_test",)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass(frozen=True)
class Check:
    """One rule's OVAL definition in one product's datastream, and what it examines."""

    rule: str  # short id: service_kdump_disabled
    product: str
    definition: str  # oval:ssg-service_kdump_disabled:def:1
    unit_patterns: tuple[str, ...]  # regexes of the systemdunitproperty objects
    paths: tuple[str, ...]  # symlink/file paths it reads (ctrl-alt-del.target's link)
    packages: tuple[str, ...]  # what its "package not installed" branch looks for

    def examines(self, unit: str) -> bool:
        if any(re.search(p, unit) for p in self.unit_patterns):
            return True
        return any(p.rsplit("/", 1)[-1] == unit for p in self.paths)

    @property
    def systemd_definition(self) -> str:
        return self.definition.replace(":def:", "_systemd_only:def:")


@dataclass
class Datastream:
    product: str
    rules: dict[str, str]  # short rule id -> OVAL definition id
    oval: ET.Element  # the oval_definitions component
    profiles: dict[str, set[str]] = field(default_factory=dict)  # short ids: rules selected
    by_id: dict[str, ET.Element] = field(default_factory=dict)
    section_of: dict[str, str] = field(default_factory=dict)


@cache
def datastream(product: str) -> Datastream:
    path = CONTENT / f"ssg-{product}-ds.xml"
    root = ET.parse(path).getroot()
    rules: dict[str, str] = {}
    for rule in root.iter(f"{{{XCCDF}}}Rule"):
        short = (rule.get("id") or "").removeprefix(REF_PREFIX)
        for ref in rule.iter(f"{{{XCCDF}}}check-content-ref"):
            name = ref.get("name") or ""
            if name.startswith("oval:ssg-") and ":def:" in name:
                rules[short] = name
    # The rules' checks, not the platform (CPE) checks: the component with most definitions.
    oval = max(
        root.iter(f"{{{OVAL}}}oval_definitions"),
        key=lambda e: sum(1 for _ in e.iter(f"{{{OVAL}}}definition")),
    )
    ds = Datastream(product, rules, oval)
    for profile in root.iter(f"{{{XCCDF}}}Profile"):
        name = (profile.get("id") or "").removeprefix("xccdf_org.ssgproject.content_profile_")
        ds.profiles[name] = {
            (s.get("idref") or "").removeprefix(REF_PREFIX)
            for s in profile.iter(f"{{{XCCDF}}}select")
            if s.get("selected") == "true"
        }
    for section in oval:
        for el in section:
            if el.get("id"):
                ds.by_id[el.get("id") or ""] = el
                ds.section_of[el.get("id") or ""] = _local(section.tag)
    return ds


def _referenced(ds: Datastream, start: ET.Element) -> list[str]:
    """Every id a definition reaches: tests, objects, states, variables, other definitions."""
    seen: list[str] = []

    def walk(el: ET.Element) -> None:
        for sub in el.iter():
            refs = [
                sub.get(k)
                for k in ("test_ref", "object_ref", "state_ref", "var_ref", "definition_ref")
            ]
            if _local(sub.tag) in ("filter", "object_reference") and sub.text:
                refs.append(sub.text.strip())
            for r in refs:
                if r and r not in seen and r in ds.by_id:
                    seen.append(r)
                    walk(ds.by_id[r])

    walk(start)
    return seen


def find_check(rule: str, products: tuple[str, ...] = PRODUCTS) -> Check | None:
    """The rule's check in the first of `products` whose datastream has it."""
    for product in products:
        ds = datastream(product)
        definition = ds.rules.get(rule)
        if definition is None or definition not in ds.by_id:
            continue
        patterns, paths, packages = [], [], []
        for ref in _referenced(ds, ds.by_id[definition]):
            el = ds.by_id[ref]
            kind = _local(el.tag)
            for child in el:
                name = _local(child.tag)
                text = (child.text or "").strip()
                if kind == "systemdunitproperty_object" and name == "unit":
                    patterns.append(text if child.get("operation") else f"^{re.escape(text)}$")
                elif kind in ("symlink_object", "file_object") and name == "filepath":
                    paths.append(text)
                elif kind in ("rpminfo_object", "dpkginfo_object") and name == "name":
                    packages.append(text)
        return Check(
            rule,
            product,
            definition,
            tuple(dict.fromkeys(patterns)),
            tuple(dict.fromkeys(paths)),
            tuple(sorted(set(packages))),
        )
    return None


def oval_document(checks: list[Check]) -> bytes:
    """One OVAL document (per product) holding, for each check, its definition with the
    package criteria removed (as NAME_systemd_only) and everything it references."""
    products = {c.product for c in checks}
    assert len(products) == 1, products
    ds = datastream(products.pop())
    test_kind = {i: _local(e.tag) for i, e in ds.by_id.items() if ds.section_of[i] == "tests"}
    definitions: list[ET.Element] = []
    keep: list[str] = []
    for c in checks:
        d = copy.deepcopy(ds.by_id[c.definition])
        d.set("id", c.systemd_definition)
        for parent in list(d.iter()):
            for child in list(parent):
                if test_kind.get(child.get("test_ref") or "") in PACKAGE_TESTS:
                    parent.remove(child)
        definitions.append(d)
        keep += [r for r in _referenced(ds, d) if r not in keep]
    out = ET.Element(ds.oval.tag, ds.oval.attrib)
    for section in ds.oval:
        name = _local(section.tag)
        if name == "generator":
            out.append(copy.deepcopy(section))
            continue
        kids = [copy.deepcopy(e) for e in section if e.get("id") in keep]
        if name == "definitions":
            kids = definitions + kids
        if kids:
            sub = ET.SubElement(out, section.tag, section.attrib)
            sub.extend(kids)
    text: bytes = ET.tostring(out, xml_declaration=True, encoding="utf-8")
    return text


@dataclass(frozen=True)
class Verdict:
    """What OpenSCAP decided for one derived definition."""

    result: str  # true | false | error | ...
    seen: tuple[str, ...]  # the items the systemd tests were decided on (unit:property=value)
    vacuous: bool  # a systemd test true on no unit at all

    def saw_masked(self, unit: str) -> bool:
        """Whether the check's verdict rests on this very unit being masked (a check whose
        tests saw only some of its units says nothing of the others)."""
        return f"{unit}:LoadState=masked" in self.seen or any(
            s.startswith("/") and s.endswith(f"/{unit} -> /dev/null") for s in self.seen
        )


def results(xml_text: str, checks: list[Check]) -> dict[str, Verdict]:
    """Per rule, from `oscap oval eval --results`."""
    root = ET.fromstring(xml_text)
    system = next(root.iter(f"{{{OVAL_RES}}}system"))
    tests = {t.get("test_id"): t for t in system.iter(f"{{{OVAL_RES}}}test")}
    items: dict[str, str] = {}
    for el in system.iter():
        if _local(el.tag).endswith("_item") and el.get("id"):
            f = {_local(c.tag): (c.text or "") for c in el}
            if _local(el.tag) == "systemdunitproperty_item":
                items[el.get("id") or ""] = f"{f.get('unit')}:{f.get('property')}={f.get('value')}"
            elif _local(el.tag) == "symlink_item":
                items[el.get("id") or ""] = f"{f.get('filepath')} -> {f.get('canonical_path')}"
    definitions = {d.get("definition_id"): d for d in system.iter(f"{{{OVAL_RES}}}definition")}
    out: dict[str, Verdict] = {}
    for c in checks:
        d = definitions[c.systemd_definition]
        seen: list[str] = []
        vacuous = False
        for crit in d.iter(f"{{{OVAL_RES}}}criterion"):
            t = tests.get(crit.get("test_ref"))
            got = [
                items.get(ti.get("item_id") or "", "")
                for ti in (t if t is not None else [])
                if _local(ti.tag) == "tested_item"
            ]
            seen += [g for g in got if g]
            if not got and crit.get("result") == "true":
                vacuous = True
        out[c.rule] = Verdict(d.get("result") or "", tuple(seen), vacuous)
    return out
