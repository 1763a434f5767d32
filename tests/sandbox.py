"""Boot a throwaway systemd as PID 1 of fresh namespaces, for tests, the demo and the benchmark.

systemd is never booted over the host's root: it runs on an overlay of / whose upper layer is a
tmpfs private to the new mount namespace, so whatever it writes (tmpfiles, masks, journal) vanishes
with the namespace. Killing its PID 1 tears everything down.

The host reaches the sandbox's files through /proc/PID/root and runs commands in it with nsenter.
Run as a script it boots one sandbox and runs a command in it:
    python3 tests/sandbox.py [--bind DIR]... -- CMD...
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

# Units that would touch the host's kernel state, console or network if they ran in the sandbox.
# They are masked at runtime before boot.
HOST_TOUCHING_UNITS = (
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "console-getty.service",
    "getty@.service",
    "serial-getty@.service",
    "container-getty@.service",
    "systemd-timesyncd.service",
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-resolved.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-random-seed.service",
    "systemd-hwdb-update.service",
    "systemd-firstboot.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "systemd-remount-fs.service",
    "systemd-pstore.service",
    "systemd-journal-flush.service",
    "ssh.service",
    "ssh.socket",
    "sshd.service",
    "cron.service",
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "logrotate.timer",
    # Servers a development host may have enabled: they slow the boot and are not needed.
    "postgresql.service",
    "postgresql@.service",
    "redis-server.service",
    "nginx.service",
    "memcached.service",
    "docker.service",
    "docker.socket",
    "containerd.service",
)

NSENTER_FLAGS = ("-m", "-p", "-u", "-i", "-n", "-C")

BOOT_SCRIPT = r"""
set -eu
R="$1"; shift
mount -t tmpfs -o mode=0755 masktool-sandbox "$R"
mkdir "$R/upper" "$R/work" "$R/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$R/upper,workdir=$R/work" "$R/root"
cd "$R/root"
mount -t proc proc proc
mount -t sysfs sysfs sys
mount -t cgroup2 cgroup2 sys/fs/cgroup
mount --rbind /dev dev
mount -t tmpfs -o mode=0755 tmpfs run
mount -t tmpfs -o mode=1777 tmpfs tmp
mount -t tmpfs -o mode=1777 tmpfs var/tmp
mkdir -p run/systemd/system
for b in "$@"; do
    case "$b" in
        mask=*) ln -s /dev/null "run/systemd/system/${b#mask=}" ;;
        *:*) mkdir -p ".${b#*:}"; mount --rbind "${b%%:*}" ".${b#*:}" ;;
        *) mkdir -p ".$b"; mount --rbind "$b" ".$b" ;;
    esac
done
echo masktool-sandbox > etc/hostname
# Container images ship a policy-rc.d that forbids package scripts to start services; in a
# booted systemd that is wrong (it would stop dpkg -i from starting what it installs).
rm -f usr/sbin/policy-rc.d
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
exec /lib/systemd/systemd --system --unit=multi-user.target
"""


class SandboxError(RuntimeError):
    pass


def can_boot() -> tuple[bool, str]:
    """Whether this process could boot a sandbox, and if not, why."""
    if os.geteuid() != 0:
        return False, "booting systemd in namespaces needs root"
    if not Path("/lib/systemd/systemd").exists():
        return False, "systemd is not installed (/lib/systemd/systemd missing)"
    for tool in ("unshare", "nsenter"):
        if not any((Path(d) / tool).exists() for d in os.environ.get("PATH", "").split(":")):
            return False, f"{tool} not found on PATH"
    return True, ""


def _cgroup2_root() -> Path:
    """Where the host's cgroup v2 hierarchy is mounted (pure v2 or the hybrid 'unified' mount)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2":
            return Path(fields[4])
    raise SandboxError("no cgroup2 hierarchy is mounted on the host")


