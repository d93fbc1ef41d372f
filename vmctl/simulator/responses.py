"""HTTP in and out for the ARM API: the ARM handlers (routed by the table in urls.py), ARM JSON
shapes, LRO headers, error answers (exceptions.py), throttling, faults and request counting.
Requests outside ARM (`/_sim/*`, tokens, `/metadata/endpoints`) go to control.py. Holds no
simulator state of its own beyond counters.

Paths, query-parameter names and `$expand` values match case-insensitively (ARM does, and real
clients differ in case); any `api-version` is accepted, a missing one is refused like ARM does.
Every GET route also answers HEAD (204 or 404, no body: ARM's existence check).

Left out: writes other than the six VM power/maintenance actions, `substringof`/`or`/`ne` and
plan/identity filters on `/resources`, and the `Retry-After` Compute sometimes sends (off unless
the fleet sets `time.lro_retry_after`).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote

from aiohttp import web

from .activity import FilterError, parse_filter, parse_select
from .backend import Backend, CallContext, iso
from .control import GUID, Control, Stats
from .control import json_response as _json
from .exceptions import (
    AuthenticationFailed,
    AuthorizationFailed,
    BadGateway,
    BadRequest,
    ComputeThrottled,
    Conflict,
    ExpiredAuthenticationToken,
    GatewayTimeout,
    InternalServerError,
    InvalidFilterInQueryString,
    InvalidParameter,
    InvalidSkipToken,
    MissingApiVersion,
    ResourceNotFound,
    RouteNotFound,
    ServiceUnavailable,
    SimError,
    SubscriptionRequestsThrottled,
    TooManyRequests,
)
from .faults import Faults
from .graph import GraphHandler
from .identity import Identity
from .schedule import ScheduleApi
from .throttle import Throttle, retry_after_seconds
from .urls import Route, match

JSON = "application/json; charset=utf-8"
HOLD = web.ResponseKey("vmctl_sim_hold", float)  # seconds a reply is held back (`hold-reply` faults)
BODY = web.RequestKey("vmctl_sim_body", bytes)  # a POST's body, read before the backend lock is taken (handlers are synchronous)
# faults a ComputeSchedule request can meet: the VM-operation kinds (failed, slow, canceled) apply to
# the VM operations it starts (schedule.py), not to the request
REQUEST_FAULTS = frozenset({"http", "drop", "lost-reply", "hold"})


def _fmt_seconds(s: float) -> str:
    return str(int(s)) if float(s).is_integer() else f"{s:g}"


_RES_FILTER = re.compile(r"^\s*(\w+)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
_RES_FIELDS = {"resourcetype": "type", "name": "name", "resourcegroup": "_rg", "location": "location"}
_RES_EXPAND = {"createdtime", "changedtime", "provisioningstate"}


def _rbac_action(operation: str, method: str) -> str:
    """The RBAC action a request needs, for an AuthorizationFailed message."""
    kind, _, verb = operation.partition(".")
    provider = {"virtualMachines": "Microsoft.Compute/virtualMachines", "availabilitySets": "Microsoft.Compute/availabilitySets",
                "operations": "Microsoft.Compute/locations/operations", "activityLogs": "Microsoft.Insights/eventtypes/values",
                "networkInterfaces": "Microsoft.Network/networkInterfaces",
                "resourceGroups": "Microsoft.Resources/subscriptions/resourceGroups"}.get(kind, "Microsoft.Resources/subscriptions")
    if method == "POST":
        return f"{provider}/{verb}/action"
    return f"{provider}/read"


def parse_resource_filter(text: str) -> tuple[dict[str, str], tuple[str, str | None] | None]:
    """`$filter` of `GET .../resources`: clauses `<field> eq '<value>'` joined by `and`, over
    resourceType, name, resourceGroup, location, and tagName (with optional tagValue). Returns
    (field -> lower-cased value, (tag name, tag value or None) or None); raises ValueError."""
    eq: dict[str, str] = {}
    tag_name: str | None = None
    tag_value: str | None = None
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        m = _RES_FILTER.match(clause)
        if not m:
            raise ValueError(clause.strip())
        fld, value = m.group(1).lower(), m.group(2).lower()
        if fld in _RES_FIELDS and fld not in eq:
            eq[fld] = value
        elif fld == "tagname" and tag_name is None:
            tag_name = value
        elif fld == "tagvalue" and tag_value is None:
            tag_value = value
        else:
            raise ValueError(clause.strip())
    if tag_value is not None and tag_name is None:
        raise ValueError("tagValue without tagName")
    return eq, ((tag_name, tag_value) if tag_name is not None else None)


class Handler:
    def __init__(self, backend: Backend, identity: Identity, throttle: Throttle, faults: Faults) -> None:
        self.backend = backend
        self.identity = identity
        self.throttle = throttle
        self.faults = faults
        self.stats = Stats()
        self.control = Control(backend, identity, throttle, faults, self.stats)
        self.graph = GraphHandler(backend, identity, self.stats)
        backend.throttle, backend.faults = throttle, faults  # ComputeSchedule's VM operations use them
        self.schedule = ScheduleApi(backend)

    # ------------------------------------------------------------ entry point
    async def __call__(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if "//" in path:  # ARM tolerates doubled slashes (clients join base URLs carelessly)
            path = re.sub("/{2,}", "/", path)
        if path.startswith("/_sim/"):
            return await self.control.handle(request)
        q = {k.lower(): v for k, v in request.query.items()}
        low = path.lower().rstrip("/")
        if path != request.path:
            request = request.clone(rel_url=request.rel_url.with_path(path))
        if request.method == "POST" and request.body_exists:
            request[BODY] = await request.read()
        with self.backend.lock:
            if low in ("/msi/token", "/metadata/identity/oauth2/token"):
                return self.control.token(request, q, imds=low.startswith("/metadata"))
            if low == "/metadata/endpoints":
                return self.control.metadata(request, q)
            resp = self._arm(request, q)
        hold = resp.get(HOLD, 0.0)
        if hold:  # a `hold-reply` fault: the work is done, the answer comes late (outside the lock)
            await asyncio.sleep(hold)
        return resp

    def _handler(self, route: Route) -> Callable[..., web.Response]:
        """The route's handler: a method of this class by name, or the callable itself."""
        h = route.handler
        return getattr(self, h) if isinstance(h, str) else h

    def _count(self, name: str, arm: str | None, method: str, status: int) -> None:
        st = self.stats
        st.requests += 1
        st.by_operation[name] += 1
        st.by_status[status] += 1
        if method in ("GET", "HEAD") or name.startswith("resourceGraph."):  # a Resource Graph query reads
            st.reads += 1
        else:
            st.writes += 1

    def _arm(self, request: web.Request, q: dict[str, str]) -> web.StreamResponse:
        method = request.method
        correlation = request.headers.get("x-ms-correlation-request-id", "")
        if not GUID.match(correlation):
            correlation = str(uuid.uuid4())
        base_headers = {
            "x-ms-request-id": str(uuid.uuid4()), "x-ms-correlation-request-id": correlation,
            "x-ms-routing-request-id": f"LOCAL:{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}:{uuid.uuid4()}",
            "Cache-Control": "no-cache",
        }
        if "x-ms-client-request-id" in request.headers:
            base_headers["x-ms-client-request-id"] = request.headers["x-ms-client-request-id"]
        routed = match(method, request.path)
        name = routed.name if routed else f"unrouted.{method}"
        head = method == "HEAD"

        def fail(err: SimError) -> web.Response:
            self._count(name, routed.arm if routed else None, method, err.status)
            if head:
                return _json(err.status, None, {**base_headers, **err.headers})
            return _json(err.status, err.body(), {**base_headers, **err.headers})

        auth = self.identity.check(request.headers.get("Authorization"))
        if not auth.ok:
            return fail(AuthenticationFailed(auth.message, tenant_id=self.identity.tenant_id, code=auth.code))
        if routed is None:
            return fail(RouteNotFound(method, request.path))
        params, arm, policy = routed.params, routed.arm, routed.policy
        handler = self._handler(routed.route)
        if "api-version" not in q:
            return fail(MissingApiVersion())
        backend = self.backend
        now = backend.now()
        backend.settle(now)
        sub = params.get("sub", "").lower()
        spec = backend.subs.get(sub) if sub else None
        if spec is not None and not spec.readable:  # the caller holds no role on it (fleet: readable: false)
            return fail(AuthorizationFailed(
                f"The client '{self.identity.caller_of(auth.claims or {})}' with object id "
                f"'{(auth.claims or {}).get('oid', '')}' does not have authorization to perform action "
                f"'{_rbac_action(name, method)}' over scope '/subscriptions/{sub}' or the scope is invalid. "
                "If access was recently granted, please refresh your credentials."))
        vm_name = params.get("vm")
        headers, refused = self.throttle.check(
            now, sub or "-", arm, policy, f"{params.get('rg', '').lower()}/{(vm_name or '').lower()}" if vm_name else None)
        if refused is not None:
            bucket, wait, capacity = refused
            self.stats.throttled += 1
            self.stats.throttled_by_bucket[bucket] += 1
            return fail(self._throttled(sub, bucket, wait, capacity, arm))
        base_headers.update(headers)
        is_lro = routed.route.handler == "_lro"
        if method == "POST" and not is_lro:  # ComputeSchedule: request faults only (lost replies included)
            fault = self.faults.take(name, vm_name, lro=True, kinds=REQUEST_FAULTS)
        else:
            fault = self.faults.take(name, vm_name, lro=is_lro)
        after_reply, hold_reply = "", 0.0
        fail_lro: tuple[str, str] | None = None
        cancel = False
        extra = 0.0
        if fault is not None:
            self.stats.faulted += 1
            kind = fault.kind
            if kind == "drop":
                self._count(name, arm, method, 0)
                if request.transport is not None:
                    request.transport.abort()  # the client sees the connection reset, no answer
                return web.Response(status=500)  # never reaches the wire
            if kind == "http":
                return fail(self._http_fault(fault.spec.error, fault.spec.message, fault.spec.retry_after, sub))
            if kind == "lost-reply":
                after_reply = fault.spec.error.lower()
            elif kind == "hold":
                hold_reply = fault.spec.delay_seconds or 30.0
            elif kind == "slow":
                extra = fault.spec.delay_seconds or 60.0
            elif kind == "cancel":
                cancel = True
            else:
                fail_lro = (fault.spec.error, fault.spec.message or self._lro_fail_message(fault.spec.error))
        try:
            if is_lro:
                resp = handler(request, q, params, correlation, auth.claims or {}, fail_lro, extra, cancel,
                               base_headers)
            else:
                resp = handler(request, q, params, now, base_headers)
        except SimError as err:
            return fail(err)
        if head:  # ARM's existence check: 204 when the resource exists, never a body
            resp = _json(204, None, base_headers)
        if after_reply:
            # Compute did the work; the answer is lost on the way back (a gateway timeout, a reset)
            if after_reply.startswith("drop"):
                self._count(name, arm, method, 0)
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)  # never reaches the wire
            return fail(GatewayTimeout("The gateway did not receive a response from "
                                       "'Microsoft.Compute' within the specified time period."))
        self._count(name, arm, method, resp.status)
        if hold_reply:
            resp[HOLD] = hold_reply / self.backend.time_scale
        return resp

    # ------------------------------------------------------------ errors
    def _throttled(self, sub: str, bucket: str, wait: float, capacity: float, arm: str | None) -> SimError:
        after = retry_after_seconds(wait)
        if bucket.startswith("Subscription"):
            kind = arm or "reads"
            return SubscriptionRequestsThrottled(
                f"Number of '{kind[:-1]}' requests for subscription '{sub}' exceeded. Please try again after "
                f"'{after}' seconds after additional tokens are available. Refer to "
                "https://aka.ms/arm-throttling for additional information.",
                after,
            )
        return ComputeThrottled(bucket, after, capacity)

    @staticmethod
    def _lro_fail_message(code: str) -> str:
        if code == "AllocationFailed":
            return ("Allocation failed. We do not have sufficient capacity for the requested VM size in this "
                    "region. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance")
        return f"The operation failed with error code '{code}' (injected by the simulator)."

    def _http_fault(self, error: str, message: str | None, retry_after: int | None, sub: str) -> SimError:
        status = int(error)
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        if status == 429:
            return TooManyRequests(message or "Too many requests (injected by the simulator).", retry_after or 1)
        if status == 409:
            return Conflict(message or "The request conflicts with the VM's state (injected by the simulator).",
                            headers=headers)
        if status == 503:
            return ServiceUnavailable(message or "The service is temporarily unavailable (injected by the simulator).",
                                      headers=headers)
        if status == 401:
            return ExpiredAuthenticationToken(message or (
                "The access token expiry UTC time is earlier than current UTC time (injected by the simulator)."))
        if status == 403:
            return AuthorizationFailed(message or (
                f"The client does not have authorization to perform this action over scope '/subscriptions/{sub}' "
                "or the scope is invalid. If access was recently granted, please refresh your credentials."))
        text = message or f"An internal error occurred (injected by the simulator, HTTP {status})."
        named = {400: BadRequest, 502: BadGateway, 504: GatewayTimeout}.get(status)
        if named is not None:
            return named(text, headers=headers)
        return InternalServerError(text, status=status, headers=headers)

    # ------------------------------------------------------------ GET handlers
    def _base(self, request: web.Request) -> str:
        return f"https://{request.host}"

    def _page(self, request: web.Request, q: dict[str, str], items: list[Any], size: int,
              render: Callable[[Any], str], keep: dict[str, str], headers: dict[str, str]) -> web.Response:
        """One page of a list as JSON text; `render` gives each item's JSON text."""
        token = q.get("$skiptoken", "")
        try:
            offset = int(token[1:]) if token.startswith("o") else 0
        except ValueError:
            raise InvalidSkipToken(token) from None
        chunk = items[offset:offset + size]
        text = '{"value":[' + ",".join(render(x) for x in chunk) + "]"
        if offset + size < len(items):
            extra = "".join(f"&{k}={quote(v, safe='')}" for k, v in keep.items())
            link = (f"{self._base(request)}{request.path}?api-version={quote(q['api-version'], safe='')}"
                    f"{extra}&$skiptoken=o{offset + size}")
            text += ',"nextLink":' + json.dumps(link)
        return web.Response(status=200, text=text + "}", headers=headers, content_type="application/json", charset="utf-8")

    def _subs_list(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        tid = self.backend.fleet.tenant_id
        return _json(200, {"value": [self._sub_json(s.id, s.name, tid) for s in self.backend.fleet.subscriptions
                                     if s.readable]}, headers)

    @staticmethod
    def _sub_json(sid: str, name: str, tid: str) -> dict[str, Any]:
        return {"id": f"/subscriptions/{sid}", "subscriptionId": sid, "tenantId": tid, "displayName": name,
                "state": "Enabled", "authorizationSource": "RoleBased",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                         "spendingLimit": "Off"}}

    def _tenants(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        tid = self.backend.fleet.tenant_id
        return _json(200, {"value": [{"id": f"/tenants/{tid}", "tenantId": tid, "tenantCategory": "Home",
                                      "displayName": "vmctl simulator"}]}, headers)

    def _sub_get(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        s = self.backend.subscription(params["sub"])
        return _json(200, self._sub_json(s.id, s.name, self.backend.fleet.tenant_id), headers)

    def _rg_json(self, sub: str, name: str, loc: str) -> dict[str, Any]:
        return {"id": f"/subscriptions/{sub}/resourceGroups/{name}", "name": name, "type": "Microsoft.Resources/resourceGroups",
                "location": loc, "properties": {"provisioningState": "Succeeded"}}

    def _rg_list(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        s = self.backend.subscription(params["sub"])
        return _json(200, {"value": [self._rg_json(s.id, n, loc) for n, loc in s.resource_groups.items()]}, headers)

    def _rg_get(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        name, loc = self.backend.resource_group(params["sub"], params["rg"])
        return _json(200, self._rg_json(params["sub"].lower(), name, loc), headers)

    def _vm_list(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        b = self.backend
        vms = b.list_vms(params["sub"], params.get("rg"))
        keep: dict[str, str] = {}
        in_group = params.get("rg") is not None
        # statusOnly is a parameter of the subscription-wide list only (wire contract §2): a group's
        # list ignores it and answers full models without status (the stricter reading)
        status_only = not in_group and q.get("statusonly", "").lower() == "true"
        expand = q.get("$expand", "")
        if expand and expand.lower() != "instanceview":
            raise InvalidParameter(f"The value '{expand}' of parameter '$expand' is not valid; use instanceView.")
        if expand and in_group and not q.get("$filter"):
            # §2: on a group's list, $expand=instanceView is only valid together with $filter
            raise InvalidParameter("The parameter '$expand' is only valid together with '$filter' on a resource "
                                   "group's virtual machine list.")
        flt = q.get("$filter")
        if flt:
            m = re.match(r"^\s*'?virtualMachineScaleSet/id'?\s+eq\s+'([^']+)'\s*$", flt, re.IGNORECASE)
            if not m:
                raise InvalidParameter("Only $filter=virtualMachineScaleSet/id eq '<scale set id>' is supported.")
            target = m.group(1).lower()
            vms = [v for v in vms if v.spec.scale_set and
                   target.endswith(f"/virtualmachinescalesets/{v.spec.scale_set.lower()}")]
            keep["$filter"] = flt
        if status_only:
            keep["statusOnly"] = "true"
        if expand:
            keep["$expand"] = expand
        # statusOnly decides the item shape even with $expand (the smaller answer: never kinder)
        mode = "status" if status_only else "expand" if expand else "plain"
        return self._page(request, q, vms, b.fleet.vm_page_size, lambda v: b.vm_text(v, now, mode), keep, headers)

    def _vm_get(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        vm = self.backend.vm(params["sub"], params["rg"], params["vm"])
        expand = q.get("$expand", "")
        if expand and expand.lower() not in ("instanceview", "userdata", "resiliencyview"):
            raise InvalidParameter(
                f"The value '{expand}' of parameter '$expand' is not valid; use instanceView, userData or resiliencyView.")
        doc = self.backend.vm_json(vm, now, False)
        if expand.lower() == "instanceview":
            doc["properties"]["instanceView"] = self.backend.instance_view(vm, now)
        return _json(200, doc, headers)

    def _vm_iv(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        vm = self.backend.vm(params["sub"], params["rg"], params["vm"])
        return _json(200, self.backend.instance_view(vm, now), headers)

    def _as_list(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        b = self.backend
        b.resource_group(params["sub"], params["rg"])
        sets = [a for (s, rg, _), a in b.avsets.items() if s == params["sub"].lower() and rg == params["rg"].lower()]
        return _json(200, {"value": [b.availability_set_json(a) for a in sets]}, headers)

    def _as_list_sub(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                     headers: dict[str, str]) -> web.Response:
        """Subscription-wide availability sets (`$expand=virtualMachines/$ref` changes nothing:
        members are always listed)."""
        b = self.backend
        sub = b.subscription(params["sub"]).id
        sets = [a for a in b.fleet.availability_sets if a.subscription_id == sub]
        return _json(200, {"value": [b.availability_set_json(a) for a in sets]}, headers)

    def _resources(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                   headers: dict[str, str]) -> web.Response:
        """GET .../resources: GenericResource items, $filter, $expand and $top as ARM documents them.
        Filtering on a tag drops the items' tags, as ARM documents."""
        b = self.backend
        items = b.generic_resources(params["sub"], params.get("rg"))
        keep: dict[str, str] = {}
        flt = q.get("$filter")
        tag: tuple[str, str | None] | None = None
        if flt:
            try:
                eq, tag = parse_resource_filter(flt)
            except ValueError:
                raise InvalidFilterInQueryString(flt) from None
            for fld, value in eq.items():
                key = _RES_FIELDS[fld]
                items = [r for r in items if str(r[key]).lower() == value]
            if tag is not None:
                tname, tvalue = tag
                items = [r for r in items if any(
                    k.lower() == tname and (tvalue is None or str(v).lower() == tvalue) for k, v in r["tags"].items())]
            keep["$filter"] = flt
        expand = [e.strip() for e in q.get("$expand", "").split(",") if e.strip()]
        bad = [e for e in expand if e.lower() not in _RES_EXPAND]
        if bad:
            raise InvalidParameter(f"The value '{bad[0]}' of parameter '$expand' is not valid; "
                                   "use createdTime, changedTime or provisioningState.")
        if expand:
            keep["$expand"] = q["$expand"]
        top = q.get("$top")
        if top is not None:
            if not top.isdigit() or int(top) < 1:
                raise InvalidParameter(f"The value '{top}' of parameter '$top' is not a positive integer.")
            items = items[:int(top)]  # $top: "the number of results to return"
            keep["$top"] = top
        wanted = {e.lower() for e in expand}

        def render(r: dict[str, Any]) -> str:
            doc = {k: v for k, v in r.items() if not k.startswith("_")}
            if tag is not None:
                doc.pop("tags", None)
            if "createdtime" in wanted:
                doc["createdTime"] = iso(r["_created"])
            if "changedtime" in wanted:
                doc["changedTime"] = iso(r["_created"])
            if "provisioningstate" in wanted:
                vm = r.get("_vm")
                doc["provisioningState"] = ("Updating" if vm.op is not None else vm.provisioning) if vm else "Succeeded"
            return json.dumps(doc, separators=(",", ":"))

        return self._page(request, q, items, b.fleet.resource_page_size, render, keep, headers)

    def _as_get(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        a = self.backend.availability_set(params["sub"], params["rg"], params["aset"])
        return _json(200, self.backend.availability_set_json(a), headers)

    def _nic_get(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                 headers: dict[str, str]) -> web.Response:
        """Each VM's one NIC ({vm}-nic), private IP only: enough for `az vm list -d`."""
        nic = params["nic"]
        if not nic.lower().endswith("-nic"):
            raise ResourceNotFound(f"The Resource 'Microsoft.Network/networkInterfaces/{nic}' was not found.")
        try:
            vm = self.backend.vm(params["sub"], params["rg"], nic[:-4])
        except SimError:
            raise ResourceNotFound(f"The Resource 'Microsoft.Network/networkInterfaces/{nic}' under resource group "
                                   f"'{params['rg']}' was not found.") from None
        index = self.backend.by_sub[vm.spec.subscription_id].index(vm)
        nic_id = f"/subscriptions/{vm.spec.subscription_id}/resourceGroups/{vm.spec.resource_group}/providers/Microsoft.Network/networkInterfaces/{nic}"
        return _json(200, {
            "name": nic, "id": nic_id, "type": "Microsoft.Network/networkInterfaces", "location": vm.spec.location,
            "properties": {"provisioningState": "Succeeded", "primary": True, "virtualMachine": {"id": vm.id},
                           "ipConfigurations": [{"name": "ipconfig1", "id": f"{nic_id}/ipConfigurations/ipconfig1",
                                                 "properties": {"privateIPAddress": f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256 + 4 if index % 256 < 250 else 4}",
                                                                "privateIPAllocationMethod": "Dynamic", "primary": True}}]},
        }, headers)

    def _op_get(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        op = self.backend.operation(params["op"])
        ra = self.backend.fleet.lro_retry_after  # None: Compute sends no Retry-After on polls
        retry = {"Retry-After": _fmt_seconds(ra)} if ra is not None else {}
        if q.get("monitor", "").lower() == "true":
            if op.status == "InProgress":
                return _json(202, None, {**headers, "Location": str(request.url), **retry})
            if op.status in ("Failed", "Canceled") and op.fail:
                return _json(500, {"error": {"code": op.fail[0], "message": op.fail[1]}}, headers)
            return _json(200, None, headers)
        if op.status == "InProgress":
            headers = {**headers, **retry}
        return _json(200, op.status_doc(), headers)

    def _activity(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                headers: dict[str, str]) -> web.Response:
        b = self.backend
        b.subscription(params["sub"])
        try:
            flt = parse_filter(q.get("$filter"), now)
            select = parse_select(q.get("$select"))
        except FilterError as exc:
            raise BadRequest(str(exc)) from None
        token = q.get("$skiptoken", "")
        cutoff, offset = now, 0
        if token:
            try:
                c, o = token.split(":")
                cutoff, offset = float(c), int(o)
            except ValueError:
                raise BadRequest(f"The $skiptoken '{token}' is not valid.") from None
        events = b.activity.query(params["sub"], flt, cutoff)
        size = b.fleet.activity_page_size
        chunk = events[offset:offset + size]
        if select:
            value = [{k: e.body[k] for k in select if k in e.body} for e in chunk]
        else:
            value = [e.body for e in chunk]
        body: dict[str, Any] = {"value": value}
        if offset + size < len(events):
            extra = f"&$filter={quote(q['$filter'], safe='')}"
            if q.get("$select"):
                extra += f"&$select={quote(q['$select'], safe='')}"
            body["nextLink"] = (f"{self._base(request)}{request.path}?api-version={quote(q['api-version'], safe='')}"
                                f"{extra}&$skiptoken={cutoff!r}:{offset + size}")
        return _json(200, body, headers)

    def _graph(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
               headers: dict[str, str]) -> web.Response:
        """Azure Resource Graph's `resources` query (graph.py)."""
        return self.graph.resources(request, q, now, headers, request.get(BODY, b""))
    # ------------------------------------------------------------ ComputeSchedule
    def _schedule(self, request: web.Request, q: dict[str, str], params: dict[str, str], now: float,
                  headers: dict[str, str]) -> web.Response:
        """The nine ComputeSchedule POSTs (schedule.py): 200 with a JSON body, never an LRO."""
        segment = request.path.rstrip("/").rsplit("/", 1)[-1]
        body = self.schedule.handle(segment, q["api-version"], params["sub"], params["loc"],
                                    request.get(BODY, b""), now)
        return _json(200, body, headers)

    # ------------------------------------------------------------ LROs
    def _lro(self, request: web.Request, q: dict[str, str], params: dict[str, str], correlation: str,
             claims: dict[str, Any], fail: tuple[str, str] | None, extra: float, cancel: bool,
             headers: dict[str, str]) -> web.Response:
        b = self.backend
        vm = b.vm(params["sub"], params["rg"], params["vm"])
        kind = params["action"]
        ctx = CallContext(
            caller=self.identity.caller_of(claims), claims={k: str(v) for k, v in claims.items()},
            correlation_id=correlation, client_request_id=request.headers.get("x-ms-client-request-id", ""),
        )
        hibernate = q.get("hibernate", "").lower() == "true"
        op = b.begin(vm, kind, ctx, hibernate=hibernate, fail=fail, extra_seconds=extra, cancel=cancel)
        api = quote(q["api-version"], safe="")
        base = (f"{self._base(request)}/subscriptions/{vm.spec.subscription_id}/providers/Microsoft.Compute/"
                f"locations/{vm.spec.location}/operations/{op.id}?p={uuid.uuid4()}&api-version={api}")
        out = {**headers, "Azure-AsyncOperation": base, "Location": base + "&monitor=true",
               "Azure-AsyncNotification": "Enabled"}
        if b.fleet.lro_retry_after is not None:
            # The SDK deserializes the kick-off Retry-After as an int (ValueError on "0.05"), so
            # whole seconds here; it polls at once anyway and then follows the polls' Retry-After.
            out["Retry-After"] = str(retry_after_seconds(b.fleet.lro_retry_after))
        return _json(202, None, out)
