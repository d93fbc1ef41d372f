"""One run per VM (issue 10): vmctl/locking.py against real files, real processes, real signals.

No mocks: XDG_STATE_HOME is per test (conftest), dead holders are real SIGKILLed processes, and
the race uses two real processes released by a file barrier.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vmctl.errors import REFUSED, GuardRefusal
from vmctl.locking import LockHeld, LockUnavailable, VmLocks, lock_name, locks_dir

SUB = "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg-app/providers/Microsoft.Compute"
REPO = Path(__file__).resolve().parent.parent


def vms(*names: str) -> list[str]:
    return [f"{SUB}/virtualMachines/{n}" for n in names]


def lock_files() -> set[Path]:
    d = locks_dir()
    return set(d.glob("*.lock")) if d.is_dir() else set()


def path_of(vm_id: str) -> Path:
    return locks_dir() / lock_name(vm_id)


def proc_start(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rfind(")") + 2:].split()[19])


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def write_lock(vm_id: str, **fields: object) -> Path:
    """A lock file as another run would have left it (fields override the defaults)."""
    record: dict[str, object] = {
        "runId": "run-other", "pid": os.getpid(), "host": socket.gethostname(), "user": "alice",
        "startedAt": "2026-11-22T10:15:00Z", "command": "vmctl restart --rg rg-app",
        "journal": "/home/alice/.local/state/vmctl/runs/run-other.jsonl", "vmId": vm_id,
        "procStart": proc_start(os.getpid()), "bootId": boot_id(),
    }
    record.update(fields)
    locks_dir().mkdir(parents=True, exist_ok=True)
    p = path_of(vm_id)
    p.write_text(json.dumps(record))
    return p


def acquire(ids: list[str], run_id: str = "run-2", *, max_age: timedelta | None = None,
            directory: Path | None = None) -> VmLocks:
    return VmLocks.acquire(ids, run_id=run_id, command="vmctl deallocate --rg rg-app",
                           journal=f"/state/{run_id}.jsonl", max_age=max_age, directory=directory)


# -- basics -----------------------------------------------------------------------------------------

def test_acquire_writes_one_private_lock_per_vm_and_release_removes_them(tmp_path: Path) -> None:
    ids = vms("vm-01", "vm-02", "vm-03")
    locks = acquire(ids, run_id="run-1")
    d = locks_dir()
    assert d == tmp_path / "home" / ".local" / "state" / "vmctl" / "locks"   # sibling of runs/
    assert stat.S_IMODE(d.stat().st_mode) == stat.S_IMODE(d.parent.stat().st_mode) == 0o700
    assert lock_files() == {path_of(v) for v in ids} == set(locks.paths)
    assert locks.stale == ()
    rec = json.loads(path_of(ids[0]).read_text())
    assert rec["runId"] == "run-1" and rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()
    assert rec["vmId"] == ids[0] and rec["journal"] == "/state/run-1.jsonl"
    assert rec["command"] == "vmctl deallocate --rg rg-app" and rec["startedAt"].endswith("Z") and rec["user"]
    assert path_of(ids[0]).name == lock_name(ids[0].upper())        # keyed on the lower-case ARM id
    locks.release()
    assert lock_files() == set()
    locks.release()                                                  # idempotent
    assert not list(d.glob(".*.tmp"))


def test_context_manager_releases_on_exception() -> None:
    with pytest.raises(RuntimeError):
        with acquire(vms("vm-01", "vm-02")):
            assert len(lock_files()) == 2
            raise RuntimeError("boom")
    assert lock_files() == set()


def test_overlapping_acquire_refuses_naming_the_holder_and_takes_nothing() -> None:
    first = acquire(vms("vm-02", "vm-03", "vm-04", "vm-05"), run_id="run-1")
    before = {p: p.read_bytes() for p in lock_files()}
    wanted = vms("vm-01", "vm-02", "vm-03", "vm-04", "vm-05", "vm-06")
    with pytest.raises(LockHeld) as ei:
        acquire(wanted, run_id="run-2")
    e = ei.value
    assert isinstance(e, GuardRefusal) and e.exit_code == REFUSED == 4
    assert e.holder is not None and e.holder.run_id == "run-1" and e.requested == 6 and e.blocker in e.held
    assert [h.vm_id for h in e.held] == vms("vm-02", "vm-03", "vm-04", "vm-05")     # request order
    assert all(h.holder is not None and h.holder.same_run(e.holder) for h in e.held)
    text = str(e)
    for part in ("run run-1", f"pid {os.getpid()}", f"host {socket.gethostname()}", "started ",
                 "command `vmctl deallocate --rg rg-app`", "journal /state/run-1.jsonl",
                 "holds 4 of the 6 VMs", "and 1 more", "Nothing was locked", "Wait for it to finish"):
        assert part in text, part
    assert ", ".join(vms("vm-02", "vm-03", "vm-04")) + " and 1 more." in text     # names up to 3 VMs
    # all or nothing: vm-01 and vm-06 were not left locked, run-1's files are untouched
    assert {p: p.read_bytes() for p in lock_files()} == before
    with acquire(vms("vm-01", "vm-06")):
        pass
    first.release()
    assert lock_files() == set()


def test_disjoint_sets_coexist_and_case_differences_overlap() -> None:
    a = acquire(vms("vm-01", "vm-02"), run_id="run-1")
    b = acquire(vms("vm-03", "vm-04"), run_id="run-2")
    assert len(lock_files()) == 4
    with pytest.raises(LockHeld):
        acquire([vms("vm-01")[0].upper()], run_id="run-3")
    a.release()
    assert lock_files() == {path_of(v) for v in vms("vm-03", "vm-04")}
    b.release()


def test_second_resume_of_the_same_journal_refuses() -> None:
    ids = vms("vm-01", "vm-02")
    with VmLocks.acquire(ids, run_id="run-1", command="vmctl resume j.jsonl", journal="/state/j.jsonl"):
        with pytest.raises(LockHeld) as ei:
            VmLocks.acquire(ids, run_id="run-1", command="vmctl resume j.jsonl", journal="/state/j.jsonl")
        assert "journal /state/j.jsonl" in str(ei.value) and "holds 2 of the 2 VMs" in str(ei.value)
    assert lock_files() == set()


# -- stale locks ------------------------------------------------------------------------------------

CHILD = """
import os, signal, sys
from vmctl.locking import VmLocks
VmLocks.acquire(sys.argv[1:], run_id="run-dead", command="vmctl restart --rg rg-app", journal="/state/run-dead.jsonl")
print(os.getpid(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_lock_of_a_sigkilled_run_is_taken_over_and_reported_stale() -> None:
    ids = vms("vm-01", "vm-02")
    child = subprocess.run([sys.executable, "-c", CHILD, *ids], capture_output=True, text=True, cwd=REPO,
                           timeout=30)
    assert child.returncode == -signal.SIGKILL, child.stderr
    pid = int(child.stdout)
    assert len(lock_files()) == 2                                   # SIGKILL: no release ran
    # a resume of the dead run's journal takes its VMs
    with acquire(ids, run_id="run-dead") as locks:
        assert {s.vm_id for s in locks.stale} == set(ids)
        s = locks.stale[0]
        assert s.holder.pid == pid and s.holder.run_id == "run-dead" and s.holder.journal == "/state/run-dead.jsonl"
        assert str(pid) in s.reason
        rec = s.as_record()
        assert rec["runId"] == "run-dead" and rec["pid"] == pid and rec["lockFile"] == str(s.path)
        assert json.loads(path_of(ids[0]).read_text())["pid"] == os.getpid()
    assert lock_files() == set()


def test_lock_with_a_dead_pid_is_stale() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()                                                        # reaped: the pid is free
    write_lock(vms("vm-01")[0], pid=p.pid, procStart=None)
    with acquire(vms("vm-01")) as locks:
        assert len(locks.stale) == 1 and str(p.pid) in locks.stale[0].reason   # gone (or reused: start time)


@pytest.mark.skipif(proc_start(os.getpid()) is None, reason="needs /proc/<pid>/stat")
def test_lock_whose_pid_belongs_to_another_process_is_stale() -> None:
    real = proc_start(os.getpid())
    assert real is not None
    write_lock(vms("vm-01")[0], pid=os.getpid(), procStart=real - 1)   # same pid, another start time
    with acquire(vms("vm-01")) as locks:
        assert len(locks.stale) == 1 and "now belongs to another process" in locks.stale[0].reason


@pytest.mark.skipif(boot_id() is None, reason="needs /proc/sys/kernel/random/boot_id")
def test_lock_from_before_a_reboot_is_stale() -> None:
    write_lock(vms("vm-01")[0], bootId="00000000-0000-0000-0000-000000000000")
    with acquire(vms("vm-01")) as locks:
        assert len(locks.stale) == 1 and "restarted" in locks.stale[0].reason


def test_take_over_removes_only_the_stale_file_it_judged() -> None:
    """Run B judged a lock stale, but run A took it over first: B must not remove A's live lock."""
    from vmctl.locking import _remove_if_unchanged

    p = write_lock(vms("vm-01")[0], runId="run-dead", bootId="00000000-0000-0000-0000-000000000000")
    judged = p.read_bytes()
    live = write_lock(vms("vm-01")[0], runId="run-a")                 # A's take-over, in between
    assert _remove_if_unchanged(p, judged) is False
    assert json.loads(live.read_text())["runId"] == "run-a"
    assert _remove_if_unchanged(p, p.read_bytes()) is True and not p.exists()


def test_live_lock_with_matching_start_time_is_held() -> None:
    write_lock(vms("vm-01")[0])                                     # this very process, as recorded
    with pytest.raises(LockHeld):
        acquire(vms("vm-01"))


# -- other hosts, corrupt files ---------------------------------------------------------------------

def test_lock_from_another_host_is_held_fail_closed() -> None:
    p = write_lock(vms("vm-02")[0], host="build-agent-7.example", pid=4242, startedAt="2020-01-01T00:00:00Z")
    with pytest.raises(LockHeld) as ei:
        acquire(vms("vm-01", "vm-02"))
    text = str(ei.value)
    assert "host build-agent-7.example" in text and "pid 4242" in text
    assert f"if that run is dead on another machine remove {p} and run again" in text
    assert lock_files() == {p}


@pytest.mark.skipif(not Path("/etc/machine-id").is_file(), reason="needs /etc/machine-id")
def test_same_hostname_on_another_machine_counts_as_another_host() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(vms("vm-01")[0], pid=dead.pid, machineId="0" * 32)   # a dead pid here says nothing there
    with pytest.raises(LockHeld) as ei:
        acquire(vms("vm-01"))
    assert "dead on another machine" in str(ei.value)


def test_stale_locks_taken_before_a_refusal_are_reported_and_nothing_stays_locked() -> None:
    ids = sorted(vms("vm-01", "vm-02", "vm-03", "vm-04"), key=lock_name)
    write_lock(ids[0], bootId="00000000-0000-0000-0000-000000000000", pid=os.getpid() + 10**6)
    write_lock(ids[-1], host="build-agent-7.example")
    with pytest.raises(LockHeld) as ei:
        acquire(ids)
    assert [s.vm_id for s in ei.value.stale] == [ids[0]]
    assert lock_files() == {path_of(ids[-1])}


def test_lock_from_another_host_expires_only_past_max_age() -> None:
    young = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    write_lock(vms("vm-01")[0], host="build-agent-7.example", pid=4242, startedAt=young)
    write_lock(vms("vm-02")[0], host="build-agent-7.example", pid=4242, startedAt="2020-01-01T00:00:00Z")
    with pytest.raises(LockHeld):
        acquire(vms("vm-01", "vm-02"), max_age=timedelta(hours=12))
    with acquire(vms("vm-02"), max_age=timedelta(hours=12)) as locks:
        assert len(locks.stale) == 1 and "max_age" in locks.stale[0].reason


@pytest.mark.parametrize("content", ["{not json", "", "[1, 2]", '{"runId": "r", "pid": 0, "host": "h"}'])
def test_corrupt_lock_file_is_held_and_named(content: str) -> None:
    p = write_lock(vms("vm-02")[0])
    p.write_text(content)
    with pytest.raises(LockHeld) as ei:
        acquire(vms("vm-01", "vm-02", "vm-03"))
    e = ei.value
    assert e.holder is None and e.blocker.path == p and e.exit_code == 4
    assert f"the lock file {p} for VM {vms('vm-02')[0]} is unreadable" in str(e)
    assert f"If no vmctl run is working on these VMs, remove {p} and run again." in str(e)
    assert lock_files() == {p}
    p.unlink()
    with acquire(vms("vm-01", "vm-02", "vm-03")):
        pass


def test_unusable_lock_directory_refuses(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(LockUnavailable) as ei:
        acquire(vms("vm-01"), directory=blocker)
    assert ei.value.exit_code == 4 and str(blocker) in str(ei.value)


# -- release ----------------------------------------------------------------------------------------

def test_release_removes_only_files_this_process_still_owns() -> None:
    ids = vms("vm-01", "vm-02")
    locks = acquire(ids, run_id="run-1")
    other = write_lock(ids[1], runId="run-other")                    # replaced behind our back
    locks.release()
    assert lock_files() == {other}
    assert json.loads(other.read_text())["runId"] == "run-other"


def test_release_from_a_signal_handler() -> None:
    locks = acquire(vms("vm-01", "vm-02"))
    old = signal.signal(signal.SIGUSR1, lambda *_: locks.release())
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while lock_files() and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert lock_files() == set()
    locks.release()


# -- two processes racing ---------------------------------------------------------------------------

WORKER = """
import os, sys
from pathlib import Path
from vmctl.locking import LockHeld, VmLocks
bar, name, trials = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
first = 0 if name == "a" else 3
(bar / f"ready-{name}").touch()
for i in range(trials):
    ids = [f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/t{i}-vm{n}"
           for n in range(first, first + 6)]  # = race_id(i, n)
    go = bar / f"go-{i}"
    while not go.exists():
        pass
    try:
        locks = VmLocks.acquire(ids, run_id=f"{name}-{i}", command="race", journal=None)
        result = f"win {len(locks.stale)}"
    except LockHeld:
        locks, result = None, "lose"
    tmp = bar / f".result-{i}-{name}"
    tmp.write_text(result)
    tmp.rename(bar / f"result-{i}-{name}")
    done = bar / f"done-{i}"
    while not done.exists():
        pass
    if locks is not None:
        locks.release()
    (bar / f"released-{i}-{name}").touch()
"""


def wait_for(*paths: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {[str(p) for p in paths if not p.exists()]} within {timeout}s")
        time.sleep(0.0005)


def race_id(trial: int, n: int) -> str:
    return f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/t{trial}-vm{n}"


def test_two_processes_racing_for_overlapping_vms_exactly_one_wins(tmp_path: Path) -> None:
    """Worker a wants VMs 0-5, worker b 3-8. Odd trials start with a stale lock (a dead run's) on
    each shared VM: the two then also race to take those over."""
    trials = 20
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale: dict[str, object] = {"pid": dead.pid, "procStart": None}
    if boot_id() is not None:
        stale = {"pid": os.getpid(), "bootId": "00000000-0000-0000-0000-000000000000"}   # from before a reboot
    bar = tmp_path / "barrier"
    bar.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(bar), n, str(trials)], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for n in ("a", "b")]
    try:
        wait_for(bar / "ready-a", bar / "ready-b")
        for i in range(trials):
            if i % 2:
                for n in (3, 4, 5):
                    write_lock(race_id(i, n), runId="run-dead", **stale)
            (bar / f"go-{i}").touch()
            results = [bar / f"result-{i}-{n}" for n in ("a", "b")]
            wait_for(*results)
            outcome = {n: (bar / f"result-{i}-{n}").read_text() for n in ("a", "b")}
            assert sorted(r.split()[0] for r in outcome.values()) == ["lose", "win"], (i, outcome)
            winner = next(n for n, r in outcome.items() if r.startswith("win"))
            # the shared VMs' stale locks were taken over by the winner or removed by the loser
            assert int(outcome[winner].split()[1]) in ((2, 3) if i % 2 else (0,)), (i, outcome)
            # the loser left nothing behind: exactly the winner's six locks exist
            files = lock_files()
            assert len(files) == 6 and {json.loads(f.read_text())["runId"] for f in files} == {f"{winner}-{i}"}
            (bar / f"done-{i}").touch()
            wait_for(*(bar / f"released-{i}-{n}" for n in ("a", "b")))
            assert lock_files() == set()
        for p in procs:
            assert p.wait(timeout=10) == 0, p.stderr.read() if p.stderr else ""
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
