"""One run per VM: an exclusive lock file per VM, taken all or nothing before any write.

Layout: ``locks_dir()`` = ``$XDG_STATE_HOME/vmctl/locks`` (else ``~/.local/state/vmctl/locks``),
the sibling of the journals' ``runs/``, created with mode 0700. One file per VM, named
``sha256(lower-case ARM id)[:32].lock``, holding JSON::

    {"runId", "pid", "host", "user", "startedAt", "command", "journal", "vmId",
     "procStart", "bootId", "machineId"}

Design (docs/operations.md, "One run per VM: locks"):

- **Creation** is atomic create-if-absent: the content is written to a private temporary file and
  hard-linked to the lock name (``link`` fails with EEXIST when the lock exists, on local
  filesystems and NFS alike), so a reader never sees a half-written lock. Where the filesystem has
  no hard links, ``O_CREAT|O_EXCL`` on the lock name itself. The file is the lock: no descriptor
  stays open (``flock`` would need one per VM for the whole run, and an flock'ed file cannot be
  removed on release without the unlink/lock race).
- **Liveness** is checked, not inferred from a kernel lock: a lock is stale when it was written on
  this host (same hostname, and same /etc/machine-id where both are known) and its process is gone (``kill(pid, 0)`` -> ESRCH, or a zombie), its pid now belongs
  to another process (``/proc/<pid>/stat`` start time differs from the one recorded), or the
  machine has restarted since (boot id differs). A SIGKILLed run therefore leaves a lock that the
  next run detects and takes over.
- **Take-over** of a stale lock happens under ``flock`` on ``locks/.takeover`` (a file that is
  never removed; the kernel drops the flock if the holder dies): the lock is re-read, removed only
  if it is still the same stale file, then created afresh through the normal path. Two runs that
  find the same stale lock cannot both take it.
- **Another host** cannot be checked: its lock counts as held (fail closed) unless ``max_age`` is
  given and its ``startedAt`` is older (default: never expires).
- **Unreadable or corrupt** lock files count as held (fail closed); the refusal names the file.
- **All or nothing**: VMs are locked in a fixed order (their file names); on the first VM held by a
  live run every lock taken so far is released and ``LockHeld`` (exit 4) is raised. The fixed
  order means that of two runs racing for overlapping sets, exactly one wins.
- ``release()`` removes only files whose bytes are still exactly what this process wrote; it takes
  no lock and is idempotent, so a signal handler may call it.

Pure stdlib, prints nothing.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType

from .errors import GuardRefusal
from .journal import mkdirs_private, now_iso, state_dir
from .timefmt import parse_iso

_TAKEOVER = ".takeover"
_MAX_ATTEMPTS = 8           # create / find stale / take over rounds per VM before giving up (held)
_TAKEOVER_WAIT = 5.0        # seconds to wait for another process's take-over critical section
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


def locks_dir() -> Path:
    """``$XDG_STATE_HOME/vmctl/locks`` (else ``~/.local/state/vmctl/locks``): sibling of ``runs/``."""
    return state_dir().parent / "locks"


def lock_name(vm_id: str) -> str:
    """The lock file's name for a VM: its lower-case ARM id, hashed."""
    return hashlib.sha256(vm_id.lower().encode("utf-8")).hexdigest()[:32] + ".lock"


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says about the run that wrote it."""

    run_id: str
    pid: int
    host: str
    user: str
    started_at: str
    command: str
    journal: str | None
    vm_id: str
    proc_start: int | None = None   # /proc/<pid>/stat starttime (clock ticks after boot), when known
    boot_id: str | None = None      # /proc/sys/kernel/random/boot_id, when known
    machine_id: str | None = None   # /etc/machine-id, when known: tells two machines with one hostname apart

    def same_run(self, other: LockHolder) -> bool:
        return (self.run_id, self.pid, self.host, self.started_at) == (
            other.run_id, other.pid, other.host, other.started_at)

    def describe(self) -> str:
        journal = self.journal or "none"
        return (f"run {self.run_id} (pid {self.pid} on host {self.host}, user {self.user}, started "
                f"{self.started_at}, command `{self.command}`, journal {journal})")


@dataclass(frozen=True)
class HeldLock:
    """A requested VM that another run holds: ``holder`` is None when its lock file is unreadable."""

    vm_id: str
    path: Path
    holder: LockHolder | None
    problem: str | None = None      # why the file could not be read, when holder is None


@dataclass(frozen=True)
class StaleLock:
    """A lock left by a dead run that this acquire took over (the caller journals these)."""

    vm_id: str
    path: Path
    holder: LockHolder
    reason: str

    def as_record(self) -> dict[str, str | int | None]:
        h = self.holder
        return {"vmId": self.vm_id, "lockFile": str(self.path), "reason": self.reason, "runId": h.run_id,
                "pid": h.pid, "host": h.host, "user": h.user, "startedAt": h.started_at, "command": h.command,
                "journal": h.journal}


class LockHeld(GuardRefusal):
    """Some requested VMs are locked by another live run (or by an unreadable lock file). Exit 4.

    ``blocker`` is the lock that stopped the acquire and ``holder`` its run (None when the file is
    unreadable); ``held`` lists every requested VM found held, in request order. Nothing was locked
    by the refused acquire. ``stale`` lists dead runs' locks it removed on the way (they are gone
    whether or not this run proceeds).
    """

    def __init__(self, blocker: HeldLock, held: tuple[HeldLock, ...], requested: int,
                 stale: tuple[StaleLock, ...] = ()) -> None:
        if blocker not in held:
            held = (blocker, *held)
        self.blocker = blocker
        self.held = held
        self.requested = requested
        self.stale = stale
        first = blocker
        self.holder: LockHolder | None = first.holder
        if first.holder is None:
            same = tuple(h for h in held if h.holder is None)
            message = (f"the lock file {first.path} for VM {first.vm_id} is unreadable ({first.problem}); vmctl "
                       f"counts it as held, so this run refuses: nothing was locked and nothing was changed.")
            others = len(held) - len(same)
            if len(same) > 1:
                message += f" {len(same) - 1} more of the {requested} requested VMs have unreadable lock files."
            if others:
                message += f" {others} more are held by other runs."
            hint = ("If no vmctl run is working on these VMs, remove " + " ".join(str(h.path) for h in same)
                    + " and run again.")
        else:
            holder = first.holder
            same = tuple(h for h in held if h.holder is not None and h.holder.same_run(holder))
            names = ", ".join(h.vm_id for h in same[:3])
            more = f" and {len(same) - 3} more" if len(same) > 3 else ""
            message = (f"another vmctl run holds {len(same)} of the {requested} VMs this run asks for: "
                       f"{holder.describe()} holds {names}{more}. Nothing was locked and nothing was changed.")
            others = len(held) - len(same)
            if others:
                message += f" {others} more of the requested VMs are held by other runs or unreadable lock files."
            if _this_host(holder):
                hint = (f"Wait for it to finish. If it is killed, its locks are found stale (process {holder.pid} "
                        f"gone) and taken over by the next run; do not remove them while it runs.")
            else:
                hint = ("Wait for it to finish, or if that run is dead on another machine remove "
                        + " ".join(str(h.path) for h in same) + " and run again (vmctl cannot see processes on "
                        f"{holder.host}).")
        super().__init__(message, hint)


class LockUnavailable(GuardRefusal):
    """The lock directory cannot be used (permissions, full disk, ...): vmctl will not run unlocked. Exit 4."""

    def __init__(self, directory: Path, error: OSError) -> None:
        self.directory = directory
        super().__init__(f"vmctl cannot use its lock directory {directory}: {error.strerror or error}; nothing was "
                         f"locked and nothing was changed.",
                         "Make the directory writable by this user (or point XDG_STATE_HOME elsewhere) and run again.")


class VmLocks:
    """Exclusive per-VM locks held by this process; a context manager that releases on exit."""

    def __init__(self, directory: Path, vm_ids: tuple[str, ...]) -> None:
        self.directory = directory
        self.vm_ids = vm_ids
        self.stale: tuple[StaleLock, ...] = ()
        # (path, exact bytes written): registered before creation so release() never misses a lock
        self._owned: list[tuple[Path, bytes]] = []

    @classmethod
    def acquire(cls, vm_ids: list[str], *, run_id: str, command: str, journal: str | None,
                max_age: timedelta | None = None, directory: Path | None = None) -> VmLocks:
        """Lock every VM or none. Raises ``LockHeld`` (exit 4) naming the holder when any is held.

        Stale locks (dead process on this host, reused pid, restarted machine; another host's lock
        older than ``max_age`` when given) are taken over and listed in ``.stale``.
        """
        d = directory if directory is not None else locks_dir()
        try:
            _ensure_dir(d)
        except OSError as e:
            raise LockUnavailable(d, e) from e
        wanted: dict[str, str] = {}
        for vm in vm_ids:
            wanted.setdefault(lock_name(vm), vm)
        order = sorted(wanted)
        locks = cls(d, tuple(wanted[k] for k in order))
        me = _me(run_id=run_id, command=command, journal=journal)
        stale: list[StaleLock] = []
        try:
            for key in order:
                vm = wanted[key]
                path = d / key
                blocked = locks._take(path, _encode(me, vm), vm, max_age, stale)
                if blocked is not None:
                    locks.release()
                    held = [h for h in _survey(d, wanted, max_age) if h.path != blocked.path] + [blocked]
                    position = {k: n for n, k in enumerate(wanted)}     # the caller's order
                    held.sort(key=lambda h: position[h.path.name])
                    raise LockHeld(blocked, tuple(held), len(wanted), tuple(stale))
        except OSError as e:
            locks.release()
            raise LockUnavailable(d, e) from e
        except BaseException:
            locks.release()
            raise
        locks.stale = tuple(stale)
        return locks

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(p for p, _ in self._owned)

    def release(self) -> None:
        """Remove the lock files this process still owns. Idempotent; takes no lock (signal-safe)."""
        while True:
            try:
                path, content = self._owned.pop()
            except IndexError:
                return
            _unlink_if_ours(path, content)

    def __enter__(self) -> VmLocks:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    # -- one VM ------------------------------------------------------------------------------------

    def _take(self, path: Path, content: bytes, vm: str, max_age: timedelta | None,
              stale: list[StaleLock]) -> HeldLock | None:
        last: HeldLock | None = None
        for _ in range(_MAX_ATTEMPTS):
            entry = (path, content)
            self._owned.append(entry)       # before creating: a release() from a signal handler sees it
            created = False
            try:
                created = _create(path, content)
            finally:
                if not created:
                    _discard(self._owned, entry)
            if created:
                return None
            try:
                seen = _read(path)
            except OSError as e:
                return HeldLock(vm, path, None, f"cannot read it: {e.strerror or e}")
            if seen is None:            # released between our create and our read: try again
                continue
            holder, problem = _parse(seen)
            if holder is None:
                return HeldLock(vm, path, None, problem)
            reason = _stale_reason(holder, max_age)
            if reason is None:
                return HeldLock(vm, path, holder)
            last = HeldLock(vm, path, holder)
            took = _remove_if_unchanged(path, seen)
            if took is None:
                return HeldLock(vm, path, holder)   # another process is stuck in its take-over
            if took:
                stale.append(StaleLock(vm, path, holder, reason))
        return last or HeldLock(vm, path, None, f"it changed {_MAX_ATTEMPTS} times while vmctl tried to take it")


def _discard(owned: list[tuple[Path, bytes]], entry: tuple[Path, bytes]) -> None:
    try:
        owned.remove(entry)
    except ValueError:
        pass                            # a release() already popped it


# -- identity ----------------------------------------------------------------------------------------

def _host() -> str:
    return socket.gethostname()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _first_line(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.readline().strip() or None
    except OSError:
        return None


def _boot_id() -> str | None:
    return _first_line("/proc/sys/kernel/random/boot_id")


def _machine_id() -> str | None:
    return _first_line("/etc/machine-id")


def _this_host(holder: LockHolder) -> bool:
    """Written on this machine: same hostname, and same machine id where both are known."""
    if holder.host != _host():
        return False
    mine = _machine_id()
    return holder.machine_id is None or mine is None or holder.machine_id == mine


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, starttime) from /proc/<pid>/stat, or None where there is no /proc or no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2:].split()   # the command name may hold spaces and parentheses
    try:
        return rest[0], int(rest[19])          # field 3 (state) and field 22 (starttime)
    except (IndexError, ValueError):
        return None


def _me(*, run_id: str, command: str, journal: str | None) -> LockHolder:
    pid = os.getpid()
    stat = _proc_stat(pid)
    return LockHolder(run_id=run_id, pid=pid, host=_host(), user=_user(), started_at=now_iso(), command=command,
                      journal=journal, vm_id="", proc_start=stat[1] if stat else None, boot_id=_boot_id(),
                      machine_id=_machine_id())


def _stale_reason(holder: LockHolder, max_age: timedelta | None) -> str | None:
    """Why a lock is stale, or None when its run may still be alive (fail closed)."""
    if not _this_host(holder):
        if max_age is None:
            return None
        try:
            started = parse_iso(holder.started_at)
        except ValueError:
            return None
        if started.tzinfo is None:
            started = started.replace(tzinfo=timezone.utc)
        age = datetime.now(timezone.utc) - started
        if age > max_age:
            return f"written on host {holder.host} {int(age.total_seconds())} s ago, older than max_age {max_age}"
        return None
    boot = _boot_id()
    if holder.boot_id and boot and holder.boot_id != boot:
        return "this machine has restarted since the lock was written (boot id differs)"
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return f"process {holder.pid} is no longer running"
    except PermissionError:
        pass                                 # exists, another user's
    except OSError:
        return None
    stat = _proc_stat(holder.pid)
    if stat is not None:
        state, start = stat
        if state == "Z":
            return f"process {holder.pid} has exited (not yet reaped)"
        if holder.proc_start is not None and start != holder.proc_start:
            return f"pid {holder.pid} now belongs to another process (start time {start}, lock says {holder.proc_start})"
    return None


# -- files -------------------------------------------------------------------------------------------

def _ensure_dir(d: Path) -> None:
    """Create ``d`` and any missing parents with mode 0700 (an existing directory is left as it is:
    a shared state directory keeps the permissions its operators gave it)."""
    mkdirs_private(d)


def _encode(me: LockHolder, vm: str) -> bytes:
    record = {"runId": me.run_id, "pid": me.pid, "host": me.host, "user": me.user, "startedAt": me.started_at,
              "command": me.command, "journal": me.journal, "vmId": vm, "procStart": me.proc_start,
              "bootId": me.boot_id, "machineId": me.machine_id}
    return (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")


def _parse(raw: bytes) -> tuple[LockHolder | None, str | None]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "not valid JSON" if raw.strip() else "empty file"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    try:
        run_id, pid, host = data["runId"], data["pid"], data["host"]
    except KeyError as e:
        return None, f"no {e.args[0]} field"
    if not isinstance(run_id, str) or not isinstance(host, str) or type(pid) is not int or pid <= 0:
        return None, "runId, pid or host has the wrong type"

    def text(key: str) -> str:
        v = data.get(key)
        return v if isinstance(v, str) else "?"

    journal = data.get("journal")
    proc_start = data.get("procStart")
    boot_id = data.get("bootId")
    machine_id = data.get("machineId")
    return LockHolder(run_id=run_id, pid=pid, host=host, user=text("user"), started_at=text("startedAt"),
                      command=text("command"), journal=journal if isinstance(journal, str) else None,
                      vm_id=text("vmId"), proc_start=proc_start if type(proc_start) is int else None,
                      boot_id=boot_id if isinstance(boot_id, str) else None,
                      machine_id=machine_id if isinstance(machine_id, str) else None), None


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view):]


def _create(path: Path, content: bytes) -> bool:
    """Create ``path`` with ``content`` if it does not exist; False if it does. Never half-written
    where the filesystem has hard links."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            _write_all(fd, content)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in _NO_LINK:
                raise
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    # no hard links here: O_EXCL on the name itself (a reader may briefly see it empty; see _read)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        _write_all(fd, content)
    finally:
        os.close(fd)
    return True


