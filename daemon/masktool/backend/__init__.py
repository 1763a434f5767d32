"""Backends carry out a plan: `live` through systemd over D-Bus, `offline` on a --root tree."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Change:
    unit: str
    what: str  # mask, mask-runtime, unmask, enable, displace, reload, stop
    detail: str = ""
    path: str = ""  # the file written or removed, when there is one


@dataclass
class ApplyResult:
    changes: list[Change] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (unit or "", message)
    reloads: int = 0

    def error(self, unit: str, message: str) -> None:
        self.errors.append((unit, message))
