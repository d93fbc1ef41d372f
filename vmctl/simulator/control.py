"""Outside ARM: the `/_sim/*` control endpoints, the managed-identity token endpoints (App
Service style `/msi/token`, IMDS style `/metadata/identity/oauth2/token`) and `/metadata/endpoints`,
and the request counters `/_sim/stats` serves. No throttling or fault rules apply here.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from .backend import Backend, CallContext
from .exceptions import BadRequest, NotFound, SimError
from .faults import Faults
from .fleet import FleetError, parse_event, parse_faults
from .identity import Identity
from .throttle import Throttle
from .urls import ACTIONS

GUID = re.compile(r"^[0-9a-fA-F-]{32,36}$")


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    text = json.dumps(body, separators=(",", ":")) if body is not None else ""
    return web.Response(status=status, text=text, headers=headers, content_type=None if body is None else "application/json",
                        charset=None if body is None else "utf-8")


class Stats:
    """Request counters (what `GET /_sim/stats` answers, with a few backend totals)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.reads = 0
        self.writes = 0
        self.throttled = 0
        self.faulted = 0
        self.by_operation: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.throttled_by_bucket: Counter[str] = Counter()

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "reads": self.reads, "writes": self.writes,
            "throttled": self.throttled, "faulted": self.faulted,
            "by_operation": dict(sorted(self.by_operation.items())),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "throttled_by_bucket": dict(sorted(self.throttled_by_bucket.items())),
        }


