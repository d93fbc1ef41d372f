"""Where the fleet is read: ARM's listings or Azure Resource Graph. Never prints.

ARM (inventory.py) reads each subscription's full and status listings: exact and current, two
requests per 200 VMs per subscription. Azure Resource Graph answers one KQL query over many
subscriptions, 1,000 rows a page, but from a snapshot up to a minute old (wire contract §13.3).
This module owns the Resource Graph side:

- the source a command uses (`--source arm|graph|auto`; auto: Resource Graph above
  `inventory.graph_above_subscriptions` subscriptions, or for a management group);
- the inventory from Resource Graph: the one query of wire §13.4, subscriptions in groups of
  BATCH, every page followed by `$skipToken`, paced on the quota headers (`GraphPacer`);
- coverage, reported and never assumed: Resource Graph drops a subscription the caller cannot
  read without a word, so the subscriptions asked for are checked against ARM's GET
  /subscriptions (a subscription missing there is unreadable; one that is readable and returned
  no row has no VMs);
- the ARM re-check of a plan built from Resource Graph (`plan_from_graph`): the subscriptions
  where the plan acts are read again through ARM's listings (O(pages) each) before any write;
  the ARM fact wins, each step says where its facts came from, and what could not be re-read is
  not acted on.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Literal, Sequence

from .cloud import FleetClient, GraphPage, ThrottledError
from .cloud.arm_json import vm_from_graph_row
from .config import Config
from .errors import AzureError, CredentialError, EndpointError, InputError, NotFoundError, VmctlError
from .inventory import Inventory, Need, check_named_targets, complete, set_sizes, sort_key
from .models import Coverage, Fact, Options, Plan, Vm
from .pacing import Pacer
from .planner import build_plan
from .selection import Selector, selection_report

Source = Literal["arm", "graph"]
SOURCE_CHOICES = ("arm", "graph", "auto")

# wire contract §13.4, exactly: projects `id`, so Resource Graph can page (it pages only then)
QUERY = """Resources
| where type =~ 'microsoft.compute/virtualmachines'
| project id, name, resourceGroup, subscriptionId, location, tags,
    vmSize = tostring(properties.hardwareProfile.vmSize),
    powerState = tostring(properties.extended.instanceView.powerState.code),
    availabilitySetId = tostring(properties.availabilitySet.id),
    zone = tostring(zones[0]),
    vmssId = tostring(properties.virtualMachineScaleSet.id),
    osDiskEphemeral = tostring(properties.storageProfile.osDisk.diffDiskSettings.option),
    hibernationEnabled = tostring(properties.additionalCapabilities.hibernationEnabled),
    priority = tostring(properties.priority)
