"""Azure Resource Graph's `resources` endpoint (wire contract §13), as the simulator serves it.

`POST /providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01` with a `QueryRequest`
body. The simulator does not run KQL: it answers exactly one query, vmctl's fleet query of wire
§13.4 (compared with whitespace normalised), and refuses any other with Resource Graph's 400
`InvalidQuery` body. What it models, each with its evidence in docs/simulator.md:

- scope: `subscriptions` (unreadable ones dropped silently with 200; none readable is 400
  `NoValidSubscriptionsInQueryRequest`), `managementGroups` (the fleet's `management_groups`),
  or neither (the tenant: every readable subscription); a tenant or group scope above
  `tenant_subscription_limit` subscriptions covers the first ones and says so in
  `x-ms-tenant-subscription-limit-hit` when the request sets `allowPartialScopes: true`, and is
  refused (400) when it does not: what Azure does with the default `false` is not established;
- paging: `$top` 1-1000 (default 100), an opaque `$skipToken` while rows remain, rows ordered by id;
  `resultTruncated` a string; `objectArray` (default) or `table`;
- the per-principal quota (15 queries per 5 s by default) in `x-ms-user-quota-remaining` /
  `x-ms-user-quota-resets-after`, and 429 `RateLimiting` over it (no `Retry-After` by default);
- staleness: a VM's power state shows as it was `lag_seconds` ago (60 s by default), replayed from
  the VM's operations; resource groups and locations lower-case, as ARG returns them.

Stands alone like the rest of the simulator: it reads the backend's state and never changes it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from .backend import Backend, Operation, Vm, power_during
from .control import Stats
from .exceptions import BadRequest, NoRegisteredProviderFound, SimError
from .identity import Identity

# wire contract §13.4, verbatim: the one query the simulator answers
FLEET_QUERY = """Resources
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
COLUMNS = ("id", "name", "resourceGroup", "subscriptionId", "location", "tags", "vmSize", "powerState",
           "availabilitySetId", "zone", "vmssId", "osDiskEphemeral", "hibernationEnabled", "priority")
MAX_TOP = 1000
# wire §13: what SDK 8.0.1 sends, and the newer ones the spec has; any other is refused as ARM refuses
# an api-version a provider does not serve
API_VERSIONS = ("2021-03-01", "2021-06-01-preview", "2022-10-01", "2024-04-01")
DEFAULT_TOP = 100


def normalised(query: str) -> str:
    return " ".join(query.split())


_FLEET = normalised(FLEET_QUERY)


