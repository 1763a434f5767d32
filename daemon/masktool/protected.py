"""Units whose mask would leave a host unusable, unmanageable or unrecoverable, each with the
reason shown when masktool refuses. Pure data.

NEVER: masktool refuses even with `force: true`: masktool itself and what it needs to run, to
reach systemd and to leave a record. PROTECTED: masked only with `force: true`, for a site that
truly means it (a host with no remote access, say).
"""

from __future__ import annotations

from masktool.units import template_of

_BUS = "the system bus: masktool, systemctl, logind and polkit all talk over it"
_JOURNAL = "the journal: every service's logs, and masktool's own audit trail"
_REMOTE = "the admin's way in over the network"
_CONSOLE = "the admin's way in at the console"
_RECOVERY = "the way to recover a host that does not boot"
_BOOT = "a boot target every service is ordered against: masking it breaks boot"
_DEVICES = "device management: without it disks and network interfaces are not set up"
_NETWORK = "network access, and with it remote administration"

NEVER: dict[str, str] = {
    "masktool.service": "masktool itself: masking it would end enforcement",
    "dbus.service": _BUS,
    "dbus.socket": _BUS,
    "dbus-broker.service": _BUS,
    "systemd-journald.service": _JOURNAL,
    "systemd-journald.socket": _JOURNAL,
    "systemd-journald-dev-log.socket": _JOURNAL,
    "systemd-journald-audit.socket": _JOURNAL,
    "init.scope": "PID 1 itself",
    "-.slice": "the root of the control group tree",
    "system.slice": "the slice every system service runs in, masktool included",
    "-.mount": "the root file system",
}

PROTECTED: dict[str, str] = {
    "systemd-logind.service": "logins and sessions: without it nobody can log in",
    "systemd-user-sessions.service": "without it only root may log in",
    "user@.service": "the per-user service manager every login session needs",
    "ssh.service": _REMOTE,
    "ssh.socket": _REMOTE,
    "ssh@.service": _REMOTE,
    "sshd.service": _REMOTE,
    "sshd.socket": _REMOTE,
    "sshd@.service": _REMOTE,
    "getty.target": _CONSOLE,
    "getty@.service": _CONSOLE,
    "serial-getty@.service": _CONSOLE,
    "console-getty.service": _CONSOLE,
    "autovt@.service": _CONSOLE,
    "emergency.service": _RECOVERY,
    "emergency.target": _RECOVERY,
    "rescue.service": _RECOVERY,
    "rescue.target": _RECOVERY,
    "basic.target": _BOOT,
    "sysinit.target": _BOOT,
    "local-fs.target": _BOOT,
    "default.target": _BOOT,
    "multi-user.target": _BOOT,
    "graphical.target": _BOOT,
    "sockets.target": _BOOT,
    "timers.target": _BOOT,
    "paths.target": _BOOT,
    "slices.target": _BOOT,
    "network.target": _BOOT,
    "systemd-udevd.service": _DEVICES,
    "systemd-udevd-control.socket": _DEVICES,
    "systemd-udevd-kernel.socket": _DEVICES,
    "polkit.service": "authorisation for systemctl and every other privileged D-Bus call",
    "NetworkManager.service": _NETWORK,
    "systemd-networkd.service": _NETWORK,
    "networking.service": _NETWORK,
    "auditd.service": "the kernel audit trail that STIG, CIS and OSPP themselves require",
}


def protection(*names: str) -> tuple[str, str, bool] | None:
    """(the name matched, why it is protected, whether even force is refused), or None."""
    for name in names:
        for candidate in (name, template_of(name)):
            if candidate in NEVER:
                return candidate, NEVER[candidate], True
            if candidate in PROTECTED:
                return candidate, PROTECTED[candidate], False
    return None