| order by id asc"""
PAGE = 1000          # rows per page: Resource Graph's maximum `$top`
# subscriptions per query: Microsoft's guidance is groups of under 300 subscriptions, its own example
# uses 100 (guidance-for-throttled-requests.md); 100 keeps each query well inside the guidance
BATCH = 100
QUOTA_RESERVE = 1    # queries left unused in each quota window, for the operator's other tools
MAX_THROTTLED = 10   # 429s one query may meet (each waited out) before the inventory fails
MAX_AGE_SECONDS = 60  # "may not be reflected for up to 60 seconds" (wire §13.3)


@dataclass(frozen=True)
class Scope:
    """What a command reads: named subscriptions, every readable one (`--all-subscriptions`, the
    list resolved from GET /subscriptions), or a management group (Resource Graph only)."""

    subscriptions: tuple[str, ...] = ()
    management_group: str | None = None
    all_subscriptions: bool = False
    visible: tuple[tuple[str, str], ...] | None = None  # GET /subscriptions when it was already read: (id, name)


def choose_source(requested: str | None, config: Config, scope: Scope) -> Source:
    """`--source` (else the config's inventory.source, else auto) for this scope. auto: Resource
    Graph for a management group, or above `graph_above_subscriptions` subscriptions; ARM
    otherwise (exact and current, and cheap for a few subscriptions). InputError (exit 2) for
    an unknown value, or ARM asked for a management group."""
    text = (requested if requested is not None else config.source).strip().lower()
    if text not in SOURCE_CHOICES:
        raise InputError(f"--source '{requested if requested is not None else config.source}' is not a source.",
                         "Use arm (ARM's listings), graph (Azure Resource Graph) or auto.")
    if scope.management_group is not None:
        if text == "arm":
            raise InputError("--management-group is read through Azure Resource Graph; --source arm cannot list "
                             "a management group's subscriptions.",
                             "Drop --source arm (auto picks graph), or name the subscriptions with --subscription.")
        return "graph"
    if text == "auto":
        return "graph" if len(scope.subscriptions) > config.graph_above_subscriptions else "arm"
    return "arm" if text == "arm" else "graph"


class GraphPacer:
    """Spaces Resource Graph queries on what the service says is left of the caller's quota
    (`x-ms-user-quota-remaining` / `-resets-after`, wire §13.2): when at most QUOTA_RESERVE
    queries are left, the next one waits until the window resets, so a normal inventory never
    meets a 429. A 429 (another client shares the quota) is waited out. `scale`: the simulator's
    time scale (its windows are that much shorter), 1 on Azure.

    Hand-written: the quota is a window the service counts and reports, not a rate to estimate, so
    a token bucket (pacing.Pacer) would only guess what the headers say exactly."""

    def __init__(self, scale: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.scale, self.sleep, self.clock = scale, sleep, clock
        self.remaining: int | None = None
        self.resets_at = 0.0
        self.queries = 0
        self.throttled = 0
        self.waited = 0.0

    def before(self) -> None:
        if self.remaining is not None and self.remaining <= QUOTA_RESERVE:
            wait = self.resets_at - self.clock()
            if wait > 0:
                self.waited += wait
                self.sleep(wait)
            self.remaining = None

    def after(self, page: GraphPage) -> None:
        self.queries += 1
        self.remaining = page.quota_remaining
        self.resets_at = self.clock() + (page.quota_resets_after or 0.0) / self.scale

    def on_throttled(self, exc: ThrottledError) -> None:
        self.queries += 1
        self.throttled += 1
        wait = max(exc.retry_after, 0.0) / self.scale
        self.waited += wait
        self.sleep(wait)
        self.remaining = None


def graph_pages(client: FleetClient, pacer: GraphPacer, *, subscriptions: list[str] | None = None,
                management_groups: list[str] | None = None) -> Iterator[GraphPage]:
    """Every page of the fleet query over one scope, following `$skipToken`."""
    token: str | None = None
    while True:
        for attempt in range(MAX_THROTTLED + 1):
            pacer.before()
            try:
                page = client.graph_page(QUERY, subscriptions=subscriptions, management_groups=management_groups,
                                         skip_token=token, top=PAGE)
                break
            except ThrottledError as exc:
                if attempt == MAX_THROTTLED:
                    raise AzureError(f"Azure Resource Graph still throttled the query after {MAX_THROTTLED} waits: "
                                     f"{exc.message}", "Another client is using this identity's query quota; "
                                     "retry later, or use --source arm.") from exc
                pacer.on_throttled(exc)
        pacer.after(page)
        if page.truncated:  # the query projects id, so Resource Graph pages; a cap would hide VMs
            raise AzureError("Azure Resource Graph truncated the fleet query's result (resultTruncated), so the "
                             "inventory would be incomplete.", "Use --source arm, or narrow the scope.")
        yield page
        token = page.skip_token
        if not token:
            return


def batches(items: Sequence[str], size: int = BATCH) -> list[list[str]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def load_graph_inventory(client: FleetClient, scope: Scope, selector: Selector, config: Config, *,
                         pacer: GraphPacer, needs: Iterable[Need] = (), read_pacer: Pacer | None = None) -> Inventory:
    """The fleet from Resource Graph: GET /subscriptions (names, and what this identity can read),
    then the fleet query over the readable subscriptions asked for (or the management group),
    selection, and instance views where the command needs them (`inventory.complete`)."""
    listed = scope.visible if scope.visible is not None else client.list_subscriptions()
    readable = {s.lower(): name for s, name in listed}
    rows_by_sub: dict[str, int] = {}
    everything: list[Vm] = []
    limit_hit = False

    def take(page: GraphPage) -> None:
        nonlocal limit_hit
        limit_hit = limit_hit or page.tenant_limit_hit
        for row in page.rows:
            sub = (row["id"].split("/")[2] if row["id"].count("/") > 2 else row["subscriptionId"]).lower()
            rows_by_sub[sub] = rows_by_sub.get(sub, 0) + 1
            vm = vm_from_graph_row(row, readable.get(sub, ""))
            everything.append(config.marked(vm))

    asked: tuple[str, ...] | None
    unreadable: tuple[str, ...]
    if scope.management_group is not None:
        asked, unreadable = None, ()
        for page in graph_pages(client, pacer, management_groups=[scope.management_group]):
            take(page)
        covered = sorted(rows_by_sub)
    else:
        asked = tuple(dict.fromkeys(s.lower() for s in scope.subscriptions))
        unreadable = tuple(s for s in asked if s not in readable)
        covered = [s for s in asked if s in readable]
        for group in batches(covered):
            for page in graph_pages(client, pacer, subscriptions=group):
                take(page)
    coverage = Coverage(
        scope="managementGroup" if scope.management_group is not None else
        "tenant" if scope.all_subscriptions else "subscriptions",
        management_group=scope.management_group, asked=asked, unreadable=unreadable,
        with_vms=tuple(s for s in covered if rows_by_sub.get(s)),
        without_vms=tuple(s for s in covered if not rows_by_sub.get(s)),
        tenant_limit_hit=limit_hit, queries=pacer.queries, throttled=pacer.throttled, max_age_seconds=MAX_AGE_SECONDS)
    names = {s: readable.get(s, "") for s in covered}
    selected = sorted((vm for vm in everything if selector.matches(vm)), key=sort_key)
    try:
        check_named_targets(client, selector, covered, everything)
    except NotFoundError as exc:
        raise NotFoundError(exc.message, (exc.hint or "") + f" Azure Resource Graph lags up to {MAX_AGE_SECONDS} s: "
                            "a VM created in the last minute is found with --source arm.") from None
    report = selection_report(selector, everything, names, len(selected))
    selected = complete(client, selected, set(needs), read_pacer or Pacer())
    return Inventory(tuple(selected), names, {s: rows_by_sub.get(s, 0) for s in covered}, set_sizes(everything), report,
                     source="graph", coverage=coverage)


# ---------------------------------------------------------------- the ARM re-check of a plan built from Resource Graph
@dataclass(frozen=True)
class Rechecked:
    vms: tuple[Vm, ...]                 # the selection, each VM with the facts its step is decided on
    facts: dict[str, Fact]              # by VM key: where they came from, what ARM said differently
    totals: dict[str, int]              # ARM's VM count of each subscription re-read
    subscriptions: tuple[str, ...]      # re-read through ARM


def _differences(graph: Vm, arm: Vm) -> str:
    out = []
    if graph.power_state != arm.power_state:
        out.append(f"power state {graph.power_state} in Resource Graph, {arm.power_state} in ARM")
    if {k.lower(): v for k, v in graph.tags.items()} != {k.lower(): v for k, v in arm.tags.items()}:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(arm.tags.items())) or "none"
        out.append(f"tags changed (ARM: {shown})")
    if graph.production != arm.production:
        out.append("production in ARM" if arm.production else "no longer production in ARM")
    return "; ".join(out)


def recheck(client: FleetClient, vms: Sequence[Vm], touched: Iterable[str], selector: Selector, config: Config, *,
            names: dict[str, str], needs: Iterable[Need] = (), read_pacer: Pacer | None = None,
            parallel: int = 8) -> Rechecked:
    """Read the `touched` subscriptions again through ARM's two listings and put ARM's facts in
    place of Resource Graph's for their VMs. A VM ARM no longer lists is skipped (gone); one that
    no longer matches the selection is skipped; one whose subscription could not be listed is
    unreadable (fail closed: not acted on). A credential or endpoint failure ends the command.
    VMs elsewhere keep Resource Graph's facts (none of them acts). VMs ARM has that Resource Graph
    did not select (created in the last minute) are not added: the selection is Resource Graph's."""
    subs = sorted(set(touched))
    arm: dict[str, Vm] = {}
    failed: dict[str, str] = {}
    totals: dict[str, int] = {}

    def one(sub: str) -> tuple[str, list[Vm] | VmctlError]:
        try:
            return sub, client.list_vms(sub, names.get(sub, ""))
        except (CredentialError, EndpointError):
            raise
        except VmctlError as exc:
            return sub, exc

    if subs:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(subs))), thread_name_prefix="vmctl-recheck") as pool:
            for sub, got in pool.map(one, subs):
                if isinstance(got, VmctlError):
                    failed[sub] = got.message
                    continue
                totals[sub] = len(got)
                for vm in got:
                    arm[vm.key] = config.marked(vm)
    out: list[Vm] = []
    facts: dict[str, Fact] = {}
    to_complete: list[Vm] = []
    wanted = set(subs)
    for vm in vms:
        sub = vm.subscription_id
        if sub not in wanted:
            out.append(vm)
            facts[vm.key] = Fact("graph")
        elif sub in failed:
            why = f"could not be re-read through ARM before acting: {failed[sub]}"
            out.append(replace(vm, unreadable=why, production=True))
            facts[vm.key] = Fact("graph", why, "unreadable")
        elif vm.key not in arm:
            out.append(vm)
            facts[vm.key] = Fact("arm", "not in ARM's listing", "vm-not-found")
        else:
            a = arm[vm.key]
            if vm.maintenance_known and not a.maintenance_known:  # read from its instance view just before
                a = replace(a, maintenance=vm.maintenance, maintenance_known=True,
                            update_domain=a.update_domain if a.update_domain is not None else vm.update_domain,
                            fault_domain=a.fault_domain if a.fault_domain is not None else vm.fault_domain)
            note = _differences(vm, a)
            if not a.unreadable and not selector.matches(a):
                out.append(a)
                facts[vm.key] = Fact("arm", note or "no longer matches the selection", "selection-changed")
                continue
            out.append(a)
            facts[vm.key] = Fact("arm", note)
            to_complete.append(a)
    done = {vm.key: vm for vm in complete(client, to_complete, set(needs), read_pacer or Pacer())}
    out = [done.get(vm.key, vm) if facts[vm.key].source == "arm" and facts[vm.key].skip is None else vm for vm in out]
    return Rechecked(tuple(out), facts, totals, tuple(s for s in subs if s not in failed))


