"""Pre- and post-hooks: the operator's commands, run with the VM in their environment and a timeout.

Environment: an allow-list, not a deny-list. A hook gets only the variables a shell script needs
(PASS_ENV, every LC_*), the VMCTL_* variables describing the VM and the step, and the names the
operator lists (`extra_env`, the CLI's repeatable `--hook-env NAME`). Credentials vmctl itself
uses (AZURE_CLIENT_SECRET, ARM_CLIENT_SECRET, IDENTITY_HEADER, ...) therefore never reach a hook,
and a hook that prints its environment cannot leak them into the journal, unless named.

Output: stdout and stderr together, read as it comes (memory stays bounded whatever the hook
prints); the first HEAD_BYTES and the last TAIL_BYTES are kept, with the total size, so a hook
printing 20 MB makes a journal line of ~16 KiB.

Stopping: on timeout, or when `cancel` is set (a second Ctrl-C), the hook's whole process group
gets SIGTERM, then SIGKILL after KILL_GRACE seconds; the output so far is returned.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from .models import Vm

HEAD_BYTES = 8 * 1024          # kept from the start of the output
TAIL_BYTES = 8 * 1024          # kept from the end
KILL_GRACE = 2.0               # seconds between SIGTERM and SIGKILL
EXIT_DRAIN = 1.0               # after the hook exits, how long a background child may hold its output open
STEP = 0.05                    # how often a running hook is checked for cancel and its deadline

# what a shell script needs, and nothing that authenticates
PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM")
PASS_PREFIXES = ("LC_",)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CANCELLED = "stopped by a second interrupt"


@dataclass(frozen=True)
class HookResult:
    ok: bool
    returncode: int | None      # None: timed out, stopped, or could not start
    output: str                 # stdout+stderr: all of it, or its first and last 8 KiB with a marker between
    reason: str                 # one line for the report when not ok
    output_bytes: int = 0       # how much the hook printed in all
    truncated: bool = False     # output keeps only the first HEAD_BYTES and the last TAIL_BYTES


def hook_env(vm: Vm, action: str, phase: str, extra_env: tuple[str, ...] = (),
             environ: dict[str, str] | None = None) -> dict[str, str]:
    """The hook's whole environment: allowed names from `environ` (default os.environ), the names
    in `extra_env` that are set there, then the VMCTL_* variables (which always win)."""
    src = os.environ if environ is None else environ
    wanted = set(PASS_ENV) | set(extra_env)
    env = {k: v for k, v in src.items() if k in wanted or k.startswith(PASS_PREFIXES)}
    env.update(VMCTL_VM_NAME=vm.name, VMCTL_VM_ID=vm.id, VMCTL_RESOURCE_GROUP=vm.resource_group,
               VMCTL_SUBSCRIPTION=vm.subscription_id, VMCTL_ACTION=action, VMCTL_HOOK_PHASE=phase)
    return env


class _Capture:
    """The first `head` bytes and the last `tail` bytes of a stream, and its total size."""

    def __init__(self, head: int = HEAD_BYTES, tail: int = TAIL_BYTES) -> None:
        self.head_max, self.tail_max = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.tail_max:
                del self.tail[: len(self.tail) - self.tail_max]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def end_text(self) -> str:
        """The end of the output (for the one-line reason): the tail alone when truncated."""
        data = self.tail if self.truncated else self.head + self.tail
        return data.decode("utf-8", errors="replace")

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if not self.truncated:
            return (head + tail).rstrip()
        omitted = self.total - len(self.head) - len(self.tail)
        return f"{head}\n[... {omitted} bytes of hook output omitted ({self.total} in all) ...]\n{tail}".rstrip()


def run_hook(command: str, vm: Vm, action: str, phase: str, timeout: float,
             cancel: threading.Event | None = None, extra_env: tuple[str, ...] = ()) -> HookResult:
    """Run `command` with /bin/sh in a new process group; never raises for the hook's own failures.

    ok only when it exits 0 within `timeout` seconds. `cancel` set while it runs stops it (SIGTERM
    to its process group, SIGKILL KILL_GRACE s later): reason "<phase>-hook stopped by a second
    interrupt". `extra_env`: variable names passed through from vmctl's environment on top of the
    allow-list (see hook_env).
    """
    return run_command(command, hook_env(vm, action, phase, extra_env), timeout, phase, cancel)


def run_command(command: str, env: dict[str, str], timeout: float, phase: str,
                cancel: threading.Event | None = None, kill_grace: float = KILL_GRACE) -> HookResult:
    """`run_hook` with the environment given whole (the guest watcher builds its own) and the
    SIGTERM-to-SIGKILL grace chosen by the caller."""
    try:
        proc = subprocess.Popen(command, shell=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        return HookResult(False, None, "", f"{phase}-hook could not start: {exc.strerror}")
    cap = _Capture()
    stopped = _pump(proc, cap, time.monotonic() + timeout, cancel, kill_grace)
    out = cap.text()
    end = _last(cap.end_text())
    last = f": {end}" if end else ""
    if stopped == "cancel":
        rc, reason = None, f"{phase}-hook {CANCELLED}{last}"
    elif stopped == "timeout":
        rc, reason = None, f"{phase}-hook timed out after {timeout:g} s{last}"
    elif proc.returncode != 0:
        rc, reason = proc.returncode, f"{phase}-hook exited {proc.returncode}{last}"
    else:
        rc, reason = 0, ""
    return HookResult(ok=rc == 0 and stopped is None, returncode=rc, output=out, reason=reason,
                      output_bytes=cap.total, truncated=cap.truncated)


def _pump(proc: subprocess.Popen[bytes], cap: _Capture, deadline: float,
          cancel: threading.Event | None, kill_grace: float = KILL_GRACE) -> str | None:
    """Read the hook's output until it exits (and its output closes); stop it at the deadline or on
    cancel. Returns None (it exited), "timeout" or "cancel"."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    eof = False
    stopped: str | None = None
    kill_at: float | None = None      # SIGKILL due (after SIGTERM)
    give_up: float | None = None      # stop reading: exited, or killed, and the pipe is still held open
    try:
        while True:
            now = time.monotonic()
            if stopped is None and proc.poll() is None:
                if cancel is not None and cancel.is_set():
                    stopped = "cancel"
                elif now >= deadline:
                    stopped = "timeout"
                if stopped is not None:
                    _signal(proc, signal.SIGTERM)
                    kill_at = now + kill_grace
            if kill_at is not None and now >= kill_at and proc.poll() is None:
                _signal(proc, signal.SIGKILL)
                kill_at = None
                give_up = now + EXIT_DRAIN
            if proc.poll() is not None:
                if eof:
                    break
                if give_up is None:
                    give_up = now + EXIT_DRAIN  # a background child may keep the pipe open: do not wait for it
            if give_up is not None and now >= give_up:
                break
            if eof:
                _wait(proc, STEP)
                continue
            limits = [STEP]
            if stopped is None:
                limits.append(max(0.0, deadline - now))
            for _key, _ev in sel.select(timeout=min(limits)):
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if chunk:
                    cap.add(chunk)
                else:
                    eof = True
                    sel.unregister(fd)
    finally:
        sel.close()
        proc.stdout.close()
        if proc.poll() is None:  # only when giving up on a process that ignores SIGKILL's aftermath
            _signal(proc, signal.SIGKILL)
        _wait(proc, KILL_GRACE)
    return stopped


def _wait(proc: subprocess.Popen[bytes], seconds: float) -> None:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # the whole hook, not just the shell
    except (ProcessLookupError, PermissionError):
        pass


def _last(text: str, limit: int = 300) -> str:
    """The last three non-blank lines on one line, at most `limit` characters (the end is kept)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = " / ".join(lines[-3:])
    return joined if len(joined) <= limit else "..." + joined[-(limit - 3):]