def _read_once(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read(path: Path) -> bytes | None:
    """The lock file's bytes (None if it vanished). An unparseable file written in the last 2 s is
    read twice more, 25 ms apart, in case its writer used the O_EXCL fallback and is between create
    and write."""
    raw = _read_once(path)
    for _ in range(2):
        if raw is None or _parse(raw)[0] is not None:
            return raw
        try:
            if time.time() - os.stat(path).st_mtime > 2.0:
                return raw
        except FileNotFoundError:
            return None
        time.sleep(0.025)
        raw = _read_once(path)
    return raw


def _remove_if_unchanged(path: Path, seen: bytes) -> bool | None:
    """Remove a stale lock if it still holds exactly ``seen``, under the directory's take-over flock.

    True: removed; False: it changed or vanished (someone else took over or released it);
    None: the take-over flock stayed busy for ``_TAKEOVER_WAIT`` seconds.
    """
    fd = os.open(path.parent / _TAKEOVER, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + _TAKEOVER_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.002)
        try:
            try:
                now = _read_once(path)
            except OSError:
                return False
            if now != seen:
                return False
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            return True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _unlink_if_ours(path: Path, content: bytes) -> None:
    try:
        if _read_once(path) == content:
            os.unlink(path)
    except OSError:
        pass


def _survey(d: Path, wanted: dict[str, str], max_age: timedelta | None) -> list[HeldLock]:
    """Read-only: which requested VMs are held now (for the refusal's count)."""
    held: list[HeldLock] = []
    for key in wanted:
        path = d / key
        try:
            raw = _read(path)
        except OSError as e:
            held.append(HeldLock(wanted[key], path, None, f"cannot read it: {e.strerror or e}"))
            continue
        if raw is None:
            continue
        holder, problem = _parse(raw)
        if holder is None:
            held.append(HeldLock(wanted[key], path, None, problem))
        elif _stale_reason(holder, max_age) is None:
            held.append(HeldLock(wanted[key], path, holder))
    return held


__all__ = ["HeldLock", "LockHeld", "LockUnavailable", "LockHolder", "StaleLock", "VmLocks", "lock_name", "locks_dir"]
