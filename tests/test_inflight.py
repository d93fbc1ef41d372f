"""How many operations vmctl keeps in flight: no fixed cap by default (Azure's budgets set the
pace), `--parallel N` as an upper bound. In-memory FleetClient (tests/fakes.py); every operation
stays InProgress until the test lets it end, so "in flight at once" is counted, not timed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from vmctl.cloud import Accepted
from vmctl.executor import Executor
from vmctl.journal import Journal
from vmctl.models import Vm
from vmctl.pacing import Pacer
from vmctl.planner import Options, build_plan

from fakes import Accept, FakeFleet, make_vm

pytestmark = pytest.mark.timeout(30)


class Gate:
    """A poll answer: InProgress until the gate opens (operations sent later end at their first poll)."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def __str__(self) -> str:
        return "Succeeded" if self.open.is_set() else "InProgress"


class CountingFleet(FakeFleet):
    """Records the most operations running at once; opens the gate after `open_at` POSTs."""

    def __init__(self, vms: list[Vm], gate: Gate, open_at: int) -> None:
        super().__init__(vms)
        self.gate, self.open_at, self.most = gate, open_at, 0

    def begin_action(self, vm: Vm, action: str, **kw: Any) -> Accepted:
        acc = super().begin_action(vm, action, **kw)
        with self._lock:
            running = sum(1 for op in self.ops.values() if op.status == "InProgress")
            self.most = max(self.most, running)
            if self.calls["begin_action"] >= self.open_at and not self.gate.open.is_set():
                self.gate.open.set()  # every operation sent so far ends, as the listing will show
                for op in self.ops.values():
                    if op.status == "InProgress":
                        self._end(op, "Succeeded")
        return acc


def run(tmp_path: Path, n: int, open_at: int, **opts: Any) -> CountingFleet:
    vms = [make_vm(f"vm{i:02d}") for i in range(n)]
    gate = Gate()
    fleet = CountingFleet(vms, gate, open_at)
    for v in vms:
        fleet.enqueue(v.name, "powerOff", Accept(polls=(gate,)))
    plan = build_plan("stop", vms, Options(max_targets=n, **opts))
    journal = Journal(tmp_path / "journal.jsonl")
    try:
        outcomes = Executor(fleet, plan, journal, Pacer(scale=1000), poll_interval=0.001).run()
    finally:
        journal.close()
    assert [o.status for o in outcomes.values()] == ["succeeded"] * n
    assert fleet.calls["begin_action"] == n
    return fleet


def test_no_fixed_cap_by_default(tmp_path: Path) -> None:
    # 60 operations, none ending until all 60 were sent: the old default of 20 would deadlock here
    fleet = run(tmp_path, 60, open_at=60)
    assert fleet.most == 60


def test_parallel_is_an_upper_bound(tmp_path: Path) -> None:
    fleet = run(tmp_path, 12, open_at=3, parallel=3)
    assert fleet.most == 3
