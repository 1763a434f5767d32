"""Unit trees whose LoadState systemd 252's loader decides by name, not by the file a link
reaches, and what it says for each (tried booted). tests/unit/test_loader.py checks that
masktool predicts each answer from the files alone; tests/integration/test_loader_booted.py
builds the same trees in a booted systemd and checks systemd still says so.

Each shape is (what systemd says, the name asked about, the files). A file is
(path, kind, argument): kind "unit" (a unit file), "requires" (a service that Requires= the
argument), "install" (a unit file with [Install]), "empty" (0 bytes), "link" (a symlink to the
argument), "dir", "node" (a character device 1:3, as /dev/null is) or "socket".
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

U = "/usr/lib/systemd/system"
L = "/usr/local/lib/systemd/system"
E = "/etc/systemd/system"
R = "/run/systemd/system"
OPT = "/opt/masktool-loader"

File = tuple[str, str, str]

SHAPES: tuple[tuple[str, str, tuple[File, ...]], ...] = (
    # An alias shipped in /usr/lib is resolved by the name it names, masked in /etc.
    (
        "masked",
        "ld-al1.socket",
        (
            (f"{U}/ld-c1.socket", "unit", ""),
            (f"{U}/ld-al1.socket", "link", "ld-c1.socket"),
            (f"{E}/ld-c1.socket", "link", "/dev/null"),
        ),
    ),
    # A link into the search path names a unit: what that name resolves to counts, not the file
    # the link reaches (a unit file there, a mask found by name).
    (
        "masked",
        "ld-b2.service",
        (
            (f"{U}/ld-a2.service", "unit", ""),
            (f"{E}/ld-a2.service", "link", "/dev/null"),
            (f"{R}/ld-b2.service", "link", f"{U}/ld-a2.service"),
        ),
    ),
    # ... and the other way round: the link reaches a mask, the name resolves to a unit file.
    (
        "loaded",
        "ld-b3.service",
        (
            (f"{U}/ld-a3.service", "link", "/dev/null"),
            (f"{E}/ld-a3.service", "unit", ""),
            (f"{R}/ld-b3.service", "link", f"{U}/ld-a3.service"),
        ),
    ),
    # A link to the unit's own name further down is skipped: the mask below it counts.
    (
        "masked",
        "ld-x4.service",
        (
            (f"{U}/ld-x4.service", "link", "/dev/null"),
            (f"{E}/ld-x4.service", "link", f"{U}/ld-x4.service"),
        ),
    ),
    (
        "masked",
        "ld-y5.service",
        (
            (f"{U}/ld-y5.service", "unit", ""),
            (f"{E}/ld-y5.service", "link", f"{U}/ld-y5.service"),
            (f"{R}/ld-y5.service", "link", "/dev/null"),
        ),
    ),
    (
        "masked",
        "ld-x36.service",
        (
            (f"{U}/ld-x36.service", "unit", ""),
            (f"{E}/ld-x36.service", "link", "../../../usr/lib/systemd/system/ld-x36.service"),
            (f"{R}/ld-x36.service", "link", "/dev/null"),
        ),
    ),
    (
        "loaded",
        "ld-l25.service",
        (
            (f"{U}/ld-l25.service", "unit", ""),
            (f"{E}/ld-l25.service", "link", f"{U}/ld-l25.service"),
        ),
    ),
    # A link systemd does not take as an alias (another type) is skipped too.
    (
        "loaded",
        "ld-a6.service",
        (
            (f"{U}/ld-c6.socket", "unit", ""),
            (f"{U}/ld-a6.service", "unit", ""),
            (f"{E}/ld-a6.service", "link", f"{U}/ld-c6.socket"),
        ),
    ),
    # Out of the search path: a linked unit file, loaded through the link to its end.
    (
        "masked",
        "ld-b8.service",
        (
            (f"{OPT}/b8.service", "link", "/dev/null"),
            (f"{E}/ld-b8.service", "link", f"{OPT}/b8.service"),
        ),
    ),
    (
        "loaded",
        "ld-b9.service",
        (
            (f"{OPT}/other9.service", "unit", ""),
            (f"{E}/ld-b9.service", "link", f"{OPT}/other9.service"),
        ),
    ),
    (
        "bad",
        "ld-d32.service",
        (
            (f"{U}/ld-d32.service", "unit", ""),
            (f"{OPT}/dir32", "dir", ""),
            (f"{E}/ld-d32.service", "link", f"{OPT}/dir32"),
        ),
    ),
    # An alias in /usr/local/lib, its unit masked in /run.
    (
        "masked",
        "ld-al10.socket",
        (
            (f"{U}/ld-c10.socket", "unit", ""),
            (f"{L}/ld-al10.socket", "link", "ld-c10.socket"),
            (f"{R}/ld-c10.socket", "link", "/dev/null"),
        ),
    ),
    # An alias naming a unit that exists nowhere hides the unit file below it.
    (
        "not-found",
        "ld-b11.service",
        (
            (f"{U}/ld-b11.service", "unit", ""),
            (f"{E}/ld-b11.service", "link", f"{U}/ld-nothere11.service"),
        ),
    ),
    # A dangling link into the search path whose name resolves elsewhere is that unit.
    (
        "loaded",
        "ld-b13.service",
        (
            (f"{E}/ld-a13.service", "unit", ""),
            (f"{R}/ld-b13.service", "link", f"{U}/ld-a13.service"),
        ),
    ),
    (
        "masked",
        "ld-b15.service",
        (
            (f"{U}/ld-a15.service", "unit", ""),
            (f"{E}/ld-a15.service", "link", "/dev/null"),
            (f"{R}/ld-b15.service", "link", f"{E}/ld-a15.service"),
        ),
    ),
    (
        "loaded",
        "ld-b17.service",
        (
            (f"{U}/ld-a17.service", "empty", ""),
            (f"{U}/ld-b17.service", "link", "ld-a17.service"),
            (f"{E}/ld-a17.service", "unit", ""),
        ),
    ),
    # Templates: an alias of a masked template, an instance of it; an alias to an instance
    # name from a plain name is refused (and nothing else is there).
    (
        "masked",
        "ld-al12@1.service",
        (
            (f"{U}/ld-t12@.service", "unit", ""),
            (f"{U}/ld-al12@.service", "link", "ld-t12@.service"),
            (f"{E}/ld-t12@.service", "link", "/dev/null"),
        ),
    ),
    (
        "not-found",
        "ld-al16.service",
        (
            (f"{U}/ld-t16@.service", "unit", ""),
            (f"{U}/ld-al16.service", "link", "ld-t16@1.service"),
        ),
    ),
    (
        "masked",
        "ld-t18@1.service",
        (
            (f"{U}/ld-t18@.service", "unit", ""),
            (f"{E}/ld-t18@1.service", "link", f"{U}/ld-t18@.service"),
            (f"{R}/ld-t18@.service", "link", "/dev/null"),
        ),
    ),
    ("masked", "ld-t18@2.service", ()),
    (
        "loaded",
        "ld-t34@1.service",
        (
            (f"{OPT}/ld-t34@.service", "unit", ""),
            (f"{U}/ld-t34@.service", "unit", ""),
            (f"{E}/ld-t34@1.service", "link", f"{OPT}/ld-t34@.service"),
            (f"{R}/ld-t34@.service", "link", "/dev/null"),
        ),
    ),
    # An alias loop is not found; so is a link into a subdirectory of the search path with the
    # unit's own name.
    (
        "not-found",
        "ld-la28.service",
        (
            (f"{E}/ld-la28.service", "link", f"{U}/ld-lb28.service"),
            (f"{U}/ld-lb28.service", "link", "ld-la28.service"),
        ),
    ),
    (
        "not-found",
        "ld-b31.service",
        (
            (f"{U}/sub/ld-b31.service", "unit", ""),
            (f"{E}/ld-b31.service", "link", f"{U}/sub/ld-b31.service"),
        ),
    ),
    # systemd looks a name up at most 8 times: a chain of 7 alias links loads, of 8 does not.
    (
        "loaded",
        "ld-ch7-0.service",
        (
            *((f"{U}/ld-ch7-{i}.service", "link", f"ld-ch7-{i + 1}.service") for i in range(7)),
            (f"{U}/ld-ch7-7.service", "unit", ""),
        ),
    ),
    (
        "not-found",
        "ld-ch8-0.service",
        (
            *((f"{U}/ld-ch8-{i}.service", "link", f"ld-ch8-{i + 1}.service") for i in range(8)),
            (f"{U}/ld-ch8-8.service", "unit", ""),
        ),
    ),
    # A link whose target systemd cannot resolve is skipped: `..` after a missing directory,
    # a file used as a directory, a directory loop.
    (
        "loaded",
        "ld-q1.service",
        (
            (f"{U}/ld-q1.service", "unit", ""),
            (f"{U}/ld-q1t.service", "unit", ""),
            (f"{E}/ld-q1.service", "link", f"{U}/nonexist/../ld-q1t.service"),
        ),
    ),
    (
        "masked",
        "ld-p7.service",
        (
            (f"{U}/ld-p7.service", "link", "/dev/null"),
            (f"{E}/ld-p7.service", "link", f"/nonexist-ld/..{U}/ld-p7t.service"),
        ),
    ),
    (
        "loaded",
        "ld-ne3.service",
        (
            (f"{U}/ld-ne3.service", "unit", ""),
            (f"{OPT}/afile", "unit", ""),
            (f"{E}/ld-ne3.service", "link", f"{OPT}/afile/ld-ne3.service"),
        ),
    ),
    (
        "loaded",
        "ld-m7.service",
        (
            (f"{U}/ld-m7.service", "unit", ""),
            (f"{OPT}/loop", "link", f"{OPT}/loop"),
            (f"{R}/ld-m7.service", "link", f"{OPT}/loop/ld-m7.service"),
        ),
    ),
    # A link to a search directory itself names "system", no unit name: skipped.
    (
        "loaded",
        "ld-dir1.service",
        ((f"{U}/ld-dir1.service", "unit", ""), (f"{E}/ld-dir1.service", "link", U)),
    ),
    (
        "masked",
        "ld-p8.service",
        ((f"{U}/ld-p8.service", "link", "/dev/null"), (f"{E}/ld-p8.service", "link", ".")),
    ),
    # An instance whose alias names nothing is looked for as its own template.
    (
        "masked",
        "ld-q2@x.service",
        (
            (f"{U}/ld-q2@.service", "unit", ""),
            (f"{E}/ld-q2@.service", "link", "/dev/null"),
            (f"{E}/ld-q2@x.service", "link", f"{U}/ld-nope2@x.service"),
        ),
    ),
    # Out of the search path, what PID 1 cannot open is not-found: /dev/tty (no controlling
    # terminal), a file named with a trailing slash, a socket.
    ("not-found", "ld-tty.service", ((f"{E}/ld-tty.service", "link", "/dev/tty"),)),
    (
        "not-found",
        "ld-m4.service",
        ((f"{OPT}/m4.service", "unit", ""), (f"{E}/ld-m4.service", "link", f"{OPT}/m4.service/")),
    ),
    (
        "not-found",
        "ld-sk.service",
        ((f"{OPT}/sk", "socket", ""), (f"{E}/ld-sk.service", "link", f"{OPT}/sk")),
    ),
    # Slices and devices load without a unit file.
    ("loaded", "ld-nf.slice", ()),
    ("loaded", "ld-nf.device", ()),
    # What is neither a file nor a link is skipped: the vendor file below counts.
    (
        "loaded",
        "ld-d19.service",
        ((f"{U}/ld-d19.service", "unit", ""), (f"{E}/ld-d19.service", "dir", "")),
    ),
    (
        "loaded",
        "ld-n20.service",
        ((f"{U}/ld-n20.service", "unit", ""), (f"{E}/ld-n20.service", "node", "")),
    ),
    ("not-found", "ld-n21.service", ((f"{E}/ld-n21.service", "node", ""),)),
    (
        "loaded",
        "ld-s22.service",
        ((f"{U}/ld-s22.service", "unit", ""), (f"{E}/ld-s22.service", "socket", "")),
    ),
)

SERVICE = "[Service]\nExecStart=/bin/true\n"
SOCKET = "[Socket]\nListenStream=/run/masktool-loader-{}.sock\n"


def build(top: Path, files: tuple[File, ...]) -> list[Path]:
    """Make the files under `top` (a tree seen as /); returns what was made, deepest last."""
    made: list[Path] = []
    for inside, kind, arg in files:
        p = top / inside.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "unit":
            name = p.name
            p.write_text(SOCKET.format(name) if name.endswith(".socket") else SERVICE)
        elif kind == "install":  # a unit file that can be enabled
            p.write_text(f"{SERVICE}[Install]\nWantedBy=multi-user.target\n")
        elif kind == "requires":  # a service that Requires= the argument
            p.write_text(
                f"[Unit]\nRequires={arg}\n{SERVICE}[Install]\nWantedBy=multi-user.target\n"
            )
        elif kind == "empty":
            p.write_text("")
        elif kind == "link":
            p.symlink_to(arg)
        elif kind == "dir":
            p.mkdir()
        elif kind == "node":
            os.mknod(p, 0o600 | 0o020000, os.makedev(1, 3))
        elif kind == "socket":
            with socket.socket(socket.AF_UNIX) as s:
                s.bind(str(p))
        made.append(p)
    return made
