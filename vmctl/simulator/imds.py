"""Each VM's Instance Metadata Service (IMDS) as seen from inside the VM: instance metadata and
Scheduled Events, over plain HTTP (wire contract §9 and §14).

Addressing: one plain-HTTP listener for the whole fleet (`Simulator.imds_url`); a VM's IMDS is the
path prefix `/vm/{name}` (a name unique in the fleet) or `/vm/{subscription}/{group}/{name}`, so a
guest's `--imds-endpoint http://127.0.0.1:PORT/vm/web-01` stands for `http://169.254.169.254`.

Events come from the fleet file (`scheduled_events:`), from `POST /_sim/events`, and from a user's
`restart` (Reboot) or `redeploy` (Redeploy) of a VM whose IMDS is enabled: that ARM operation is
held (the VM keeps running, the LRO stays InProgress) until the event is approved by a POST
StartRequests or its NotBefore passes, then the reboot itself runs (wire §14.3). Approval applies
to every VM in `Resources`. An event is Scheduled until then, Started (NotBefore "") for
`imds.started_seconds`, then it disappears; a VM's DocumentIncarnation increases whenever its
Events change. Every time here is divided by the time scale.

Strict where the sources are silent (docs/simulator.md, evidence table): the first call to a VM's
IMDS is answered `imds.first_call_seconds` (120) late, events reach a VM only
`imds.events_flow_seconds` (300) after that first call, an unknown EventId in a POST is a 400, and
more than `imds.rate_per_second` (5) requests a second to one VM are 429s.

Left out: the network part of `/metadata/instance` beyond one private IP, attested data, identity
tokens under a VM prefix (the ARM listener serves those), Terminate deleting the VM (it is
deallocated). After an approval the event starts `imds.approval_start_seconds` (15) later, not at
once: Azure starts it "when possible" and may wait for other tenants on the host (not established).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .exceptions import SimError
from .fleet import EVENT_DESCRIPTIONS, MIN_NOTICE_SECONDS, EventSpec

if TYPE_CHECKING:
    from .backend import Backend, Operation, Vm
    from .faults import Faults

SCHEDULED_EVENTS_VERSIONS = ("2017-03-01", "2017-08-01", "2017-11-01", "2019-01-01", "2019-08-01", "2020-07-01")
INSTANCE_VERSIONS = (
    "2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01", "2018-02-01", "2018-04-02",
    "2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01", "2019-06-04", "2019-08-01",
    "2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15", "2020-09-01", "2020-10-01", "2020-12-01",
    "2021-01-01", "2021-02-01", "2021-03-01", "2021-05-01", "2021-10-01", "2021-11-01", "2021-11-15",
    "2021-12-13", "2023-07-01", "2023-11-15", "2024-03-15", "2024-07-17", "2025-04-07",
)
BAD_API_VERSION = {
    "error": "Bad request. api-version is invalid or was not specified in the request. "
             "For more information refer to aka.ms/azureimds",
    "newest-versions": ["2025-04-07", "2024-07-17", "2024-03-15"],
}
USER_DESCRIPTIONS = {
    "Reboot": "Virtual machine is going to be restarted as requested by authorized user.",
    "Redeploy": "Virtual machine is going to be redeployed as requested by authorized user.",
}
_USER_EVENT = {"restart": "Reboot", "redeploy": "Redeploy"}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")


def rfc1123(ts: float) -> str:
    """`Mon, 11 Apr 2026 22:26:58 GMT`, as IMDS writes NotBefore."""
    return format_datetime(datetime.fromtimestamp(int(ts), tz=timezone.utc), usegmt=True)


@dataclass
class SimEvent:
    id: str
    type: str
    vms: list["Vm"]
    created: float
    not_before: float | None        # None: Started from the start (a hardware failure)
    duration_seconds: int
    description: str
    source: str
    op: "Operation | None" = None    # the held restart/redeploy of a User event
    op_seconds: float = 0.0          # how long that operation's reboot itself takes
    approved_at: float | None = None
    approved_by: str | None = None
    approval_start: float = 0.0      # after an approval, the event starts this much later (or at NotBefore)
    started_at: float | None = None
    removed_at: float | None = None
    cancelled: bool = False
    expired: bool = False
    counted: bool = False            # counted in `created` (once visible)

    def start_at(self) -> float:
        if self.not_before is None:
            return self.created
        if self.approved_at is not None and self.approved_at + self.approval_start < self.not_before:
            return self.approved_at + self.approval_start
        return self.not_before

    def record(self) -> dict[str, Any]:
        """The simulator's record of the event (`GET /_sim/events`)."""
        return {
            "eventId": self.id, "eventType": self.type, "eventSource": self.source,
            "resources": [v.name for v in self.vms], "created": _iso(self.created),
            "notBefore": _iso(self.not_before), "approvedAt": _iso(self.approved_at),
            "approvedBy": self.approved_by, "startedAt": _iso(self.started_at), "endedAt": _iso(self.removed_at),
            "expired": self.expired, "cancelled": self.cancelled,
            "operationId": self.op.id if self.op else None,
            "correlationId": self.op.ctx.correlation_id if self.op else None,
            "operation": self.op.kind if self.op else None,
            "secondsSavedVsNotBefore": (round(self.not_before - self.approved_at, 3)
                                        if self.approved_at is not None and self.not_before is not None else 0.0),
        }


