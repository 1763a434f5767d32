"""systemd's manager over D-Bus with pystemd: one connection held open, batched calls.

Calls go straight to `DBus.call_method` with explicit signatures: pystemd's `Manager.load()`
would introspect the whole interface first, which costs more than the calls masktool makes.
"""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Sequence
from importlib.util import find_spec, module_from_spec
from typing import Any

from masktool.deps import Dependency
from masktool.observe import LiveState


def _defer_package_init(package: str) -> None:
    """Let submodules of `package` be imported before its __init__ runs, and run it on the first
    use of the package itself. pystemd's __init__ imports its whole object layer (lxml among
    it): ~6 ms and 4 MiB that masktool, which uses only the compiled dbuslib and dbusexc, would
    pay in every command and in the daemon. The package is put in sys.modules as the import
    system would, with its path, and a module __getattr__ (PEP 562) that runs the real __init__
    the first time a name is missing: `import pystemd; pystemd.SDUnit` still works."""
    if package in sys.modules:
        return
    spec = find_spec(package)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not a package here: its imports fail or work as they would anyway
    module = module_from_spec(spec)
    loader = spec.loader

    def init_on_first_use(name: str) -> Any:
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        return getattr(module, name)

    module.__dict__["__getattr__"] = init_on_first_use
    sys.modules[package] = module


_defer_package_init("pystemd")
from pystemd.dbusexc import DBusBaseError  # noqa: E402
from pystemd.dbuslib import DBus, DBusAddress, apply_signature  # noqa: E402

DEST = b"org.freedesktop.systemd1"
PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
PRIVATE_SOCKET = b"unix:path=/run/systemd/private"

# Errors after which the connection is gone or the reply was lost: reconnect and retry once.
# A system-bus connection dies on a dbus restart; the private socket dies on daemon-reexec.
_CONNECTION_ERRNOS = frozenset(
    {
        errno.ENOTCONN,
        errno.ECONNRESET,
        errno.EPIPE,
        errno.ECONNREFUSED,
        errno.ETIMEDOUT,
        errno.ENOENT,
    }
)
_RETRY_NAMES = frozenset({"DBusNoReplyError", "DBusDisconnectedError"})
# systemd's reverse-dependency properties, and the dependency each one stands for.
# Only those that decide a refusal or an activator warning: one round trip each, per unit.
# Softer dependents (Wants=, PartOf=, Upholds=) come from the unit files.
_REVERSE_PROPERTIES = (
    ("RequiredBy", "Requires"),
    ("RequisiteOf", "Requisite"),
    ("BoundBy", "BindsTo"),
    ("TriggeredBy", "Triggers"),
)


class SystemdError(Exception):
    """A call to systemd failed. `name` is the D-Bus error name when systemd gave one."""

    def __init__(self, method: str, name: str, message: str) -> None:
        self.method = method
        self.name = name
        self.message = message
        super().__init__(f"{method}: {name or 'error'}: {message}")


def _error_name(e: DBusBaseError) -> str:
    name = getattr(e, "err_name", b"") or b""
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return str(name) or type(e).__name__


def _message(e: DBusBaseError) -> str:
    msg = getattr(e, "err_message", b"") or b""
    return msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)


def _live(row: Sequence[Any]) -> LiveState:
    return LiveState(row[0].decode(), row[2].decode(), row[3].decode(), row[4].decode())


