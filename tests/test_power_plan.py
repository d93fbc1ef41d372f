"""The plan and the operator guards, as pure logic over plain data (no simulator, no SDK).

planner.build_plan / plan_step: every skip reason, the order in which they apply, the consequence
of each action, the summary, the blast-radius guards and the JSON round trip.
safety.stop_or_deallocate / safety.confirm: driven by a scripted list of answers.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from vmctl.errors import BAD_INPUT, REFUSED, GuardRefusal, InputError
from vmctl.models import Maintenance, Vm
from vmctl.planner import (
    CONSEQUENCE,
    Options,
    Plan,
    Step,
    build_plan,
    guard_refusals,
    plan_from_json,
    plan_json,
    plan_step,
)
from vmctl.safety import STOP_BILLED, confirm, stop_or_deallocate

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"
NOW = datetime(2026, 11, 22, 10, 15, tzinfo=timezone.utc)


def vm(name: str = "vm-01", power: str = "running", prov: str = "Succeeded", *, sub: str = SUB_A,
       rg: str = "rg-app", **kw: Any) -> Vm:
    return Vm(subscription_id=sub, resource_group=rg, name=name,
              id=f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}",
              location="westeurope", size="Standard_D2s_v5", power_state=power, provisioning_state=prov,
              subscription_name="test-sub-a" if sub == SUB_A else "test-sub-b", **kw)


def step(v: Vm, action: str, **opts: Any) -> Step:
    return plan_step(0, v, action, Options(**opts))


def skip_of(v: Vm, action: str, **opts: Any) -> str | None:
    s = step(v, action, **opts)
    assert not s.acts, s
    return s.skip


class Answers:
    """A scripted prompt: hands out the given answers in order and records every question."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.questions.append(prompt)
        if not self.answers:
            raise AssertionError(f"unexpected prompt: {prompt!r}")
        return self.answers.pop(0)


def no_prompt(prompt: str) -> str:
    raise AssertionError(f"no prompt expected, got {prompt!r}")


# =========================================================================== plan_step: skip reasons
@pytest.mark.parametrize("action,power", [
    ("start", "running"), ("powerOff", "stopped"), ("deallocate", "deallocated"),
    ("powerOff", "deallocated"),  # a deallocated VM is already off: stop has nothing to do
])
def test_already_in_target_state(action: str, power: str) -> None:
    s = step(vm(power=power), action)
    assert not s.acts and s.action is None
    assert s.skip == "already-in-target-state"
    assert f"already {power}" in s.detail and "no request sent" in s.detail


def test_deallocate_of_a_stopped_vm_acts_and_start_of_a_stopped_vm_acts() -> None:
    assert step(vm(power="stopped"), "deallocate").action == "deallocate"
    assert step(vm(power="stopped"), "start").action == "start"
    assert step(vm(power="deallocated"), "start").action == "start"


def test_production_is_excluded_unless_included() -> None:
    prod = vm(power="stopped", production=True)
    s = step(prod, "start")
    assert s.skip == "production" and "--include-production" in s.detail
    assert step(prod, "start", include_production=True).action == "start"


def test_scale_set_member() -> None:
    s = step(vm(scale_set="vmss-a"), "deallocate")
    assert s.skip == "scale-set-member" and "scale set" in s.detail


@pytest.mark.parametrize("action", ["deallocate"])
def test_ephemeral_os_disk_cannot_be_deallocated(action: str) -> None:
    s = step(vm(ephemeral_os_disk=True), action)
    assert s.skip == "ephemeral-os-disk" and "cannot be deallocated" in s.detail


@pytest.mark.parametrize("action,power", [("powerOff", "running"), ("restart", "running"), ("start", "stopped")])
def test_ephemeral_os_disk_only_matters_for_deallocate(action: str, power: str) -> None:
    assert step(vm(power=power, ephemeral_os_disk=True), action).action == action


def test_ephemeral_os_disk_wins_over_hibernate_fallback() -> None:
    v = vm(ephemeral_os_disk=True)
    assert skip_of(v, "deallocate", hibernate=True, hibernate_fallback="deallocate") == "ephemeral-os-disk"


def test_hibernate_on_an_enabled_running_vm() -> None:
    s = step(vm(hibernation_enabled=True), "deallocate", hibernate=True)
    assert s.action == "deallocate" and s.hibernate and s.path == "hibernate"
    assert s.detail == CONSEQUENCE["hibernate"] and "hibernated" in s.detail


