"""Inventory: every VM of the chosen subscriptions, in one paged status listing per subscription,
marked production by the config's rules and filtered by the selector. Never prints."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Iterable

from .cloud import FleetClient
from .config import Config
from .errors import InputError, NotFoundError
from .models import Vm
from .selection import Selector

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Inventory:
    vms: tuple[Vm, ...]                      # selected, production marked, in display order
    subscriptions: dict[str, str]            # id -> display name, in the order asked
    totals: dict[str, int]                   # id -> all VMs in the subscription (before selection)
    set_sizes: dict[str, int] = field(default_factory=dict)  # availability set key -> all its VMs


def resolve_subscriptions(flags: Iterable[str], env_value: str | None, config: Config,
                          selector: Selector | None = None) -> list[str]:
    """--subscription (repeatable) > AZURE_SUBSCRIPTION_ID > config; --ids add their own."""
    subs = [s.strip() for s in flags if s.strip()]
    if not subs and selector is not None and selector.ids:
        subs = list(selector.subscriptions_from_ids)
    if not subs and env_value:
        subs = [env_value.strip()]
    if not subs:
        subs = list(config.subscriptions)
    if not subs:
        raise InputError("No subscription given.",
                         "Pass --subscription ID, set AZURE_SUBSCRIPTION_ID, or list subscriptions in the config file.")
    for s in subs:
        if not _GUID.match(s):
            raise InputError(f"'{s}' is not a subscription ID.", "A subscription ID is a GUID; `az account list -o table` shows yours.")
    subs = list(dict.fromkeys(s.lower() for s in subs))
    if selector is not None:
        for ref in selector.ids:
            if ref.subscription_id not in subs:
                raise InputError(f"--ids names subscription {ref.subscription_id}, which is not among --subscription {', '.join(subs)}.",
                                 "Drop --subscription, or add that subscription to it.")
    return subs


def sort_key(vm: Vm) -> tuple[str, str, str]:
    return (vm.subscription_name.lower() or vm.subscription_id, vm.resource_group.lower(), vm.name.lower())


def load_inventory(client: FleetClient, subscriptions: list[str], selector: Selector, config: Config,
                   parallel: int = 8) -> Inventory:
    def one(sub: str) -> tuple[str, str, list[Vm]]:
        name = client.subscription_name(sub)
        return sub, name, client.list_vms(sub, name)

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(subscriptions)))) as pool:
        results = list(pool.map(one, subscriptions))
    names = {sub: name for sub, name, _ in results}
    totals = {sub: len(vms) for sub, _, vms in results}
    everything = [replace(vm, production=config.is_production(vm)) for _, _, vms in results for vm in vms]
    selected = sorted((vm for vm in everything if selector.matches(vm)), key=sort_key)
    _check_named_targets(client, selector, subscriptions, everything)
    sizes: dict[str, int] = {}
    for vm in everything:
        if vm.availability_set:
            sizes[set_key(vm)] = sizes.get(set_key(vm), 0) + 1
    return Inventory(tuple(selected), names, totals, sizes)


def snapshot(client: FleetClient, subscriptions: Iterable[str]) -> dict[str, Vm]:
    """The current state of every VM in the subscriptions, by VM key: one status listing each."""
    current: dict[str, Vm] = {}
    for sub in sorted(set(subscriptions)):
        current.update({vm.key: vm for vm in client.list_vms(sub, "")})
    return current


def set_key(vm: Vm) -> str:
    """An availability set's identity across subscriptions and groups (case-insensitive)."""
    return f"{vm.subscription_id}/{(vm.resource_group or '').lower()}/{(vm.availability_set or '').lower()}"


def _check_named_targets(client: FleetClient, selector: Selector, subscriptions: list[str], everything: list[Vm]) -> None:
    """Names the user typed must exist: --ids VMs and -g groups (a group may exist without VMs)."""
    keys = {vm.key for vm in everything}
    missing = [r for r in selector.ids if r.key not in keys]
    if missing:
        raise NotFoundError(
            f"VM {missing[0].resource_group}/{missing[0].name} was not found in subscription {missing[0].subscription_id}"
            + (f" (and {len(missing) - 1} more --ids)" if len(missing) > 1 else "") + ".",
            "Check the resource IDs; `az vm list --query [].id -o tsv` prints valid ones.")
    groups_with_vms = {vm.resource_group.lower() for vm in everything}
    for g in selector.resource_groups:
        if g.lower() in groups_with_vms:
            continue
        if not any(client.resource_group_exists(sub, g) for sub in subscriptions):
            raise NotFoundError(f"Resource group '{g}' was not found in subscription {', '.join(subscriptions)}.",
                                "Check the name (`az group list -o table`) or the --subscription.")


def summarize(vms: Iterable[Vm]) -> dict[str, object]:
    by_state: dict[str, int] = {}
    total = billed = prod = 0
    for vm in vms:
        total += 1
        by_state[vm.power_state] = by_state.get(vm.power_state, 0) + 1
        billed += vm.stopped_but_billed
        prod += vm.production
    return {"total": total, "byPowerState": dict(sorted(by_state.items())), "stoppedButBilled": billed,
            "production": prod}
