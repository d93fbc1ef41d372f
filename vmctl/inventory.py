"""Inventory: every VM of the chosen subscriptions (the full and the status listing, joined: two
paged listings per subscription, never one request per VM), marked production by the config's
rules, filtered by the selector, then completed from per-VM instance views only where a command
needs what the listings may leave out. Never prints.

Fail closed: a VM whose tags and properties could not be read counts as production and matches
no tag selector; a VM whose status could not be read is planned as unknown, never acted on.
"""

from __future__ import annotations

import difflib
import gc
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Literal, NotRequired, TypedDict

from .cloud import FleetClient, ThrottledError
from .config import Config
from .errors import InputError, NotFoundError
from .models import Coverage, CoverageJson, FactSource, Vm, VmStatus
from .pacing import Pacer
from .selection import SelectionReport, Selector, selection_report

# What a command needs beyond the listings: maintenanceRedeployStatus, update domains.
Need = Literal["maintenance", "domains"]
VIEW_WORKERS = 10  # reads in flight (the SDK's connection pool holds 10); the pacer sets the rate
LIST_KINDS = ["reads", "HighCostGet"]  # what one page of a VM listing costs
MAX_THROTTLED = 30  # 429s one read may meet before it counts as failed (the VM's data stays unknown)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Inventory:
    vms: tuple[Vm, ...]                      # selected, production marked, in display order
    subscriptions: dict[str, str]            # id -> display name, in the order asked
    totals: dict[str, int]                   # id -> all VMs in the subscription (before selection)
    set_sizes: dict[str, int] = field(default_factory=dict)  # availability set key -> all its VMs
    selection: SelectionReport | None = None  # what was searched; values that matched no VM, with the closest names
    source: FactSource = "arm"               # where it was read: ARM's listings or Azure Resource Graph
    coverage: Coverage | None = None         # with Resource Graph: subscriptions asked for versus covered


SubscriptionLister = Callable[[], list[tuple[str, str]]]  # (id, display name) of every visible subscription


def resolve_subscriptions(flags: Iterable[str], env_value: str | None, config: Config,
                          selector: Selector | None = None, lister: SubscriptionLister | None = None) -> list[str]:
    """--subscription (repeatable) > AZURE_SUBSCRIPTION_ID > config; --ids add their own. Each an ID
    or a name; names are looked up (case-insensitively, as az does) with `lister`, called at most
    once and only when a name was given."""
    subs = [s.strip() for s in flags if s.strip()]
    if not subs and selector is not None and selector.ids:
        subs = list(selector.subscriptions_from_ids)
    if not subs and env_value:
        subs = [env_value.strip()]
    if not subs:
        subs = list(config.subscriptions)
    if not subs:
        raise InputError("No subscription given.",
                         "Pass --subscription ID or NAME (or --all-subscriptions), set AZURE_SUBSCRIPTION_ID, or list "
                         "subscriptions in the config file.")
    if any(not _GUID.match(s) for s in subs):
        if lister is None:
            bad = next(s for s in subs if not _GUID.match(s))
            raise InputError(f"'{bad}' is not a subscription ID.",
                             "A subscription ID is a GUID; `az account list -o table` shows yours.")
        visible = lister()
        subs = [s if _GUID.match(s) else subscription_by_name(s, visible) for s in subs]
    subs = list(dict.fromkeys(s.lower() for s in subs))
    if selector is not None:
        for ref in selector.ids:
            if ref.subscription_id not in subs:
                raise InputError(f"--ids names subscription {ref.subscription_id}, which is not among --subscription {', '.join(subs)}.",
                                 "Drop --subscription, or add that subscription to it.")
    return subs


def subscription_by_name(name: str, visible: list[tuple[str, str]]) -> str:
    """The ID of the one visible subscription called `name` (case-insensitive, as `az account set -s`);
    none or several is an InputError (exit 2) naming the closest names or the matches."""
    hits = [(sid, n) for sid, n in visible if n.lower() == name.lower()]
    if len(hits) == 1:
        return hits[0][0]
    if hits:
        raise InputError(f"subscription name '{name}' matches {len(hits)} subscriptions: "
                         + ", ".join(f"{n} ({sid})" for sid, n in hits) + ".",
                         "Give the subscription ID instead of the name.")
    names = sorted({n for _, n in visible if n}, key=str.lower)
    near = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=3, cutoff=0.6)
    spelled = {n.lower(): n for n in names}
    if near:
        listing = "closest: " + ", ".join(spelled[n] for n in near)
    elif names:
        listing = "visible: " + ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    else:
        listing = "this identity can see no subscription"
    raise NotFoundError(f"subscription '{name}' is not the name or ID of any subscription this identity can see "
                        f"({listing}).",
                        "Give a subscription ID or its exact name; `az account list -o table` lists both.")