def test_hibernation_not_enabled_with_fallback_fail() -> None:
    s = step(vm(), "deallocate", hibernate=True)
    assert s.skip == "hibernation-not-enabled" and "--hibernate-fallback" in s.detail
    # the default fallback is fail
    assert Options().hibernate_fallback == "fail"


def test_hibernation_needs_running_with_fallback_fail() -> None:
    s = step(vm(power="stopped", hibernation_enabled=True), "deallocate", hibernate=True)
    assert s.skip == "hibernation-needs-running" and "stopped" in s.detail


@pytest.mark.parametrize("v", [vm(), vm(power="stopped", hibernation_enabled=True)], ids=["not-enabled", "not-running"])
def test_hibernate_fallback_deallocate(v: Vm) -> None:
    s = step(v, "deallocate", hibernate=True, hibernate_fallback="deallocate")
    assert s.acts and s.action == "deallocate"
    assert not s.hibernate
    assert s.path == "deallocate (fallback)"
    assert s.detail == CONSEQUENCE["deallocate"]


def test_without_hibernate_no_path_is_recorded() -> None:
    s = step(vm(hibernation_enabled=True), "deallocate")
    assert s.acts and not s.hibernate and s.path == ""


@pytest.mark.parametrize("action", ["powerOff", "deallocate", "restart"])
def test_provisioning_failed(action: str) -> None:
    s = step(vm(prov="Failed"), action)
    assert s.skip == "provisioning-failed" and "vmctl show" in s.detail


def test_provisioning_failed_does_not_block_start() -> None:
    # starting a failed VM is the usual repair; only the target state decides
    assert step(vm(power="deallocated", prov="Failed"), "start").action == "start"
    assert skip_of(vm(power="running", prov="Failed"), "start") == "already-in-target-state"


@pytest.mark.parametrize("power", ["starting", "stopping", "deallocating"])
@pytest.mark.parametrize("action", ["start", "powerOff", "deallocate", "restart"])
def test_operation_in_progress_for_transitional_power_states(power: str, action: str) -> None:
    s = step(vm(power=power), action)
    assert s.skip == "operation-in-progress" and power in s.detail


@pytest.mark.parametrize("prov", ["Updating", "Creating", "Deleting", "updating"])
def test_operation_in_progress_for_busy_provisioning_states(prov: str) -> None:
    assert skip_of(vm(prov=prov), "powerOff") == "operation-in-progress"


@pytest.mark.parametrize("power", ["stopped", "deallocated"])
def test_restart_needs_a_running_vm(power: str) -> None:
    s = step(vm(power=power), "restart")
    assert s.skip == "not-running" and power in s.detail and "use start" in s.detail


def test_restart_of_a_running_vm_acts() -> None:
    s = step(vm(), "restart")
    assert s.action == "restart" and s.detail == CONSEQUENCE["restart"]


# =========================================================================== the order reasons apply in
def test_reason_order() -> None:
    """production > scale-set > operation-in-progress > provisioning-failed > target state / not-running
    > ephemeral OS disk > hibernation."""
    everything = vm(power="deallocating", prov="Failed", production=True, scale_set="vmss", ephemeral_os_disk=True)
    assert skip_of(everything, "deallocate") == "production"
    v = replace(everything, production=False)
    assert skip_of(v, "deallocate") == "scale-set-member"
    v = replace(v, scale_set=None)
    assert skip_of(v, "deallocate") == "operation-in-progress"
    v = replace(v, power_state="running")
    assert skip_of(v, "deallocate") == "provisioning-failed"
    v = replace(v, provisioning_state="Succeeded")
    assert skip_of(v, "deallocate") == "ephemeral-os-disk"
    assert skip_of(replace(v, power_state="deallocated"), "deallocate") == "already-in-target-state"
    # production is decided before anything else, also for an already-stopped production VM
    assert skip_of(vm(power="stopped", production=True), "powerOff") == "production"
    # a production VM that is included still gets the other reasons
    assert skip_of(vm(power="stopped", production=True), "powerOff", include_production=True) == \
        "already-in-target-state"
    # provisioning-failed comes before not-running for restart
    assert skip_of(vm(power="stopped", prov="Failed"), "restart") == "provisioning-failed"
    # already-in-target-state comes before the hibernation checks
    assert skip_of(vm(power="deallocated"), "deallocate", hibernate=True) == "already-in-target-state"
    # hibernation-not-enabled is reported before hibernation-needs-running
    assert skip_of(vm(power="stopped"), "deallocate", hibernate=True) == "hibernation-not-enabled"