class Systemd:
    """The system manager. Holds one connection; reconnects when it dies."""

    def __init__(self, private: bool = False) -> None:
        self._private = private
        self._bus: DBus | None = None
        self.reconnects = 0  # the daemon reconciles everything after a reconnect

    def _connect(self) -> DBus:
        bus: DBus = DBusAddress(PRIVATE_SOCKET, True) if self._private else DBus()
        bus.open()
        return bus

    def open(self) -> Systemd:
        try:
            try:
                self._bus = self._connect()
            except DBusBaseError:
                if self._private:
                    raise
                # No system bus (dbus down, rescue shell): PID 1's private socket answers root.
                self._private = True
                self._bus = self._connect()
        except DBusBaseError as e:
            raise SystemdError("connect", _error_name(e), _message(e)) from e
        return self

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
            self._bus = None

    def __enter__(self) -> Systemd:
        return self.open() if self._bus is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, signature: bytes = b"", *args: Any) -> Any:
        packed = apply_signature(signature, list(args)) if signature else []
        attempt = interrupted = 0
        while True:
            try:
                if self._bus is None:
                    self._reopen()
                assert self._bus is not None
                return self._bus.call_method(DEST, PATH, MANAGER, method.encode(), packed).body
            except DBusBaseError as e:
                # pystemd leaves errno None on some errors (DBusInterruptedError among them).
                code = abs(e.errno) if isinstance(e.errno, int) else 0
                if code == errno.EINTR or type(e).__name__ == "DBusInterruptedError":
                    # A signal (the daemon's SIGHUP, say) cut the wait for the reply short:
                    # ask again on the same connection (sd-bus drops the late reply by its
                    # cookie). Every call masktool makes may be made twice.
                    interrupted += 1
                    if interrupted < 20:
                        continue
                lost = code in _CONNECTION_ERRNOS or type(e).__name__ in _RETRY_NAMES
                attempt += 1
                if lost and attempt < 3:
                    self.close()
                    time.sleep(0.05 * attempt)
                    continue
                raise SystemdError(method, _error_name(e), _message(e)) from e

    def _reopen(self) -> None:
        """A new connection after one died: the system bus if it is back, else PID 1's private
        socket (the bus is down while dbus restarts; the socket is down during a reexec)."""
        self.reconnects += 1
        self._bus = None
        bus: DBus
        try:
            bus = DBus()
            bus.open()
            private = False
        except DBusBaseError:
            bus = DBusAddress(PRIVATE_SOCKET, True)
            bus.open()
            private = True
        self._bus, self._private = bus, private

    # -- reading ---------------------------------------------------------------------------

    def list_units_by_names(self, names: Sequence[str]) -> list[LiveState]:
        rows = self.call("ListUnitsByNames", b"as", [n.encode() for n in names])
        return [_live(r) for r in rows]

    def list_units(self) -> list[LiveState]:
        """Units systemd holds in memory; unlike ListUnitsByNames this loads nothing."""
        return [_live(r) for r in self.call("ListUnits")]

    def reverse_dependencies(self, name: str) -> list[Dependency]:
        """What systemd knows depends on `name`, if it has the unit loaded (else nothing: and
        then no loaded unit depends on it)."""
        try:
            path = self.call("GetUnit", b"s", name.encode())
        except SystemdError as e:
            if e.name == "DBusNoSuchUnitError":
                return []
            raise
        out: list[Dependency] = []
        for prop, kind in _REVERSE_PROPERTIES:
            values = self._property(path, b"org.freedesktop.systemd1.Unit", prop)
            out.extend(Dependency(v.decode(), kind, "systemd") for v in values)
        return out

    def main_pid(self, name: str) -> int:
        """The main process of service `name`; 0 when it has none (not running, or not
        loaded)."""
        try:
            path = self.call("GetUnit", b"s", name.encode())
        except SystemdError as e:
            if e.name == "DBusNoSuchUnitError":
                return 0
            raise
        return int(self._property(path, b"org.freedesktop.systemd1.Service", "MainPID"))

    def _property(self, path: bytes, interface: bytes, prop: str) -> Any:
        if self._bus is None:
            self._reopen()
        assert self._bus is not None
        try:
            return self._bus.call_method(
                DEST,
                path,
                b"org.freedesktop.DBus.Properties",
                b"Get",
                apply_signature(b"ss", [interface, prop.encode()]),
            ).body
        except DBusBaseError as e:
            raise SystemdError(f"Get {prop}", _error_name(e), _message(e)) from e

    # -- changing --------------------------------------------------------------------------

    def mask(self, names: Sequence[str], runtime: bool) -> list[tuple[str, str, str]]:
        # force is never passed: it would replace foreign links and aliases with /dev/null.
        changes = self.call("MaskUnitFiles", b"asbb", [n.encode() for n in names], runtime, False)
        return _changes(changes)

    def enable(self, names: Sequence[str]) -> list[tuple[str, str, str]]:
        reply = self.call("EnableUnitFiles", b"asbb", [n.encode() for n in names], False, False)
        return _changes(reply[1])

    def reload(self) -> None:
        self.call("Reload")

    def stop(self, name: str) -> str:
        return bytes(self.call("StopUnit", b"ss", name.encode(), b"replace")).decode()


def _changes(rows: Sequence[Sequence[bytes]]) -> list[tuple[str, str, str]]:
    return [(r[0].decode(), r[1].decode(), r[2].decode()) for r in rows]