class Control:
    """The endpoints outside ARM; shares the backend, identity, throttle, faults and stats with
    the ARM handler (responses.Handler), which routes requests here."""

    def __init__(self, backend: Backend, identity: Identity, throttle: Throttle, faults: Faults, stats: Stats) -> None:
        self.backend = backend
        self.identity = identity
        self.throttle = throttle
        self.faults = faults
        self.stats = stats

    # ------------------------------------------------------------ identity & metadata
    def metadata(self, request: web.Request, q: dict[str, str]) -> web.Response:
        """`GET /metadata/endpoints` (no auth)."""
        self.stats.requests += 1
        self.stats.by_operation["metadata.endpoints"] += 1
        return json_response(200, self._metadata_doc(request, q))

    def token(self, request: web.Request, q: dict[str, str], imds: bool) -> web.Response:
        self.stats.requests += 1
        self.stats.by_operation["identity.token"] += 1
        ident = self.identity
        if imds:
            # IMDS: "Requests must contain the header Metadata: true" and "must also not contain an
            # X-Forwarded-For header" (the SSRF guards; the second refusal's body is an assumption)
            if request.headers.get("Metadata", "").lower() != "true":
                return json_response(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
            if "X-Forwarded-For" in request.headers:
                return json_response(400, {"error": "invalid_request",
                                   "error_description": "Requests with an X-Forwarded-For header are not accepted"})
        else:
            secret = request.headers.get("X-IDENTITY-HEADER") or request.headers.get("secret")
            if secret != ident.header_secret:
                return json_response(401, {"statusCode": 401, "message": "The X-IDENTITY-HEADER (or secret) header is missing or wrong."})
        resource = q.get("resource") or q.get("scope", "").removesuffix("/.default")
        if not resource:
            return json_response(400, {"error": "invalid_request", "error_description": "The resource parameter is required."})
        token, exp = ident.issue(resource, q.get("client_id"))
        body: dict[str, Any] = {"access_token": token, "resource": resource, "token_type": "Bearer",
                                "client_id": q.get("client_id") or ident.app_id}
        api = q.get("api-version", "")
        if imds:
            body.update(expires_in=str(int(ident.lifetime)), expires_on=str(exp), not_before=str(exp - int(ident.lifetime)),
                        ext_expires_in=str(int(ident.lifetime)), refresh_token="")
        elif api == "2017-09-01":
            body["expires_on"] = datetime.fromtimestamp(exp, tz=timezone.utc).strftime("%m/%d/%Y %H:%M:%S +00:00")
        else:
            body["expires_on"] = exp
        return json_response(200, body)

    def _metadata_doc(self, request: web.Request, q: dict[str, str]) -> Any:
        base = f"https://{request.host}/"
        audience = "https://management.azure.com/"
        if q.get("api-version", "2015-01-01") < "2019-05-01":
            return {
                "galleryEndpoint": base, "graphEndpoint": "https://graph.windows.net/",
                "portalEndpoint": base, "authentication": {
                    "loginEndpoint": "https://login.microsoftonline.com/", "audiences": [audience, "https://management.core.windows.net/"]},
            }
        cloud = {
            "name": "VmctlSimulator", "resourceManager": base, "portal": base, "gallery": base,
            "graph": "https://graph.windows.net/", "graphAudience": "https://graph.windows.net/",
            "microsoftGraphResourceId": "https://graph.microsoft.com/",
            "authentication": {"loginEndpoint": "https://login.microsoftonline.com/",
                               "audiences": ["https://management.core.windows.net/", audience],
                               "tenant": "common", "identityProvider": "AAD"},
            "suffixes": {"storage": "core.windows.net", "keyVaultDns": "vault.azure.net",
                         "acrLoginServer": "azurecr.io", "sqlServerHostname": "database.windows.net"},
        }
        # 2019-05-01 answers with the list of clouds; 2022-09-01 (what `az cloud register` asks for)
        # with this endpoint's own cloud.
        return cloud if q.get("api-version", "") >= "2022-09-01" else [cloud]

    # ------------------------------------------------------------ control endpoints
    async def handle(self, request: web.Request) -> web.Response:
        """`/_sim/*`."""
        path = request.path.rstrip("/")
        method = request.method
        if path == "/_sim/stats" and method == "GET":
            with self.backend.lock:
                body = self.stats.as_dict()
                body["tokens_issued"] = self.identity.issued
                body["operations_started"] = len(self.backend.ops)
                body["schedule_operations"] = len(self.backend.schedule.ops)
                body["activity_events"] = len(self.backend.activity)
                self.backend.settle(self.backend.now())
                body["scheduled_events"] = self.backend.imds.stats()
            return json_response(200, body)
        if path == "/_sim/faults":
            if method == "GET":
                return json_response(200, {"faults": self.faults.describe()})
            if method == "DELETE":
                self.faults.clear()
                return json_response(200, {"faults": []})
            if method == "POST":
                try:
                    raw = await request.json()
                    self.faults.add(parse_faults(raw.get("faults", raw) if isinstance(raw, dict) and "faults" in raw else raw))
                except (ValueError, FleetError) as exc:
                    err = BadRequest(str(exc))
                    return json_response(err.status, err.body())
                return json_response(200, {"faults": self.faults.describe()})
        if path == "/_sim/events":
            return await self._events(request)
        if path == "/_sim/act" and method == "POST":
            return await self._act(request)
        if path == "/_sim/reset" and method == "POST":
            scope = request.query.get("scope", "all")
            with self.backend.lock:
                self.stats.reset()
                if scope == "all":
                    self.backend.reset()
                    self.throttle.reset()
                    self.faults.clear()
                    self.faults.add(self.backend.fleet.faults)
            return json_response(200, {"reset": scope})
        missing = NotFound("Control endpoints: GET /_sim/stats, GET|POST|DELETE /_sim/faults, "
                           "POST /_sim/act, GET|POST /_sim/events, POST /_sim/reset[?scope=stats]")
        return json_response(missing.status, missing.body())

    async def _events(self, request: web.Request) -> web.Response:
        """GET: the record of every Scheduled Event and each VM's IMDS state; POST: add an event
        (the keys of a fleet file's `scheduled_events` entry; `at` defaults to now)."""
        b = self.backend
        if request.method == "POST":
            try:
                raw = await request.json()
                spec = parse_event(raw, "event")
            except (ValueError, FleetError) as exc:
                err = BadRequest(str(exc))
                return json_response(err.status, err.body())
            with b.lock:
                now = b.now()
                try:
                    ev = b.imds.add(spec, now)
                except SimError as err:
                    return json_response(err.status, err.body())
                b.settle(now)
                return json_response(200, ev.record())
        if request.method != "GET":
            wrong = BadRequest("use GET /_sim/events (the record) or POST /_sim/events (add one)")
            return json_response(405, wrong.body())
        with b.lock:
            now = b.now()
            b.settle(now)
            imds = b.imds
            vms = {}
            for vm in b.vms.values():
                g = imds.guests.get(id(vm))
                if g is not None and g.enabled_at is not None:
                    vms[vm.name] = {"enabledAt": datetime.fromtimestamp(g.enabled_at, tz=timezone.utc).isoformat(),
                                    "enabled": imds.enabled(vm, now), "flowing": imds.flowing(vm, now),
                                    "documentIncarnation": g.incarnation}
            return json_response(200, {"events": [ev.record() for ev in imds.events if ev.created <= now],
                                       "vms": vms, "stats": imds.stats()})

    async def _act(self, request: web.Request) -> web.Response:
        """Someone else acts on a VM: the same path as an ARM POST (refusals, preemption, Activity
        Log), as another principal with a fresh correlation id. No throttling or fault rules."""
        def bad(message: str) -> web.Response:
            err = BadRequest(message)
            return json_response(err.status, err.body())

        try:
            body = await request.json()
        except ValueError:
            return bad('expected a JSON body like {"vm": "web-01", "action": "deallocate"}')
        if not isinstance(body, dict):
            return bad("expected a JSON object")
        unknown = sorted(set(body) - {"vm", "resource_group", "subscription", "action", "caller"})
        if unknown:
            return bad(f"unknown key {unknown[0]!r}; keys: vm, resource_group, subscription, action, caller")
        vm_name, action = body.get("vm"), ACTIONS.get(str(body.get("action", "")).lower())
        if not isinstance(vm_name, str) or not vm_name:
            return bad("'vm' (the VM name) is required")
        if action is None:
            return bad(f"'action' must be one of {', '.join(ACTIONS.values())}; got {body.get('action')!r}")
        caller = str(body.get("caller") or "someone-else@contoso.example")
        claims = {"oid": caller} if GUID.match(caller) else {"upn": caller, "name": caller}
        ctx = CallContext(caller=caller, claims=claims, correlation_id=str(uuid.uuid4()),
                          client_request_id=str(uuid.uuid4()))
        b = self.backend
        with b.lock:
            b.settle(b.now())
            try:
                rg, sub = body.get("resource_group"), body.get("subscription")
                vm = b.find_vm(vm_name, str(rg) if rg else None, str(sub) if sub else None)
                op = b.begin(vm, action, ctx)
            except SimError as err:
                return json_response(err.status, err.body())
        return json_response(202, {"operationId": op.id, "correlationId": ctx.correlation_id})