# =========================================================================== consequences
def test_stop_consequence() -> None:
    s = step(vm(), "powerOff")
    assert s.detail == "compute stays allocated and billed"
    assert "HARD POWER-OFF" not in s.detail


def test_deallocate_consequence() -> None:
    d = step(vm(), "deallocate").detail
    assert "compute released" in d
    assert "temporary disk" in d and "dynamic public IPs" in d and "capacity" in d


def test_skip_shutdown_adds_hard_power_off_to_stop_only() -> None:
    s = step(vm(), "powerOff", skip_shutdown=True)
    assert s.detail.startswith("compute stays allocated and billed")
    assert "HARD POWER-OFF" in s.detail and "no guest shutdown" in s.detail
    assert "HARD POWER-OFF" not in step(vm(), "deallocate", skip_shutdown=True).detail


def test_start_consequence() -> None:
    s = step(vm(power="deallocated"), "start")
    assert "billed again" in s.detail and "capacity" in s.detail


# =========================================================================== build_plan and summary
def fleet() -> list[Vm]:
    return [
        vm("a-run-1"), vm("a-run-2"),
        vm("a-stopped", power="stopped"),
        vm("a-dealloc", power="deallocated"),
        vm("a-prod", production=True),
        vm("a-prod-stopped", power="stopped", production=True),
        vm("a-vmss", scale_set="vmss-a"),
        vm("a-eph", ephemeral_os_disk=True),
        vm("a-busy", power="starting"),
        vm("a-failed", prov="Failed"),
    ]


def test_build_plan_keeps_input_order_and_indexes() -> None:
    vms = fleet()
    plan = build_plan("deallocate", vms, Options(), now=NOW, run_id="r1")
    assert [s.index for s in plan.steps] == list(range(len(vms)))
    assert [s.vm for s in plan.steps] == vms
    assert plan.verb == "deallocate" and plan.action == "deallocate" and plan.run_id == "r1"
    assert plan.created_at == "2026-11-22T10:15:00Z"
    assert not plan.refusals


def test_build_plan_maps_verbs_to_actions() -> None:
    assert build_plan("stop", [vm()], Options(), now=NOW).action == "powerOff"
    assert build_plan("start", [vm()], Options(), now=NOW).action == "start"
    assert build_plan("restart", [vm()], Options(), now=NOW).action == "restart"
    assert build_plan("deallocate", [vm()], Options(), now=NOW).action == "deallocate"


def test_run_id_is_timestamped_and_unique() -> None:
    a = build_plan("stop", [vm()], Options(), now=NOW).run_id
    b = build_plan("stop", [vm()], Options(), now=NOW).run_id
    assert a.startswith("20261122T101500Z-") and b.startswith("20261122T101500Z-") and a != b


def test_summary_counts_for_deallocate() -> None:
    plan = build_plan("deallocate", fleet(), Options(), now=NOW)
    sm = plan.summary()
    assert sm["targets"] == 10
    assert sm["actions"] == {"deallocate": 3}  # a-run-1, a-run-2, a-stopped
    assert sm["acting"] == 3
    assert sm["skipped"] == {"already-in-target-state": 1, "production": 2, "scale-set-member": 1,
                             "ephemeral-os-disk": 1, "operation-in-progress": 1, "provisioning-failed": 1}
    # only the skipped production VM that is stopped stays stopped-but-billed
    assert sm["leftStoppedButBilled"] == 1
    assert sm["production"] == 0


def test_summary_counts_for_stop() -> None:
    plan = build_plan("stop", fleet(), Options(), now=NOW)
    sm = plan.summary()
    # a-run-1, a-run-2, a-eph act; a-stopped and a-dealloc are already off
    assert sm["actions"] == {"powerOff": 3}
    assert sm["skipped"]["already-in-target-state"] == 2
    # 3 powered off + a-stopped (already stopped) + a-prod-stopped (skipped, stopped)
    assert sm["leftStoppedButBilled"] == 5