def sort_key(vm: Vm) -> tuple[str, str, str]:
    return (vm.subscription_name.lower() or vm.subscription_id, vm.resource_group.lower(), vm.name.lower())


def load_inventory(client: FleetClient, subscriptions: list[str], selector: Selector, config: Config,
                   parallel: int = 8, needs: Iterable[Need] = (), pacer: Pacer | None = None) -> Inventory:
    pacer = pacer or Pacer()

    def one(sub: str) -> tuple[str, str, list[Vm]]:
        pacer.acquire(sub, ["reads"])
        name = client.subscription_name(sub)
        # every page waits for a token in ARM's read bucket and Compute's list bucket (HighCostGet),
        # which each page's x-ms-ratelimit-remaining-* headers pull down: slower before a 429, not after
        return sub, name, client.list_vms(sub, name, before_page=lambda: pacer.acquire(sub, LIST_KINDS),
                                          on_headers=lambda headers: pacer.observe(sub, headers))

    # the listings build one object per VM and free none: the cyclic garbage collector would walk
    # the growing heap again and again (a third of the CPU at 50,000 VMs); nothing here makes cycles
    gc_was = gc.isenabled()
    gc.disable()
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(subscriptions)))) as pool:
            results = list(pool.map(one, subscriptions))
        names = {sub: name for sub, name, _ in results}
        totals = {sub: len(vms) for sub, _, vms in results}
        everything = [config.marked(vm) for _, _, vms in results for vm in vms]
        del results
        selected = sorted(everything if selector.selects_all else (vm for vm in everything if selector.matches(vm)),
                          key=sort_key)
    finally:
        if gc_was:
            gc.enable()
    _check_named_targets(client, selector, subscriptions, everything)
    report = selection_report(selector, everything, names, len(selected))
    selected = complete(client, selected, set(needs), pacer)
    return Inventory(tuple(selected), names, totals, set_sizes(everything), report)


def _wants_view(vm: Vm, needs: set[Need]) -> bool:
    if vm.power_state == "unknown":
        return True  # the status listing had no status for it
    if "maintenance" in needs and not vm.maintenance_known:
        return True
    return "domains" in needs and vm.availability_set is not None and vm.update_domain is None \
        and vm.power_state != "deallocated"  # a deallocated VM has no update domain


def read_views(client: FleetClient, vms: list[Vm], pacer: Pacer) -> dict[str, VmStatus | Exception]:
    """Instance views of `vms`, concurrently, paced on Compute's LowCostGet and ARM's read budget;
    a failed read is returned as its exception (the caller decides; nothing is swallowed)."""
    kinds = ["reads", "LowCostGet"]

    def fetch(vm: Vm) -> tuple[str, VmStatus | Exception]:
        sub = vm.subscription_id
        for _ in range(MAX_THROTTLED):
            pacer.acquire(sub, kinds)
            try:
                return vm.key, client.instance_view(sub, vm.resource_group, vm.name,
                                                    on_headers=lambda h: pacer.observe(sub, h))
            except ThrottledError as exc:  # "not yet": every reader waits out the Retry-After
                pacer.penalize(sub, kinds, exc.retry_after)
            except Exception as exc:  # noqa: BLE001 - returned to the caller, which records it
                return vm.key, exc
        return vm.key, RuntimeError(f"still throttled after {MAX_THROTTLED} tries")

    if not vms:
        return {}
    with ThreadPoolExecutor(max_workers=min(VIEW_WORKERS, len(vms)), thread_name_prefix="vmctl-view") as pool:
        return dict(pool.map(fetch, vms))


def complete(client: FleetClient, vms: list[Vm], needs: set[Need], pacer: Pacer) -> list[Vm]:
    """Fill in, from instance views, what the listings left out and the command needs: the status
    of VMs the status listing had none for, and (when asked) maintenance and update domains.
    Only the selected VMs that lack it cost a request. A read that fails leaves the VM unknown."""
    wanted = [vm for vm in vms if _wants_view(vm, needs)]
    if not wanted:
        return vms
    views = read_views(client, wanted, pacer)
    out = []
    for vm in vms:
        got = views.get(vm.key)
        if got is None:
            out.append(vm)
        elif isinstance(got, Exception):
            if vm.power_state == "unknown":
                out.append(replace(vm, production=True,
                                   unreadable=vm.unreadable or f"its status could not be read: {got}"))
            else:
                out.append(replace(vm, maintenance_known=False))
        else:
            out.append(replace(
                vm, power_state=got.power_state, hibernated=got.hibernated,
                provisioning_state=got.provisioning_state or vm.provisioning_state,
                update_domain=got.update_domain if got.update_domain is not None else vm.update_domain,
                fault_domain=got.fault_domain if got.fault_domain is not None else vm.fault_domain,
                maintenance=got.maintenance, maintenance_known=True))
    return out