class Sandbox:
    """One booted systemd. Use as a context manager; `boot()` blocks until it is up."""

    def __init__(self, binds: Sequence[str] = (), extra_masks: Sequence[str] = ()) -> None:
        # "DIR" appears at the same path inside; "DIR:INSIDE" at INSIDE.
        self.binds = [
            ":".join(str(Path(p).resolve()) if i == 0 else p for i, p in enumerate(b.split(":", 1)))
            for b in binds
        ]
        for b in self.binds:
            inside = b.split(":", 1)[-1] if ":" in b else b
            # systemd-tmpfiles empties /tmp and /var/tmp at boot: bound there, the host's own
            # would be emptied (it happened).
            if inside.rstrip("/") in ("", "/tmp", "/var/tmp", "/var", "/run"):
                raise SandboxError(
                    f"refusing to bind {inside} into the sandbox: tmpfiles would clean it"
                )
        self.masks = [*HOST_TOUCHING_UNITS, *extra_masks]
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._mountpoint = ""
        self._cgroup: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def boot(self, timeout: float = 60.0) -> None:
        ok, why = can_boot()
        if not ok:
            raise SandboxError(why)
        self._mountpoint = tempfile.mkdtemp(prefix="masktool-sandbox.")
        # Each sandbox gets a cgroup of its own and a cgroup namespace rooted there, so systemd
        # sees an empty hierarchy and several sandboxes can run side by side.
        self._cgroup = _cgroup2_root() / f"masktool-sandbox.{os.getpid()}.{id(self)}"
        self._cgroup.mkdir()
        args = [f"mask={m}" for m in self.masks] + self.binds
        cmd = [
            "sh",
            "-c",
            'echo $$ > "$0/cgroup.procs" && exec "$@"',
            str(self._cgroup),
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--cgroup",
            "--propagation",
            "private",
            "--kill-child",
            "sh",
            "-c",
            BOOT_SCRIPT,
            "boot",
            self._mountpoint,
            *args,
        ]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        self.pid = self._find_init(deadline)
        state = ""
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SandboxError(f"sandbox exited early: {self._stderr()}")
            res = self.run(["systemctl", "is-system-running"], check=False, capture=True)
            state = res.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.1)
        self.shutdown()
        raise SandboxError(f"systemd did not finish booting within {timeout}s (state {state!r})")

    def _find_init(self, deadline: float) -> int:
        assert self._proc is not None
        # The sandbox's PID 1 is the child that `unshare --fork` creates (the shell before it
        # exec'd unshare has the same pid as unshare); once it has exec'd systemd, its comm
        # is "systemd".
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SandboxError(f"sandbox exited early: {self._stderr()}")
            for child in _children(self._proc.pid):
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return child
            time.sleep(0.02)
        raise SandboxError("systemd did not start in the sandbox")

    def _stderr(self) -> str:
        if self._proc is None or self._proc.stderr is None:
            return ""
        return self._proc.stderr.read().decode(errors="replace").strip()

    def shutdown(self) -> None:
        if self.pid:
            # SIGKILL to a PID namespace's init kills every process in it; the mounts go with it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=30)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None
        if self._cgroup is not None:
            _remove_cgroup_tree(self._cgroup)
            self._cgroup = None
        if self._mountpoint:
            Path(self._mountpoint).rmdir()
            self._mountpoint = ""
        self.pid = 0

    def __enter__(self) -> Sandbox:
        self.boot()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- use ---------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The sandbox's / as seen from the host."""
        return Path(f"/proc/{self.pid}/root")

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def nsenter_prefix(self) -> list[str]:
        return ["nsenter", "-t", str(self.pid), *NSENTER_FLAGS, "--"]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        capture: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the sandbox (all its namespaces, its root, its D-Bus)."""
        full_env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "SYSTEMD_PAGER": "",
            "SYSTEMD_COLORS": "0",
        }
        if env:
            full_env.update(env)
        res = subprocess.run(
            [*self.nsenter_prefix(), *argv],
            input=input,
            capture_output=capture,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
        if check and res.returncode != 0:
            raise SandboxError(
                f"{shlex.join(argv)} exited {res.returncode}:\n{res.stdout}{res.stderr}"
            )
        return res

    def sh(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", script], check=check)

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        p = self.path(inside)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(mode)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run(["systemctl", "show", unit, "-p", ",".join(props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


SERVICE_SRC = "/opt/masktool-src"
SERVICE_VENV = "/opt/masktool-venv"
REPO = Path(__file__).resolve().parents[1]


def service_binds(venv: Path) -> list[str]:
    """The checkout and venv at their own paths (for the CLI) and under /opt, where
    masktool.service can see them despite ProtectHome= and PrivateTmp=."""
    return [str(REPO), str(venv), f"{REPO}:{SERVICE_SRC}", f"{venv}:{SERVICE_VENV}"]


def install_masktool_service(sb: Sandbox) -> None:
    """Install masktool in the sandbox as a package would: /usr/bin/masktool, masktool.service
    from the tree, and the journal catalog. Needs a sandbox booted with service_binds()."""
    wrapper = (
        f"#!{SERVICE_VENV}/bin/python\n"
        "import sys\n"
        f"sys.path.insert(0, {SERVICE_SRC + '/daemon'!r})\n"
        "from masktool.cli import main\n"
        "sys.exit(main())\n"
    )
    sb.write("/usr/bin/masktool", wrapper, 0o755)
    unit = (REPO / "masktool.service").read_text()
    sb.write("/usr/local/lib/systemd/system/masktool.service", unit)
    catalog = (REPO / "packaging/masktool.catalog").read_text()
    sb.write("/usr/lib/systemd/catalog/masktool.catalog", catalog)
    sb.run(["journalctl", "--update-catalog"])
    sb.run(["systemctl", "daemon-reload"])


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(x) for x in text.split()]


def _remove_cgroup_tree(cg: Path) -> None:
    # Children first; a cgroup can only be removed once its processes are gone, which takes a
    # moment after the SIGKILL.
    deadline = time.monotonic() + 10
    for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        _rmdir_retry(sub, deadline)
    _rmdir_retry(cg, deadline)


def _rmdir_retry(p: Path, deadline: float) -> None:
    while True:
        try:
            p.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Boot a throwaway systemd and run a command in it.")
    ap.add_argument("--bind", action="append", default=[], help="host dir visible at same path")
    ap.add_argument(
        "--with-service",
        metavar="VENV",
        help="install masktool.service from this checkout, run from VENV",
    )
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    ns = ap.parse_args(argv)
    cmd = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
    binds = list(ns.bind)
    if ns.with_service:
        binds += service_binds(Path(ns.with_service))
    with Sandbox(binds=binds) as sb:
        if ns.with_service:
            install_masktool_service(sb)
        res = sb.run(cmd or ["systemctl", "is-system-running"], check=False, capture=False)
        return res.returncode


if __name__ == "__main__":
    sys.exit(main())