def test_summary_counts_hibernate_separately_and_production_acting() -> None:
    vms = [vm("h", hibernation_enabled=True), vm("p"), vm("prod", production=True)]
    plan = build_plan("deallocate", vms, Options(hibernate=True, hibernate_fallback="deallocate",
                                                  include_production=True), now=NOW)
    sm = plan.summary()
    assert sm["actions"] == {"hibernate": 1, "deallocate": 2}
    assert sm["production"] == 1 and [s.vm.name for s in plan.production_acting] == ["prod"]
    assert [s.vm.name for s in plan.acting] == ["h", "p", "prod"]
    assert sm["leftStoppedButBilled"] == 0


def test_summary_of_a_plan_with_nothing_to_do() -> None:
    sm = build_plan("start", [vm(), vm("b")], Options(), now=NOW).summary()
    assert sm["acting"] == 0 and sm["actions"] == {} and sm["skipped"] == {"already-in-target-state": 2}


# =========================================================================== blast-radius guards
def many(n: int, sub: str = SUB_A, prefix: str = "v") -> list[Vm]:
    return [vm(f"{prefix}-{i:03d}", sub=sub) for i in range(n)]


def test_max_targets_default_is_50() -> None:
    assert Options().max_targets == 50
    assert build_plan("stop", many(50), Options(), now=NOW).refusals == ()
    refusals = build_plan("stop", many(51), Options(), now=NOW).refusals
    assert len(refusals) == 1 and "51 VMs" in refusals[0] and "--max-targets 50" in refusals[0]


def test_max_targets_counts_only_acting_steps() -> None:
    vms = many(3) + [vm(f"off-{i}", power="stopped") for i in range(5)]
    assert build_plan("stop", vms, Options(max_targets=3), now=NOW).refusals == ()
    assert build_plan("start", vms, Options(max_targets=3), now=NOW).refusals != ()


def test_max_targets_refusal_names_the_way_past_it() -> None:
    r = guard_refusals([plan_step(i, v, "powerOff", Options()) for i, v in enumerate(many(3))], Options(max_targets=2), {})
    assert r and "3 VMs" in r[0] and "--max-targets 2" in r[0] and "raise --max-targets" in r[0]


def test_max_percent_uses_subscription_totals() -> None:
    vms = many(3)
    opts = Options(max_percent=10)
    # 3 of 40 is 7.5 %: allowed
    assert build_plan("stop", vms, opts, totals={SUB_A: 40}, now=NOW).refusals == ()
    # 3 of 20 is 15 %: refused
    refusals = build_plan("stop", vms, opts, totals={SUB_A: 20}, now=NOW).refusals
    assert len(refusals) == 1
    assert "3 of 20 VMs (15%)" in refusals[0] and SUB_A in refusals[0] and "--max-percent 10" in refusals[0]


def test_max_percent_is_per_subscription() -> None:
    vms = many(2, SUB_A, "a") + many(5, SUB_B, "b")
    opts = Options(max_percent=25)
    # A: 2 of 10 = 20 % (fine); B: 5 of 10 = 50 % (refused). Overall 7 of 20 = 35 % does not matter.
    refusals = build_plan("stop", vms, opts, totals={SUB_A: 10, SUB_B: 10}, now=NOW).refusals
    assert len(refusals) == 1 and SUB_B in refusals[0] and SUB_A not in refusals[0]
    # with a larger B, nothing is refused even though the overall share would be
    assert build_plan("stop", vms, opts, totals={SUB_A: 10, SUB_B: 40}, now=NOW).refusals == ()


def test_max_percent_unset_by_default() -> None:
    assert Options().max_percent is None
    assert build_plan("stop", many(3), Options(), totals={SUB_A: 3}, now=NOW).refusals == ()


def test_both_guards_can_refuse_at_once() -> None:
    refusals = build_plan("stop", many(4), Options(max_targets=2, max_percent=50), totals={SUB_A: 5}, now=NOW).refusals
    assert len(refusals) == 2
    assert "--max-targets" in refusals[0] and "--max-percent" in refusals[1]


