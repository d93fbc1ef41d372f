"""Unit tests of vmctl.executor.Executor on an in-memory FleetClient (tests/fakes.py): every answer
Azure can give a POST or a poll, scripted; each test runs in milliseconds (tiny poll interval,
a fast pacer, Retry-After of a millisecond)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from vmctl.cloud import OperationStatus
from vmctl.errors import CredentialError
from vmctl.executor import LIST_THRESHOLD, MAX_ATTEMPTS, Executor
from vmctl.journal import Journal
from vmctl.models import Outcome, Vm
from vmctl.pacing import Pacer
from vmctl.planner import Options, build_plan

from fakes import Accept, FakeFleet, Lost, Refused, ServerError, Throttled, make_vm

pytestmark = pytest.mark.timeout(20)


class Run:
    def __init__(self, outcomes: dict[int, Outcome], journal_path: Path, names: list[str]) -> None:
        self.outcomes = outcomes
        self.records = [json.loads(line) for line in journal_path.read_text().splitlines()]
        self.by_name = {names[i]: o for i, o in outcomes.items()}

    def status(self, name: str) -> str:
        return self.by_name[name].status

    def records_of(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == type_]


def execute(tmp_path: Path, fleet: FakeFleet, vms: list[Vm], verb: str = "stop", *, stop: threading.Event | None = None,
            contact_timeout: float = 5.0, **opts: Any) -> Run:
    plan = build_plan(verb, vms, Options(**opts))
    path = tmp_path / "journal" / f"{plan.run_id}.jsonl"
    journal = Journal(path)
    try:
        ex = Executor(fleet, plan, journal, Pacer(scale=1000), poll_interval=0.001, stop=stop,
                      contact_timeout=contact_timeout)
        outcomes = ex.run()
    finally:
        journal.close()
    return Run(outcomes, path, [v.name for v in vms])


def test_one_operation_per_vm_on_success(tmp_path: Path) -> None:
    vms = [make_vm(f"vm{i}") for i in range(3)]
    fleet = FakeFleet(vms)
    fleet.enqueue("vm1", "powerOff", Accept(polls=("InProgress", "InProgress", "Succeeded")))
    run = execute(tmp_path, fleet, vms)
    assert [o.status for o in run.outcomes.values()] == ["succeeded"] * 3
    assert fleet.calls["begin_action"] == 3
    assert sorted(n for n, _, _ in fleet.begins) == ["vm0", "vm1", "vm2"]
    assert all(o.retries == 0 and o.correlation_id for o in run.outcomes.values())
    assert [fleet.state(v.name) for v in vms] == [("stopped", "Succeeded")] * 3


def test_many_in_flight_use_the_status_listing(tmp_path: Path) -> None:
    vms = [make_vm(f"vm{i}") for i in range(LIST_THRESHOLD + 2)]
    fleet = FakeFleet(vms)
    for v in vms:
        # the VM finishes by itself after one read saw it busy; the operation is polled once it looks done
        fleet.enqueue(v.name, "powerOff", Accept(polls=("InProgress",), busy_reads=1))
    run = execute(tmp_path, fleet, vms)
    assert {o.status for o in run.outcomes.values()} == {"succeeded"}
    assert fleet.calls["begin_action"] == len(vms)
    assert fleet.calls["list_statuses"] >= 1
    # the listing answers for all of them: far fewer polls than one per VM per interval
    assert fleet.calls["operation_status"] <= 2 * len(vms)


def test_sync_200_succeeds_without_a_poll(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    fleet = FakeFleet(vms).enqueue("a", "powerOff", Accept(sync=True))
    run = execute(tmp_path, fleet, vms)
    assert run.status("a") == "succeeded"
    assert fleet.calls["operation_status"] == 0


def test_429_is_retried_without_costing_the_outcome(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    n = MAX_ATTEMPTS + 2  # more 429s than attempts: a 429 is pacing, not a failed attempt
    fleet = FakeFleet(vms).enqueue("a", "powerOff", *[Throttled(0.001)] * n, Accept())
    run = execute(tmp_path, fleet, vms)
    assert run.status("a") == "succeeded"
    assert run.by_name["a"].retries == n
    assert fleet.begin_count("a") == n + 1
    assert len(run.records_of("retry")) == n


def test_409_fails_at_once_and_is_not_resent(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    fleet = FakeFleet(vms).enqueue("a", "powerOff", Refused("OperationNotAllowed", "conflicting operation"))
    run = execute(tmp_path, fleet, vms)
    assert run.status("a") == "failed"
    assert "OperationNotAllowed" in run.by_name["a"].reason
    assert fleet.begin_count("a") == 1
    assert fleet.calls["operation_status"] == 0


def test_lost_reply_vm_busy_is_watched_by_state_never_resent(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    fleet = FakeFleet(vms).enqueue("a", "powerOff", Lost(landed=True, busy_reads=2))
    run = execute(tmp_path, fleet, vms)
    assert run.status("a") == "succeeded"
    assert fleet.begin_count("a") == 1
    assert fleet.calls["operation_status"] == 0  # no status URL: only the VM's state
    lost = run.records_of("reply-lost")
    assert [r["verdict"] for r in lost] == ["landed"]
    assert len(run.records_of("confirmed-by-state")) == 1
    assert fleet.state("a") == ("stopped", "Succeeded")


def test_lost_reply_vm_already_at_target_is_not_resent(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    fleet = FakeFleet(vms).enqueue("a", "powerOff", Lost(landed=True, busy_reads=0))
    run = execute(tmp_path, fleet, vms)
    assert run.status("a") == "succeeded"
    assert fleet.begin_count("a") == 1
    assert [r["verdict"] for r in run.records_of("reply-lost")] == ["done"]


def test_lost_reply_vm_shows_nothing_is_resent_once(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    fleet = FakeFleet(vms).enqueue("a", "powerOff", Lost(landed=False), Accept())
    run = execute(tmp_path, fleet, vms)
    assert run.status("a") == "succeeded"
    assert fleet.begin_count("a") == 2
    assert run.by_name["a"].retries == 1
    assert run.records_of("reply-lost") == []
    cids = [c for _, _, c in fleet.begins]
    assert len(set(cids)) == 2  # each send is its own request


def test_lost_reply_vm_unreadable_is_unknown_and_not_resent(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    fleet = FakeFleet(vms).enqueue("a", "powerOff", Lost(landed=True))
    fleet.fail_views("a", ServerError("503 Service Unavailable"))
    run = execute(tmp_path, fleet, vms)
    assert run.status("a") == "unknown"
    assert fleet.begin_count("a") == 1


def test_canceled_operation_is_preempted(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    fleet = FakeFleet(vms).enqueue("a", "powerOff", Accept(polls=(
        "InProgress", OperationStatus("Canceled", "OperationPreempted", "superseded by a newer request"))))
    run = execute(tmp_path, fleet, vms)
    assert run.status("a") == "preempted"
    assert "OperationPreempted" in run.by_name["a"].reason
    assert fleet.begin_count("a") == 1


def test_failed_operation_is_failed_with_its_error(tmp_path: Path) -> None:
    vms = [make_vm("a", "deallocated")]
    fleet = FakeFleet(vms).enqueue("a", "start", Accept(polls=(
        OperationStatus("Failed", "AllocationFailed", "no capacity"),)))
    run = execute(tmp_path, fleet, vms, verb="start")
    assert run.status("a") == "failed"
    assert "AllocationFailed" in run.by_name["a"].reason
    assert fleet.begin_count("a") == 1


def test_poll_401_refreshes_the_credential_and_a_later_poll_decides(tmp_path: Path) -> None:
    vms = [make_vm("a"), make_vm("b")]
    fleet = FakeFleet(vms)
    fleet.enqueue("a", "powerOff", Accept(polls=(CredentialError("token expired (401)"), "Succeeded")))
    fleet.enqueue("b", "powerOff", Accept(polls=(CredentialError("token expired (401)"),
                                                 OperationStatus("Failed", "InternalError", "boom"))))
    run = execute(tmp_path, fleet, vms)
    assert fleet.refreshes == 2
    assert run.status("a") == "succeeded"
    assert run.status("b") == "failed" and "InternalError" in run.by_name["b"].reason
    assert fleet.begin_count() == 2


def test_persistent_poll_failures_vm_busy_then_at_target_succeeds_by_state(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    fleet = FakeFleet(vms).enqueue("a", "powerOff", Accept(polls=(ServerError("502 Bad Gateway"),), busy_reads=1))
    run = execute(tmp_path, fleet, vms)
    assert run.status("a") == "succeeded"
    assert fleet.calls["operation_status"] >= 3
    confirmed = run.records_of("confirmed-by-state")
    assert len(confirmed) == 1 and "502 Bad Gateway" in confirmed[0]["why"]
    assert fleet.begin_count("a") == 1


def test_no_answer_for_longer_than_contact_timeout_is_unknown(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    fleet = FakeFleet(vms).enqueue("a", "powerOff", Accept(polls=(ServerError("connection reset"),)))
    fleet.fail_views("a", ServerError("connection reset"))
    run = execute(tmp_path, fleet, vms, contact_timeout=0.1)
    out = run.by_name["a"]
    assert out.status == "unknown"
    assert "connection reset" in out.reason and out.correlation_id
    assert fleet.begin_count("a") == 1


def test_skipped_steps_get_their_outcome(tmp_path: Path) -> None:
    vms = [make_vm("on"), make_vm("off", "stopped"), make_vm("busy", "stopping")]
    fleet = FakeFleet(vms)
    run = execute(tmp_path, fleet, vms)
    assert run.status("on") == "succeeded"
    assert run.status("off") == "skipped" and run.status("busy") == "skipped"
    assert fleet.begin_count() == 1
    codes = {r["index"]: r["skipCode"] for r in run.records_of("outcome")}
    assert codes[1] == "already-in-target-state" and codes[2] == "operation-in-progress"


def test_hibernate_not_enabled_is_failed_not_skipped(tmp_path: Path) -> None:
    vms = [make_vm("a")]
    fleet = FakeFleet(vms)
    run = execute(tmp_path, fleet, vms, verb="deallocate", hibernate=True)
    assert run.status("a") == "failed"
    assert fleet.begin_count() == 0


def test_stop_event_cancels_steps_not_started(tmp_path: Path) -> None:
    vms = [make_vm(f"vm{i}") for i in range(4)]
    stop = threading.Event()
    fleet = FakeFleet(vms)

    def ctrl_c_then_accept() -> Accept:
        stop.set()
        return Accept(polls=("InProgress", "Succeeded"))

    fleet.enqueue("vm0", "powerOff", ctrl_c_then_accept)
    run = execute(tmp_path, fleet, vms, stop=stop, parallel=1)
    assert run.status("vm0") == "succeeded"  # already sent: watched to its end
    assert [run.status(f"vm{i}") for i in (1, 2, 3)] == ["cancelled"] * 3
    assert fleet.begin_count() == 1


def test_a_retry_after_longer_than_the_contact_timeout_is_waited_out_not_unknown(tmp_path: Path) -> None:
    """The service says "ask again in 0.3 s" and the contact timeout is 0.1 s: its Retry-After is
    news, so the operation is polled when allowed and succeeds (found by the guest-side tests,
    where Compute holds a user restart for the guest's approval)."""
    vms = [make_vm("vm0")]
    fleet = FakeFleet(vms)
    fleet.enqueue("vm0", "powerOff", Accept(polls=("Succeeded",), retry_after=0.3))
    run = execute(tmp_path, fleet, vms, contact_timeout=0.1)
    assert run.status("vm0") == "succeeded", run.outcomes