@dataclass
class GuestSide:
    """One VM's IMDS service: enabled at its first call, off after a day without one."""
    enabled_at: float | None = None
    last_call: float = 0.0
    incarnation: int = 1
    served: str = "[]"               # the Events last served, to bump the incarnation on change
    tokens: float = 0.0
    stamp: float = 0.0


@dataclass
class ImdsState:
    backend: "Backend"
    events: list[SimEvent] = field(default_factory=list)
    guests: dict[int, GuestSide] = field(default_factory=dict)
    created: int = 0
    approved: int = 0
    expired: int = 0
    requests: int = 0

    @property
    def scale(self) -> float:
        return self.backend.time_scale

    def load(self, specs: list[EventSpec], now: float) -> None:
        for spec in specs:
            self.add(spec, now)

    def add(self, spec: EventSpec, now: float) -> SimEvent:
        b = self.backend
        vms = [b.find_vm(name) for name in spec.vms]
        created = now + spec.at / self.scale
        ev = SimEvent(
            id=str(uuid.uuid4()).upper(), type=spec.type, vms=vms, created=created,
            not_before=None if spec.notice is None else created + spec.notice / self.scale,
            duration_seconds=spec.duration_seconds, description=spec.description, source=spec.source,
        )
        self.events.append(ev)
        return ev

    # ------------------------------------------------------------ enablement
    def guest(self, vm: "Vm") -> GuestSide:
        return self.guests.setdefault(id(vm), GuestSide())

    def enabled(self, vm: "Vm", now: float) -> bool:
        g = self.guests.get(id(vm))
        idle = self.backend.fleet.imds.idle_off_seconds / self.scale
        return g is not None and g.enabled_at is not None and now - g.last_call <= idle

    def flowing(self, vm: "Vm", now: float) -> bool:
        """Events reach this VM: enabled, and the flow delay after enablement has passed."""
        if not self.enabled(vm, now):
            return False
        g = self.guests[id(vm)]
        assert g.enabled_at is not None
        return now >= g.enabled_at + self.backend.fleet.imds.events_flow_seconds / self.scale

    def call(self, vm: "Vm", now: float) -> tuple[float, bool]:
        """A request reaches this VM's IMDS: (seconds to hold the answer back, rate-limited?)."""
        spec = self.backend.fleet.imds
        g = self.guest(vm)
        self.requests += 1
        delay = 0.0
        if not self.enabled(vm, now):
            g.enabled_at = now
            g.tokens, g.stamp = spec.rate_per_second, now
            delay = spec.first_call_seconds / self.scale
        g.last_call = now
        rate = spec.rate_per_second * self.scale
        g.tokens = min(spec.rate_per_second, g.tokens + (now - g.stamp) * rate)
        g.stamp = now
        if g.tokens < 1.0:
            return delay, True
        g.tokens -= 1.0
        return delay, False

    # ------------------------------------------------------------ ARM side
    def hold(self, vm: "Vm", op: "Operation", now: float) -> float | None:
        """A user restart/redeploy: when the guest listens, a User event; returns its NotBefore
        (the reboot starts then unless approved earlier), or None (not held)."""
        etype = _USER_EVENT.get(op.kind)
        if etype is None or not self.flowing(vm, now):
            return None
        nb = now + MIN_NOTICE_SECONDS[etype] / self.scale
        ev = SimEvent(id=str(uuid.uuid4()).upper(), type=etype, vms=[vm], created=now, not_before=nb,
                      duration_seconds=-1, description=USER_DESCRIPTIONS.get(etype, EVENT_DESCRIPTIONS[etype]),
                      source="User", op=op, op_seconds=op.ends - op.started)
        self.events.append(ev)
        return nb

    def operation_ended(self, op: "Operation", now: float, cancelled: bool) -> None:
        """A held operation was preempted or cancelled: its event goes away (cancelled)."""
        if not cancelled:
            return
        for ev in self.events:
            if ev.op is op and ev.removed_at is None:
                ev.removed_at, ev.cancelled = now, True

    def settle(self, now: float) -> None:
        """Move events along by time: count new ones, start those due, remove those done."""
        if not self.events:
            return
        started_for = self.backend.fleet.imds.started_seconds / self.scale
        for ev in self.events:
            if ev.removed_at is not None or ev.created > now:
                continue
            if not ev.counted:
                ev.counted = True
                self.created += 1
            start = ev.start_at()
            if ev.started_at is None and now >= start:
                ev.started_at = start
                if ev.not_before is not None and ev.approved_at is None:
                    ev.expired = True
                    self.expired += 1
                if ev.type in ("Preempt", "Terminate"):
                    for vm in ev.vms:
                        self.backend.evict(vm, start)
            if ev.started_at is not None:
                end = ev.started_at + started_for
                if ev.op is not None:
                    end = max(end, ev.op.ends)
                if now >= end:
                    ev.removed_at = end

    def approve(self, vm: "Vm", ids: list[str], now: float) -> str | None:
        """POST StartRequests from `vm`: None, or the reason for a 400."""
        mine = {ev.id.lower(): ev for ev in self.events
                if ev.removed_at is None and ev.created <= now and self.sees(vm, ev)}
        unknown = [i for i in ids if i.lower() not in mine]
        if unknown:
            return f"Bad request. EventId '{unknown[0]}' is not a current event of this VM."
        started = [i for i in ids if mine[i.lower()].started_at is not None]
        if started:  # not established (wire §14.2); the stricter answer: there is nothing left to approve
            return f"Bad request. EventId '{started[0]}' has already started."
        for i in ids:
            ev = mine[i.lower()]
            if ev.approved_at is not None:
                continue  # 200 for any valid id, even one another VM already approved (wire §14.2)
            ev.approved_at, ev.approved_by = now, vm.name
            ev.approval_start = self.backend.fleet.imds.approval_start_seconds / self.scale
            self.approved += 1
            if ev.op is not None and ev.op.status == "InProgress":
                self.backend.release(ev.op, ev.start_at(), ev.op_seconds)
        self.settle(now)
        return None

    # ------------------------------------------------------------ guest side
    @staticmethod
    def sees(vm: "Vm", ev: SimEvent) -> bool:
        """An event reaches the VMs it names and every member of their availability set or scale
        set ("each VM must check for its own name", wire §14.2)."""
        if vm in ev.vms:
            return True
        s = vm.spec
        for other in ev.vms:
            o = other.spec
            if (o.subscription_id, o.resource_group.lower()) != (s.subscription_id, s.resource_group.lower()):
                continue
            if (s.availability_set and o.availability_set == s.availability_set) or \
                    (s.scale_set and o.scale_set == s.scale_set):
                return True
        return False

    def document(self, vm: "Vm", now: float) -> dict[str, Any]:
        self.settle(now)
        g = self.guest(vm)
        visible = self.flowing(vm, now)
        items = []
        for ev in self.events:
            if not visible or ev.removed_at is not None or ev.created > now or not self.sees(vm, ev):
                continue
            started = ev.started_at is not None
            items.append({
                "EventId": ev.id, "EventStatus": "Started" if started else "Scheduled", "EventType": ev.type,
                "ResourceType": "VirtualMachine", "Resources": [v.name for v in ev.vms],
                "NotBefore": "" if started or ev.not_before is None else rfc1123(ev.not_before),
                "Description": ev.description, "EventSource": ev.source, "DurationInSeconds": ev.duration_seconds,
            })
        text = json.dumps(items, sort_keys=True)
        if text != g.served:
            g.incarnation += 1
            g.served = text
        return {"DocumentIncarnation": g.incarnation, "Events": items}

    def instance(self, vm: "Vm") -> dict[str, Any]:
        """`/metadata/instance` for the VM: every primitive a string, missing ones "" (wire §14.4)."""
        s = vm.spec
        linux = s.os_type == "Linux"
        compute = {
            "azEnvironment": "AzurePublicCloud",
            "additionalCapabilities": {"hibernationEnabled": "true" if s.hibernation_enabled else "false"},
            "evictionPolicy": "Deallocate" if s.priority != "Regular" else "",
            "location": s.location, "name": s.name,
            "offer": "0001-com-ubuntu-server-jammy" if linux else "WindowsServer",
            "osType": s.os_type, "placementGroupId": "",
            "platformFaultDomain": "" if s.fault_domain is None else str(s.fault_domain),
            "platformUpdateDomain": "" if s.update_domain is None else str(s.update_domain),
            "priority": s.priority if s.priority != "Regular" else "Regular",
            "provider": "Microsoft.Compute",
            "publisher": "Canonical" if linux else "MicrosoftWindowsServer",
            "resourceGroupName": s.resource_group, "resourceId": vm.id,
            "sku": "22_04-lts-gen2" if linux else "2022-datacenter-azure-edition",
            "storageProfile": {"osDisk": {"diffDiskSettings": {"option": "Local" if s.ephemeral_os_disk else ""},
                                          "name": f"{s.name}_OsDisk_1", "osType": s.os_type}},
            "subscriptionId": s.subscription_id,
            "tags": ";".join(f"{k}:{v}" for k, v in s.tags.items()),
            "tagsList": [{"name": k, "value": v} for k, v in s.tags.items()],
            "userData": "", "version": "latest", "vmId": s.vm_id, "vmScaleSetName": s.scale_set or "",
            "vmSize": s.size, "zone": s.zones[0] if s.zones else "",
        }
        return {"compute": compute, "network": {"interface": [{"ipv4": {"ipAddress": [
            {"privateIpAddress": "10.0.0.4", "publicIpAddress": ""}], "subnet": []}, "ipv6": {"ipAddress": []},
            "macAddress": "000D3A000000"}]}}

    def stats(self) -> dict[str, int]:
        return {"created": self.created, "approved": self.approved, "expired": self.expired,
                "imds_requests": self.requests}