# =========================================================================== JSON round trip
def test_plan_json_round_trip() -> None:
    maint = Maintenance(True, datetime(2026, 11, 21, tzinfo=timezone.utc), datetime(2026, 11, 28, tzinfo=timezone.utc),
                        datetime(2026, 11, 29, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc),
                        "MaintenanceAborted", "retry later")
    vms = [
        vm("h-01", hibernation_enabled=True, priority="Spot", zones=("2",), tags={"env": "dev", "Owner": "ops"}),
        vm("as-01", availability_set="as-app", update_domain=1, fault_domain=0, maintenance=maint),
        vm("eph-01", ephemeral_os_disk=True),
        vm("prod-01", power="stopped", production=True, tags={"Environment": "Production"}),
        vm("b-01", sub=SUB_B, rg="rg-b"),
    ]
    opts = Options(hibernate=True, hibernate_fallback="deallocate", include_production=True, max_targets=7,
                   max_percent=80.0, parallel=3, timeout=90.0, pre_hook="./drain.sh",
                   post_hook="./check.sh", hook_timeout=30.0, ticket="CHG-42")
    plan = build_plan("deallocate", vms, opts, totals={SUB_A: 5, SUB_B: 1}, now=NOW, run_id="20261122T101500Z-abcdef")
    data = json.loads(json.dumps(plan_json(plan), default=str))  # survives JSON serialisation
    back = plan_from_json(data)

    assert back.run_id == plan.run_id and back.verb == "deallocate" and back.action == "deallocate"
    assert back.created_at == plan.created_at
    assert back.options == opts
    assert back.totals == {SUB_A: 5, SUB_B: 1}
    assert back.refusals == plan.refusals and len(back.refusals) == 1  # B: 1 of 1 = 100 % > 80 %
    assert len(back.steps) == len(plan.steps)
    for a, b in zip(plan.steps, back.steps):
        assert (b.index, b.action, b.skip, b.detail, b.hibernate, b.path) == \
            (a.index, a.action, a.skip, a.detail, a.hibernate, a.path)
        assert b.vm == a.vm, a.vm.name  # every compared field of the VM survives
        assert b.vm.tags == a.vm.tags
    assert back.steps[0].path == "hibernate" and back.steps[2].skip == "ephemeral-os-disk"
    assert back.summary() == plan.summary()
    assert data["summary"] == plan.summary()


def test_plan_json_round_trip_keeps_scale_set_membership() -> None:
    plan = build_plan("deallocate", [vm("node-0", scale_set="vmss-a")], Options(), now=NOW)
    back = plan_from_json(json.loads(json.dumps(plan_json(plan))))
    assert back.steps[0].skip == "scale-set-member"
    assert back.steps[0].vm.scale_set  # membership kept (the name itself is not in the plan JSON)


# =========================================================================== safety.stop_or_deallocate
def test_keep_allocation_means_stop_without_asking() -> None:
    assert stop_or_deallocate(True, False, no_prompt) == "stop"
    assert stop_or_deallocate(True, True, no_prompt) == "stop"


def test_stop_without_keep_allocation_and_no_terminal_is_refused() -> None:
    with pytest.raises(GuardRefusal) as info:
        stop_or_deallocate(False, False, no_prompt)
    assert info.value.exit_code == REFUSED == 4
    assert info.value.message == STOP_BILLED
    assert "\n" not in info.value.message and "--keep-allocation" in info.value.message


@pytest.mark.parametrize("answer,verb", [("s", "stop"), ("stop", "stop"), ("S", "stop"), ("d", "deallocate"),
                                         ("deallocate", "deallocate"), (" D ", "deallocate")])
def test_interactive_stop_or_deallocate(answer: str, verb: str) -> None:
    ask = Answers(answer)
    assert stop_or_deallocate(False, True, ask) == verb
    assert len(ask.questions) == 1
    q = ask.questions[0]
    assert "allocated and billed" in q and "[s]top" in q and "[d]eallocate" in q and "[a]bort" in q


@pytest.mark.parametrize("answer", ["a", "abort", ""])
def test_interactive_abort(answer: str) -> None:
    with pytest.raises(GuardRefusal) as info:
        stop_or_deallocate(False, True, Answers(answer))
    assert info.value.exit_code == 4


def test_interactive_unknown_answer_asks_again() -> None:
    ask = Answers("maybe", "x", "d")
    assert stop_or_deallocate(False, True, ask) == "deallocate"
    assert len(ask.questions) == 3


# =========================================================================== safety.confirm
def plan_of(vms: list[Vm], verb: str = "deallocate", **opts: Any) -> Plan:
    return build_plan(verb, vms, Options(**opts), totals={SUB_A: 100}, now=NOW)


