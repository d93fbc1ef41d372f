"""Pre- and post-hooks: the operator's commands, run with the VM in their environment and a timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass

from .models import Vm

TAIL_LINES = 20
# credentials vmctl itself uses; a hook that prints its environment must not leak them into the journal
SECRET_ENV = {"AZURE_CLIENT_SECRET", "AZURE_PASSWORD", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "IDENTITY_HEADER",
              "MSI_SECRET", "AZURE_FEDERATED_TOKEN"}


@dataclass(frozen=True)
class HookResult:
    ok: bool
    returncode: int | None      # None: timed out or could not start
    output: str                 # the last lines of stdout+stderr
    reason: str                 # one line for the report when not ok


def run_hook(command: str, vm: Vm, action: str, phase: str, timeout: float,
             cancel: threading.Event | None = None) -> HookResult:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(VMCTL_VM_NAME=vm.name, VMCTL_VM_ID=vm.id, VMCTL_RESOURCE_GROUP=vm.resource_group,
               VMCTL_SUBSCRIPTION=vm.subscription_id, VMCTL_ACTION=action, VMCTL_HOOK_PHASE=phase)
    try:
        proc = subprocess.Popen(command, shell=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    except OSError as exc:
        return HookResult(False, None, "", f"{phase}-hook could not start: {exc.strerror}")
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, _ = proc.communicate()
        tail = _tail(out)
        return HookResult(False, None, tail, f"{phase}-hook timed out after {timeout:g} s" + (f": {_last(tail)}" if tail else ""))
    tail = _tail(out)
    if proc.returncode != 0:
        return HookResult(False, proc.returncode, tail,
                          f"{phase}-hook exited {proc.returncode}" + (f": {_last(tail)}" if tail else ""))
    return HookResult(True, 0, tail, "")


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole hook, not just the shell
    except ProcessLookupError:
        pass


def _tail(text: str | None) -> str:
    lines = (text or "").rstrip().splitlines()
    return "\n".join(lines[-TAIL_LINES:])


def _last(tail: str) -> str:
    lines = [line for line in tail.splitlines() if line.strip()]
    return " / ".join(lines[-3:])[:300]