# ------------------------------------------------------------------ HTTP
def _err(status: int, message: str | dict[str, Any]) -> web.Response:
    body = message if isinstance(message, dict) else {"error": message}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", charset="utf-8")


class ImdsHandler:
    """The plain-HTTP listener: `/vm/{name}/metadata/...` (or `/vm/{sub}/{rg}/{name}/metadata/...`)."""

    def __init__(self, backend: "Backend", faults: "Faults") -> None:
        self.backend = backend
        self.faults = faults

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        segs = path.strip("/").split("/")
        if len(segs) < 3 or segs[0] != "vm" or "metadata" not in segs:
            return _err(404, "Not found. A VM's IMDS is under /vm/{name}/metadata/ "
                             "(or /vm/{subscription}/{group}/{name}/metadata/)")
        cut = segs.index("metadata")
        where, rest = segs[1:cut], segs[cut + 1:]
        b = self.backend
        with b.lock:
            try:
                if len(where) == 1:
                    vm = b.find_vm(where[0])
                elif len(where) == 3:
                    vm = b.vm(where[0], where[1], where[2])
                else:
                    raise LookupError
            except (SimError, LookupError):
                return _err(404, f"Not found. No VM at /vm/{'/'.join(where)} in this simulator.")
        # IMDS's own guards come first: they are answered without enabling anything
        if request.headers.get("Metadata", "").lower() != "true":
            return _err(400, "Bad request. Required metadata header not specified")
        if "X-Forwarded-For" in request.headers:
            return _err(400, "Bad request. Requests with an X-Forwarded-For header are not accepted")
        keys = [k.lower() for k, _ in request.query.items()]
        if len(keys) != len(set(keys)):
            return _err(400, "Bad request. Duplicate query parameters are not allowed")
        now = time.time()
        with b.lock:
            delay, limited = b.imds.call(vm, now)
        if delay:
            await asyncio.sleep(delay)
        if limited:
            return _err(429, "Too many requests")
        op = "scheduledEvents" if rest[:1] == ["scheduledevents"] else "instance"
        fault = self.faults.take(f"imds.{op}", vm.name, lro=True)
        if fault is not None:
            kind = fault.kind
            if kind == "drop":
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)
            if kind in ("hold", "slow"):
                await asyncio.sleep((fault.spec.delay_seconds or 30.0) / b.time_scale)
            elif kind == "http" or fault.spec.error.isdigit():
                status = int(fault.spec.error)
                return _err(status, fault.spec.message or f"Injected by the simulator (HTTP {status})")
            else:
                return web.Response(status=200, text=fault.spec.message or "{\"DocumentIncarnation\": ",
                                    content_type="application/json")  # a malformed document
        if rest[:1] == ["scheduledevents"] and len(rest) == 1:
            return await self._scheduled(request, vm)
        if rest[:1] == ["instance"]:
            return self._instance(request, vm, rest[1:])
        return _err(404, f"Not found. /metadata/{'/'.join(rest)} is not an IMDS category")

    async def _scheduled(self, request: web.Request, vm: "Vm") -> web.Response:
        if request.query.get("api-version") not in SCHEDULED_EVENTS_VERSIONS:
            return _err(400, BAD_API_VERSION)
        b = self.backend
        if request.method == "GET":
            with b.lock:
                b.settle(time.time())
                doc = b.imds.document(vm, time.time())
            return web.Response(status=200, text=json.dumps(doc), content_type="application/json", charset="utf-8")
        if request.method != "POST":
            return _err(405, f"Method not allowed. {request.method} is not supported here; use GET or POST")
        try:
            body = json.loads(await request.read())
            reqs = body["StartRequests"]
            ids = [r["EventId"] for r in reqs]
            if not isinstance(reqs, list) or not ids or not all(isinstance(i, str) for i in ids):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return _err(400, 'Bad request. Expected a body like {"StartRequests": [{"EventId": "<id>"}]}')
        with b.lock:
            now = time.time()
            b.settle(now)
            problem = b.imds.approve(vm, ids, now)
        if problem:
            return _err(400, problem)
        return web.Response(status=200)

    def _instance(self, request: web.Request, vm: "Vm", rest: list[str]) -> web.Response:
        if request.method != "GET":
            return _err(405, f"Method not allowed. {request.method} is not supported here; use GET")
        if request.query.get("api-version") not in INSTANCE_VERSIONS:
            return _err(400, BAD_API_VERSION)
        with self.backend.lock:
            node: Any = self.backend.imds.instance(vm)
        for key in [r for r in rest if r]:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return _err(404, f"Not found. No element '{key}' in /metadata/instance")
        leaf = not isinstance(node, (dict, list))
        if request.query.get("format") == "text":
            if not leaf:
                return _err(400, "Bad request. format=text is only for a leaf element")
            return web.Response(status=200, text=str(node), content_type="text/plain", charset="utf-8")
        if leaf:
            return _err(400, "Bad request. A leaf element needs format=text")
        return web.Response(status=200, text=json.dumps(node), content_type="application/json", charset="utf-8")