def snapshot(client: FleetClient, subscriptions: Iterable[str]) -> dict[str, VmStatus]:
    """The current status of every VM in the subscriptions, by VM key: one status listing each."""
    current: dict[str, VmStatus] = {}
    for sub in sorted(set(subscriptions)):
        current.update(client.list_statuses(sub))
    return current


def current_state(client: FleetClient, vms: Iterable[Vm], pacer: Pacer,
                  maintenance: bool = False) -> dict[str, VmStatus]:
    """The current status of these VMs: the status listing of their subscriptions, plus instance
    views for those whose maintenance the listing does not carry (when `maintenance`)."""
    vms = list(vms)
    current = snapshot(client, (vm.subscription_id for vm in vms))
    if maintenance:
        lacking = [vm for vm in vms if not (current.get(vm.key) or VmStatus(read=False)).maintenance_known]
        for key, got in read_views(client, lacking, pacer).items():
            if isinstance(got, VmStatus):
                current[key] = got
            else:
                current.pop(key, None)  # unknown: the caller treats a missing VM as not confirmed
    return current


def set_key(vm: Vm) -> str:
    """An availability set's identity across subscriptions and groups (case-insensitive)."""
    return f"{vm.subscription_id}/{(vm.resource_group or '').lower()}/{(vm.availability_set or '').lower()}"


def set_sizes(vms: Iterable[Vm]) -> dict[str, int]:
    """How many VMs of the fleet each availability set holds, by `set_key`."""
    sizes: dict[str, int] = {}
    for vm in vms:
        if vm.availability_set:
            sizes[set_key(vm)] = sizes.get(set_key(vm), 0) + 1
    return sizes


def _check_named_targets(client: FleetClient, selector: Selector, subscriptions: list[str], everything: list[Vm]) -> None:
    """Names the user typed must exist: --ids VMs and -g groups (a group may exist without VMs)."""
    keys = {vm.key for vm in everything} if selector.ids else set()
    missing = [r for r in selector.ids if r.key not in keys]
    if missing:
        raise NotFoundError(
            f"VM {missing[0].resource_group}/{missing[0].name} was not found in subscription {missing[0].subscription_id}"
            + (f" (and {len(missing) - 1} more --ids)" if len(missing) > 1 else "") + ".",
            "Check the resource IDs; `az vm list --query [].id -o tsv` prints valid ones.")
    if not selector.resource_groups:
        return
    groups_with_vms = {vm.resource_group.lower() for vm in everything}
    for g in selector.resource_groups:
        if g.lower() in groups_with_vms:
            continue
        if not any(client.resource_group_exists(sub, g) for sub in subscriptions):
            near = difflib.get_close_matches(g.lower(), sorted(groups_with_vms), n=3, cutoff=0.6)
            spelled = {vm.resource_group.lower(): vm.resource_group for vm in everything}
            raise NotFoundError(f"Resource group '{g}' was not found in subscription {', '.join(subscriptions)}.",
                                (f"Closest groups with VMs: {', '.join(spelled[n] for n in near)}. " if near else "")
                                + "Check the name (`az group list -o table`) or the --subscription.")


check_named_targets = _check_named_targets  # for the Resource Graph inventory (sources.py)


class SubscriptionCount(TypedDict):
    id: str
    name: str
    vmCount: int


class FleetSummary(TypedDict):
    """`vmctl list`'s JSON summary (the contract test pins it)."""

    total: int
    byPowerState: dict[str, int]
    stoppedButBilled: int
    production: int
    maintenanceNotRead: NotRequired[int]
    unreadable: NotRequired[int]
    subscriptions: NotRequired[list[SubscriptionCount]]
    source: NotRequired[FactSource]
    coverage: NotRequired[CoverageJson]


def summarize(vms: Iterable[Vm]) -> FleetSummary:
    by_state: dict[str, int] = {}
    total = billed = prod = unknown_maint = unreadable = 0
    for vm in vms:
        total += 1
        by_state[vm.power_state] = by_state.get(vm.power_state, 0) + 1
        billed += vm.stopped_but_billed
        prod += vm.production
        unknown_maint += not vm.maintenance_known
        unreadable += bool(vm.unreadable)
    out: FleetSummary = {"total": total, "byPowerState": dict(sorted(by_state.items())),
                              "stoppedButBilled": billed, "production": prod}
    if unknown_maint:
        out["maintenanceNotRead"] = unknown_maint
    if unreadable:
        out["unreadable"] = unreadable
    return out