def support_message() -> str:
    """The first sentence of every Resource Graph error (wire §13.3, recorded)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    return (f"Please provide below info when asking for support: timestamp = {stamp}, "
            f"correlationId = {uuid.uuid4()}.")


def graph_error(status: int, code: str, details: list[dict[str, Any]], headers: dict[str, str] | None = None) -> SimError:
    return SimError(status, code, support_message(), details=details, headers=headers)


def invalid_query() -> SimError:
    """The recorded 400 for a query Resource Graph cannot parse (examples/resourcegraph/rec_InvalidQuery_400_response.json)."""
    return graph_error(400, "BadRequest", [
        {"code": "InvalidQuery", "message": "Query is invalid. Please refer to the documentation for the Azure "
                                            "Resource Graph service and fix the error before retrying."},
        {"code": "ParserFailure", "message": "ParserFailure", "line": 1, "characterPositionInLine": 0,
         "token": "<the simulator answers only the fleet query of wire contract 13.4>", "expectedToken": ""}])


def hms(seconds: float) -> str:
    s = max(0, math.ceil(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class GraphHandler:
    """The `resources` endpoint over the backend's state; holds only the quota windows and caches."""

    def __init__(self, backend: Backend, identity: Identity, stats: Stats) -> None:
        self.backend = backend
        self.identity = identity
        self.stats = stats
        self.windows: dict[str, list[float]] = {}  # principal -> [window start, queries in it]
        self._generation: object = None
        self._sorted: dict[str, list[Vm]] = {}
        self._rows: dict[int, tuple[str, str]] = {}       # id(vm) -> JSON text before and after powerState
        self._ops: dict[int, list[Operation]] = {}
        self._ops_seen = 0

    # ------------------------------------------------------------------ caches (rebuilt after a reset)
    def _fresh(self) -> None:
        b = self.backend
        if self._generation is not b.vms:
            self._generation = b.vms
            self._sorted = {sid: sorted(vms, key=lambda v: v.id) for sid, vms in b.by_sub.items()}
            self._rows, self._ops, self._ops_seen = {}, {}, 0
        ops = list(b.ops.values())
        if len(ops) < self._ops_seen:  # not expected (operations are never removed); start again
            self._ops, self._ops_seen = {}, 0
        for op in ops[self._ops_seen:]:
            self._ops.setdefault(id(op.vm), []).append(op)
        self._ops_seen = len(ops)

    # ------------------------------------------------------------------ the VM as Resource Graph shows it
    def power_at(self, vm: Vm, t: float) -> str:
        """The VM's power state at time `t` (in the past), replayed from its operations and the
        changes no operation made (an eviction), in the order they happened. A VM neither touched
        shows what it shows now."""
        ops = self._ops.get(id(vm), [])
        if not ops and not vm.power_events:
            return vm.power
        changes: list[tuple[float, Operation | str]] = [(op.started, op) for op in ops] + list(vm.power_events)
        changes.sort(key=lambda c: c[0])  # stable: an operation and an eviction at the same instant keep this order
        state = vm.spec.power_state
        for when, change in changes:  # a preempted operation ended when the next began
            if when > t:
                break
            if isinstance(change, str):
                state = change
            elif change.end_time is not None and change.end_time <= t:
                if change.status == "Succeeded":
                    state = change.target
            else:
                return power_during(change, t)
        return state

    def _parts(self, vm: Vm) -> tuple[str, str]:
        """The row's JSON text around its powerState value: everything else never changes."""
        hit = self._rows.get(id(vm))
        if hit is None:
            s = vm.spec
            sub, rg = s.subscription_id, s.resource_group
            aset = (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/availabilitySets/"
                    f"{s.availability_set.upper()}") if s.availability_set else ""
            vmss = (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/"
                    f"{s.scale_set}") if s.scale_set else ""
            head = {"id": vm.id, "name": s.name, "resourceGroup": rg.lower(), "subscriptionId": sub,
                    "location": s.location.lower(), "tags": s.tags, "vmSize": s.size}
            tail = {"availabilitySetId": aset, "zone": s.zones[0] if s.zones else "", "vmssId": vmss,
                    "osDiskEphemeral": "Local" if s.ephemeral_os_disk else "",
                    "hibernationEnabled": "true" if s.hibernation_enabled else "",
                    "priority": s.priority if s.priority != "Regular" else ""}
            hit = self._rows[id(vm)] = (json.dumps(head, separators=(",", ":"))[:-1] + ',"powerState":',
                                        "," + json.dumps(tail, separators=(",", ":"))[1:])
        return hit

    def _power_code(self, vm: Vm, t: float) -> str:
        if not vm.spec.status_in_list:
            return ""  # Azure could not read this VM's status: ARG has no instance view for it either
        return f"PowerState/{self.power_at(vm, t)}"

    def row_text(self, vm: Vm, t: float) -> str:
        head, tail = self._parts(vm)
        return head + json.dumps(self._power_code(vm, t)) + tail

    def row(self, vm: Vm, t: float) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.row_text(vm, t))
        return doc

    # ------------------------------------------------------------------ the request
    def _quota(self, principal: str, now: float) -> tuple[int, float]:
        """Take one query from the principal's window: (queries left, seconds until it resets, in
        the fleet's time). Raises the 429 when none is left."""
        spec = self.backend.fleet.platform.resource_graph
        window = spec.quota_window_seconds / self.backend.time_scale
        win = self.windows.get(principal)
        if win is None or now >= win[0] + window:
            win = self.windows[principal] = [now, 0.0]
        resets = (win[0] + window - now) * self.backend.time_scale
        if win[1] >= spec.quota:
            self.stats.throttled += 1
            self.stats.throttled_by_bucket["ResourceGraphUserQuota"] += 1
            headers = {"x-ms-user-quota-remaining": "0", "x-ms-user-quota-resets-after": hms(resets),
                       "x-ms-ratelimit-remaining-tenant-resource-requests": "0"}
            if spec.retry_after_on_429:
                headers["Retry-After"] = str(max(1, math.ceil(win[0] + window - now)))
            raise graph_error(429, "RateLimiting", [{
                "code": "RateLimiting",
                "message": "Client application has been throttled and should not attempt to repeat the request "
                           "until an amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling "
                           "for help."}], headers)
        win[1] += 1
        return int(spec.quota - win[1]), resets

    def _scope(self, body: dict[str, Any], partial: bool) -> tuple[list[str], bool]:
        """The readable subscriptions the request covers, and whether the tenant limit cut it.
        Above the limit, a request that did not allow partial scopes is refused (the stricter reading)."""
        fleet = self.backend.fleet
        readable = {s.id for s in fleet.subscriptions if s.readable}
        subs, groups = body.get("subscriptions"), body.get("managementGroups")
        if subs and groups:
            raise BadRequest("A query is scoped to subscriptions or to management groups, not both.")
        limit = fleet.platform.resource_graph.tenant_subscription_limit
        if subs:
            if not isinstance(subs, list) or not all(isinstance(s, str) for s in subs):
                raise BadRequest("'subscriptions' must be a list of subscription ids.")
            bad = [s for s in subs if not _is_guid(s)]
            if bad:
                raise graph_error(400, "BadRequest", [{"code": "SubscriptionsContainInvalidGuids",
                                                       "message": f"Subscription ids must be valid GUIDs: '{bad[0]}'."}])
            asked = list(dict.fromkeys(s.lower() for s in subs))
            eligible = [s for s in asked if s in readable]  # the others are dropped silently (200)
            if not eligible:
                raise self._no_valid(asked)
            return sorted(eligible), False
        if groups:
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                raise BadRequest("'managementGroups' must be a list of management group names.")
            under: list[str] = []
            for g in groups:
                found = fleet.management_group_subscriptions(g)
                under += [s for s in (found or []) if s not in under]
            eligible = sorted(s for s in under if s in readable)
            if not eligible:
                raise self._no_valid(list(groups))
        else:
            eligible = sorted(readable)
        if len(eligible) > limit and not partial:
            raise graph_error(400, "BadRequest", [{
                "code": "TenantSubscriptionLimitExceeded",
                "message": f"The query's scope holds {len(eligible)} subscriptions, more than the limit of {limit}; "
                           "set options.allowPartialScopes to true for the first ones, or scope by subscriptions."}])
        return eligible[:limit], len(eligible) > limit

    @staticmethod
    def _no_valid(asked: list[str]) -> SimError:
        given = "','".join(asked)
        return graph_error(400, "BadRequest", [{
            "code": "NoValidSubscriptionsInQueryRequest",
            "message": f"There must be at least one subscription that is eligible to contain resources. "
                       f"Given: '{given}'."}])

    @staticmethod
    def _int(options: dict[str, Any], key: str, low: int, high: int | None) -> int | None:
        value = options.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            most = f" and {high}" if high is not None else ""
            raise BadRequest(f"The value '{value}' of option '{key}' is not valid; expected a whole number between "
                             f"{low}{most}.")
        return value

    @staticmethod
    def _token(offset: int, top: int) -> str:
        doc = {"$id": "1", "MaxRows": top, "RowsToSkip": offset, "KustoClusterUrl": "https://arg-sim.vmctl.invalid"}
        return base64.b64encode(json.dumps(doc, indent=2).encode()).decode()

    @staticmethod
    def _offset(token: Any) -> int:
        try:
            doc = json.loads(base64.b64decode(str(token), validate=True))
            offset = doc["RowsToSkip"]
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError(offset)
            return offset
        except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise BadRequest(f"The $skipToken '{str(token)[:40]}' is not valid.") from None

    def resources(self, request: web.Request, q: dict[str, str], now: float, headers: dict[str, str],
                  raw: bytes) -> web.Response:
        if q["api-version"] not in API_VERSIONS:  # ARM's front door: before the provider counts a query
            raise NoRegisteredProviderFound("global", q["api-version"], "resources", ", ".join(API_VERSIONS))
        check = self.identity.check(request.headers.get("Authorization"))
        principal = str((check.claims or {}).get("oid", "-"))
        remaining, resets = self._quota(principal, now)  # every query costs one, a refused one too
        quota = {"x-ms-user-quota-remaining": str(remaining), "x-ms-user-quota-resets-after": hms(resets),
                 "x-ms-ratelimit-remaining-tenant-resource-requests": str(remaining)}
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            err = BadRequest("The request body must be a QueryRequest with a 'query'.")
            err.headers.update(quota)
            raise err
        try:
            return self._answer(body, now, {**headers, **quota})
        except SimError as err:
            err.headers.update(quota)
            raise

    def _answer(self, body: dict[str, Any], now: float, headers: dict[str, str]) -> web.Response:
        if normalised(body["query"]) != _FLEET:
            raise invalid_query()
        if body.get("facets"):
            raise BadRequest("The simulator does not model facets; send the query without them.")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise BadRequest("'options' must be an object.")
        top = self._int(options, "$top", 1, MAX_TOP)
        top = DEFAULT_TOP if top is None else top
        skip = self._int(options, "$skip", 0, None) or 0
        fmt = options.get("resultFormat", "objectArray")
        if fmt not in ("objectArray", "table"):
            raise BadRequest(f"The value '{fmt}' of option 'resultFormat' is not valid; use objectArray or table.")
        token = options.get("$skipToken")
        offset = self._offset(token) if token else skip
        subs, limit_hit = self._scope(body, options.get("allowPartialScopes") is True)
        self._fresh()
        lag = self.backend.fleet.platform.resource_graph.lag_seconds / self.backend.time_scale
        t = now - lag
        lists = [self._sorted.get(s, []) for s in subs]
        total = sum(len(v) for v in lists)
        page: list[Vm] = []
        skip_left = offset
        for vms in lists:  # rows ordered by id: the subscriptions' sorted lists one after another
            if skip_left >= len(vms):
                skip_left -= len(vms)
                continue
            page.extend(vms[skip_left:skip_left + top - len(page)])
            skip_left = 0
            if len(page) >= top:
                break
        more = offset + len(page) < total
        if limit_hit:
            headers["x-ms-tenant-subscription-limit-hit"] = "true"
        if fmt == "table":
            rows = [self.row(v, t) for v in page]
            data = json.dumps({"columns": [{"name": c, "type": "object" if c == "tags" else "string"} for c in COLUMNS],
                               "rows": [[r[c] for c in COLUMNS] for r in rows]}, separators=(",", ":"))
        else:
            data = "[" + ",".join(self.row_text(v, t) for v in page) + "]"
        text = (f'{{"totalRecords":{total},"count":{len(page)},"data":{data},"facets":[],'
                f'"resultTruncated":"false"')
        if more:
            text += f',"$skipToken":{json.dumps(self._token(offset + len(page), top))}'
        return web.Response(status=200, text=text + "}", headers=headers, content_type="application/json",
                            charset="utf-8")


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36