def test_confirm_refusals_are_guard_refusals_even_with_yes() -> None:
    plan = plan_of(many(3), max_targets=2)
    for yes, tty in ((True, False), (True, True), (False, True)):
        with pytest.raises(GuardRefusal) as info:
            confirm(plan, yes, tty, no_prompt)
        assert info.value.exit_code == 4 and "--max-targets 2" in info.value.message


def test_confirm_with_yes_and_no_terminal() -> None:
    confirm(plan_of(many(2)), True, False, no_prompt)


def test_confirm_without_yes_and_no_terminal_is_bad_input() -> None:
    with pytest.raises(InputError) as info:
        confirm(plan_of(many(2)), False, False, no_prompt)
    assert not isinstance(info.value, GuardRefusal)
    assert info.value.exit_code == BAD_INPUT == 2
    assert "--yes" in str(info.value)


@pytest.mark.parametrize("answer", ["y", "Y", "yes", " yes "])
def test_plain_interactive_yes(answer: str) -> None:
    ask = Answers(answer)
    confirm(plan_of(many(2)), False, True, ask)
    assert "[y/N]" in ask.questions[0] and "2 VM(s)" in ask.questions[0] and "2 deallocate" in ask.questions[0]


@pytest.mark.parametrize("answer", ["", "n", "no", "nope"])
def test_plain_interactive_anything_else_aborts(answer: str) -> None:
    with pytest.raises(GuardRefusal):
        confirm(plan_of(many(2)), False, True, Answers(answer))


def test_yes_on_a_terminal_does_not_prompt() -> None:
    confirm(plan_of(many(2)), True, True, no_prompt)


def prod_plan(**opts: Any) -> Plan:
    vms = many(2) + [vm("prod-1", production=True), vm("prod-2", production=True)]
    return plan_of(vms, include_production=True, **opts)


def test_production_on_a_terminal_needs_the_typed_count() -> None:
    ask = Answers("2")
    confirm(prod_plan(), False, True, ask)
    assert "PRODUCTION" in ask.questions[0] and "(2)" in ask.questions[0]


@pytest.mark.parametrize("typed", ["4", "y", "yes", "", "two"])
def test_production_wrong_typed_count_is_refused(typed: str) -> None:
    with pytest.raises(GuardRefusal) as info:
        confirm(prod_plan(), False, True, Answers(typed))
    assert info.value.exit_code == 4


def test_production_with_yes() -> None:
    confirm(prod_plan(), True, False, no_prompt)


def test_production_without_terminal_and_without_yes_is_bad_input() -> None:
    with pytest.raises(InputError) as info:
        confirm(prod_plan(), False, False, no_prompt)
    assert info.value.exit_code == 2
    assert "--include-production --yes" in info.value.message


def test_excluded_production_needs_no_production_confirmation() -> None:
    plan = plan_of(many(1) + [vm("prod-1", production=True)])
    assert plan.steps[1].skip == "production"
    ask = Answers("y")
    confirm(plan, False, True, ask)
    assert "PRODUCTION" not in ask.questions[0]


def test_skip_shutdown_with_production_is_refused_without_terminal_even_with_yes() -> None:
    plan = prod_plan(skip_shutdown=True)
    for yes in (True, False):
        with pytest.raises(GuardRefusal) as info:
            confirm(plan, yes, False, no_prompt)
        assert info.value.exit_code == 4 and "--yes" in info.value.message


def test_skip_shutdown_with_production_on_a_terminal_needs_the_exact_phrase() -> None:
    plan = build_plan("stop", many(1) + [vm("prod-1", production=True)],
                      Options(include_production=True, skip_shutdown=True), now=NOW)
    ask = Answers("power off 1 production")
    confirm(plan, True, True, ask)  # --yes does not skip the typed phrase
    assert "HARD POWER-OFF" in ask.questions[0] and "'power off 1 production'" in ask.questions[0]
    for wrong in ("y", "1", "power off 2 production", "POWER OFF 1 PRODUCTION", "power off"):
        with pytest.raises(GuardRefusal):
            confirm(plan, True, True, Answers(wrong))


def test_skip_shutdown_without_production_is_a_normal_confirmation() -> None:
    plan = build_plan("stop", many(2), Options(skip_shutdown=True), now=NOW)
    confirm(plan, True, False, no_prompt)
    ask = Answers("y")
    confirm(plan, False, True, ask)
    assert "[y/N]" in ask.questions[0]
