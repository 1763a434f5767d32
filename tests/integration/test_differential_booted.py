"""The states masktool reports, held against LoadState in a booted systemd 252 (issue 10).

The differential test (tests/unit/test_differential.py) compares masktool with
`systemctl --root`; where the unit loader and install.c disagree (a unit resolved by name),
only a booted systemd can say. Here the shapes of tests/loader_shapes.py and a sample of the
generated trees of tests/trees.py are built in the sandboxed systemd, and for every unit:

- masktool's prediction from the files alone (UnitTree, as `--root` and the daemon use it)
  equals systemd's LoadState;
- `masktool check` (live) reports it masked exactly when LoadState is masked;
- after `masktool apply` of the example's policy, every unit masktool calls compliant has the
  LoadState its rule wants.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings

from masktool.observe import UnitTree
from tests.integration.conftest import Host
from tests.loader_shapes import SHAPES
from tests.loader_shapes import build as build_shapes
from tests.trees import (
    DEPENDENT,
    DIRS,
    ETC,
    NAMES,
    Example,
    build,
    examples,
    policy_text,
    shown,
)

# Units whose LoadState says something: a template itself is never loaded.
ASKED = [n for n in NAMES if not n.endswith("@.service")]


def _load_states(host: Host, names: list[str]) -> dict[str, str]:
    out = host.systemctl("show", "-p", "LoadState", "--value", *names).stdout.splitlines()
    values = [line for line in out if line]
    assert len(values) == len(names), out
    return dict(zip(names, values, strict=True))


def _as_predicted(load_state: str) -> str:
    return "bad" if load_state in ("error", "bad-setting") else load_state


def test_loader_shapes_hold_in_the_booted_systemd(host: Host) -> None:
    made = []
    for _, _, files in SHAPES:
        made.extend(build_shapes(host.sb.root, files))
    try:
        host.systemctl("daemon-reload")
        names = [n for _, n, _ in SHAPES]
        said = _load_states(host, names)
        tree = UnitTree(str(host.sb.root))
        wrong = []
        for expected, name, _ in SHAPES:
            predicted = tree.observe_files(name).load_state_on_disk
            if not (expected == predicted == _as_predicted(said[name])):
                wrong.append(f"{name}: systemd {said[name]}, masktool {predicted}, {expected=}")
        assert not wrong, "\n".join(wrong)
    finally:
        for p in reversed(made):
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
        host.systemctl("daemon-reload")


_counter = itertools.count()


def _remove(host: Host, prefix: str) -> None:
    for d in (*DIRS, f"{ETC}/multi-user.target.wants", "var/lib/masktool/displaced"):
        base = host.sb.path("/" + d)
        if base.is_dir():
            for p in base.glob(f"**/{prefix}*"):
                if p.is_symlink() or p.is_file():
                    p.unlink()


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(examples(booted=True))
def test_generated_trees_booted_states_equal_load_state(host: Host, example: Example) -> None:
    prefix = f"g{next(_counter)}-"
    names = [prefix + n for n in ASKED]
    build(host.sb.root, example, prefix)
    try:
        host.systemctl("daemon-reload")
        said = _load_states(host, names)
        tree = UnitTree(str(host.sb.root))
        wrong = []
        for n in names:
            predicted = tree.observe_files(n).load_state_on_disk
            if predicted != _as_predicted(said[n]):
                wrong.append(f"{n}: predicted {predicted}, systemd says {said[n]}")
        # What `masktool check` reports, live.
        audit = host.policy(
            f"{prefix}audit", "version: 1\nunmask:\n" + "".join(f"  - {n}\n" for n in names)
        )
        rc, doc = host.json("check", "--policy", audit)
        assert rc in (0, 1), doc
        for u in doc["units"]:
            masked = u["state"].startswith("masked")
            if masked != (said[u["policy_name"]] == "masked"):
                wrong.append(
                    f"{u['policy_name']}: check says {u['state']}, systemd {said[u['policy_name']]}"
                )
        # Apply the example's own policy; what masktool then calls compliant must hold.
        policy = host.policy(f"{prefix}policy", policy_text(example.rules, prefix))
        rc, res = host.json("apply", "--policy", policy)
        assert rc in (0, 1), res
        after = res["after"]["units"]
        asked = [u["policy_name"] for u in after if not u["policy_name"].endswith("@.service")]
        now = _load_states(host, asked) if asked else {}
        for u in after:
            n = u["policy_name"]
            if n not in now or not u["compliant"]:
                continue
            if (now[n] == "masked") != (u["want"] != "unmasked"):
                wrong.append(f"{n}: apply says compliant ({u['want']}), systemd {now[n]}")
        assert not wrong, "\n".join([shown(example), *wrong])
    finally:
        _remove(host, prefix)
        for n in (DEPENDENT, *NAMES):
            host.systemctl("reset-failed", prefix + n, check=False)
