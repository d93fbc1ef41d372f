"""Fault injection per VM and/or per operation: once, N times or always.

`error` is an HTTP status (429, 500, 503, 409), `drop` (the connection is closed with no answer),
`drop-after-accept` / `504-after-accept` (the request is carried out, then the connection is reset
or a 504 GatewayTimeout comes back: a lost reply; LRO-only), `hold-reply` (carried out, the answer
sent `delay_seconds` late: time for a client to be killed between its request and the answer),
`slow` (the LRO takes `delay_seconds` longer), `OperationPreempted` or `canceled` (the LRO ends
`Canceled` with error OperationPreempted, as when a newer operation preempts it), or any other word,
which is taken as the error code of an LRO that ends `Failed` (e.g. AllocationFailed on start).
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass

from .fleet import FaultSpec

HTTP_FAULTS = {"429", "500", "502", "503", "504", "409", "400", "401", "403"}
CANCEL_FAULTS = {"operationpreempted", "canceled", "cancelled"}
LRO_KINDS = ("lro", "slow", "cancel", "lost-reply", "hold")


@dataclass
class Fault:
    spec: FaultSpec
    remaining: int | None  # None = always
    fired: int = 0

    @property
    def kind(self) -> str:
        e = self.spec.error
        if e in HTTP_FAULTS:
            return "http"
        if e.lower() in ("drop", "reset"):
            return "drop"
        if e.lower() in ("drop-after-accept", "504-after-accept"):
            return "lost-reply"
        if e.lower() == "hold-reply":
            return "hold"
        if e.lower() == "slow":
            return "slow"
        if e.lower() in CANCEL_FAULTS:
            return "cancel"
        return "lro"


class Faults:
    def __init__(self) -> None:
        self._rules: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, specs: list[FaultSpec]) -> None:
        with self._lock:
            self._rules.extend(Fault(s, s.times) for s in specs)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def describe(self) -> list[dict[str, object]]:
        return [
            {"vm": f.spec.vm, "operation": f.spec.operation, "error": f.spec.error,
             "remaining": f.remaining if f.remaining is not None else "always", "fired": f.fired}
            for f in self._rules
        ]

    def take(self, operation: str, vm_name: str | None, lro: bool,
             kinds: frozenset[str] | None = None) -> Fault | None:
        """The first matching rule with uses left, consuming one use.

        `operation` is the full name (e.g. virtualMachines.start); a rule may name it in full or by
        its last part (start). LRO-only faults (failed, canceled or slow operations) match only LROs;
        `kinds`, when given, limits the rules that match to those kinds.
        """
        op_l = operation.lower()
        short = op_l.rsplit(".", 1)[-1]
        with self._lock:
            for f in self._rules:
                if f.remaining == 0:
                    continue
                if (f.kind in LRO_KINDS and not lro) or (kinds is not None and f.kind not in kinds):
                    continue
                op = f.spec.operation.lower()
                if op not in ("*", "any") and op not in (op_l, short):
                    continue
                if f.spec.vm is not None:
                    if vm_name is None or not fnmatch.fnmatchcase(vm_name.lower(), f.spec.vm.lower()):
                        continue
                if f.remaining is not None:
                    f.remaining -= 1
                f.fired += 1
                return f
        return None