def plan_from_graph(client: FleetClient, verb: str, inv: Inventory, opts: Options, selector: Selector,
                    config: Config, *, needs: Iterable[Need] = (), read_pacer: Pacer | None = None) -> Plan:
    """A plan from a Resource Graph inventory, re-checked through ARM before it is shown: a draft
    from Resource Graph's facts says which subscriptions it would act in; those are listed again
    through ARM and the plan is made afresh on ARM's facts. No step that acts rests on Resource
    Graph alone. An asked subscription this identity cannot read refuses the plan (exit 4)."""
    now = datetime.now(timezone.utc)  # one clock for both plans: a maintenance window must not open between them
    draft = build_plan(verb, list(inv.vms), opts, totals=inv.totals, set_sizes=inv.set_sizes, now=now)
    touched = {s.vm.subscription_id for s in draft.acting}
    re = recheck(client, inv.vms, touched, selector, config, names=inv.subscriptions, needs=needs,
                 read_pacer=read_pacer, parallel=opts.parallel or 8)
    plan = build_plan(verb, list(re.vms), opts, totals={**inv.totals, **re.totals}, set_sizes=inv.set_sizes,
                      now=now, run_id=draft.run_id, facts=re.facts, source="graph", coverage=inv.coverage)
    if any(s.acts and s.source == "graph" for s in plan.steps):  # cannot happen: the same facts, options and clock
        raise RuntimeError("a step would act on Resource Graph's facts alone")
    refusals = list(plan.refusals)
    cov = inv.coverage
    if cov is not None and cov.unreadable:
        refusals.append(f"{len(cov.unreadable)} subscription(s) asked for cannot be read by this identity "
                        f"({', '.join(cov.unreadable[:5])}{', ...' if len(cov.unreadable) > 5 else ''}), so their VMs "
                        "are not in the plan; drop them from --subscription / the config, or ask for Reader access")
    return replace(plan, refusals=tuple(refusals))
