"""policies/policy.schema.json, the policy's shape for editors, kept in step with the parser:
every shipped policy fits it, and whatever it rejects the parser rejects too, naming file:line
(an editor must never flag a policy masktool accepts)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masktool.policy import REF_PREFIX, PolicyError, load_policy

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "policies" / "policy.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
CORPUS = Path(__file__).parent / "bad_policies"
MODELINE = "# yaml-language-server: $schema="

SHIPPED = sorted(
    [
        *(REPO / "policies").glob("*.yaml"),
        *(REPO / "policies" / "examples").glob("*.yaml"),
        REPO / "packaging" / "policy.yaml",
    ]
)
README_POLICIES = [
    b
    for b in re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    if re.search(r"^version: 1$", b, re.M)
]

# Bad policies whose fault is their shape: the schema must see it as well as the parser.
SHAPE_FAULTS = {
    "04-unknown-top-key",
    "05-unknown-rule-key",
    "06-wrong-type-bool",
    "07-bad-mode",
    "08-bad-version",
    "09-missing-version",
    "10-no-type-suffix",
    "11-unknown-type",
    "12-bad-characters",
    "13-name-too-long",
    "16-mask-not-a-list",
    "17-rule-without-unit",
    "18-exempt-without-reason",
    "19-empty",
    "23-reason-not-string",
    "25-empty-prefix",
    "26-version-string",
    "27-unit-is-a-number",
    "28-top-level-list",
    "35-ref-short-form",
    "36-ref-not-an-id",
    "37-ref-not-text",
}
# What no schema can say: YAML itself is broken (an editor reports that), a key given twice
# (a YAML loader keeps the last), and what needs other files or the merge.
BEYOND_THE_SCHEMA = {
    "01-yaml-syntax",
    "02-duplicate-top-key",
    "03-duplicate-rule-key",
    "14-masked-and-unmasked",
    "15-missing-include",
    "20-include-cycle",
    "21-mode-in-include",
    "22-exempt-and-own-rule",
    "24-two-documents",
    "29-tab-indent",
    "30-include-nul",
    "31-yaml-tag",
    "32-unit-twice",
    "33-exempt-matches-nothing",
    "34-exempt-twice",
}


def _schema_errors(doc: Any) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(doc)]


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_policy_fits_the_schema(path: Path) -> None:
    assert _schema_errors(yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("block", README_POLICIES)
def test_every_policy_in_the_readme_fits_the_schema(block: str) -> None:
    assert _schema_errors(yaml.safe_load(block)) == []


def test_shipped_policies_name_the_schema_for_editors() -> None:
    site = (REPO / "packaging" / "policy.yaml").read_text()
    assert f"{MODELINE}/usr/share/masktool/policies/policy.schema.json" in site
    for bundle in (REPO / "policies").glob("*.yaml"):
        assert f"{MODELINE}policy.schema.json\n" in bundle.read_text(), bundle.name
    assert any(MODELINE in b for b in README_POLICIES)


def test_the_corpus_is_sorted_into_shape_and_beyond() -> None:
    stems = {p.stem for p in CORPUS.glob("[0-9]*.yaml")}
    assert stems == SHAPE_FAULTS | BEYOND_THE_SCHEMA
    assert not SHAPE_FAULTS & BEYOND_THE_SCHEMA


@pytest.mark.parametrize("stem", sorted(SHAPE_FAULTS))
def test_the_schema_rejects_every_shape_fault_the_parser_rejects(stem: str) -> None:
    doc = yaml.safe_load((CORPUS / f"{stem}.yaml").read_text())
    assert _schema_errors(doc), f"{stem}: the schema accepts what masktool rejects"


# -- generated policies: the parser accepts => the schema accepts ----------------------------

GOOD_UNITS = [
    "a.service",
    "b.socket",
    "tpl@.service",
    "tpl@x.service",
    "a.b-c_d:e\\x2d.timer",
    "ctrl-alt-del.target",
    "x" * 247 + ".service",
]
BAD_UNITS = ["", "a", "a.bogus", "@.service", "@x.service", ".service", "a b.service"]
BAD_UNITS.append("x" * 248 + ".service")
GOOD_REFS = [f"{REF_PREFIX}service_a_disabled", f"{REF_PREFIX}socket_systemd-coredump_disabled"]
BAD_REFS = ["service_a_disabled", REF_PREFIX, "CIS 2.1.1", ""]
OSPP_UNITS = ["debug-shell.service", "kdump.service", "systemd-coredump.socket"]
# Values of the wrong type: the parser must reject them wherever they go.
ODD: list[Any] = [None, 1, 1.5, "yes", "true", "", [], {}, ["a.service"], {"unit": "a.service"}]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12)


@st.composite
def _valid(draw: st.DrawFn) -> dict[str, Any]:
    """A policy masktool accepts."""
    doc: dict[str, Any] = {"version": 1}
    if draw(st.booleans()):
        doc["mode"] = draw(st.sampled_from(["enforce", "audit"]))
    units = draw(st.lists(st.sampled_from(GOOD_UNITS), unique=True, max_size=5))
    cut = draw(st.integers(0, len(units)))
    for action, names, opts in (
        ("mask", units[:cut], ("stop", "runtime", "force", "with_triggers")),
        ("unmask", units[cut:], ("enable",)),
    ):
        if not names and draw(st.booleans()):
            continue
        rules: list[Any] = []
        for name in names:
            if draw(st.booleans()):
                rules.append(name)
                continue
            rule: dict[str, Any] = {"unit": name}
            for key in draw(st.lists(st.sampled_from(["reason", "ref", *opts]), unique=True)):
                value: st.SearchStrategy[Any] = st.booleans()
                if key in ("reason", "ref"):
                    value = TEXT if key == "reason" else st.sampled_from(GOOD_REFS)
                rule[key] = draw(value)
            rules.append(rule)
        empty_list = draw(st.booleans())  # else "mask:" with nothing under it
        doc[action] = rules if rules or empty_list else None
    if draw(st.booleans()):
        doc["include"] = ["ospp"]
        free = [u for u in OSPP_UNITS if u not in units]
        exempt = draw(st.lists(st.sampled_from(free), unique=True, max_size=2))
        if exempt:
            doc["exempt"] = [{"unit": u, "reason": draw(TEXT.filter(bool))} for u in exempt]
    return doc


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document a value sits, by its path of keys and indexes."""
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _places(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _places(v, (*path, i))
    return out


@st.composite
def _documents(draw: st.DrawFn) -> Any:
    """A valid policy, or one with a single fault put in: a value replaced, a key added or
    one removed."""
    doc = draw(_valid())
    how = draw(st.sampled_from(["none", "replace", "add-key", "drop-key"]))
    if how == "none":
        return doc
    places = _places(doc)
    path = draw(st.sampled_from(places))
    if how == "replace":
        value = draw(st.sampled_from([*ODD, *BAD_UNITS, *BAD_REFS, *GOOD_UNITS, 2, "audit"]))
        if not path:
            return value
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = value
        return doc
    mappings = [p for p in places if isinstance(_at(doc, p), dict)]
    target = _at(doc, draw(st.sampled_from(mappings)))
    if how == "add-key":
        target[draw(st.sampled_from(["bogus", "unit", "reason", "ref", "stop", "enable"]))] = draw(
            st.sampled_from([True, "a.service", GOOD_REFS[0], "x"])
        )
    elif target:
        del target[draw(st.sampled_from(sorted(target)))]
    return doc


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


DOCUMENTS = _documents()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_what_the_schema_rejects_the_parser_rejects_naming_file_and_line(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.yaml"
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o644)
        try:
            load_policy([str(path)])
        except PolicyError as e:
            for where, _ in e.problems:
                # A problem names the file:line, or a whole file (empty, unreadable).
                assert re.fullmatch(r".+:\d+", where) or where == str(path), e.problems
            return
    assert _schema_errors(doc) == [], f"masktool accepts {doc!r}; the schema does not"


YAML_11_ONLY_BOOLEANS = [
    "yes",
    "Yes",
    "YES",
    "no",
    "No",
    "NO",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
]


@pytest.mark.parametrize("word", YAML_11_ONLY_BOOLEANS)
def test_an_editor_reading_yaml_1_2_does_not_flag_what_masktool_reads_as_a_boolean(
    word: str, tmp_path: Path
) -> None:
    """Found by a hostile review: yaml-language-server reads YAML 1.2, where `stop: yes` is
    text, and the schema flagged it; masktool (YAML 1.1) reads it as true."""
    text = f"version: 1\nmask:\n  - unit: a.service\n    stop: {word}\n"
    path = tmp_path / "p.yaml"
    path.write_text(text)
    path.chmod(0o644)
    load_policy([str(path)])
    as_yaml_1_2 = {"version": 1, "mask": [{"unit": "a.service", "stop": word}]}
    assert _schema_errors(as_yaml_1_2) == []
