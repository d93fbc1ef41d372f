"""resume_targets on an in-memory FleetClient: what a resume does with a journal it did not write
this time (records read back from disk, possibly damaged)."""

from __future__ import annotations

from pathlib import Path

from vmctl.journal import Journal, read
from vmctl.pacing import Pacer
from vmctl.planner import Options, build_plan, plan_json
from vmctl.resume import resume_targets

from fakes import FakeFleet, make_vm


def test_a_request_record_without_its_correlation_id_is_never_resent(tmp_path: Path) -> None:
    """The journal says a request was sent but its correlation id is gone (a damaged line): the
    Activity Log cannot be asked, so the step ends `unknown` and nothing is sent again."""
    vms = [make_vm("vm0")]
    fleet = FakeFleet(vms)
    plan = build_plan("stop", vms, Options())
    path = tmp_path / "run.jsonl"
    first = Journal(path)
    first.write("run", runId=plan.run_id, command="vmctl stop")
    first.write("plan", plan=plan_json(plan))
    first.write("request", index=0, vm=vms[0].id, action="powerOff", attempt=1)  # no correlationId
    first.close()
    journal = Journal(path, append=True)
    try:
        targets = resume_targets(fleet, plan, read(path), journal, Pacer(scale=1000), activity_log_lag=0.0)
    finally:
        journal.close()
    assert targets.only == [] and targets.resumed == {}
    outcome = [r for r in read(path) if r["type"] == "outcome"]
    assert [(r["index"], r["status"]) for r in outcome] == [(0, "unknown")]
    assert "no correlation id" in outcome[0]["reason"] and "not resent" in outcome[0]["reason"]
    assert fleet.calls["begin_action"] == 0 and fleet.calls["activity_events"] == 0
